"""Where the built-in agents may fetch from: the public internet, and what ``PLANEXE_FETCH_ALLOW`` adds.

A plan's params come from whoever uploaded the plan, so a fetch must not reach what only the machine can reach:
loopback, private, link-local, shared (CGNAT), multicast, reserved and cloud metadata addresses are refused
unless the allow list names them (hosts, ``host:port`` or CIDRs, comma separated). The check runs when a
connection is opened, on the addresses the host resolves to, and the connection goes to an address that was
checked (a second DNS answer cannot swap in another); every redirect opens its connection the same way.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx

from planexe_ax.errors import PermanentError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

METADATA: tuple[IPNetwork, ...] = (
    ipaddress.ip_network("169.254.169.254/32"),  # AWS, GCP, Azure, OpenStack
    ipaddress.ip_network("fd00:ec2::254/128"),  # AWS over IPv6
    ipaddress.ip_network("100.100.100.200/32"),  # Alibaba Cloud
)
CGNAT = ipaddress.ip_network("100.64.0.0/10")
SETTING = "PLANEXE_FETCH_ALLOW"


class EgressRefused(PermanentError):
    """A fetch the egress policy refuses; the subtask fails with this message (it names the setting)."""


def refusal(ip: IPAddress) -> str | None:
    """Why ``ip`` may not be fetched from by default (None: a public address)."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip in net for net in METADATA):
        return "a cloud metadata address"
    checks = (
        (ip.is_loopback, "a loopback address"),
        (ip.is_link_local, "a link-local address"),
        (ip in CGNAT, "a shared (CGNAT) address"),
        (ip.is_multicast, "a multicast address"),
        (ip.is_private, "a private address"),
        (ip.is_unspecified or ip.is_reserved or not ip.is_global, "a non-public address"),
    )
    return next((why for hit, why in checks if hit), None)


@dataclass(frozen=True)
class FetchPolicy:
    """The allow list: host names, ``(host, port)`` pairs and networks that may be fetched from anyway."""

    hosts: frozenset[str] = frozenset()
    host_ports: frozenset[tuple[str, int]] = frozenset()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> FetchPolicy:
        """Read ``PLANEXE_FETCH_ALLOW`` entries: ``host``, ``host:port``, ``[v6]:port``, an address or a CIDR.

        Raises:
            PermanentError: An entry that is none of these (named).
        """
        hosts: set[str] = set()
        host_ports: set[tuple[str, int]] = set()
        networks: list[IPNetwork] = []
        for raw in (e.strip() for e in entries):
            if not raw:
                continue
            try:
                networks.append(ipaddress.ip_network(raw, strict=False))
                continue
            except ValueError:
                pass
            host, sep, port = raw.rpartition(":") if raw.count(":") == 1 or raw.startswith("[") else ("", "", raw)
            if sep and not port.isdigit():
                raise PermanentError(f"{SETTING} entry {raw!r} is not a host, host:port or CIDR")
            if sep:
                host_ports.add((_norm(host), int(port)))
            else:
                hosts.add(_norm(raw))
        return cls(frozenset(hosts), frozenset(host_ports), tuple(networks))

    def names(self, host: str, port: int) -> bool:
        """Whether the list names ``host`` (or ``host:port``) itself."""
        return _norm(host) in self.hosts or (_norm(host), port) in self.host_ports

    def covers(self, ip: IPAddress) -> bool:
        """Whether one of the listed networks holds ``ip``."""
        return any(ip.version == net.version and ip in net for net in self.networks)

    async def addresses(self, host: str, port: int) -> list[str]:
        """The addresses of ``host`` to connect to, every one of them allowed.

        Raises:
            EgressRefused: When ``host`` resolves to an address the policy refuses.
            httpcore.ConnectError: When ``host`` does not resolve (retryable, like any connection error).
        """
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise httpcore.ConnectError(f"{host} does not resolve: {exc}") from exc
        found = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if self.names(host, port):
            return found
        for address in found:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
            why = refusal(ip)
            if why and not self.covers(ip):
                shown = host if host == address else f"{host} ({address})"
                raise EgressRefused(
                    f"refused to fetch from {shown}: {why}; list it in {SETTING} (host, host:port or CIDR) to allow it"
                )
        return found


def _norm(host: str) -> str:
    return host.strip("[]").rstrip(".").lower()


class CheckedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend with the policy checked when each connection opens, on the checked address."""

    def __init__(self, policy: FetchPolicy) -> None:
        self.policy = policy
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Resolve and check ``host``, then connect to the first of its checked addresses that answers."""
        failed: Exception | None = None
        for address in await self.policy.addresses(host, port):
            try:
                return await self.inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:
                failed = exc
        raise failed or httpcore.ConnectError(f"{host} has no address")

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Never: agents fetch over TCP only."""
        raise EgressRefused(f"refused to fetch from the unix socket {path}")

    async def sleep(self, seconds: float) -> None:
        """As the default backend does."""
        await self.inner.sleep(seconds)


def checked_client(allow: Sequence[str], timeout_s: float, headers: dict[str, str]) -> httpx.AsyncClient:
    """An httpx client whose every connection passes the policy of ``allow``; no proxies, no redirects followed."""
    transport = httpx.AsyncHTTPTransport(trust_env=False)
    # httpx takes no network backend; its transport's connection pool is where httpcore does.
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(), network_backend=CheckedBackend(FetchPolicy.parse(allow))
    )
    return httpx.AsyncClient(
        transport=transport, timeout=timeout_s, headers=headers, follow_redirects=False, trust_env=False
    )
