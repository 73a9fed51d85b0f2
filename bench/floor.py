"""The floor: a minimal coordinator and worker on raw JetStream, doing the jobs bench/compare.py gives the project.

    python bench/floor.py worker NATS_URL      # the worker process (compare.py starts it)

Offers go to a work-queue stream, results to a second stream; the worker keeps 256 deliveries outstanding
(a push consumer with max_ack_pending) and answers each offer with one acknowledged publish. The
coordinator (in the caller's process) publishes every offer of the wide job at once in a bounded window, and
the next offer of the chain when the previous result arrives. No tracing, no read model, no state events.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from typing import Any

import nats
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StreamConfig

TASKS, RESULTS = "FLOOR_TASKS", "FLOOR_RESULTS"
TASK_SUBJECT, RESULT_SUBJECT = "floor.task", "floor.result"


async def provision(url: str) -> None:
    """Create the two streams afresh."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    for name, subject, retention in (
        (TASKS, TASK_SUBJECT, RetentionPolicy.WORK_QUEUE),
        (RESULTS, RESULT_SUBJECT, RetentionPolicy.LIMITS),
    ):
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_stream(name)
        await js.add_stream(StreamConfig(name=name, subjects=[subject], retention=retention))
    await nc.close()


async def worker(url: str) -> None:
    """Answer every offer with a result carrying the time the work started."""
    nc = await nats.connect(url)
    js = nc.jetstream()

    in_flight: set[asyncio.Task[None]] = set()

    async def answer(msg: Any, started: float) -> None:
        task = json.loads(msg.data)
        result = json.dumps({"id": task["id"], "started": started}).encode()
        await js.publish(RESULT_SUBJECT, result, headers={"Nats-Msg-Id": f"r-{task['id']}"})
        await msg.ack()

    async def on_offer(msg: Any) -> None:  # deliveries come one at a time: answer each in its own task
        job = asyncio.create_task(answer(msg, time.time()))
        in_flight.add(job)
        job.add_done_callback(in_flight.discard)

    config = ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, max_ack_pending=256)
    await js.subscribe(TASK_SUBJECT, durable="floor-worker", cb=on_offer, manual_ack=True, config=config)
    print("floor worker ready", flush=True)
    await asyncio.Event().wait()


class FloorCoordinator:
    """Publishes offers and collects results; one instance per job."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sent: dict[str, float] = {}
        self.started: dict[str, float] = {}
        self.done = asyncio.Event()

    async def _connect(self, expected: int, on_result: Any) -> tuple[Any, Any]:
        nc = await nats.connect(self.url)
        js = nc.jetstream()

        async def on_message(msg: Any) -> None:
            body = json.loads(msg.data)
            self.started[body["id"]] = body["started"]
            await msg.ack()
            await on_result(body["id"])
            if len(self.started) >= expected:
                self.done.set()

        config = ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, max_ack_pending=1024)
        await js.subscribe(RESULT_SUBJECT, cb=on_message, manual_ack=True, config=config)
        return nc, js

    async def _offer(self, js: Any, job: str, i: int) -> None:
        key = f"{job}-{i}"
        self.sent[key] = time.time()
        await js.publish(TASK_SUBJECT, json.dumps({"id": key}).encode(), headers={"Nats-Msg-Id": key})

    async def wide(self, n: int, window: int = 512) -> float:
        """Seconds to complete ``n`` independent offers."""

        async def nothing(_: str) -> None:
            return None

        nc, js = await self._connect(n, nothing)
        begin = time.perf_counter()
        for first in range(0, n, window):
            await asyncio.gather(*(self._offer(js, "w", i) for i in range(first, min(n, first + window))))
        await asyncio.wait_for(self.done.wait(), 120)
        elapsed = time.perf_counter() - begin
        await nc.close()
        return elapsed

    async def chain(self, n: int) -> list[float]:
        """Seconds between consecutive dispatches of a chain of ``n`` offers."""
        js_box: list[Any] = []

        async def next_offer(key: str) -> None:
            i = int(key.split("-")[1]) + 1
            if i < n:
                await self._offer(js_box[0], "c", i)

        nc, js = await self._connect(n, next_offer)
        js_box.append(js)
        await self._offer(js, "c", 0)
        await asyncio.wait_for(self.done.wait(), 120)
        await nc.close()
        return [self.sent[f"c-{i}"] - self.sent[f"c-{i - 1}"] for i in range(1, n)]

    def dispatch_to_start(self) -> list[float]:
        """Seconds from each offer's publish to the worker starting it."""
        return [self.started[key] - sent for key, sent in self.sent.items() if key in self.started]


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "worker":
        raise SystemExit("usage: floor.py worker NATS_URL")
    asyncio.run(worker(sys.argv[2]))
