"""Errors shared by every PlanExe-AX package. Messages say what to do next."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class PlanExeAXError(Exception):
    """Base class of every error PlanExe-AX raises on purpose."""


class ConfigError(PlanExeAXError):
    """A setting is missing or wrong."""


class PlanValidationError(PlanExeAXError):
    """A plan cannot be executed as written.

    Args:
        message: One line naming the problem and the ids involved.
        ids: The task or subtask ids involved, for callers that want them.
        problems: Every problem found (``planexe_ax.plans.problems.Problem``), one per line of ``message``.
    """

    def __init__(self, message: str, ids: list[str] | None = None, problems: Sequence[Any] = ()) -> None:
        super().__init__(message)
        self.ids = ids or []
        self.problems = list(problems)


class PlanTooLarge(PlanValidationError):
    """A plan larger than a bus message may carry: the HTTP API answers 413, the CLI prints one line."""


class PlanUnavailable(PlanExeAXError):
    """A plan a start or an ``execution_created`` refers to cannot be read back whole: missing, or other bytes."""


class MessageTooLarge(PlanExeAXError, ValueError):
    """A message larger than the bus carries (``PLANEXE_MAX_MESSAGE_BYTES``, or the NATS server's max_payload)."""


class RetryableError(PlanExeAXError):
    """A failure that may go away when the work is tried again."""


class PermanentError(PlanExeAXError):
    """A failure that will happen again however often the work is tried."""
