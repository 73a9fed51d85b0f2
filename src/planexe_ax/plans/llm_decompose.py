"""An LLM decomposer over the OpenAI-compatible chat completions API.

It asks the model for strict JSON::

    {"subtasks": [{"subtask_id", "action", "description", "params",
                   "decomposition_confidence", "decomposition_reason"}]}

and validates the answer against the :class:`~planexe_ax.bus.plan.Subtask` schema and, for an
offered action with a known params model, against that model. An invalid answer is retried (up to
``max_retries`` times) with the validation error fed back to the model; an HTTP error or a timeout
is retried as it is. When every attempt fails, the task goes to the fallback decomposer (the
rule-based one by default) or to people, and the reason says so. An action no agent offers is not
an error: :func:`~planexe_ax.plans.decompose.apply_threshold` turns it into human work.

Settings come from the environment, prefix ``PLANEXE_LLM_`` (see :class:`LLMSettings`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from planexe_ax.bus import AgentCard
from planexe_ax.bus.plan import Plan, Subtask, Task
from planexe_ax.errors import ConfigError
from planexe_ax.plans.decompose import HUMAN_ACTION, TaskDecomposer, human_step

log = logging.getLogger(__name__)

SYSTEM_PROMPT = """You split one task of a project plan into steps that software agents or people do.
Answer with one JSON object and nothing else:
{"subtasks": [{"subtask_id": "s1", "action": "<action>", "description": "<one line>", "params": {...},
  "decomposition_confidence": <0..1>, "decomposition_reason": "<why this action fits>"}]}
Use only these actions; "human_task" is work for people (params: {"instructions": "..."}).
Give params exactly in the JSON schema of the action. Do not invent addresses, phone numbers or URLs
the task does not give: use human_task instead. Confidence is how sure you are that the step fits.
Actions:
"""


class LLMSettings(BaseSettings):
    """Where the model is. Field ``x`` is read from ``PLANEXE_LLM_X``."""

    model_config = SettingsConfigDict(env_prefix="PLANEXE_LLM_", extra="ignore")

    base_url: str | None = Field(default=None, description="e.g. https://api.openai.com/v1 (no /chat/completions).")
    model: str = Field(default="gpt-4o-mini", description="Model name sent in every request.")
    api_key: SecretStr | None = Field(default=None, description="Sent as 'Authorization: Bearer <key>'.")
    timeout_s: float = Field(default=60.0, gt=0, description="Timeout of one request.")
    max_retries: int = Field(default=2, ge=0, description="Further attempts after an invalid answer or an error.")
    retry_delay_s: float = Field(default=1.0, ge=0, description="Pause before a retry, doubled each time.")

    def endpoint(self) -> str:
        """The chat completions URL.

        Raises:
            ConfigError: when ``PLANEXE_LLM_BASE_URL`` is unset.
        """
        if not self.base_url:
            raise ConfigError("the llm decomposer needs PLANEXE_LLM_BASE_URL (an OpenAI-compatible API base URL)")
        return self.base_url.rstrip("/") + "/chat/completions"


@dataclass(frozen=True)
class CapabilitySpec:
    """One action the model may use.

    Attributes:
        action: The action name.
        description: What it does.
        params_schema: JSON schema of its params (shown to the model).
        params_model: When given, proposed params are validated with it.
    """

    action: str
    description: str = ""
    params_schema: dict[str, Any] = field(default_factory=dict)
    params_model: type[BaseModel] | None = None


def specs_from_cards(cards: Iterable[AgentCard]) -> dict[str, CapabilitySpec]:
    """The actions of registered agents, with the params schemas of their cards (no models)."""
    return {
        c.action: CapabilitySpec(c.action, c.description, dict(c.params_schema)) for a in cards for c in a.capabilities
    }


class _Step(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subtask_id: str
    action: str
    description: str
    params: dict[str, Any]
    decomposition_confidence: float = Field(ge=0, le=1)
    decomposition_reason: str


class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subtasks: list[_Step] = Field(min_length=1)


class InvalidAnswer(ValueError):
    """The model's answer is not what was asked for; the message is fed back to it."""


class CallFailed(RuntimeError):
    """The request failed (HTTP status, timeout, connection); retried without feedback."""


@dataclass
class LLMDecomposer:
    """:class:`~planexe_ax.plans.decompose.AsyncTaskDecomposer` over a chat completions API.

    Args:
        settings: Base URL, model, key, timeout and retries.
        capabilities: The actions agents offer, by name.
        fallback: Decomposer used when the model keeps failing; ``None``: the task goes to people.
        client: An HTTP client to reuse (closed by its owner); default one per call of ``decompose_task``.
    """

    settings: LLMSettings
    capabilities: Mapping[str, CapabilitySpec]
    fallback: TaskDecomposer | None = None
    client: httpx.AsyncClient | None = None

    async def decompose_task(self, task: Task, plan: Plan) -> list[Subtask]:
        """Ask the model for the steps of ``task``; retry, then fall back.

        Args:
            task: An executable task.
            plan: Its plan (title and goal go into the prompt).

        Returns:
            Proposed subtasks (ids ``<task_id>-<n>``), to pass through ``apply_threshold``.

        Raises:
            ConfigError: when the base URL is unset.
        """
        url = self.settings.endpoint()
        messages = [{"role": "system", "content": self.system_prompt()}, {"role": "user", "content": _ask(task, plan)}]
        attempts = self.settings.max_retries + 1
        problem = ""
        async with _client(self.client, self.settings.timeout_s) as client:
            for attempt in range(1, attempts + 1):
                if attempt > 1 and self.settings.retry_delay_s:
                    await asyncio.sleep(self.settings.retry_delay_s * 2 ** (attempt - 2))
                content = ""
                try:
                    content = await self._complete(client, url, messages)
                    return self._validate(task, content)
                except InvalidAnswer as exc:
                    problem = f"invalid answer: {exc}"
                    messages += [{"role": "assistant", "content": content}, {"role": "user", "content": _retry(exc)}]
                except CallFailed as exc:
                    problem = str(exc)
                log.warning("llm attempt %d/%d for task %s failed: %s", attempt, attempts, task.task_id, problem)
        return self._fall_back(task, plan, f"the model failed {attempts} time(s) (last: {problem[:300]})")

    def system_prompt(self) -> str:
        """The instructions, with every offered action and the JSON schema of its params."""
        lines = [
            f"- {s.action}: {s.description.splitlines()[0] if s.description else ''} params schema: "
            f"{json.dumps(s.params_schema, separators=(',', ':'))}"
            for s in sorted(self.capabilities.values(), key=lambda s: s.action)
        ]
        return SYSTEM_PROMPT + "\n".join(lines)

    async def _complete(self, client: httpx.AsyncClient, url: str, messages: list[dict[str, str]]) -> str:
        key = self.settings.api_key.get_secret_value() if self.settings.api_key else None
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        body = {
            "model": self.settings.model,
            "messages": messages,
            "response_format": {"type": "json_object"},
            "temperature": 0,
        }
        try:
            response = await client.post(url, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise CallFailed(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code >= 400:
            raise CallFailed(f"HTTP {response.status_code}: {response.text[:200]}")
        try:
            content = response.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise CallFailed(f"not a chat completion: {response.text[:200]}") from exc
        if not isinstance(content, str):
            raise CallFailed("the chat completion has no text content")
        return content

    def _validate(self, task: Task, content: str) -> list[Subtask]:
        try:
            answer = _Answer.model_validate_json(content)
        except ValidationError as exc:
            raise InvalidAnswer(_errors(exc)) from exc
        ids = [s.subtask_id for s in answer.subtasks]
        if len(set(ids)) != len(ids):
            raise InvalidAnswer(f"subtask ids must be unique, got {ids}")
        out: list[Subtask] = []
        for n, step in enumerate(answer.subtasks, start=1):
            spec = self.capabilities.get(step.action)
            if spec is not None and spec.params_model is not None:
                try:
                    spec.params_model.model_validate(step.params)
                except ValidationError as exc:
                    raise InvalidAnswer(f"subtasks[{n - 1}] params of {step.action}: {_errors(exc)}") from exc
            try:
                sub = Subtask.model_validate({**step.model_dump(), "human_required": step.action == HUMAN_ACTION})
            except ValidationError as exc:
                raise InvalidAnswer(f"subtasks[{n - 1}]: {_errors(exc)}") from exc
            reason = f"llm: {sub.decomposition_reason}".strip()
            out.append(sub.model_copy(update={"subtask_id": f"{task.task_id}-{n}", "decomposition_reason": reason}))
        return out

    def _fall_back(self, task: Task, plan: Plan, why: str) -> list[Subtask]:
        if self.fallback is None:
            return [human_step(task, 1, 1.0, f"human work: {why}")]
        subs = self.fallback.decompose_task(task, plan)
        note = f"{why}; fell back to the rule-based decomposer"
        return [s.model_copy(update={"decomposition_reason": f"{note}: {s.decomposition_reason}"}) for s in subs]


@asynccontextmanager
async def _client(given: httpx.AsyncClient | None, timeout_s: float) -> AsyncIterator[httpx.AsyncClient]:
    """The given client (left open), or a new one closed on exit."""
    if given is not None:
        yield given
        return
    async with httpx.AsyncClient(timeout=timeout_s) as client:
        yield client


def _ask(task: Task, plan: Plan) -> str:
    data = {
        "project": plan.title or plan.plan_id,
        "goal": plan.goal[:1000],
        "task_id": task.task_id,
        "title": task.title,
        "description": task.description,
        "roles": task.resources_needed or ([task.assignee_role] if task.assignee_role else []),
        "estimated_hours": task.estimated_hours,
    }
    return "Split this task into steps:\n" + json.dumps(data, ensure_ascii=False)


def _retry(exc: InvalidAnswer) -> str:
    return f"Your answer was invalid: {exc}\nAnswer again with only the corrected JSON object."


def _errors(exc: ValidationError) -> str:
    parts = [f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()[:5]]
    return "; ".join(parts)
