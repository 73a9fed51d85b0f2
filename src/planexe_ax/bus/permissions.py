"""Who may publish and subscribe to what: the subject permissions put in each identity's user JWT.

The roles are the trust model of README's Security section. Every identity has its own inbox prefix
(``_INBOX.<name>``), so it cannot read the replies other clients get (pulled offers arrive as replies).
"""

from __future__ import annotations

from collections.abc import Iterable

from planexe_ax.bus.jwt import Permissions
from planexe_ax.bus.subjects import PROJECTOR_LEASES, WEBHOOK_LEASES, Subjects, check_id, check_token

JS_API = "$JS.API.>"
JS_ACK = "$JS.ACK.>"
JS_FLOW = "$JS.FC.>"
SERVICE_ROLES = ("coordinator", "projector", "webhooks", "gateway", "operator", "builtin-agents", "notifier")
ROLES = (*SERVICE_ROLES, "admin")
WATCHED_DECISIONS = ("execution_state", "task_paused", "subtask_state")
"""Decision events an agent follows while it works (pause, resume, cancel)."""


def inbox_prefix(name: str) -> str:
    """The inbox prefix of identity ``name``; its user JWT lets it subscribe there only."""
    return f"_INBOX.{check_id(name, 'identity name')}"


def role_permissions(role: str, subjects: Subjects) -> Permissions:
    """The permissions of one service role in the namespace of ``subjects``.

    Raises:
        ValueError: on an unknown role.
    """
    s, inbox = subjects, f"{inbox_prefix(role)}.>" if role != "admin" else ">"
    plans, agents = f"$KV.{s.plans_bucket}.>", f"$KV.{s.agents_bucket}.>"
    objects = s.plan_objects  # a start too large for a message puts its plan here first
    services = (JS_API, JS_ACK, JS_FLOW, s.all_dlq)
    services_without_acks = tuple(subject for subject in services if subject != JS_ACK)
    # Each role touches only its own keys of the leases bucket: the coordinator's, the projectors', the webhooks'.
    leases = f"$KV.{s.leases_bucket}"
    leader, fence = f"{leases}.coordinator.>", s.partition_fences
    projector_lease = f"{leases}.{PROJECTOR_LEASES}.>"
    webhooks_lease = f"{leases}.{WEBHOOK_LEASES}.>"
    http_leases = f"$KV.{s.http_leases_bucket}.>"
    table: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
        "coordinator": ((s.all_decisions, s.all_tasks, s.all_direct, leader, fence, *services), (inbox,)),
        # Projectors take turns writing one read model: the holder of its lease writes, the others stand by. They
        # ack nothing (their durable's position is the checkpoint in the read model), so they may not ack either.
        "projector": ((projector_lease, *services_without_acks), (inbox,)),
        # The webhook delivery service reads events through its durable, as the projector does, one service at a
        # time (the holder of its lease), and tells a person of a webhook it disabled by a command to the
        # coordinator (webhook_disabled), on the execution whose event it gave up on.
        "webhooks": ((webhooks_lease, s.all_commands, *services), (inbox,)),
        # The notifier reads inbox_opened events (and the execution_created before them) and mails people.
        "notifier": ((JS_API, JS_ACK, JS_FLOW, s.dlq("notifier")), (inbox,)),
        # The gateway speaks for people (commands, plans) and for HTTP agents it has authenticated, whose
        # leases it shares with the other gateways in ax-http-leases.
        "gateway": (
            (s.all_commands, s.all_reports, plans, objects, agents, http_leases, *services),
            (inbox, s.all_events),
        ),
        "operator": ((s.all_commands, plans, objects, JS_API, JS_FLOW), (inbox, s.all_events)),
        "builtin-agents": ((s.all_reports, agents, JS_API, JS_ACK, JS_FLOW, s.all_dlq), (inbox, s.all_events)),
        "admin": ((">",), (">",)),
    }
    if role not in table:
        raise ValueError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
    publish, subscribe = table[role]
    return Permissions(publish=publish, subscribe=subscribe)


def agent_permissions(subjects: Subjects, agent_id: str, capabilities: Iterable[str]) -> Permissions:
    """The permissions of one agent: its capabilities' work, its direct work, its card, its reports.

    It may create its consumers only with their own filter subject (the server checks the filter in
    the create subject), pull and ack only on them, write only its own card, publish only reports whose
    subject carries its id, and read only the decisions that pause or cancel its work.
    """
    s, tasks = subjects, subjects.tasks_stream
    consumers = [(Subjects.capability_consumer(c), s.task(check_token(c, "capability"))) for c in capabilities]
    consumers.append((Subjects.direct_consumer(agent_id), s.direct(agent_id)))
    publish = [s.reports_by(agent_id), s.agent_card(agent_id), f"$JS.API.STREAM.INFO.KV_{s.agents_bucket}"]
    publish.append(f"$JS.API.STREAM.MSG.GET.{s.events_stream}")
    for name, filter_subject in consumers:
        publish.append(f"$JS.API.CONSUMER.CREATE.{tasks}.{name}.{filter_subject}")
        publish.append(f"$JS.API.CONSUMER.INFO.{tasks}.{name}")
        publish.append(f"$JS.API.CONSUMER.MSG.NEXT.{tasks}.{name}")
        publish.append(f"$JS.ACK.{tasks}.{name}.>")
    subscribe = [f"{inbox_prefix(agent_id)}.>", *(s.events_of_kind(kind) for kind in WATCHED_DECISIONS)]
    return Permissions(publish=tuple(publish), subscribe=tuple(subscribe))
