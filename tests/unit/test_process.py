"""How a planexe-ax process runs: uvloop's event loop and a garbage collector tuned for large states."""

from __future__ import annotations

import asyncio
import gc
import sys

import pytest

from planexe_ax.common.process import YOUNG_THRESHOLD, loop_factory, tune_gc


@pytest.mark.skipif(sys.platform == "win32", reason="uvloop is not installed on Windows")
def test_the_services_run_on_uvloop() -> None:
    import uvloop

    factory = loop_factory()
    assert factory is uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        assert isinstance(runner.get_loop(), uvloop.Loop)
        assert runner.run(asyncio.sleep(0, result=7)) == 7


def test_the_collector_runs_its_young_pass_less_often_and_keeps_the_older_thresholds() -> None:
    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == (YOUNG_THRESHOLD, before[1], before[2])
    finally:
        gc.set_threshold(*before)
