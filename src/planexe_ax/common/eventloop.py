"""The event loop a ``planexe-ax`` process runs on: uvloop where it is installed, else asyncio's own.

uvloop comes with ``uvicorn[standard]`` (a dependency) on Linux and macOS CPython. It matters most to the
gateway, which writes every event to every WebSocket watching it: on 2 shared cores, 100 clients at 200 events/s
(``bench/ws_latency.py``), the gateway's process spends about a quarter less CPU per event on it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The ``new_event_loop`` of uvloop when it imports, else None (asyncio's default loop)."""
    try:
        import uvloop
    except ImportError:  # Windows, PyPy, or installed without uvicorn[standard]
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T], *, factory: Callable[[], asyncio.AbstractEventLoop] | None = None) -> T:
    """Run ``main`` to the end on a new loop from ``factory`` (default :func:`loop_factory`), as ``asyncio.run``."""
    with asyncio.Runner(loop_factory=factory or loop_factory()) as runner:
        return runner.run(main)
