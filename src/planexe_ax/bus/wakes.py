"""Waits without a task each: a future woken by whatever ends the wait, and one task per loop that sees a stop.

A consume loop waits many times a second; ``asyncio.wait_for`` makes a task for each wait. These loops wait on a
future instead (woken by an arrival, a timer or a stop: :func:`wake`), and arm :func:`on_set` once for the whole
loop, so that a stop ends the wait in progress at once rather than when its timeout is up.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator


def wake(future: asyncio.Future[None]) -> None:
    """Set ``future``'s result unless it is done already (answered, or cancelled by the one waiting on it).

    A waiter made with ``loop.create_future()`` and woken this way costs no task, unlike ``asyncio.wait_for``.
    """
    if not future.done():
        future.set_result(None)


async def woken(future: asyncio.Future[None], seconds: float) -> None:
    """Wait until ``future`` is woken (:func:`wake`) or ``seconds`` have passed: a timer, not a task."""
    timer = asyncio.get_running_loop().call_later(seconds, wake, future)
    try:
        await future
    finally:
        timer.cancel()


@contextlib.contextmanager
def on_set(event: asyncio.Event, action: Callable[[], object]) -> Iterator[None]:
    """While the block runs, call ``action`` as soon as ``event`` is set (set already: on the loop's next turn).

    One task for the whole block (a loop's run), whatever the number of waits in it: ``action`` wakes the wait
    in progress (e.g. :meth:`~planexe_ax.bus.consumer.StandingPull.interrupt`), so that a loop ends when its
    stop is set, not when that wait's timeout is up.
    """

    async def call_when_set() -> None:
        await event.wait()
        action()

    task = asyncio.create_task(call_when_set(), name="wake on stop")
    try:
        yield
    finally:
        task.cancel()
