"""Run `planexe-ax` as real processes, and wait for what they print."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

READY = "running on nats://"


class Service:
    """A `planexe-ax serve ...` child process whose stderr goes to a file."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self.sink = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "planexe_ax", *args], env={**os.environ, **env}, stderr=self.sink
        )

    def wait_for(self, text: str, timeout: float = 30.0) -> None:
        """Block until ``text`` appears in the process's stderr; fail if the process exits first."""
        deadline = time.monotonic() + timeout
        while text not in self.log.read_text(errors="replace"):
            if self.proc.poll() is not None:
                raise AssertionError(f"exited {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not seen in {timeout} s: {self.log.read_text()[-2000:]}")
            time.sleep(0.02)

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM and return the exit code."""
        self.proc.terminate()
        return self.stopped(timeout)

    def stopped(self, timeout: float = 30.0) -> int:
        """Wait for the exit after a SIGTERM sent to several (see :func:`terminate_all`); return its code."""
        try:
            return self.proc.wait(timeout)
        finally:
            self.sink.close()

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        self.proc.kill()
        self.proc.wait()
        self.sink.close()


def terminate_all(services: list[Service]) -> dict[Service, int]:
    """SIGTERM every service at once, so that they shut down side by side; return each exit code."""
    for service in services:
        service.proc.terminate()
    return {service: service.stopped() for service in services}


def cli(args: list[str], env: dict[str, str], timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Run one `planexe-ax` command to the end."""
    return subprocess.run(
        [sys.executable, "-m", "planexe_ax", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@contextmanager
def serving(names: list[str], env: dict[str, str], folder: Path) -> Iterator[list[Service]]:
    """`planexe-ax serve NAME` for each name (logs in ``folder``), once each says it runs; killed if still running."""
    started = [Service(["serve", name], env, folder / f"{i}-{name}.log") for i, name in enumerate(names)]
    try:
        for service in started:
            service.wait_for(READY)
        yield started
    finally:
        for service in started:
            if service.proc.poll() is None:
                service.kill()
