"""The app's media bridge and keyframe requests, in process (a real call engine over an
in-memory relay, a stand-in for the page's WebSocket): the bridge asks a sender for a
keyframe when its reassembler has none, forwards the page's own request (and refuses one for
a sender it never announced), and tells the page when a request for this device arrived."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from starlette.websockets import WebSocketDisconnect

from client.calls.test_engine import Clock, call_of
from client.harness import network
from doorless.cli.app.media import KEYFRAME_REQUEST, MediaBridge
from doorless.client.calls.keyframes import REQUEST_INTERVAL
from doorless.client.calls.media import FrameFlags, MediaFrame, StreamKind
from support.call_relay import MemoryRelay

pytestmark = pytest.mark.asyncio


class Page:
    """What the bridge needs of the page's WebSocket."""

    def __init__(self) -> None:
        self.incoming: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.media: list[bytes] = []
        self.texts: list[dict[str, Any]] = []

    async def receive_bytes(self) -> bytes:
        data = await self.incoming.get()
        if data is None:
            raise WebSocketDisconnect()
        return data

    async def send_bytes(self, data: bytes) -> None:
        self.media.append(data)

    async def send_text(self, text: str) -> None:
        self.texts.append(json.loads(text))


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0.01)


async def test_keyframe_requests_through_the_bridge(tmp_path: Path) -> None:
    relay, clock = MemoryRelay(), Clock()
    async with network(tmp_path) as net:
        clients, (ea, eb), _ = await call_of(net, relay, clock, ("alice", "bob"))
        alice, bob = clients[0]._core.me, clients[1]._core.me
        forced: list[int] = []
        ea.keyframe_listener = lambda: forced.append(1)

        async def connect(call_id: str) -> Any:
            return eb

        client = SimpleNamespace(calls=SimpleNamespace(connect=connect))
        page = Page()
        bridge = MediaBridge(client, ea.call_id.hex(), page)  # type: ignore[arg-type]
        running = asyncio.create_task(bridge.run())
        await settle()

        async def alice_sends(sequence: int, key: bool) -> None:
            flags = FrameFlags.START | FrameFlags.END | (FrameFlags.KEYFRAME if key else 0)
            await ea.send(MediaFrame(StreamKind.video, sequence, 1000 + sequence, b"vp8", flags))
            await settle()

        async def alice_hears() -> None:
            for data in relay.channels["alice"].pending():
                assert await ea.open(data) is None  # a request, handled by alice's engine

        # Bob joined in the middle of alice's video: a delta frame, nothing for the page yet,
        # and the bridge asks alice for a keyframe (once per interval).
        await alice_sends(5, key=False)
        await alice_sends(6, key=False)
        assert page.media == []
        await alice_hears()
        assert forced == [1]

        # The keyframe reaches the page (after the sender's announcement, index 0).
        await alice_sends(7, key=True)
        assert page.texts[0] == {
            "type": "sender",
            "index": 0,
            "user": "alice",
            "device_id": alice.device_id,
        }
        assert len(page.media) == 1

        # The page's decoder failed: it asks for sender 0; the bridge asks alice and holds
        # alice's delta frames back until the keyframe.
        clock.t += 2 * REQUEST_INTERVAL
        await page.incoming.put(bytes([KEYFRAME_REQUEST, 0, 0, 0]))
        await settle()
        await alice_hears()
        assert len(forced) == 2
        await alice_sends(8, key=False)
        assert len(page.media) == 1
        # A sender index the bridge never gave: refused, nothing sent.
        await page.incoming.put(bytes([KEYFRAME_REQUEST, 0, 0, 9]))
        await settle()
        assert bridge.refused == 1 and relay.channels["alice"].pending() == []

        # Alice asks bob (the page's device) for a keyframe: the page is told to make one.
        assert await ea.request_keyframe(bob)
        await settle()
        assert {"type": "keyframe"} in page.texts

        await page.incoming.put(None)  # the page went away
        await asyncio.wait_for(running, 5)
        assert eb.keyframe_listener is None
        (alice_at_bob,) = [p for p in eb.stats() if p.user == "alice"]
        assert alice_at_bob.keyframe_requests_sent == 2
        assert alice_at_bob.keyframe_requests_received == 1
        assert alice_at_bob.keyframe_requests_honoured == 1
