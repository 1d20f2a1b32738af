"""The media frame: the plaintext that one SFrame frame encrypts (one datagram on the relay).

::

    enum { audio(1), video(2), (255) } StreamKind;

    struct {
        uint8 version = 1;
        StreamKind stream;
        uint8 flags;              // KEYFRAME | START | END; the other bits must be 0
        uint32 sequence;          // per sender and stream, +1 per media frame sent
        uint64 timestamp;         // capture time of the audio/video frame, microseconds
        opaque payload<V>;        // an Opus packet, or (a fragment of) a VP8 frame
    } MediaFrame;

    struct {
        uint8 version = 1;
        uint8 type = 3;           // keyframe_request: after audio(1) and video(2)
        uint32 target;            // the leaf index of the sender asked for a keyframe
    } KeyframeRequest;

An audio frame is one whole Opus packet (START and END set). A VP8 frame larger than the
datagram budget is split into fragments with consecutive sequence numbers and the same
timestamp; the first has START, the last END (`packetize`, `reassembly`). The encoded frame
never exceeds `DATAGRAM_BUDGET` bytes, so with SFrame's header and tag and the relay's
envelope it fits one QUIC datagram.

A keyframe request (RTCP PLI's job, RFC 4585 §6.3.1) travels inside SFrame like media, so the
relay cannot tell it from a small frame nor learn whom it targets. Its type byte sits where a
media frame has its stream kind (the values follow StreamKind's), so one byte tells them apart.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Self

from doorless import codec
from doorless.client.calls.media.errors import MediaConfigError, MediaFrameError
from doorless.errors import DecodeError

# Which media a frame carries (one audio and one video stream per sender): the relay
# envelope's enum, so a frame's stream and its envelope's are one value.
from doorless.wire.calls import StreamKind

VERSION = 1
# Bytes of an encoded MediaFrame at most. The relay sends an envelope of up to 1,100 bytes as
# one QUIC datagram (a DATAGRAM frame fits one packet of QUIC's 1,200-byte minimum, RFC 9221
# §5); the envelope is 2 bytes (message type, stream kind) + the SFrame header (at most 17
# bytes, RFC 9605 §4.3) + the ciphertext (as long as this frame) + the tag (at most 16).
RELAY_DATAGRAM_ENVELOPE = 1100
DATAGRAM_BUDGET = RELAY_DATAGRAM_ENVELOPE - 2 - 17 - 16  # 1,065
# version, stream, flags, sequence, timestamp, a 2-byte payload length.
HEADER_SIZE = 1 + 1 + 1 + 4 + 8 + 2
MAX_PAYLOAD = DATAGRAM_BUDGET - HEADER_SIZE
MAX_SEQUENCE = (1 << 32) - 1
MAX_TIMESTAMP = (1 << 64) - 1
MAX_LEAF = (1 << 32) - 1
KEYFRAME_REQUEST_TYPE = 3  # must stay outside StreamKind's values


class FrameFlags(enum.IntFlag):
    KEYFRAME = 0x01  # a VP8 keyframe (or a fragment of one); decoding can start here
    START = 0x02  # first fragment of a video frame (always set on audio)
    END = 0x04  # last fragment of a video frame (always set on audio)


_KNOWN_FLAGS = int(FrameFlags.KEYFRAME | FrameFlags.START | FrameFlags.END)
WHOLE = FrameFlags.START | FrameFlags.END


@dataclass(frozen=True, slots=True)
class MediaFrame:
    """One media frame; invalid ones cannot be constructed (`MediaConfigError`)."""

    stream: StreamKind
    sequence: int
    timestamp: int
    payload: bytes
    flags: FrameFlags = WHOLE

    def __post_init__(self) -> None:
        if not 0 <= self.sequence <= MAX_SEQUENCE:
            raise MediaConfigError(f"sequence {self.sequence} out of range")
        if not 0 <= self.timestamp <= MAX_TIMESTAMP:
            raise MediaConfigError(f"timestamp {self.timestamp} out of range")
        if len(self.payload) > MAX_PAYLOAD:
            raise MediaConfigError(f"payload of {len(self.payload)} bytes > {MAX_PAYLOAD}")
        if not self.payload:
            raise MediaConfigError("empty payload")
        if int(self.flags) & ~_KNOWN_FLAGS:
            raise MediaConfigError(f"unknown flags {int(self.flags):#x}")
        if self.stream is StreamKind.audio and self.flags & WHOLE != WHOLE:
            raise MediaConfigError("an audio frame is never fragmented (START and END)")

    @property
    def keyframe(self) -> bool:
        return bool(self.flags & FrameFlags.KEYFRAME)

    @property
    def start(self) -> bool:
        return bool(self.flags & FrameFlags.START)

    @property
    def end(self) -> bool:
        return bool(self.flags & FrameFlags.END)

    def push(self, w: codec.Writer) -> None:
        w.push_uint8(VERSION)
        w.push_uint8(self.stream)
        w.push_uint8(self.flags)
        w.push_uint32(self.sequence)
        w.push_uint64(self.timestamp)
        w.push_opaque(self.payload)

    @classmethod
    def pull(cls, r: codec.Reader) -> Self:
        version = r.pull_uint8()
        if version != VERSION:
            raise MediaFrameError(f"unknown media frame version {version}")
        raw_stream = r.pull_uint8()
        try:
            stream = StreamKind(raw_stream)
        except ValueError:
            raise MediaFrameError(f"unknown stream kind {raw_stream}") from None
        flags = FrameFlags(r.pull_uint8())
        sequence = r.pull_uint32()
        timestamp = r.pull_uint64()
        payload = r.pull_opaque()
        try:
            return cls(stream, sequence, timestamp, payload, flags)
        except MediaConfigError as e:
            raise MediaFrameError(str(e)) from None


@dataclass(frozen=True, slots=True)
class KeyframeRequest:
    """A receiver asks the member at leaf ``target`` to make its next video frame a keyframe
    (it joined, lost a fragment, or its decoder failed)."""

    target: int

    def __post_init__(self) -> None:
        if not 0 <= self.target <= MAX_LEAF:
            raise MediaConfigError(f"leaf index {self.target} out of range")

    def push(self, w: codec.Writer) -> None:
        w.push_uint8(VERSION)
        w.push_uint8(KEYFRAME_REQUEST_TYPE)
        w.push_uint32(self.target)

    @classmethod
    def pull(cls, r: codec.Reader) -> Self:
        version = r.pull_uint8()
        if version != VERSION:
            raise MediaFrameError(f"unknown media frame version {version}")
        kind = r.pull_uint8()
        if kind != KEYFRAME_REQUEST_TYPE:
            raise MediaFrameError(f"not a keyframe request (type {kind})")
        return cls(r.pull_uint32())


def encode_frame(frame: MediaFrame | KeyframeRequest) -> bytes:
    return codec.encode(frame)


def decode_frame(data: bytes) -> MediaFrame:
    """Parse one media frame; anything malformed raises `MediaFrameError` (a `DecodeError`)."""
    if len(data) > DATAGRAM_BUDGET:
        raise MediaFrameError(f"media frame of {len(data)} bytes > {DATAGRAM_BUDGET}")
    try:
        return codec.decode(MediaFrame, data)
    except MediaFrameError:
        raise
    except DecodeError as e:
        raise MediaFrameError(f"malformed media frame: {e}") from None


def decode_media(data: bytes) -> MediaFrame | KeyframeRequest:
    """Parse what one SFrame frame of a call carries: a media frame or a keyframe request
    (the second byte tells which); anything malformed raises `MediaFrameError`."""
    if len(data) >= 2 and data[1] == KEYFRAME_REQUEST_TYPE:
        try:
            return codec.decode(KeyframeRequest, data)
        except MediaFrameError:
            raise
        except DecodeError as e:
            raise MediaFrameError(f"malformed keyframe request: {e}") from None
    return decode_frame(data)
