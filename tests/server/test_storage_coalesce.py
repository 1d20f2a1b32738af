"""The coalescer behind PostgreSQL's batched acks and queue reads."""

from __future__ import annotations

import asyncio

import pytest

from doorless.server.storage.coalesce import Coalescer

pytestmark = pytest.mark.asyncio


async def test_requests_during_a_flush_share_the_next_one_and_get_their_own_results() -> None:
    batches: list[list[int]] = []
    gate = asyncio.Event()

    async def flush(items: list[int]) -> list[int]:
        batches.append(list(items))
        await gate.wait()
        return [i * 10 for i in items]

    c: Coalescer[int, int] = Coalescer(flush)
    first = asyncio.create_task(c.submit(1))
    await asyncio.sleep(0)  # the first is flushed at once, alone
    rest = [asyncio.create_task(c.submit(i)) for i in (2, 3, 4)]
    await asyncio.sleep(0)
    gate.set()
    assert await first == 10
    assert [await t for t in rest] == [20, 30, 40]
    assert batches == [[1], [2, 3, 4]]


async def test_a_failed_batch_fails_each_of_its_callers_and_the_next_batch_runs() -> None:
    calls = 0

    async def flush(items: list[str]) -> list[str]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        if "bad" in items:
            raise ValueError("batch refused")
        return items

    c: Coalescer[str, str] = Coalescer(flush, limit=2)
    results = await asyncio.gather(
        c.submit("a"), c.submit("bad"), c.submit("b"), c.submit("c"), return_exceptions=True
    )
    # Submitted together: batches of at most `limit`, in order; only the first one fails.
    assert isinstance(results[0], ValueError) and isinstance(results[1], ValueError)
    assert results[2:] == ["b", "c"]
    assert calls == 2
