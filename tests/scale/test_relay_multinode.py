"""The media relay across two ``doorless server`` processes over one PostgreSQL and one Redis:
participants of one call on different nodes hear each other (QUIC on one node, the WebSocket
fallback on the other), and a member removed by a commit accepted on one node is dropped from
the call on the other."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from doorless.client.transport.relay import RelayConnection, RelayRefused
from doorless.sframe import encode_header
from doorless.wire.calls import CallId, StreamKind
from support.relay import account, group_with, transport_of
from support.servers import free_port

from .conftest import PgSchema
from .nodes import Node, make_nodes, start_all

pytestmark = pytest.mark.asyncio


@pytest.fixture
def cluster(pg_schema_sync: PgSchema, redis_url: str, tmp_path: Path) -> Iterator[list[Node]]:
    nodes = [
        make_nodes(
            tmp_path,
            1,
            pg_schema_sync.url + "&pool_size=4",
            redis_url,
            prefix=f"relay{i}-",
            extra=("--relay-port", str(free_port()), "--anon-rate-limit", "0"),
        )[0]
        for i in range(2)
    ]
    try:
        start_all(nodes)
        yield nodes
    finally:
        for node in nodes:
            node.stop()


async def test_participants_on_two_nodes_hear_each_other(
    cluster: list[Node], tmp_path: Path
) -> None:
    a, b = cluster
    alice = await account(a.url, tmp_path / "p", "alice")
    bob = await account(b.url, tmp_path / "p", "bob")
    carol = await account(b.url, tmp_path / "p", "carol")
    try:
        gid = await group_with(alice, bob, carol)
        call = CallId.random()
        ca = await transport_of(alice).join_call(gid, call, transport="quic")
        cb = await transport_of(bob).join_call(gid, call, transport="quic")
        cc = await transport_of(carol).join_call(gid, call, transport="websocket")
        # Subscriptions on Redis are asynchronous: send until the first frame crosses.
        first = encode_header(1, 0) + os.urandom(60)
        for _ in range(50):
            await ca.send(StreamKind.audio, first)
            if cb._inbox.queue.qsize() and cc._inbox.queue.qsize():
                break
            await asyncio.sleep(0.1)
        for conn in (cb, cc):
            assert (await asyncio.wait_for(conn.__anext__(), 5)).frame == first
            while conn._inbox.queue.qsize():
                await conn.__anext__()
        frames = [encode_header(2, ctr) + os.urandom(100) for ctr in range(1, 21)]
        for f in frames:
            await cb.send(StreamKind.audio, f)

        async def collect(conn: RelayConnection) -> list[bytes]:
            got: list[bytes] = []
            while len(got) < len(frames):
                frame = (await asyncio.wait_for(conn.__anext__(), 5)).frame
                if frame != first:  # a late copy of the warm-up frame, still in flight
                    got.append(frame)
            return got

        got_a, got_c = await collect(ca), await collect(cc)
        assert sorted(got_a) == sorted(frames) and sorted(got_c) == sorted(frames)
        # Never back to the sender: bob only holds late copies of alice's warm-up frame.
        while cb._inbox.queue.qsize():
            assert (await cb.__anext__()).frame == first

        # Removed by a commit accepted on node a; bob's connection is on node b.
        await alice.remove_members(gid.hex(), ["bob"])
        with pytest.raises(RelayRefused) as dropped:
            while True:
                await asyncio.wait_for(cb.__anext__(), 10)
        assert dropped.value.code == "not_group_member"
        for conn in (ca, cb, cc):
            await conn.close()
    finally:
        for c in (alice, bob, carol):
            await c.close()
