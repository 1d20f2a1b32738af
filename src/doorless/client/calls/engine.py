"""One call on one device: media frames in and out through SFrame and a relay channel.

::

    send:    MediaFrame -> encode -> SFrame encrypt (this device's KID, counter reserved and
             persisted first) -> channel.send
    receive: channel -> SFrame decrypt (current epoch, or the previous one within the grace
             window) -> MediaFrame -> the sink's callback; every failure counted by reason

The engine follows the conversation's MLS group: before each frame it sent or received it
compares the group's epoch with its keys' and, on a new epoch (a member added or removed, an
update), installs the new keys and opens a new sender (RFC 9605 §5.2). A device removed from
the conversation keeps its last epoch: it can no longer read what the others send.

Keyframe requests (`KeyframeRequest`, inside SFrame like media) go through the engine too:
`request_keyframe` asks a sender (rate-limited per sender); a request addressed to this
device calls ``keyframe_listener`` (the video sender: runner or app bridge), at most once per
`FORCE_INTERVAL`; requests addressed to others are ignored (docs/calls.md).

The channel is the relay connection (`doorless.client.calls.channel.RelayChannel`) or, in
tests, an in-memory one; `MediaChannel` is all the engine needs of it. The clock is a parameter
(``monotonic`` for the grace window, ``wall_us`` for media timestamps and latency).
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from doorless.client.calls import counters
from doorless.client.calls.keyframes import FORCE_INTERVAL, REQUEST_INTERVAL, RateLimit
from doorless.client.calls.keys import KID_LAYOUT, CallKeyring, EpochKeys, Opened, epoch_keys
from doorless.client.calls.media import KeyframeRequest, MediaFrame, decode_media, encode_frame
from doorless.client.calls.stats import FailureKind, Meter, ParticipantStats
from doorless.client.core import Session
from doorless.client.events import DeviceRef
from doorless.client.store import GroupStatus
from doorless.errors import DecodeError, DoorlessError, StateError
from doorless.sframe import (
    FrameDecryptError,
    ReplayedFrame,
    SFrameSender,
    UnknownKeyId,
    decode_header,
)
from doorless.wire.calls import StreamKind


class MediaChannel(Protocol):
    """A connection to the call's relay: opaque frames out, the others' frames in."""

    async def send(self, stream: StreamKind, frame: bytes) -> None: ...

    async def receive(self) -> bytes: ...

    async def close(self) -> None: ...


# Why a frame was dropped, by exception type (table-driven, most specific first).
_FAILURES: tuple[tuple[type[DoorlessError], str], ...] = (
    (UnknownKeyId, FailureKind.UNKNOWN_KID),
    (ReplayedFrame, FailureKind.REPLAYED),
    (FrameDecryptError, FailureKind.TAMPERED),
    (DecodeError, FailureKind.MALFORMED),
)
_CAUGHT = tuple(cls for cls, _ in _FAILURES)


def failure_kind(error: DoorlessError) -> str:
    return next(kind for cls, kind in _FAILURES if isinstance(error, cls))


@dataclass(frozen=True, slots=True)
class Received:
    sender: DeviceRef
    frame: MediaFrame
    epoch: int
    latency_ms: float


HOLD_SECONDS = 1.0  # a frame of the next epoch waits this long for its key
HOLD_FRAMES = 256


def wall_us() -> int:
    return time.time_ns() // 1000


class CallEngine:
    """The keys, sender, receive path and statistics of one call on this device."""

    def __init__(
        self,
        s: Session,
        group_id: bytes,
        call_id: bytes,
        channel: MediaChannel,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall_clock_us: Callable[[], int] = wall_us,
    ) -> None:
        self._s = s
        self.group_id = group_id
        self.call_id = call_id
        self.channel = channel
        self._monotonic = monotonic
        self._wall_us = wall_clock_us
        self._ring = CallKeyring()
        self._sender: SFrameSender | None = None
        self._sending = asyncio.Lock()
        self._held: collections.deque[tuple[float, bytes]] = collections.deque()
        self._released: list[Received] = []
        self._meters: dict[DeviceRef, Meter] = {}
        self._unattributed: Meter = Meter("?", "?")  # failures naming no known sender
        self.epoch_changes = 0
        self.cut_off = False  # this device was removed from the conversation
        # Called when a keyframe request for this device is honoured; set by whoever sends
        # this device's video (None: no video sent, requests are counted, not honoured).
        self.keyframe_listener: Callable[[], None] | None = None
        self._requests = RateLimit(REQUEST_INTERVAL)  # per sender asked
        self._forced = RateLimit(FORCE_INTERVAL)

    # --- keys ----------------------------------------------------------------------------

    @property
    def keys(self) -> EpochKeys:
        return self._ring.current

    @property
    def privacy_code(self) -> str:
        return self._ring.current.privacy_code

    async def start(self) -> None:
        """Take the keys of the group's current epoch (`StateError` if not a member)."""
        if not await self.refresh_keys():
            raise StateError("this device is not in the call's conversation")

    async def refresh_keys(self) -> bool:
        """Install the group's epoch if it is new; False if the group is gone for us."""
        conv = await self._s.load(self.group_id)
        if conv is None or conv.status is not GroupStatus.ACTIVE:
            self.cut_off = True
            return False
        current = self._ring.current.epoch if self._sender is not None else None
        if current == conv.mls.epoch:
            return True
        keys = epoch_keys(conv.mls, self.call_id)
        self._ring.install(keys, self._monotonic())
        self._sender = await counters.open_sender(self._s, self.group_id, keys)
        if current is not None:
            self.epoch_changes += 1
        for ref in keys.senders.values():
            self._meter(ref)
        return True

    def _epoch_moved(self) -> bool:
        conv = self._s.cache.get(self.group_id)
        if conv is None or self._sender is None:
            return True
        return conv.status is not GroupStatus.ACTIVE or conv.mls.epoch != self.keys.epoch

    def _meter(self, ref: DeviceRef) -> Meter:
        meter = self._meters.get(ref)
        if meter is None:
            meter = self._meters[ref] = Meter(ref.user, ref.device_id)
        return meter

    # --- sending --------------------------------------------------------------------------

    async def seal(self, frame: MediaFrame) -> bytes | None:
        """The SFrame ciphertext of ``frame`` under this device's current key (None once
        this device left the conversation)."""
        data = await self._seal(encode_frame(frame))
        if data is not None:
            self._meter(self._s.me).sent += 1
        return data

    async def _seal(self, plaintext: bytes) -> bytes | None:
        async with self._sending:  # audio, video and requests share the sender's counter
            if self._epoch_moved() and not await self.refresh_keys():
                return None
            sender = self._sender
            assert sender is not None
            await counters.ensure_reserved(self._s, self.group_id, self.keys.epoch, sender)
            return sender.encrypt(plaintext)

    async def send(self, frame: MediaFrame) -> bool:
        data = await self.seal(frame)
        if data is None:
            return False
        await self.channel.send(frame.stream, data)
        return True

    async def request_keyframe(self, sender: DeviceRef) -> bool:
        """Ask ``sender`` for a keyframe (this device cannot decode its video); at most one
        request per sender per `REQUEST_INTERVAL`. True if one was sent."""
        leaf = next((i for i, ref in self.keys.senders.items() if ref == sender), None)
        if leaf is None or leaf == self.keys.own_leaf:
            return False  # not a member of this epoch (or ourselves): nobody to ask
        if not self._requests.allow(sender, self._monotonic()):
            return False
        data = await self._seal(encode_frame(KeyframeRequest(leaf)))
        if data is None:
            return False
        # The video stream kind: the relay sees a small video frame, nothing of its target.
        await self.channel.send(StreamKind.video, data)
        self._meter(sender).keyframe_requests_sent += 1
        return True

    def _on_keyframe_request(self, requester: DeviceRef, request: KeyframeRequest) -> None:
        if request.target != self.keys.own_leaf:
            return  # addressed to another sender: not ours to answer
        meter = self._meter(requester)
        meter.keyframe_requests_received += 1
        listener = self.keyframe_listener
        if listener is None or not self._forced.allow(None, self._monotonic()):
            return
        meter.keyframe_requests_honoured += 1
        listener()

    def timestamp(self) -> int:
        """A media timestamp: this device's wall clock in microseconds (latency = receive
        time minus it)."""
        return self._wall_us()

    # --- receiving ------------------------------------------------------------------------

    async def open(self, data: bytes) -> Received | None:
        """Decrypt and parse one frame from the relay; None if it is rejected (counted),
        held for the next epoch (see `released`), or a keyframe request (handled here)."""
        if self._epoch_moved() and await self.refresh_keys():
            self._retry_held()
        now = self._monotonic()
        try:
            opened: Opened = self._ring.open(data, now)
            frame = decode_media(opened.plaintext)
        except _CAUGHT as e:
            if isinstance(e, UnknownKeyId) and self._hold(data, now):
                return None
            self._failure_meter(data).failures[failure_kind(e)] += 1
            return None
        return self._received(opened, frame, len(data), now)

    def _received(
        self, opened: Opened, frame: MediaFrame | KeyframeRequest, size: int, now: float
    ) -> Received | None:
        if isinstance(frame, KeyframeRequest):
            self._on_keyframe_request(opened.sender, frame)
            return None
        latency_ms = max(0.0, (self._wall_us() - frame.timestamp) / 1000)
        self._meter(opened.sender).on_frame(
            int(frame.stream), frame.sequence, size, latency_ms, now
        )
        return Received(opened.sender, frame, opened.epoch, latency_ms)

    def _hold(self, data: bytes, now: float) -> bool:
        """Keep a frame of the *next* epoch (its sender processed a commit before we did:
        RFC 9605 §4.4.4 lets a receiver buffer it until the key arrives), for at most
        `HOLD_SECONDS` and `HOLD_FRAMES`."""
        if self.cut_off:
            return False  # removed: no next epoch will come
        try:
            header, _ = decode_header(data)
        except DecodeError:
            return False
        current = self._ring.current.epoch
        if KID_LAYOUT.epoch_bits_of(header.kid) != (current + 1) % (1 << KID_LAYOUT.epoch_bits):
            return False
        while self._held and (
            len(self._held) >= HOLD_FRAMES or now - self._held[0][0] > HOLD_SECONDS
        ):
            _, dropped = self._held.popleft()
            self._failure_meter(dropped).failures[FailureKind.UNKNOWN_KID] += 1
        self._held.append((now, data))
        return True

    def _retry_held(self) -> None:
        """After a new epoch: decrypt the frames held for it (`released` returns them)."""
        held, self._held = self._held, collections.deque()
        now = self._monotonic()
        for _, data in held:
            try:
                opened = self._ring.open(data, now)
                frame = decode_media(opened.plaintext)
            except _CAUGHT as e:
                self._failure_meter(data).failures[failure_kind(e)] += 1
                continue
            received = self._received(opened, frame, len(data), now)
            if received is not None:
                self._released.append(received)

    def released(self) -> list[Received]:
        """Frames held for an epoch this device had not processed yet that decrypted once
        it did (in arrival order); take them after each `open`."""
        out, self._released = self._released, []
        return out

    def expire_held(self) -> None:
        """Count the held frames as unknown KIDs (the call ends, or they waited too long)."""
        while self._held:
            _, data = self._held.popleft()
            self._failure_meter(data).failures[FailureKind.UNKNOWN_KID] += 1

    def _failure_meter(self, data: bytes) -> Meter:
        try:
            ref = self._ring.sender_of(data)
        except DecodeError:
            ref = None
        return self._unattributed if ref is None else self._meter(ref)

    def note_playout(self, sender: DeviceRef, *, late: int, concealed: int) -> None:
        """The running counts of ``sender``'s jitter buffer: frames that arrived after it
        played past them, and 20 ms slots it filled by concealment (lost, late, undecodable)."""
        meter = self._meter(sender)
        meter.late, meter.concealed = late, concealed

    # --- statistics -----------------------------------------------------------------------

    def stats(self) -> tuple[ParticipantStats, ...]:
        """Per participant (this device included, with its ``frames_sent``), sorted; frames
        that named no known sender are counted under user ``?``."""
        out = [m.snapshot() for _, m in sorted(self._meters.items())]
        if self._unattributed.failures:
            out.append(self._unattributed.snapshot())
        return tuple(out)

    def failures(self) -> dict[str, int]:
        """Rejected frames by reason, over every participant."""
        total: dict[str, int] = {}
        for meter in (*self._meters.values(), self._unattributed):
            for kind, n in meter.failures.items():
                total[kind] = total.get(kind, 0) + n
        return total


__all__ = ["CallEngine", "MediaChannel", "Received", "failure_kind", "wall_us"]
