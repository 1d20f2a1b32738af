"""Three ``doorless server`` processes on different ports over one PostgreSQL database and one
Redis: senders and receivers on different nodes, pushed in real time, in order, and commits
racing from different nodes for the same epoch resolved to exactly one winner."""

from __future__ import annotations

import asyncio
import itertools
import random
import statistics
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from doorless.mls.framing import ContentType

from .conftest import PgSchema
from .nodes import (
    Device,
    Inbox,
    Node,
    SendFailed,
    body_of,
    fetch_all,
    make_nodes,
    mls_message,
    receive_forever,
    register_many,
    send,
    start_all,
)

pytestmark = pytest.mark.asyncio


@pytest.fixture
def cluster(pg_schema_sync: PgSchema, redis_url: str, tmp_path: Path) -> Iterator[list[Node]]:
    nodes = make_nodes(tmp_path, 3, pg_schema_sync.url + "&pool_size=6", redis_url)
    try:
        start_all(nodes)
        yield nodes
    finally:
        for node in nodes:
            node.stop()
        for node in nodes:  # shown if the test fails
            for line in node.log_text().splitlines():
                if '"level":"error"' in line or "Traceback" in line:
                    print(node.name, line)
        for node in nodes:  # the fan-out never fell back to polling
            assert "fanout redis down" not in node.log_text(), node.log_text()


@pytest_asyncio.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


async def listen(inboxes: list[Inbox], urls: list[str]) -> list[asyncio.Task[None]]:
    """One push socket per device, each to its own fixed node; returns when all are open."""
    tasks = [
        asyncio.create_task(receive_forever(inbox, lambda u=url: u))
        for inbox, url in zip(inboxes, itertools.cycle(urls), strict=False)
    ]
    deadline = time.monotonic() + 20
    while any(i.connects == 0 for i in inboxes):
        assert time.monotonic() < deadline, "push sockets did not open"
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # the subscriptions reach Redis before the first send
    return tasks


async def stop(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_pushed_in_real_time_across_nodes(
    cluster: list[Node], http: httpx.AsyncClient
) -> None:
    a, b, c = (n.url for n in cluster)
    devices = await register_many(a, "rt", 6)
    senders, receivers = devices[:3], devices[3:]
    inboxes = [Inbox(d) for d in receivers]
    tasks = await listen(inboxes, [b, c, a])  # receivers on every node
    recipients = [d.device_id for d in receivers]
    latencies: list[float] = []
    try:
        for i in range(30):
            sender = senders[i % 3]
            via = (c, a, b)[i % 3]  # never the node of every receiver
            marker = f"rt-{i}".encode()
            started = time.monotonic()
            await send(http, via, sender, mls_message(b"rt-group", 0, marker), recipients)
            for inbox in inboxes:
                while not any(body_of(data) == marker for _, data, _ in inbox.frames):
                    assert time.monotonic() - started < 5, f"{marker!r} not pushed"
                    await asyncio.sleep(0.002)
                arrival = next(t for _, data, t in inbox.frames if body_of(data) == marker)
                latencies.append(arrival - started)
    finally:
        await stop(tasks)
    # A push, not a poll: the sockets' idle timeout is 30 s and nothing else wakes them.
    print(
        f"\ncross-node push latency over {len(latencies)} deliveries: "
        f"median {statistics.median(latencies) * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms"
    )
    assert max(latencies) < 2.0
    assert statistics.median(latencies) < 0.25
    assert all(i.connects == 1 for i in inboxes)  # one socket each, never re-opened


async def test_each_conversation_is_delivered_in_one_order_everywhere(
    cluster: list[Node], http: httpx.AsyncClient
) -> None:
    urls = [n.url for n in cluster]
    members = await register_many(urls[0], "order", 6)
    inboxes = [Inbox(d) for d in members]
    tasks = await listen(inboxes, urls)
    per_sender = 25

    async def talk(k: int, sender: Device) -> None:
        others = [m.device_id for m in members if m is not sender]
        for i in range(per_sender):
            body = f"{k}:{i}".encode()
            await send(http, urls[(k + i) % 3], sender, mls_message(b"order", 0, body), others)

    try:
        await asyncio.gather(*(talk(k, m) for k, m in enumerate(members)))
        expected = per_sender * (len(members) - 1)
        deadline = time.monotonic() + 20
        while any(len(i.frames) < expected for i in inboxes):
            assert time.monotonic() < deadline, [len(i.frames) for i in inboxes]
            await asyncio.sleep(0.05)
        # Every ack answered by the server (an "acked" frame) before the sockets close, so the
        # queue check below sees the acks' transactions.
        while any(i.unconfirmed for i in inboxes):
            assert time.monotonic() < deadline, [len(i.unconfirmed) for i in inboxes]
            await asyncio.sleep(0.05)
    finally:
        await stop(tasks)
    views = []
    for inbox in inboxes:
        seen = [body_of(data).decode() for _, data, _ in inbox.frames]
        assert len(seen) == len(set(seen)) == expected
        for k in range(len(members)):  # each sender's messages in the order sent
            mine = [int(s.split(":")[1]) for s in seen if s.startswith(f"{k}:")]
            assert mine == sorted(mine)
        views.append(seen)
    # Any two members see the messages they both received in the same relative order.
    for x, y in itertools.combinations(views, 2):
        common = set(x) & set(y)
        assert [m for m in x if m in common] == [m for m in y if m in common]
    for inbox in inboxes:  # and everything was acknowledged
        assert await fetch_all(http, urls[0], inbox.device) == []


async def test_commits_racing_on_different_nodes_elect_one_per_epoch(
    cluster: list[Node], http: httpx.AsyncClient
) -> None:
    urls = [n.url for n in cluster]
    members = await register_many(urls[1], "race", 6)
    group = b"race-group"
    everyone = [m.device_id for m in members]
    inboxes = [Inbox(d) for d in members]
    tasks = await listen(inboxes, urls)
    rounds = 8
    winners: list[int] = []
    try:
        for epoch in range(rounds):

            async def attempt(k: int, member: Device, epoch: int = epoch) -> tuple[int, int | None]:
                others = [d for d in everyone if d != member.device_id]
                body = f"commit e{epoch} by {k}".encode()
                message = mls_message(group, epoch, body, ContentType.commit)
                try:
                    result = await send(http, urls[k % 3], member, message, others)
                except SendFailed as exc:
                    assert exc.status == 409 and exc.body["error"] == "epoch_conflict", exc
                    return k, int(exc.body["current_epoch"])
                assert result["group_epoch"] == epoch + 1
                return k, None

            await asyncio.sleep(random.random() * 0.01)
            results = await asyncio.gather(*(attempt(k, m) for k, m in enumerate(members)))
            won = [k for k, conflict in results if conflict is None]
            assert len(won) == 1, f"epoch {epoch}: {results}"
            # every loser learns the epoch the winner moved the group to
            assert all(c == epoch + 1 for k, c in results if k != won[0])
            winners.append(won[0])
        deadline = time.monotonic() + 10
        while any(len(i.frames) < rounds - winners.count(k) for k, i in enumerate(inboxes)):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
    finally:
        await stop(tasks)
    print(f"\ncommit race winners by round: {winners}")
    for k, inbox in enumerate(inboxes):
        commits = [body_of(data).decode().split() for _, data, _ in inbox.frames]
        # exactly the winners' commits, one per epoch, in epoch order (a member does not
        # receive its own commit)
        expected = [(f"e{e}", str(w)) for e, w in enumerate(winners) if w != k]
        assert [(c[1], c[3]) for c in commits] == expected
