"""Encoded media to `MediaFrame`s: sequence numbers, timestamps, and video fragmentation.

Each sender numbers each stream's media frames from 0, +1 per frame (a 32-bit counter lasts
994 days of audio at 50 frames/s, so it never wraps in a call). A VP8 frame larger than
`MAX_PAYLOAD` is cut into the fewest fragments of nearly equal size, with consecutive sequence
numbers and the frame's timestamp; START marks the first, END the last, KEYFRAME all of them.
"""

from __future__ import annotations

from doorless.client.calls.media.errors import MediaConfigError
from doorless.client.calls.media.frame import (
    MAX_PAYLOAD,
    MAX_SEQUENCE,
    WHOLE,
    FrameFlags,
    MediaFrame,
)
from doorless.wire.calls import StreamKind

# A VP8 frame of at most this many fragments (~540 kB): larger is refused on both sides.
MAX_FRAGMENTS = 512


class _Numbering:
    def __init__(self, first_sequence: int) -> None:
        if not 0 <= first_sequence <= MAX_SEQUENCE:
            raise MediaConfigError(f"first sequence {first_sequence} out of range")
        self.next_sequence = first_sequence

    def take(self, count: int) -> int:
        first = self.next_sequence
        if first + count - 1 > MAX_SEQUENCE:
            raise MediaConfigError("sequence numbers exhausted for this stream")
        self.next_sequence = first + count
        return first


class AudioPacketizer:
    """One Opus packet -> one audio `MediaFrame`."""

    def __init__(self, first_sequence: int = 0) -> None:
        self._numbers = _Numbering(first_sequence)

    def packetize(self, packet: bytes, timestamp_us: int) -> MediaFrame:
        return MediaFrame(StreamKind.audio, self._numbers.take(1), timestamp_us, packet, WHOLE)


class VideoPacketizer:
    """One encoded VP8 frame -> one or more video `MediaFrame`s (fragments)."""

    def __init__(self, first_sequence: int = 0) -> None:
        self._numbers = _Numbering(first_sequence)

    def packetize(self, data: bytes, timestamp_us: int, keyframe: bool) -> list[MediaFrame]:
        if not data:
            raise MediaConfigError("empty video frame")
        count = -(-len(data) // MAX_PAYLOAD)
        if count > MAX_FRAGMENTS:
            raise MediaConfigError(f"video frame of {len(data)} bytes needs {count} fragments")
        size = -(-len(data) // count)
        first = self._numbers.take(count)
        key = FrameFlags.KEYFRAME if keyframe else FrameFlags(0)
        frames = []
        for i in range(count):
            flags = key
            if i == 0:
                flags |= FrameFlags.START
            if i == count - 1:
                flags |= FrameFlags.END
            payload = data[i * size : (i + 1) * size]
            frames.append(MediaFrame(StreamKind.video, first + i, timestamp_us, payload, flags))
        return frames
