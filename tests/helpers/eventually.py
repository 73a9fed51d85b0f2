"""Wait on a condition with a timeout instead of sleeping."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(
    check: Callable[[], Awaitable[T | None]],
    timeout: float = 10.0,  # noqa: ASYNC109 - one number reads better at call sites than a context manager
    every: float = 0.02,
) -> T:
    """Poll ``check`` until it returns a truthy value; fail with the last value after ``timeout`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    last: T | None = None
    while True:
        last = await check()
        if last:
            return last
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met in {timeout} s; last value: {last!r}")
        await asyncio.sleep(every)
