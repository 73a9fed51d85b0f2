"""The agent SDK: capabilities, the context they run in, and the agent that offers them.

A capability is an async function with one pydantic params model and a :class:`TaskContext`::

    class EchoParams(BaseModel):
        text: str

    @capability("echo", "Repeat the text.")
    async def echo(params: EchoParams, ctx: TaskContext) -> dict[str, Any]:
        await ctx.progress(50, "echoing")
        return {"text": params.text}

    agent = Agent("echo-1", "Echo", role="demo", capabilities=[echo])

A capability may turn an offer down by raising :class:`RejectOffer`, report that it waits on something
outside with :meth:`TaskContext.blocked`, and should call :meth:`TaskContext.checkpoint` between steps of
long work so that a pause waits there and a cancel stops it (:class:`WorkCancelled`).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any, get_args, get_type_hints

from pydantic import BaseModel

from planexe_ax.bus import AgentCard, CapabilityCard, TaskOffer, check_id, check_token, utcnow
from planexe_ax.bus.messages import RejectReason
from planexe_ax.bus.wakes import wake
from planexe_ax.config import Settings
from planexe_ax.errors import PlanExeAXError

log = logging.getLogger(__name__)
TASK_LOG = logging.getLogger("planexe_ax.agents.task")
"""The logger of :attr:`TaskContext.logger`."""

ProgressFn = Callable[[float, str], Awaitable[None]]
BlockedFn = Callable[[str, float | None], Awaitable[None]]
REJECT_REASONS: frozenset[str] = frozenset(get_args(RejectReason))


class RejectOffer(PlanExeAXError):
    """Raised by a capability (or returned by an agent's ``accept`` hook) to turn an offer down.

    The runtime publishes ``subtask_rejected`` and acks the offer; the coordinator re-routes the work to
    another agent of the capability, or to a person when none is left.

    Args:
        reason_code: One of ``missing_tool``, ``missing_data``, ``over_budget``, ``not_allowed``, ``other``.
        reason: One line for the person who may get the work instead.

    Raises:
        ValueError: On an unknown ``reason_code``.
    """

    def __init__(self, reason_code: RejectReason, reason: str = "") -> None:
        if reason_code not in REJECT_REASONS:
            raise ValueError(f"reason_code {reason_code!r} must be one of {', '.join(sorted(REJECT_REASONS))}")
        super().__init__(f"{reason_code}: {reason}" if reason else reason_code)
        self.reason_code: RejectReason = reason_code
        self.reason = reason


class WorkCancelled(PlanExeAXError):
    """Raised by :meth:`TaskContext.checkpoint` once the attempt is cancelled or taken away.

    A capability may let it propagate, or catch it to clean up and return; either way the runtime
    publishes no result for the attempt (the coordinator has already decided) and acks the offer.
    It is a plain exception, not an ``asyncio.CancelledError``.
    """


@dataclass(frozen=True)
class CapabilityOutput:
    """What a capability returns when it wants to state its confidence.

    Args:
        output: Small JSON-able result (paths relative to the output folder, counts, scores).
        confidence: 0..1, how sure the capability is of the result; None when it cannot say.
    """

    output: dict[str, Any]
    confidence: float | None = None


CapabilityFn = Callable[[Any, "TaskContext"], Awaitable[dict[str, Any] | CapabilityOutput]]
AcceptFn = Callable[[TaskOffer], RejectOffer | Awaitable[RejectOffer | None] | None]


class _ContextLogger(logging.LoggerAdapter[logging.Logger]):
    """Adds the task ids to every record, merged with the caller's own ``extra``."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        kwargs["extra"] = {**(self.extra or {}), **kwargs.get("extra", {})}
        return msg, kwargs


@dataclass
class TaskContext:
    """Everything a capability may know about the attempt it runs.

    Args:
        execution_id: The execution the work belongs to.
        task_id: The plan task.
        subtask_id: The subtask this attempt runs.
        attempt: 1 for the first attempt, counted by the coordinator.
        agent_id: The agent running it.
        settings: The process settings (output folder, SMTP URL, ...).
        delivered: How often the bus has delivered this offer (greater than 1 on a redelivery).

    The runtime keeps :attr:`paused` and :attr:`cancelled` up to date from the coordinator's decisions
    while the capability runs; :meth:`checkpoint` is where a capability honours them.
    """

    execution_id: str
    task_id: str
    subtask_id: str
    attempt: int
    agent_id: str
    settings: Settings
    delivered: int = 1
    _progress: ProgressFn | None = field(default=None, repr=False)
    _blocked: BlockedFn | None = field(default=None, repr=False)
    _paused: bool = field(default=False, init=False, repr=False)
    _cancelled: bool = field(default=False, init=False, repr=False)
    _stop_reason: str = field(default="", init=False, repr=False)
    # Made when first waited on: most attempts are never paused, cancelled, or waited on (see _waiters).
    _resumed: asyncio.Event | None = field(default=None, init=False, repr=False)
    _cancel_event: asyncio.Event | None = field(default=None, init=False, repr=False)
    _cancel_waiters: list[asyncio.Future[None]] | None = field(default=None, init=False, repr=False)
    _logger: logging.LoggerAdapter[logging.Logger] | None = field(default=None, init=False, repr=False)

    @property
    def logger(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger whose records carry the attempt's ids (execution, task, subtask, attempt, agent)."""
        if self._logger is None:
            ids = {
                "execution_id": self.execution_id,
                "task_id": self.task_id,
                "subtask_id": self.subtask_id,
                "attempt": self.attempt,
                "agent_id": self.agent_id,
            }
            self._logger = _ContextLogger(TASK_LOG, ids)
        return self._logger

    @property
    def output_dir(self) -> Path:
        """The execution's output folder, ``settings.outputs_dir / execution_id``; created on first use."""
        path = self.settings.outputs_dir / check_id(self.execution_id, "execution id")
        path.mkdir(parents=True, exist_ok=True)
        return path

    async def progress(self, percent: float, message: str = "") -> None:
        """Report progress; it is published as a ``subtask_progress`` event.

        Args:
            percent: 0..100; values outside are clamped.
            message: One line for the dashboard.
        """
        if self._progress is not None:
            await self._progress(min(100.0, max(0.0, float(percent))), message)

    async def blocked(self, reason: str, max_wait_s: float | None = None) -> None:
        """Report that the work waits on something outside (an email reply); a ``subtask_blocked`` event.

        The offer's lease keeps being extended while the capability waits. Call :meth:`progress` when the
        work goes on: that tells the coordinator the subtask runs again.

        Args:
            reason: What the work waits for, one line for the dashboard and the inbox.
            max_wait_s: How long it may wait before a person is asked; None for the coordinator's default.

        Raises:
            ValueError: When ``max_wait_s`` is not positive.
        """
        if max_wait_s is not None and not max_wait_s > 0:
            raise ValueError(f"max_wait_s must be positive, not {max_wait_s!r}")
        if self._blocked is not None:
            await self._blocked(reason, max_wait_s)

    # -- pause and cancel ---------------------------------------------------------------------------------
    @property
    def paused(self) -> bool:
        """True while the execution (or this task) is paused; :meth:`checkpoint` waits until it is resumed."""
        return self._paused

    @property
    def cancelled(self) -> bool:
        """True once the attempt is cancelled or taken away; its result would be ignored."""
        return self._cancelled

    @property
    def stop_reason(self) -> str:
        """Why the attempt was paused or cancelled, as the coordinator said; "" when it was not."""
        return self._stop_reason

    async def checkpoint(self) -> None:
        """A safe point of the work: return at once when running, wait while paused.

        Raises:
            WorkCancelled: When the attempt is cancelled, also while waiting in a pause.
        """
        while True:
            if self._cancelled:
                raise WorkCancelled(self._stop_reason or "the work was cancelled")
            if not self._paused:
                return
            if self._resumed is None:
                self._resumed = asyncio.Event()
            await self._resumed.wait()

    async def wait_cancelled(self) -> None:
        """Return once the attempt is cancelled; to race against an outside wait with ``asyncio.wait``."""
        if self._cancelled:
            return
        if self._cancel_event is None:
            self._cancel_event = asyncio.Event()
        await self._cancel_event.wait()

    def cancelled_future(self) -> asyncio.Future[None]:
        """A future done once the attempt is cancelled (like :meth:`wait_cancelled`, without a task).

        Cancel the future when it is no longer needed.
        """
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._cancelled:
            future.set_result(None)
        elif self._cancel_waiters is None:
            self._cancel_waiters = [future]
        else:
            self._cancel_waiters.append(future)
        return future

    def set_paused(self, paused: bool, reason: str = "") -> None:
        """Pause or resume; called by the runtime when the coordinator pauses or resumes the work."""
        if self._cancelled:
            return
        self._paused, self._stop_reason = paused, reason if paused else ""
        if self._resumed is not None:
            if paused:
                self._resumed.clear()
            else:
                self._resumed.set()
        elif paused:
            self._resumed = asyncio.Event()  # not set: a checkpoint waits on it until the resume

    def cancel(self, reason: str) -> None:
        """Cancel the attempt; called by the runtime when the coordinator ends it. Only the first call counts."""
        if self._cancelled:
            return
        self._stop_reason = reason
        self._cancelled = True
        if self._cancel_event is not None:
            self._cancel_event.set()
        if self._resumed is not None:
            self._resumed.set()  # wake a checkpoint that waits in a pause, so that it raises
        waiters, self._cancel_waiters = self._cancel_waiters or [], None
        for future in waiters:
            wake(future)


@dataclass(frozen=True)
class Capability:
    """One action an agent can do: its name, params model and implementation."""

    action: str
    description: str
    params_model: type[BaseModel]
    fn: CapabilityFn

    async def __call__(self, params: BaseModel, ctx: TaskContext) -> dict[str, Any] | CapabilityOutput:
        """Run the capability with validated ``params``."""
        return await self.fn(params, ctx)

    def card(self) -> CapabilityCard:
        """The capability as published in the agent card, with the JSON schema of its params."""
        return CapabilityCard(action=self.action, description=self.description, params_schema=self._params_schema)

    @cached_property
    def _params_schema(self) -> dict[str, Any]:
        """The JSON schema of the params, made once (pydantic takes milliseconds; the card goes out every heartbeat)."""
        return self.params_model.model_json_schema()


def _params_model(fn: Callable[..., Any]) -> type[BaseModel]:
    params = list(inspect.signature(fn).parameters.values())
    if len(params) != 2:
        raise TypeError(f"capability {fn.__qualname__} must take (params, ctx), it takes {len(params)} arguments")
    model: Any = params[0].annotation
    if isinstance(model, str):
        try:
            model = get_type_hints(fn).get(params[0].name)
        except NameError as exc:
            raise TypeError(
                f"cannot resolve the params annotation of capability {fn.__qualname__}: {exc}; "
                "define the params model at module level"
            ) from exc
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise TypeError(f"the first parameter of capability {fn.__qualname__} must be annotated with a pydantic model")
    return model


def capability(action: str, description: str = "") -> Callable[[CapabilityFn], Capability]:
    """Turn an async function ``(params: Model, ctx: TaskContext) -> dict`` into a :class:`Capability`.

    Args:
        action: The action name, a lower-case subject token (``ax.task.<action>``).
        description: One line for the agent card; default: the first line of the function's docstring.

    Returns:
        A decorator that returns the capability.

    Raises:
        ValueError: When ``action`` is not a safe token.
        TypeError: When the function is not async or its first parameter is not annotated with a pydantic model.
    """
    check_token(action, "action")

    def wrap(fn: CapabilityFn) -> Capability:
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"capability {action} must be an async function")
        doc = (inspect.getdoc(fn) or "").strip().splitlines()
        return Capability(action, description or (doc[0] if doc else ""), _params_model(fn), fn)

    return wrap


class Agent:
    """An agent: an id, a name, a role and the capabilities it offers.

    Args:
        agent_id: Unique id, a safe subject token (letters, digits, ``_``, ``-``).
        name: Human-readable name.
        role: What the agent is for, shown on the dashboard.
        capabilities: The actions it offers; action names must be unique.
        accept: Optional hook called with each offer before any work starts; it returns (or raises) a
            :class:`RejectOffer` to turn the offer down (over budget, not allowed, ...), None to take it.
            It may be sync or async.

    Raises:
        ValueError: On an unsafe id or a duplicate action.
    """

    def __init__(
        self,
        agent_id: str,
        name: str,
        *,
        role: str = "",
        capabilities: Iterable[Capability],
        accept: AcceptFn | None = None,
    ) -> None:
        self.agent_id = check_id(agent_id, "agent id")
        self.name = name
        self.role = role
        self.capabilities = list(capabilities)
        self._accept = accept
        self._by_action: Mapping[str, Capability] = {c.action: c for c in self.capabilities}
        if len(self._by_action) != len(self.capabilities):
            raise ValueError(f"agent {agent_id} lists an action twice")

    @property
    def actions(self) -> list[str]:
        """The action names, in declaration order."""
        return [c.action for c in self.capabilities]

    def capability(self, action: str) -> Capability | None:
        """The capability for ``action``, or None when the agent does not offer it."""
        return self._by_action.get(action)

    async def can_accept(self, offer: TaskOffer) -> RejectOffer | None:
        """None when the agent takes ``offer``, else why not; asks the ``accept`` hook, if any.

        Subclasses may override it instead of passing a hook.
        """
        if self._accept is None:
            return None
        try:
            verdict = self._accept(offer)
            if inspect.isawaitable(verdict):
                verdict = await verdict
        except RejectOffer as exc:
            return exc
        return verdict

    def card(
        self,
        *,
        started_at: datetime | None = None,
        heartbeat_at: datetime | None = None,
        current: Iterable[str] = (),
        host: str = "",
        pid: int = 0,
    ) -> AgentCard:
        """Build the card kept in KV ``ax-agents``.

        Args:
            started_at: When the runtime started; default now.
            heartbeat_at: Time of this heartbeat; default now.
            current: Subtask ids in progress.
            host: Host name of the process.
            pid: Process id.
        """
        now = utcnow()
        return AgentCard(
            agent_id=self.agent_id,
            name=self.name,
            role=self.role,
            capabilities=[c.card() for c in self.capabilities],
            started_at=started_at or now,
            heartbeat_at=heartbeat_at or now,
            current=sorted(current),
            host=host,
            pid=pid,
        )

    def __repr__(self) -> str:
        return f"Agent({self.agent_id!r}, actions={self.actions!r})"
