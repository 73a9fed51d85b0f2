r"""A PlanExe-AX agent written with plain nats-py, from subjects.md and a .creds file alone (no planexe_ax import).

It offers one capability, ``shout``: params ``{"text": "..."}``, output ``{"text": "..."}`` upper-cased.

    planexe-ax auth agent shouter-1 --capability shout --out shouter.creds
    PLANEXE_NATS_URL=nats://127.0.0.1:4222 PLANEXE_NATS_CREDS=shouter.creds AGENT_ID=shouter-1 \\
        python examples/third_party_agent.py

(``planexe-ax up`` keeps its NATS URL as the first word of ``.planexe-ax/nats.url``.) What it does, as
subjects.md describes it:

1. connect with the .creds and the inbox prefix its identity may use, ``_INBOX.<agent_id>``;
2. create its durables ``agents-shout`` (filter ``ax.task.shout``) and ``agent-<agent_id>``
   (filter ``ax.direct.<agent_id>``) on AX_TASKS, and keep its card in KV ``ax-agents`` (every 5 s);
3. pull offers, publish ``subtask_started`` and ``subtask_result`` on
   ``ax.evt.<execution_id>.<type>.<agent_id>`` with ``Nats-Msg-Id`` = the event id, then ack the offer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
from datetime import UTC, datetime
from typing import Any

import nats
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import FetchTimeoutError

CAPABILITY = "shout"
HEARTBEAT_S = 5.0


class Names:
    """Subject, stream, consumer and bucket names of subjects.md, with the optional namespace."""

    def __init__(self, namespace: str, agent_id: str) -> None:
        self.prefix = f"{namespace}." if namespace else ""
        self.tasks_stream = f"{namespace.upper().replace('-', '_')}_AX_TASKS" if namespace else "AX_TASKS"
        self.bucket = f"{namespace}-ax-agents" if namespace else "ax-agents"
        self.agent_id = agent_id

    def consumers(self) -> dict[str, str]:
        """Durable name -> filter subject: the capability's shared consumer and this agent's own."""
        return {
            f"agents-{CAPABILITY}": f"{self.prefix}ax.task.{CAPABILITY}",
            f"agent-{self.agent_id}": f"{self.prefix}ax.direct.{self.agent_id}",
        }

    def report(self, execution_id: str, kind: str) -> str:
        """The subject of a report: the agent's id last, which its identity is limited to."""
        return f"{self.prefix}ax.evt.{execution_id}.{kind}.{self.agent_id}"


def now() -> str:
    """The time as the wire carries it (ISO 8601 with a zone)."""
    return datetime.now(UTC).isoformat()


def card(agent_id: str, started_at: str) -> bytes:
    """The agent card kept in KV ``ax-agents``: what the coordinator routes work by."""
    schema = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}
    capability = {"action": CAPABILITY, "description": "Upper-case a text.", "params_schema": schema}
    body = {"agent_id": agent_id, "name": "Shouter", "role": "example third-party agent", "capabilities": [capability]}
    body |= {"started_at": started_at, "heartbeat_at": now(), "host": socket.gethostname(), "pid": os.getpid()}
    return json.dumps(body).encode()


async def report(js: JetStreamContext, names: Names, offer: dict[str, Any], kind: str, **fields: Any) -> None:
    """Publish one report on the offer, de-duplicated by its event id."""
    msg_id = f"{offer['execution_id']}:{offer['subtask_id']}:{offer['attempt']}"
    event = {"type": kind, "version": 1, "event_id": f"{msg_id}:{names.agent_id}:{kind}", "ts": now()}
    event |= {key: offer[key] for key in ("execution_id", "task_id", "subtask_id", "attempt")}
    event |= {"agent_id": names.agent_id, "causation_id": msg_id, **fields}
    headers = {"Nats-Msg-Id": event["event_id"], "Content-Type": "application/json"}
    await js.publish(names.report(offer["execution_id"], kind), json.dumps(event).encode(), headers=headers)


async def work(js: JetStreamContext, names: Names, msg: Any) -> None:
    """Do one offer: started, the result, then the ack."""
    offer = json.loads(msg.data)
    await report(js, names, offer, "subtask_started")
    text = offer.get("params", {}).get("text")
    if isinstance(text, str):
        await report(js, names, offer, "subtask_result", ok=True, output={"text": text.upper()})
    else:
        error = "params.text must be a string"
        await report(js, names, offer, "subtask_result", ok=False, error=error, retryable=False)
    await msg.ack()


async def pull(js: JetStreamContext, names: Names, durable: str, stop: asyncio.Event) -> None:
    """Fetch offers from one durable until ``stop`` is set."""
    sub = await js.pull_subscribe_bind(durable, names.tasks_stream)
    try:
        while not stop.is_set():
            try:
                msgs = await sub.fetch(1, timeout=1)
            except (FetchTimeoutError, TimeoutError):
                continue
            for msg in msgs:
                await work(js, names, msg)
    finally:
        await sub.unsubscribe()


async def heartbeat(js: JetStreamContext, names: Names, stop: asyncio.Event) -> None:
    """Rewrite the card every few seconds (it expires when the agent falls silent); delete it at the end."""
    kv, started_at = await js.key_value(names.bucket), now()
    while not stop.is_set():
        await kv.put(names.agent_id, card(names.agent_id, started_at))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), HEARTBEAT_S)
    await kv.delete(names.agent_id)


async def main() -> None:
    """Connect, make the consumers, work until SIGTERM or SIGINT."""
    agent_id = os.environ["AGENT_ID"]
    names = Names(os.environ.get("PLANEXE_NAMESPACE", ""), agent_id)
    nc = await nats.connect(
        os.environ["PLANEXE_NATS_URL"],
        user_credentials=os.environ["PLANEXE_NATS_CREDS"],
        inbox_prefix=f"_INBOX.{agent_id}",
        name=f"third-party {agent_id}",
    )
    js = nc.jetstream()
    for durable, subject in names.consumers().items():
        config = ConsumerConfig(
            name=durable,
            durable_name=durable,
            filter_subject=subject,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=30,
            max_deliver=20,
            max_ack_pending=1000,
        )
        await js.add_consumer(names.tasks_stream, config=config)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    async with asyncio.TaskGroup() as group:
        group.create_task(heartbeat(js, names, stop))
        for durable in names.consumers():
            group.create_task(pull(js, names, durable, stop))
    # Every offer taken is acked and nothing more is fetched: flush what was published and close.
    await nc.flush()
    await nc.close()


if __name__ == "__main__":
    asyncio.run(main())
