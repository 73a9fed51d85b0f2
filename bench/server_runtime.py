"""The nats-server's CPU per stored message: with Go's defaults against the embedded server's runtime settings.

    python bench/server_runtime.py [--rounds 6] [--messages 60000] [--json]

Starts the embedded nats-server (no auth, a temporary JetStream store) once per arm and round, the arms
alternating and the order flipped each round. One Python client publishes ``--messages`` messages of 400 bytes
with an id and a trace header (as an event carries) to a stream, 200 acks outstanding at most, while a pull
consumer of the same connection fetches and acks them. The figure is the server process's CPU (``/proc``) over
that, per message, with its peak memory; the arms:

- ``go defaults``: ``GOMAXPROCS`` every core the process may use and ``GOGC=100``, as Go runs a server started
  by hand;
- ``embedded``: what :func:`planexe_ax.bus.embedded.server_env` gives the embedded server.

Prints the medians and the ratio of embedded to defaults; ``--json`` prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nats
from compare import cpu_s  # bench/ is not a package: its folder is on the path
from nats.js.api import StreamConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from planexe_ax.bus import EmbeddedNats
from planexe_ax.bus.embedded import server_env, usable_cores

TRACEPARENT = "00-c64ed83455600479645fcd8db281cac3-9579369e05398c0c-01"
WINDOW = 200


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def one(environ: dict[str, str], messages: int) -> dict[str, float]:
    """One server started from ``environ``: its CPU µs per message, peak memory, and the messages per second."""
    with tempfile.TemporaryDirectory(prefix="planexe-bench-") as tmp:
        async with EmbeddedNats(Path(tmp) / "nats", auth=False, environ=environ) as server:
            assert server.proc is not None
            pid = server.proc.pid
            nc = await nats.connect(server.url)
            js = nc.jetstream()
            await js.add_stream(StreamConfig(name="BENCH", subjects=["bench.>"]))
            pull = await js.pull_subscribe("bench.>", durable="bench")
            got = 0

            async def consume() -> None:
                nonlocal got
                while got < messages:
                    try:
                        batch = await pull.fetch(500, timeout=1)
                    except nats.errors.TimeoutError:
                        continue
                    for msg in batch:
                        await msg.ack()
                    got += len(batch)

            cpu0, began = cpu_s(pid), time.perf_counter()
            consumer = asyncio.create_task(consume())
            window: list[asyncio.Future[object]] = []
            body = b"x" * 400
            for i in range(messages):
                headers = {"Nats-Msg-Id": str(i), "traceparent": TRACEPARENT}
                window.append(asyncio.ensure_future(js.publish(f"bench.{i % 50}", body, headers=headers)))
                if len(window) >= WINDOW:
                    await asyncio.gather(*window)
                    window = []
            await asyncio.gather(*window)
            await consumer
            took, used = time.perf_counter() - began, cpu_s(pid) - cpu0
            figures = {"cpu_us_per_msg": used / messages * 1e6, "msgs_per_s": messages / took}
            figures["peak_rss_mb"] = peak_rss_mb(pid)
            await nc.close()
            return figures


async def main(args: argparse.Namespace) -> None:
    defaults = {**os.environ, "GOMAXPROCS": str(usable_cores()), "GOGC": "100"}
    plain = {k: v for k, v in os.environ.items() if k not in ("GOMAXPROCS", "GOGC")}
    arms = {"go defaults": defaults, "embedded": plain}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in arms}
    for round_ in range(args.rounds):
        for name in list(arms) if round_ % 2 == 0 else list(reversed(arms)):
            runs[name].append(await one(arms[name], args.messages))
    medians = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in runs.items()}
    settings = {k: server_env(plain)[k] for k in ("GOMAXPROCS", "GOGC")}
    if args.json:
        print(json.dumps({"medians": medians, "runs": runs, "embedded": settings}, indent=2))
        return
    print(f"{args.messages} messages of 400 bytes, medians of {args.rounds} rounds; embedded: {settings}")
    for name, figures in medians.items():
        print(
            f"{name:12s} server CPU {figures['cpu_us_per_msg']:5.1f} µs/message, peak {figures['peak_rss_mb']:5.0f} MB,"
            f" {figures['msgs_per_s']:7.0f} messages/s"
        )
    ratio = medians["embedded"]["cpu_us_per_msg"] / medians["go defaults"]["cpu_us_per_msg"]
    print(f"server CPU per message, embedded / go defaults: {ratio:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--messages", type=int, default=60_000)
    parser.add_argument("--json", action="store_true")
    asyncio.run(main(parser.parse_args()))
