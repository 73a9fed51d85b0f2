"""How a ``planexe-ax`` process runs: on uvloop when installed, with a garbage collector tuned for large states.

uvloop cut publish and pull costs by a quarter to a third on this project's hot paths (DESIGN.md, "Measured
on this machine"); it is a dependency on every platform it supports, and asyncio's own loop runs elsewhere.

Python's cyclic garbage collector runs a young-generation pass every 700 new container objects and scans
everything alive on each full pass. A coordinator starting a 50,000-subtask plan creates hundreds of
thousands of objects in one decision, and the passes doubled its time (10.9 s against 5.1 s with the
collector off, ``bench/core.py``). The services make few reference cycles, so the young generation is
collected every 50,000 allocations instead: the start of that plan took 5.7 s.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable

YOUNG_THRESHOLD = 50_000
"""Net new container objects between two young-generation passes (Python's default: 700)."""


def tune_gc() -> None:
    """Collect cycles less often: a pass per ``YOUNG_THRESHOLD`` allocations, full passes as rarely as before."""
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory of uvloop's loop when uvloop is installed; None: asyncio's default loop."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
