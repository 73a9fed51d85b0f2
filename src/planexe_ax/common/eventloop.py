"""The event loop a ``planexe-ax`` process runs on: uvloop where it is installed, else asyncio's own.

uvloop comes with ``uvicorn[standard]`` (a dependency) on Linux and macOS CPython. It matters most to the
gateway, which writes every event to every WebSocket watching it: on 2 shared cores, 100 clients at 200 events/s
(``bench/ws_latency.py``), the gateway's process spends about a quarter less CPU per event on it.

The garbage collector is tuned for processes that hold large states: the young generation is collected every
``YOUNG_THRESHOLD`` new container objects instead of 700 (:func:`tune_gc`; in a process running only the
projector, every ``PROJECTOR_YOUNG_THRESHOLD``), and a serving process freezes what it allocated to start
(:func:`freeze_startup_objects`). A coordinator starting a 50,000-subtask plan creates hundreds of thousands of
objects in one decision, and the collector's passes doubled its time (10.9 s against 5.1 s with the collector
off, in the core alone; 5.7 s with ``tune_gc``).
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Collection, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
YOUNG_THRESHOLD = 50_000
"""Net new container objects between two young-generation collections (Python's default: 700)."""
PROJECTOR_YOUNG_THRESHOLD = 200_000
"""The same in a process that runs the projector alone (:func:`young_threshold`).

The projector holds a few batches of events at once (up to 4,000 each, about ten container objects an event:
the message, its headers, the event model and its fields, the rows). Collected every 50,000, most of them were
walked once or twice before their batch was written and they were freed: replaying ``bench/projector.py``'s
56,000 events, 15,400 events/s against 18,400 every 200,000 (and 19,300 with the collector off). A young
collection then walks up to four times as many objects, a pause the projector's read model (≤ 1 s behind the
bus) affords, and the latency-bound services (coordinator, gateway) do not share.
"""


def tune_gc(young: int = YOUNG_THRESHOLD) -> None:
    """Collect the young generation every ``young`` allocations; the older thresholds stay."""
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young, middle, old)


def young_threshold(services: Collection[str]) -> int:
    """The young generation's threshold for a process running ``services``: higher for the projector alone."""
    return PROJECTOR_YOUNG_THRESHOLD if set(services) == {"projector"} else YOUNG_THRESHOLD


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


def freeze_startup_objects() -> None:
    """Collect garbage once, then leave every object alive now out of later garbage collections.

    Call it when a long-running process has started its services. A full collection walks every tracked object:
    a gateway's process holds about 160,000 after startup (FastAPI, SQLAlchemy, pydantic, the app) and one walk
    stops its loop for 0.1-0.2 s on 2 shared cores, which every WebSocket client of every execution waits out.
    Those objects live as long as the process; frozen, they are not walked (``gc.freeze``), and a full
    collection costs what was allocated since. Reference counting still frees them.
    """
    gc.collect()
    gc.freeze()
