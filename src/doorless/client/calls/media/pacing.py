"""Pacing a source: one item per period in real time, or as fast as possible (tests).

``async for item, t in paced(source, period, realtime=True)`` yields each item with its media
time ``t`` (seconds since the first item: ``index * period``); in real time it sleeps until
``start + t`` on the clock given (``time.monotonic`` by default), so a slow consumer catches up
instead of drifting. With ``realtime=False`` it never sleeps; the media time still advances, so
a receiver can drive its jitter buffer with it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import TypeVar

from doorless.client.calls.media.errors import MediaConfigError

T = TypeVar("T")


async def paced(
    source: Iterable[T],
    period: float,
    *,
    realtime: bool = True,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> AsyncIterator[tuple[T, float]]:
    if period <= 0:
        raise MediaConfigError(f"pacing period {period} must be positive")
    start = clock()
    for index, item in enumerate(source):
        t = index * period
        if realtime:
            delay = start + t - clock()
            if delay > 0:
                await sleep(delay)
        yield item, t
