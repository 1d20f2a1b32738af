"""The relay over real sockets: QUIC (pinned certificate) and the WebSocket fallback, admission
by group membership, forwarding to the others only, and a member removed mid-call dropped."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from doorless.client import Client
from doorless.client.transport.relay import (
    RelayConnection,
    RelayFingerprintMismatch,
    RelayRefused,
    RelayUnreachable,
)
from doorless.client.transport.relay_quic_link import QuicLink
from doorless.sframe import encode_header
from doorless.wire.calls import (
    CallId,
    FrameEnvelope,
    Leave,
    Refused,
    StreamKind,
    decode_message,
    encode_message,
)
from support.relay import (
    Recorder,
    RelayServer,
    account,
    group_with,
    relay_server,
    transport_of,
    wait_for,
)

pytestmark = pytest.mark.asyncio


def frame(kid: int, ctr: int, body: bytes = b"") -> bytes:
    """An SFrame-shaped frame (header, then opaque bytes): the relay reads only the header."""
    return encode_header(kid, ctr) + (body or os.urandom(40))


@pytest_asyncio.fixture
async def server(tmp_path: Path) -> AsyncIterator[RelayServer]:
    async with relay_server(tmp_path / "server", forwarder=Recorder()) as s:
        yield s


async def next_frame(conn: RelayConnection, timeout: float = 5.0) -> FrameEnvelope:
    return await asyncio.wait_for(conn.__anext__(), timeout)


async def three(server: RelayServer, tmp_path: Path) -> tuple[list[Client], bytes]:
    clients = [await account(server.url, tmp_path / "p", n) for n in ("alice", "bob", "carol")]
    return clients, await group_with(*clients)


@pytest.mark.parametrize("transport", ["quic", "websocket"])
async def test_frames_go_to_the_others_and_never_back(
    server: RelayServer, tmp_path: Path, transport: str
) -> None:
    clients, gid = await three(server, tmp_path)
    call = CallId.random()
    try:
        conns = [
            await transport_of(c).join_call(gid, call, transport=transport)  # type: ignore[arg-type]
            for c in clients
        ]
        assert [c.transport for c in conns] == [transport] * 3
        assert [c.joined.participants for c in conns] == [1, 2, 3]
        audio, video = frame(1, 1, b"a" * 80), frame(1, 2, b"v" * 5000)  # video: not a datagram
        await conns[0].send(StreamKind.audio, audio)
        await conns[0].send(StreamKind.video, video)
        for receiver in conns[1:]:
            got = [await next_frame(receiver), await next_frame(receiver)]
            assert sorted((e.stream_kind, e.frame) for e in got) == [
                (StreamKind.audio, audio),
                (StreamKind.video, video),
            ]
        # Nothing came back to the sender; bob's frame reaches alice and carol.
        reply = frame(2, 1)
        await conns[1].send(StreamKind.audio, reply)
        assert (await next_frame(conns[0])).frame == reply
        assert (await next_frame(conns[2])).frame == reply
        assert conns[0]._inbox.queue.empty()
        counters = [p.counters for p in server.relay.participants(gid, call.value)]
        assert [c.frames_in for c in counters] == [2, 1, 0]
        assert [c.frames_out for c in counters] == [1, 2, 3]
        assert conns[1].counters.frames_received == 2 and conns[0].counters.frames_sent == 2
        for c in conns:
            await c.close()
        await wait_for(lambda: not server.relay.participants(gid, call.value))
    finally:
        for c in clients:
            await c.close()


@pytest.mark.parametrize("transport", ["quic", "websocket"])
async def test_a_non_member_is_refused_and_a_removed_member_dropped(
    server: RelayServer, tmp_path: Path, transport: str
) -> None:
    clients, gid = await three(server, tmp_path)
    alice = clients[0]
    eve = await account(server.url, tmp_path / "p", "eve")
    call = CallId.random()
    try:
        with pytest.raises(RelayRefused) as refused:
            await transport_of(eve).join_call(gid, call)
        assert refused.value.code == "not_group_member"
        with pytest.raises(RelayRefused) as unknown:
            await transport_of(eve).join_call(os.urandom(32), call, transport="websocket")
        assert unknown.value.code == "not_found"
        conns = [
            await transport_of(c).join_call(gid, call, transport=transport)  # type: ignore[arg-type]
            for c in clients
        ]
        assert len(server.relay.participants(gid, call.value)) == 3
        await alice.remove_members(gid.hex(), ["carol"])
        with pytest.raises(RelayRefused) as dropped:
            await next_frame(conns[2])
        assert dropped.value.code == "not_group_member"
        assert len(server.relay.participants(gid, call.value)) == 2
        # The others go on.
        await conns[0].send(StreamKind.audio, frame(1, 9))
        assert (await next_frame(conns[1])).frame[:1] == frame(1, 9)[:1]
        for c in conns:
            await c.close()
    finally:
        for c in (*clients, eve):
            await c.close()


async def test_a_wrong_fingerprint_is_refused_before_anything_is_sent(
    server: RelayServer, tmp_path: Path
) -> None:
    clients, gid = await three(server, tmp_path)
    try:
        info = await transport_of(clients[0]).relay_info()
        assert info.port is not None and info.fingerprint is not None
        forged = info.__class__(info.host, info.port, "00" * 32, info.alpn, info.websocket_url)
        with pytest.raises(RelayFingerprintMismatch):
            await RelayConnection.open(
                forged, token="t" * 20, group_id=gid, call_id=CallId.random()
            )
        assert server.relay.call_count() == 0
    finally:
        for c in clients:
            await c.close()


async def test_quic_unreachable_falls_back_to_websocket_with_the_reason(
    server: RelayServer, tmp_path: Path
) -> None:
    clients, gid = await three(server, tmp_path)
    try:
        t = transport_of(clients[0])
        info = await t.relay_info()
        closed_port = info.__class__(info.host, 9, info.fingerprint, info.alpn, info.websocket_url)
        conn = await RelayConnection.open(
            closed_port,
            token=await t._ensure_token(),
            group_id=gid,
            call_id=CallId.random(),
            timeout=1.0,
        )
        assert conn.transport == "websocket"
        assert conn.fallback_reason is not None and "QUIC failed" in conn.fallback_reason
        await conn.close()
    finally:
        for c in clients:
            await c.close()


async def test_many_frames_too_large_for_a_datagram_all_arrive_over_quic(
    server: RelayServer, tmp_path: Path
) -> None:
    """Each goes on its own unidirectional stream: more than QUIC's initial stream limit."""
    clients = [await account(server.url, tmp_path / "p", n) for n in ("alice", "bob")]
    try:
        gid = await group_with(*clients)
        call = CallId.random()
        a, b = [await transport_of(c).join_call(gid, call, transport="quic") for c in clients]
        frames = [frame(1, ctr, os.urandom(3000)) for ctr in range(300)]
        for f in frames:  # 100 frames/s: a busy video stream
            assert await a.send(StreamKind.video, f)
            await asyncio.sleep(0.01)
        got = [(await next_frame(b, 10)).frame for _ in frames]
        assert sorted(got) == sorted(frames)
        for c in (a, b):
            await c.close()
    finally:
        for c in clients:
            await c.close()


@pytest.mark.parametrize(
    "first",
    ["text, not binary", b"", b"\x09garbage", encode_message(Leave()), b"\x04\x01\x10abc"],
    ids=["text", "empty", "unknown-type", "leave", "frame-before-join"],
)
async def test_websocket_garbage_before_the_join_is_refused(
    server: RelayServer, first: str | bytes
) -> None:
    url = server.url.replace("http", "ws", 1) + "/v1/calls/ws"
    async with ws_connect(url, proxy=None) as socket:
        await socket.send(first)
        answer = decode_message(await asyncio.wait_for(socket.recv(), 5))  # type: ignore[arg-type]
        assert isinstance(answer, Refused) and answer.code == "invalid_request"
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(socket.recv(), 5)
    assert server.relay.call_count() == 0


async def test_quic_garbage_on_the_control_stream_is_refused(
    server: RelayServer, tmp_path: Path
) -> None:
    clients = [await account(server.url, tmp_path / "p", "alice")]
    try:
        info = await transport_of(clients[0]).relay_info()
        assert info.port is not None and info.fingerprint is not None
        link = await QuicLink.open(info.host, info.port, info.fingerprint, 5.0)
        p = link.protocol
        p.control_id = p._quic.get_next_available_stream_id()
        p._quic.send_stream_data(p.control_id, b"\x03\x09ab")  # a "refused" from the client
        p.transmit()
        answer = await asyncio.wait_for(asyncio.shield(p.answer), 5)
        assert isinstance(answer, Refused) and answer.code == "invalid_request"
        await link.close()
        assert server.relay.call_count() == 0
    finally:
        for c in clients:
            await c.close()


async def test_a_server_without_quic_is_joined_over_websocket(tmp_path: Path) -> None:
    async with relay_server(tmp_path / "server", quic=False) as server:
        clients = [await account(server.url, tmp_path / "p", n) for n in ("alice", "bob")]
        try:
            gid = await group_with(*clients)
            info = await transport_of(clients[0]).relay_info()
            assert (info.port, info.fingerprint) == (None, None)
            conn = await transport_of(clients[0]).join_call(gid, CallId.random())
            assert conn.transport == "websocket"
            assert conn.fallback_reason == "the server has no QUIC relay"
            await conn.close()
            with pytest.raises(RelayUnreachable):
                await transport_of(clients[1]).join_call(gid, CallId.random(), transport="quic")
        finally:
            for c in clients:
                await c.close()


async def test_a_frame_leaves_when_sent_and_a_burst_in_one_packet_over_quic(
    server: RelayServer, tmp_path: Path
) -> None:
    """`send` hands the frame's packet to the socket before it returns (not on the loop's next
    turn, behind every other ready socket); ``send_all`` sends a burst in one packet."""
    clients = [await account(server.url, tmp_path / "p", n) for n in ("alice", "bob")]
    try:
        gid = await group_with(*clients)
        call = CallId.random()
        a, b = [await transport_of(c).join_call(gid, call, transport="quic") for c in clients]
        link = a._link
        assert isinstance(link, QuicLink)
        transport = link.protocol._transport
        assert transport is not None
        sent: list[bytes] = []
        real_sendto = transport.sendto

        def counting(data: Any, addr: Any = None) -> None:
            sent.append(bytes(data))
            real_sendto(data, addr)

        transport.sendto = counting  # type: ignore[method-assign]
        frames = [frame(1, n) for n in range(1, 10)]
        await a.send(StreamKind.audio, frames[0])
        assert len(sent) == 1
        burst = [FrameEnvelope(StreamKind.audio, f).to_bytes() for f in frames[1:]]
        assert link.send_all(burst) == 8
        assert len(sent) == 2
        assert [(await next_frame(b)).frame for _ in frames] == frames
        for conn in (a, b):
            await conn.close()
    finally:
        for c in clients:
            await c.close()
