"""The only module that builds subject strings, stream names, consumer names and KV bucket names.

Every name takes the optional namespace of :class:`Subjects` (empty in production) so that tests can
share one nats-server without seeing each other's messages.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from planexe_ax.bus.partitions import partition_of

SAFE_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
ID_RULE = "must be 1-128 characters of letters, digits, '_' or '-'"
"""What :data:`SAFE_ID` asks of an id, as errors say it."""
SAFE_TOKEN = re.compile(r"^[a-z0-9_-]{1,64}$")

# Templates, as documented in subjects.md; the builders below fill them.
TASK = "ax.task.{capability}"
DIRECT = "ax.direct.{agent_id}"
EVENT = "ax.evt.{execution_id}.{kind}"
REPORT = "ax.evt.{execution_id}.{kind}.{agent_id}"
COMMAND = "ax.cmd.{execution_id}"
DLQ = "ax.dlq.{source}"
FENCE = "ax.fence.{role}"


PROJECTOR_LEASES = "projector"
"""Projectors' keys in the leases bucket start with this token (one key per durable, i.e. per read model)."""
WEBHOOK_LEASES = "webhooks"
"""Webhook delivery services' keys in the leases bucket start with this token (one key per durable)."""
PARTITION_LEASES = "coordinator.partition"
"""Coordinators' partition keys in the leases bucket: ``coordinator.partition.<n>``, one holder each."""
COORDINATOR_MEMBERS = "coordinator.member"
"""Running coordinators' keys in the leases bucket: ``coordinator.member.<holder>``."""


def check_id(value: str, what: str = "id") -> str:
    """Return ``value`` when it can stand as one subject token.

    Raises:
        ValueError: naming ``what`` when the value has dots, spaces, wildcards or is too long.
    """
    if not SAFE_ID.fullmatch(value):
        raise ValueError(f"{what} {value!r} {ID_RULE}")
    return value


def check_token(value: str, what: str = "token") -> str:
    """Return ``value`` when it is a lower-case subject token (capabilities, event kinds, DLQ sources)."""
    if not SAFE_TOKEN.fullmatch(value):
        raise ValueError(f"{what} {value!r} must be 1-64 characters of lower-case letters, digits, '_' or '-'")
    return value


@dataclass(frozen=True)
class Subjects:
    """Subject, stream, consumer and bucket names for one namespace.

    Args:
        namespace: A lower-case token put before every subject and stream name; "" in production.
    """

    namespace: str = ""

    def __post_init__(self) -> None:
        if self.namespace:
            check_token(self.namespace, "namespace")

    def _s(self, subject: str) -> str:
        return f"{self.namespace}.{subject}" if self.namespace else subject

    def template(self, subject: str) -> str:
        """``subject`` without the namespace and with its ids as placeholders: a bounded name for spans.

        ``ax.evt.<id>.task_state`` -> ``ax.evt.{execution}.task_state``, a report
        ``ax.evt.<id>.subtask_result.<agent>`` -> ``ax.evt.{execution}.subtask_result.{agent_id}``,
        ``ax.cmd.<id>`` -> ``ax.cmd.{execution}`` (also as AX_COMMANDS stores it, ``ax.cmd.<partition>.<id>``:
        the command is published and processed under one name), ``ax.direct.<agent>`` -> ``ax.direct.{agent_id}``;
        capabilities, event kinds and DLQ sources stay.
        """
        prefix = f"{self.namespace}." if self.namespace else ""
        tokens = subject.removeprefix(prefix).split(".")
        if len(tokens) >= 3 and tokens[0] == "ax":
            if tokens[1] in ("evt", "cmd"):
                tokens[2] = "{execution}"
            if tokens[1] == "cmd" and len(tokens) >= 4:
                tokens[2:4] = ["{execution}"]
            if tokens[1] == "evt" and len(tokens) >= 5:
                tokens[4] = "{agent_id}"
            elif tokens[1] == "direct":
                tokens[2] = "{agent_id}"
        return ".".join(tokens)

    def _name(self, name: str) -> str:
        return f"{self.namespace.upper().replace('-', '_')}_{name}" if self.namespace else name

    # -- subjects ---------------------------------------------------------------------------------------
    def task(self, capability: str) -> str:
        """Work offers for every agent with ``capability``."""
        return self._s(TASK.format(capability=check_token(capability, "capability")))

    def direct(self, agent_id: str) -> str:
        """Work pinned to one agent."""
        return self._s(DIRECT.format(agent_id=check_id(agent_id, "agent id")))

    def event(self, execution_id: str, kind: str) -> str:
        """An immutable fact about one execution."""
        return self._s(EVENT.format(execution_id=check_id(execution_id, "execution id"), kind=check_token(kind)))

    def report(self, execution_id: str, kind: str, agent_id: str) -> str:
        """An agent's report about its work; the agent id token lets the server tie it to the agent's identity."""
        return self._s(
            REPORT.format(
                execution_id=check_id(execution_id, "execution id"),
                kind=check_token(kind),
                agent_id=check_id(agent_id, "agent id"),
            )
        )

    def events_of(self, execution_id: str) -> str:
        """Filter that follows one execution."""
        return self._s(f"ax.evt.{check_id(execution_id, 'execution id')}.>")

    def events_of_kinds(self, execution_id: str, decisions: Iterable[str], reports: Iterable[str] = ()) -> list[str]:
        """Filters that follow one execution's ``decisions`` kinds and its ``reports`` kinds (of every agent)."""
        decided = [self.event(execution_id, kind) for kind in sorted(set(decisions))]
        return decided + [f"{self.event(execution_id, kind)}.*" for kind in sorted(set(reports))]

    def reports_of(self, execution_id: str) -> str:
        """Filter matching every agent's reports about one execution (its decisions never match)."""
        return self._s(f"ax.evt.{check_id(execution_id, 'execution id')}.*.*")

    def command(self, execution_id: str) -> str:
        """Control commands of one execution."""
        return self._s(COMMAND.format(execution_id=check_id(execution_id, "execution id")))

    def dlq(self, source: str) -> str:
        """Messages a consumer of ``source`` rejected, with the reason."""
        return self._s(DLQ.format(source=check_token(source, "dlq source")))

    def fence(self, role: str) -> str:
        """The leader epochs of ``role`` (in AX_EVENTS, outside ``ax.evt.>``): a new leader publishes a marker here.

        The leader's decisions carry the marker's sequence as the expected last sequence of this subject,
        so the server refuses them once a newer leader has published its own marker.
        """
        return self._s(FENCE.format(role=check_token(role, "role")))

    def partition_fence(self, partition: int) -> str:
        """The coordinator epochs of one partition (:meth:`fence` of the partition's leader)."""
        return self._s(f"ax.fence.coordinator.{int(partition)}")

    @property
    def partition_fences(self) -> str:
        """Filter (and permission) of every partition's fence subject."""
        return self._s("ax.fence.coordinator.>")

    def partition_commands(self, partition: int) -> str:
        """The commands of one partition as AX_COMMANDS stores them (``ax.cmd.<partition>.<execution>``)."""
        return self._s(f"ax.cmd.{int(partition)}.*")

    def partitioned_command(self, execution_id: str, partitions: int) -> str:
        """One execution's commands as AX_COMMANDS stores them with ``partitions`` partitions."""
        execution_id = check_id(execution_id, "execution id")
        return self._s(f"ax.cmd.{partition_of(execution_id, partitions)}.{execution_id}")

    def stored_command(self, execution_id: str) -> str:
        """Filter of one execution's commands as AX_COMMANDS stores them, whatever their partition."""
        return self._s(f"ax.cmd.*.{check_id(execution_id, 'execution id')}")

    def command_partitioning(self, count: int) -> tuple[str, str]:
        """The AX_COMMANDS subject transform: ``ax.cmd.<execution>`` is stored as ``ax.cmd.<partition>.<execution>``."""
        return self._s("ax.cmd.*"), self._s(f"ax.cmd.{{{{partition({int(count)},1)}}}}.{{{{wildcard(1)}}}}")

    def execution_of(self, subject: str) -> str:
        """The execution id token of an event subject (``ax.evt.<execution>...``); "" for any other subject."""
        prefix = f"{self.namespace}." if self.namespace else ""
        tokens = subject.removeprefix(prefix).split(".", 3)
        return tokens[2] if len(tokens) >= 3 and tokens[0] == "ax" and tokens[1] == "evt" else ""

    def reports_by(self, agent_id: str) -> str:
        """Filter (and permission) matching every report of one agent."""
        return self._s(f"ax.evt.*.*.{check_id(agent_id, 'agent id')}")

    def events_of_kind(self, kind: str) -> str:
        """Filter matching one kind of decision event of every execution."""
        return self._s(f"ax.evt.*.{check_token(kind)}")

    @property
    def all_reports(self) -> str:
        """Every agent's reports (4 tokens after ``ax``); decisions have 3 and never match."""
        return self._s("ax.evt.*.*.*")

    @property
    def all_decisions(self) -> str:
        """Every coordinator decision (3 tokens after ``ax``); reports never match."""
        return self._s("ax.evt.*.*")

    @property
    def all_tasks(self) -> str:
        """Filter of every work offer (the AX_TASKS stream's subjects)."""
        return self._s("ax.task.>")

    @property
    def all_direct(self) -> str:
        """Filter of every offer pinned to an agent."""
        return self._s("ax.direct.>")

    @property
    def all_events(self) -> str:
        """Filter of every execution's events (the AX_EVENTS stream's subjects)."""
        return self._s("ax.evt.>")

    @property
    def all_commands(self) -> str:
        """Filter of every execution's control commands."""
        return self._s("ax.cmd.>")

    @property
    def all_fences(self) -> str:
        """Filter of every role's fence subject (in AX_EVENTS, never matched by ``ax.evt.>``)."""
        return self._s("ax.fence.>")

    @property
    def all_dlq(self) -> str:
        """Filter of every dead letter, whatever its source."""
        return self._s("ax.dlq.>")

    # -- streams, consumers, buckets -------------------------------------------------------------------
    @property
    def tasks_stream(self) -> str:
        """Stream of work offers, a work queue: each offer is taken once."""
        return self._name("AX_TASKS")

    @property
    def events_stream(self) -> str:
        """Stream of execution events, the source of truth the state is rebuilt from."""
        return self._name("AX_EVENTS")

    @property
    def commands_stream(self) -> str:
        """Stream of control commands to the coordinator."""
        return self._name("AX_COMMANDS")

    @property
    def dlq_stream(self) -> str:
        """Stream of dead letters, kept for people to inspect."""
        return self._name("AX_DLQ")

    @property
    def agents_bucket(self) -> str:
        """KV bucket of agent cards, refreshed by each agent's heartbeat."""
        return f"{self.namespace}-ax-agents" if self.namespace else "ax-agents"

    @property
    def leases_bucket(self) -> str:
        """KV bucket of leadership leases: one key per role, kept alive by its holder, expiring with it."""
        return f"{self.namespace}-ax-leases" if self.namespace else "ax-leases"

    @staticmethod
    def projector_lease(durable: str) -> str:
        """The key of the leases bucket held by the one projector that writes through ``durable``."""
        return f"{PROJECTOR_LEASES}.{check_id(durable, 'durable name')}"

    @staticmethod
    def webhooks_lease(durable: str) -> str:
        """The key of the leases bucket held by the one webhook delivery service that consumes ``durable``."""
        return f"{WEBHOOK_LEASES}.{check_id(durable, 'durable name')}"

    @staticmethod
    def partition_lease(partition: int) -> str:
        """The key of the leases bucket held by the coordinator that decides ``partition``."""
        return f"{PARTITION_LEASES}.{int(partition)}"

    @staticmethod
    def coordinator_member(holder: str) -> str:
        """The key of the leases bucket a running coordinator keeps alive: the count of them shares the partitions."""
        return f"{COORDINATOR_MEMBERS}.{check_id(holder, 'holder')}"

    @property
    def http_leases_bucket(self) -> str:
        """KV bucket of HTTP agents' leases, written by the gateways: any gateway serves any HTTP agent."""
        return f"{self.namespace}-ax-http-leases" if self.namespace else "ax-http-leases"

    def agent_card(self, agent_id: str) -> str:
        """The KV subject of one agent's card in ``ax-agents``."""
        return f"$KV.{self.agents_bucket}.{check_id(agent_id, 'agent id')}"

    @property
    def plans_bucket(self) -> str:
        """KV bucket of uploaded plans by plan id, the catalog's source."""
        return f"{self.namespace}-ax-plans" if self.namespace else "ax-plans"

    @property
    def plan_objects_bucket(self) -> str:
        """Object store bucket of the plans too large to travel in a message, named by their SHA-256."""
        return f"{self.namespace}-ax-plan-objects" if self.namespace else "ax-plan-objects"

    @property
    def plan_objects(self) -> str:
        """Filter (and permission) of every subject of the plan object store: its chunks and its metadata."""
        return f"$O.{self.plan_objects_bucket}.>"

    @property
    def plan_objects_stream(self) -> str:
        """The stream that holds the plan object store (JetStream names it after the bucket)."""
        return f"OBJ_{self.plan_objects_bucket}"

    def plan_object_chunks(self, nuid: str) -> str:
        """The subject of the chunks of one object of the plan object store (``nuid``: from its metadata)."""
        return f"$O.{self.plan_objects_bucket}.C.{check_id(nuid, 'object nuid')}"

    @staticmethod
    def capability_consumer(capability: str) -> str:
        """Durable pull consumer shared by every agent of one capability."""
        return f"agents-{check_token(capability, 'capability')}"

    @staticmethod
    def direct_consumer(agent_id: str) -> str:
        """Durable pull consumer of work pinned to one agent."""
        return f"agent-{check_id(agent_id, 'agent id')}"

    @staticmethod
    def coordinator_events(holder: str) -> str:
        """One coordinator process's own consumer of every event (it skips the partitions it does not hold)."""
        return f"coordinator-events-{check_id(holder, 'holder')}"

    @staticmethod
    def coordinator_commands(partition: int) -> str:
        """The durable consumer of one partition's commands, taken over with the partition."""
        return f"coordinator-commands-{int(partition)}"

    PROJECTOR_EVENTS = "projector-events"
    WEBHOOK_EVENTS = "webhook-events"
    NOTIFIER_INBOX = "notifier-inbox"
