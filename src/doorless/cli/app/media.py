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

app → page: the same, with ``uint16 sender`` (an index) after ``flags``. Text messages,
app → page: ``{"type": "sender", "index", "user", "device_id"}`` before a sender's first frame,
and ``{"type": "stats", "call": {...}, "failures": {...}}`` every second.
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

    async def run(self) -> None:
        engine = await self.client.calls.connect(self.call_id)
        tasks = [
            asyncio.create_task(self._from_relay(engine)),
            asyncio.create_task(self._stats(engine)),
        ]
        try:
            await self._from_page(engine)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _from_page(self, engine: CallEngine) -> None:
        while True:
            try:
                data = await self.ws.receive_bytes()
            except (WebSocketDisconnect, KeyError):
                return  # KeyError: a text message where bytes were expected; closes too
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
