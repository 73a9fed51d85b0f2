"""Webhook deliveries to one endpoint: how many per second, and the delay from an event to its delivery.

    python bench/webhooks.py [--executions 8] [--events 250]

Starts its own nats-server (temporary store, no auth) and the webhook delivery service in this process, on
PLANEXE_TEST_DATABASE_URL (a database of its own) when it is set, else on SQLite; registers one webhook to a
local receiver (a threaded HTTP server on loopback that verifies each Standard Webhooks signature), then
publishes ``--events`` progress events to each of ``--executions`` executions as fast as the bus takes them.
Deliveries go out in order per execution (one in flight per execution), so the executions are the
parallelism. Prints deliveries per second (first to last arrival) and event -> arrival p50, p99 and max.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers.postgres import ENV, create_database, drop_database
from tests.helpers.webhook_receiver import Receiver

from planexe_ax.bus import EmbeddedNats, SubtaskProgress, connect, new_id
from planexe_ax.cli.services import start_services
from planexe_ax.config import Settings
from planexe_ax.readmodel import make_engine, make_session_factory
from planexe_ax.readmodel.webhooks import NewWebhook, create_webhook

NAMESPACE = "whbench"


class TimedReceiver(Receiver):
    """The test receiver, noting when each delivery first arrived."""

    arrived_at: dict[str, float]

    def take(self, body: bytes, headers: dict[str, str]) -> int:
        code = super().take(body, headers)
        self.arrived_at.setdefault(headers["webhook-id"], time.time())
        return code


async def register(database_url: str, url: str) -> str:
    engine = make_engine(database_url)
    try:
        new = NewWebhook(url, [], None, None, "bench", "bench", 0)
        return (await create_webhook(make_session_factory(engine), "wh_bench", new)).secret
    finally:
        await engine.dispose()


async def publish(settings: Settings, url: str, executions: int, events: int) -> dict[str, float]:
    bus = await connect(settings, url, "bench-publisher", provision=False, role=None)
    sent: dict[str, float] = {}
    try:
        ids = [new_id() for _ in range(executions)]
        for i in range(events):
            for execution_id in ids:
                event = SubtaskProgress(
                    execution_id=execution_id, task_id="t", subtask_id="s", percent=100 * i / events, message=""
                )
                await bus.publish_event(event)
                sent[event.event_id] = _epoch(event.ts)
    finally:
        await bus.close()
    return sent


def _epoch(ts: Any) -> float:
    return ts.timestamp() if isinstance(ts, datetime) else datetime.fromisoformat(str(ts)).timestamp()


async def run(args: argparse.Namespace, folder: Path, database_url: str) -> dict[str, Any]:
    server = EmbeddedNats(folder / "nats", auth=False)
    url = await server.start()
    settings = Settings(
        namespace=NAMESPACE, data_dir=folder / "data", database_url=database_url, fetch_allow=["127.0.0.1"]
    )
    receiver = TimedReceiver()
    receiver.arrived_at = {}
    receiver.start()
    services = await start_services(settings, url, ("webhooks",))
    stop = asyncio.Event()
    runner = asyncio.create_task(services.run(stop))
    try:
        receiver.secret = await register(database_url, receiver.url)
        sent = await publish(settings, url, args.executions, args.events)
        deadline = time.monotonic() + 300
        while len(receiver.received) < len(sent) and time.monotonic() < deadline:  # noqa: ASYNC110  # polls a thread
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await runner
        receiver.stop()
        await server.stop()
    delays = sorted(receiver.arrived_at[i] - sent[i] for i in sent if i in receiver.arrived_at)
    arrivals = sorted(receiver.arrived_at.values())
    return {
        "sent": len(sent),
        "delivered": len(delays),
        "bad": len(receiver.bad),
        "per_s": (len(arrivals) - 1) / (arrivals[-1] - arrivals[0]) if len(arrivals) > 1 else 0.0,
        "p50": statistics.median(delays),
        "p99": delays[int(0.99 * (len(delays) - 1))],
        "max": delays[-1],
    }


async def main(args: argparse.Namespace) -> None:
    admin_url = os.environ.get(ENV)
    with tempfile.TemporaryDirectory() as folder:
        database_url = await create_database(admin_url) if admin_url else f"sqlite+aiosqlite:///{folder}/read.db"
        try:
            result = await run(args, Path(folder), database_url)
        finally:
            if admin_url:
                with contextlib.suppress(Exception):  # a leftover bench database is not worth a traceback
                    await drop_database(admin_url, database_url)
    backend = "PostgreSQL" if admin_url else "SQLite"
    print(f"{result['delivered']}/{result['sent']} events delivered to one endpoint ({backend}), "
          f"{result['bad']} bad signatures")  # fmt: skip
    print(f"deliveries per second: {result['per_s']:.0f}")
    print(f"event -> delivery: p50 {result['p50'] * 1000:.0f} ms, p99 {result['p99'] * 1000:.0f} ms, "
          f"max {result['max'] * 1000:.0f} ms")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--executions", type=int, default=8, help="executions the events are spread over")
    parser.add_argument("--events", type=int, default=250, help="progress events per execution")
    asyncio.run(main(parser.parse_args()))
