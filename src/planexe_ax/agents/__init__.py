"""The agent SDK and the built-in agents.

Write a capability with :func:`capability`, group capabilities in an :class:`Agent`, and run it with
:class:`AgentRuntime`; :func:`builtin_agents` gives the agents of the prospecting toolkit.
"""

from planexe_ax.agents.builtin import builtin_agents
from planexe_ax.agents.runtime import AgentRuntime
from planexe_ax.agents.sdk import (
    Agent,
    Capability,
    CapabilityOutput,
    RejectOffer,
    TaskContext,
    WorkCancelled,
    capability,
)

__all__ = [
    "Agent",
    "AgentRuntime",
    "Capability",
    "CapabilityOutput",
    "RejectOffer",
    "TaskContext",
    "WorkCancelled",
    "builtin_agents",
    "capability",
]
