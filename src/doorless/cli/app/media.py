"""Calls in the window: the page's encoded media to the call engine and back.

The browser captures and encodes (WebCodecs: Opus, VP8) and decodes and plays; it never sees a
key. Over the WebSocket ``/media/CALL_ID`` it sends each encoded frame to this process, which
numbers it (`AudioPacketizer`, `VideoPacketizer`), encrypts it with SFrame under the call's MLS
keys and sends it to the relay (`CallEngine`). What the engine decrypts comes back to the page:
audio frames as they arrive, video frames once reassembled (`VideoReassembler`).

Binary messages, page → app::

    uint8 stream;        // 1 audio, 2 video (doorless.wire.calls.StreamKind)
    uint8 flags;         // bit 0: a video keyframe
    opaque payload[];    // one Opus packet (20 ms) or one whole VP8 frame

or a keyframe request, when the page's decoder of a sender's video needs a keyframe (it has
none yet, or it failed)::

    uint8 kind = 3;      // keyframe request
    uint8 flags = 0;
    uint16 sender;       // the sender's index

app → page: the media frames, with ``uint16 sender`` (an index) after ``flags``. Text messages,
app → page: ``{"type": "sender", "index", "user", "device_id"}`` before a sender's first frame,
``{"type": "stats", "call": {...}, "failures": {...}}`` every second, and
``{"type": "keyframe"}`` when a keyframe request for this device was honoured (the page makes
its next encoded frame a keyframe). The client sends the page's requests, and its own when the
reassembler lost a frame, through `CallEngine.request_keyframe`; both ends are rate-limited
there (`doorless.client.calls.keyframes`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import struct
from typing import TYPE_CHECKING, Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from doorless.client.calls.media import (
    AudioPacketizer,
    MediaConfigError,
    StreamKind,
    VideoPacketizer,
    VideoReassembler,
)
from doorless.errors import DoorlessError

if TYPE_CHECKING:
    from doorless.client import Client
    from doorless.client.calls.engine import CallEngine
    from doorless.client.events import DeviceRef

log = logging.getLogger("doorless.app")

KEYFRAME = 0x01
KEYFRAME_REQUEST = 3  # page -> app: the first byte of a keyframe request
# A VP8 frame from the page at the call's size; an Opus packet is far smaller.
MAX_FRAME = 256 * 1024
STATS_INTERVAL = 1.0


class MediaBridge:
    """One page's media for one call of this client."""

    def __init__(self, client: Client, call_id: str, websocket: WebSocket) -> None:
        self.client = client
        self.call_id = call_id
        self.ws = websocket
        self.audio = AudioPacketizer()
        self.video = VideoPacketizer()
        self.senders: dict[DeviceRef, int] = {}
        self.reassemblers: dict[DeviceRef, VideoReassembler] = {}
        self.refused = 0  # frames from the page that were not media
        self._keyframe = asyncio.Event()  # a request for this device was honoured

    async def run(self) -> None:
        engine = await self.client.calls.connect(self.call_id)
        engine.keyframe_listener = self._keyframe.set
        tasks = [
            asyncio.create_task(self._from_relay(engine)),
            asyncio.create_task(self._stats(engine)),
            asyncio.create_task(self._keyframes()),
        ]
        try:
            await self._from_page(engine)
        finally:
            engine.keyframe_listener = None
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _keyframes(self) -> None:
        """Tell the page to make its next video frame a keyframe, once per honoured request
        (requests that arrive before the page took the last one are one keyframe)."""
        while True:
            await self._keyframe.wait()
            self._keyframe.clear()
            await self._send_text({"type": "keyframe"})

    async def _from_page(self, engine: CallEngine) -> None:
        while True:
            try:
                data = await self.ws.receive_bytes()
            except (WebSocketDisconnect, KeyError):
                return  # KeyError: a text message where bytes were expected; closes too
            if len(data) == 4 and data[0] == KEYFRAME_REQUEST:
                await self._page_requests_keyframe(engine, int.from_bytes(data[2:4], "big"))
                continue
            if not 2 < len(data) <= MAX_FRAME or data[0] not in (1, 2):
                self.refused += 1
                continue
            payload, now = data[2:], engine.timestamp()
            try:
                if data[0] == StreamKind.audio:
                    frames = [self.audio.packetize(payload, now)]
                else:
                    frames = self.video.packetize(payload, now, bool(data[1] & KEYFRAME))
            except MediaConfigError:  # e.g. an audio packet over the frame's payload limit
                self.refused += 1
                continue
            for frame in frames:
                if not await engine.send(frame):
                    return  # this device left the conversation: the call is over for it

    async def _page_requests_keyframe(self, engine: CallEngine, index: int) -> None:
        sender = next((ref for ref, i in self.senders.items() if i == index), None)
        if sender is None:
            self.refused += 1  # an index this bridge never gave the page
            return
        # The frames the page decodes next must start at a keyframe too.
        reassembler = self.reassemblers.get(sender)
        if reassembler is not None:
            reassembler.need_keyframe()
        await engine.request_keyframe(sender)

    async def _from_relay(self, engine: CallEngine) -> None:
        while True:
            try:
                data = await engine.channel.receive()
            except DoorlessError:
                return
            received = await engine.open(data)
            if received is None:
                continue  # rejected and counted by the engine
            sender, frame = received.sender, received.frame
            if frame.stream is StreamKind.audio:
                await self._to_page(sender, StreamKind.audio, 0, frame.payload)
                continue
            reassembler = self.reassemblers.setdefault(sender, VideoReassembler())
            for video in reassembler.push(frame):
                flags = KEYFRAME if video.keyframe else 0
                await self._to_page(sender, StreamKind.video, flags, video.data)
            if reassembler.keyframe_needed:  # joined, or a fragment was lost
                await engine.request_keyframe(sender)

    async def _to_page(self, sender: DeviceRef, stream: int, flags: int, payload: bytes) -> None:
        index = self.senders.get(sender)
        if index is None:
            index = self.senders[sender] = len(self.senders)
            await self._send_text(
                {
                    "type": "sender",
                    "index": index,
                    "user": sender.user,
                    "device_id": sender.device_id,
                }
            )
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):  # the page went away
            await self.ws.send_bytes(struct.pack(">BBH", stream, flags, index) + payload)

    async def _stats(self, engine: CallEngine) -> None:
        while True:
            await asyncio.sleep(STATS_INTERVAL)
            info = self.client.calls.refresh(self.call_id)
            await self._send_text(
                {
                    "type": "stats",
                    "privacy_code": info.privacy_code,
                    "state": info.state.value,
                    "participants": [
                        {"user": p.user, "device_id": p.device_id} for p in info.participants
                    ],
                    "stats": [s.to_json() for s in engine.stats()],
                    "failures": engine.failures(),
                }
            )

    async def _send_text(self, obj: dict[str, Any]) -> None:
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await self.ws.send_text(json.dumps(obj))


__all__ = ["MediaBridge"]
