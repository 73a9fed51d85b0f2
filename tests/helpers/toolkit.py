"""Run the built-in toolkit's capabilities in one execution folder, as an agent would, for unit tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from planexe_ax.agents import Capability, CapabilityOutput, TaskContext
from planexe_ax.config import Settings


class Run:
    """Runs capabilities in one execution folder and records their progress reports."""

    def __init__(self, tmp_path: Path) -> None:
        self.settings = Settings(data_dir=tmp_path / "data")
        self.progress: list[tuple[float, str]] = []
        self.n = 0

    def ctx(self) -> TaskContext:
        self.n += 1

        async def report(percent: float, message: str) -> None:
            self.progress.append((percent, message))

        return TaskContext("exec1", "t1", f"s{self.n}", 1, "tester", self.settings, _progress=report)

    @property
    def out(self) -> Path:
        return self.settings.outputs_dir / "exec1"

    async def __call__(self, cap: Capability, params: dict[str, Any]) -> dict[str, Any]:
        model: BaseModel = cap.params_model.model_validate(params)
        result = await cap(model, self.ctx())
        output = result.output if isinstance(result, CapabilityOutput) else result
        assert len(json.dumps(output)) < 4000, "outputs stay small"
        return output
