"""Run `planexe-ax` commands as real processes from async tests, without blocking the event loop."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str


async def acli(args: list[str], env: dict[str, str], limit_s: float = 60.0) -> Result:
    """Run one command to the end and return what it printed."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "planexe_ax",
        *args,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), limit_s)
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())
