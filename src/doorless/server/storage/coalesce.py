"""Coalescing of small concurrent operations into one batch (one transaction, one round trip).

The first request is flushed at once (no added latency on an idle server); requests arriving
while that flush runs wait for the next one, which takes them all, up to ``limit``. Each caller
gets its own result, or the batch's exception: nothing is answered before its batch finished.
Acks use it on both stores (`doorless.server.storage.sql.SqlStorage.ack`): many sockets
acknowledging at once cost one write instead of one each; PostgreSQL's queue reads too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

I = TypeVar("I")  # noqa: E741 - the item type
R = TypeVar("R")


class Coalescer(Generic[I, R]):
    """``await coalescer.submit(item)``: ``flush(items)`` runs for a batch of submitted items
    and returns one result per item, in order."""

    def __init__(
        self, flush: Callable[[list[I]], Awaitable[Sequence[R]]], limit: int = 500
    ) -> None:
        self._flush = flush
        self._limit = limit
        self._pending: list[tuple[I, asyncio.Future[R]]] = []
        self._task: asyncio.Task[None] | None = None

    async def submit(self, item: I) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._task is None:
            self._task = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch = self._pending[: self._limit]
                del self._pending[: self._limit]
                try:
                    results = await self._flush([item for item, _ in batch])
                except BaseException as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    if isinstance(exc, asyncio.CancelledError):
                        raise
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():  # a cancelled caller: the batch committed anyway
                        future.set_result(result)
        finally:
            self._task = None
            for _, future in self._pending:  # only left if cancelled (a shutdown)
                if not future.done():
                    future.cancel()
            self._pending.clear()
