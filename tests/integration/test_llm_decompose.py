"""The LLM decomposer against a local HTTP server that plays an OpenAI-compatible model."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pydantic import BaseModel

from planexe_ax.bus.plan import Phase, Plan, Task
from planexe_ax.errors import ConfigError
from planexe_ax.plans.decompose import HUMAN_ACTION, RuleBasedDecomposer, decompose_plan_async
from planexe_ax.plans.llm_decompose import CapabilitySpec, LLMDecomposer, LLMSettings, specs_from_cards


class DraftParams(BaseModel):
    template: str
    variables: dict[str, Any] = {}


@dataclass
class FakeModel:
    """Answers POST /v1/chat/completions from a script of (status, content); records the requests."""

    script: list[tuple[int, str]]
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    base_url: str = ""

    def answer(self) -> tuple[int, str]:
        return self.script.pop(0) if len(self.script) > 1 else self.script[0]


@pytest.fixture
def model() -> Iterator[FakeModel]:
    fake = FakeModel(script=[])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            fake.requests.append({"path": self.path, **json.loads(body)})
            fake.headers.append(dict(self.headers))
            status, content = fake.answer()
            data = (
                json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]})
                if status == 200
                else content
            ).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    fake.base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


TASK = Task(task_id="t1", title="Draft the safety policy", description="Policy for the kiln room")
PLAN = Plan(
    plan_id="p", goal="Open a clay workshop", title="Clay", phases=[Phase(phase_id="x", name="x", tasks=[TASK])]
)
SPECS = {
    "draft_document": CapabilitySpec("draft_document", "Fill a template", {"type": "object"}, DraftParams),
    "send_email": CapabilitySpec("send_email", "Send an email"),
}


def step(action: str = "draft_document", confidence: float = 0.8, **params: Any) -> dict[str, Any]:
    return {
        "subtask_id": "s1",
        "action": action,
        "description": "Write it",
        "params": params or {"template": "# Policy\n{body}", "variables": {"body": "..."}},
        "decomposition_confidence": confidence,
        "decomposition_reason": "it is a document",
    }


def good(*steps: dict[str, Any]) -> tuple[int, str]:
    return 200, json.dumps({"subtasks": list(steps) or [step()]})


def decomposer(model: FakeModel, retries: int = 2, fallback: bool = True) -> LLMDecomposer:
    settings = LLMSettings(base_url=model.base_url, model="tiny", api_key="k-123", max_retries=retries, retry_delay_s=0)
    return LLMDecomposer(settings, SPECS, fallback=RuleBasedDecomposer() if fallback else None)


async def test_a_good_answer_becomes_subtasks(model: FakeModel) -> None:
    model.script = [good()]
    (sub,) = await decomposer(model).decompose_task(TASK, PLAN)
    assert sub.subtask_id == "t1-1"
    assert sub.action == "draft_document"
    assert sub.decomposition_confidence == 0.8
    assert sub.decomposition_reason == "llm: it is a document"
    (request,) = model.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["model"] == "tiny"
    assert request["response_format"] == {"type": "json_object"}
    assert "draft_document" in request["messages"][0]["content"]
    assert "Policy for the kiln room" in request["messages"][1]["content"]
    assert model.headers[0]["Authorization"] == "Bearer k-123"


async def test_an_invalid_answer_is_retried_with_the_error(model: FakeModel) -> None:
    model.script = [(200, json.dumps({"subtasks": [step(template=None)]})), good()]
    (sub,) = await decomposer(model).decompose_task(TASK, PLAN)
    assert sub.action == "draft_document"
    assert len(model.requests) == 2
    second = model.requests[1]["messages"]
    assert second[-2]["role"] == "assistant"
    assert "Your answer was invalid" in second[-1]["content"]
    assert "params of draft_document: template" in second[-1]["content"]


async def test_not_json_is_retried_with_the_error(model: FakeModel) -> None:
    model.script = [(200, "Sure! Here are the steps: ..."), good()]
    await decomposer(model).decompose_task(TASK, PLAN)
    assert "Invalid JSON" in model.requests[1]["messages"][-1]["content"]


async def test_always_invalid_falls_back_to_the_rules(model: FakeModel) -> None:
    model.script = [(200, json.dumps({"steps": []}))]
    subs = await decomposer(model, retries=2).decompose_task(TASK, PLAN)
    assert len(model.requests) == 3
    assert subs[0].action == "draft_document"
    assert subs[0].params["template"].startswith("# {title}")
    assert subs[0].decomposition_reason.startswith("the model failed 3 time(s) (last: invalid answer:")
    assert "fell back to the rule-based decomposer" in subs[0].decomposition_reason


async def test_always_invalid_without_fallback_goes_to_people(model: FakeModel) -> None:
    model.script = [(200, "[]")]
    (sub,) = await decomposer(model, retries=0, fallback=False).decompose_task(TASK, PLAN)
    assert sub.human_required
    assert sub.action == HUMAN_ACTION
    assert sub.decomposition_reason.startswith("human work: the model failed 1 time(s)")


async def test_http_500_is_retried_then_falls_back(model: FakeModel) -> None:
    model.script = [(500, '{"error": "overloaded"}')]
    subs = await decomposer(model, retries=1).decompose_task(TASK, PLAN)
    assert len(model.requests) == 2
    assert model.requests[1]["messages"] == model.requests[0]["messages"]
    assert "HTTP 500" in subs[0].decomposition_reason
    assert "fell back" in subs[0].decomposition_reason


async def test_http_500_then_a_good_answer(model: FakeModel) -> None:
    model.script = [(500, "{}"), good()]
    (sub,) = await decomposer(model).decompose_task(TASK, PLAN)
    assert sub.decomposition_reason == "llm: it is a document"


async def test_an_unknown_action_becomes_human_work(model: FakeModel) -> None:
    model.script = [good(step("weld_steel", 0.9, rod="steel"), {**step(), "subtask_id": "s2"})]
    plan = await decompose_plan_async(PLAN, decomposer(model), capabilities=set(SPECS))
    weld, draft = plan.tasks()[0].subtasks
    assert weld.action == HUMAN_ACTION
    assert weld.human_required
    assert "proposed weld_steel (not an offered capability)" in weld.decomposition_reason
    assert draft.action == "draft_document"
    assert [weld.subtask_id, draft.subtask_id] == ["t1-1", "t1-2"]


async def test_duplicate_ids_and_bad_tokens_are_invalid(model: FakeModel) -> None:
    model.script = [good(step(), step()), good({**step(), "action": "Bad Action"}), good()]
    await decomposer(model).decompose_task(TASK, PLAN)
    assert "must be unique" in model.requests[1]["messages"][-1]["content"]
    assert "action" in model.requests[2]["messages"][-1]["content"]


async def test_a_dead_server_falls_back(model: FakeModel) -> None:
    settings = LLMSettings(base_url="http://127.0.0.1:9/v1", max_retries=0, retry_delay_s=0, timeout_s=5)
    subs = await LLMDecomposer(settings, SPECS, fallback=RuleBasedDecomposer()).decompose_task(TASK, PLAN)
    assert "ConnectError" in subs[0].decomposition_reason


async def test_no_base_url_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PLANEXE_LLM_BASE_URL", raising=False)
    with pytest.raises(ConfigError, match="PLANEXE_LLM_BASE_URL"):
        await LLMDecomposer(LLMSettings(), SPECS).decompose_task(TASK, PLAN)


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLANEXE_LLM_BASE_URL", "http://x/v1/")
    monkeypatch.setenv("PLANEXE_LLM_MAX_RETRIES", "5")
    settings = LLMSettings()
    assert settings.endpoint() == "http://x/v1/chat/completions"
    assert settings.max_retries == 5


def test_specs_from_cards() -> None:
    from planexe_ax.agents import builtin_agents
    from planexe_ax.config import Settings

    specs = specs_from_cards([a.card() for a in builtin_agents(Settings(), "t")])
    assert specs["send_email"].params_schema["required"] == ["to", "subject", "body"]
    assert specs["send_email"].params_model is None


def test_plan_decompose_with_the_llm(model: FakeModel, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    from planexe_ax.cli import example_plan_path, main

    monkeypatch.setenv("PLANEXE_LLM_BASE_URL", model.base_url)
    monkeypatch.setenv("PLANEXE_LLM_RETRY_DELAY_S", "0")
    model.script = [good()]
    code = main(["plan", "decompose", str(example_plan_path()), "--decomposer", "llm", "--redo", "--json"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    steps = [s for t in data["tasks"] for s in t["subtasks"]]
    assert steps
    assert all(s["action"] == "draft_document" for s in steps)
    assert all(s["decomposition_reason"] == "llm: it is a document" for s in steps)
    assert len(model.requests) == len(data["tasks"])
