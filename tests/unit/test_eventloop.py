"""The loop planexe-ax processes run on."""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys

import pytest

from planexe_ax.common import eventloop


async def loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_processes_run_on_uvloop_when_it_is_installed() -> None:
    pytest.importorskip("uvloop")
    assert eventloop.run(loop_module()).split(".")[0] == "uvloop"


def test_a_factory_given_wins() -> None:
    assert eventloop.run(loop_module(), factory=asyncio.new_event_loop).split(".")[0] == "asyncio"


def test_the_startup_heap_is_frozen_out_of_full_collections() -> None:
    # In a process of its own: frozen objects stay for the life of the process, which the test run's should not.
    script = (
        "import gc\n"
        "from planexe_ax.common import eventloop\n"
        "before = len(gc.get_objects())\n"
        "eventloop.freeze_startup_objects()\n"
        "print(before, gc.get_freeze_count(), len(gc.get_objects()))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    tracked, frozen, left = (int(n) for n in done.stdout.split())
    assert frozen > tracked / 2
    assert left < tracked / 10


def test_the_collector_runs_its_young_pass_less_often_and_keeps_the_older_thresholds() -> None:
    before = gc.get_threshold()
    try:
        eventloop.tune_gc()
        assert gc.get_threshold() == (eventloop.YOUNG_THRESHOLD, before[1], before[2])
    finally:
        gc.set_threshold(*before)


@pytest.mark.parametrize(
    ("services", "young"),
    [
        (["projector"], eventloop.PROJECTOR_YOUNG_THRESHOLD),
        (("projector", "projector"), eventloop.PROJECTOR_YOUNG_THRESHOLD),
        (["projector", "gateway"], eventloop.YOUNG_THRESHOLD),
        (["coordinator"], eventloop.YOUNG_THRESHOLD),
        ([], eventloop.YOUNG_THRESHOLD),
    ],
)
def test_a_process_running_only_the_projector_collects_its_young_generation_less_often(
    services: list[str], young: int
) -> None:
    assert eventloop.young_threshold(services) == young
    assert eventloop.PROJECTOR_YOUNG_THRESHOLD > eventloop.YOUNG_THRESHOLD
