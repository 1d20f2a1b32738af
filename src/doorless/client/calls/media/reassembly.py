"""Video fragments back to whole VP8 frames, in order, with loss made visible.

Fragments are kept by sequence number until a frame is complete: a START at ``s``, an END at
``e``, every sequence number in between present, all with the same timestamp and keyframe flag.
A complete frame is released at once (video favours latency over waiting for stragglers);
incomplete frames older than it are dropped and counted, and fragments that arrive after
that are late. A lost frame breaks VP8's chain of references, so after any gap (and at the
start) delta frames are skipped until a keyframe arrives: ``keyframe_needed`` tells the call
engine to ask the sender for one (a `KeyframeRequest`). A decoder that failed on a released
frame is in the same state: `need_keyframe` skips delta frames again until the next keyframe.
"""

from __future__ import annotations

from dataclasses import dataclass

from doorless.client.calls.media.errors import MediaConfigError
from doorless.client.calls.media.frame import MediaFrame
from doorless.client.calls.media.packetize import MAX_FRAGMENTS
from doorless.wire.calls import StreamKind

# Fragments held at most (a few frames in flight); the oldest go first when full.
MAX_PENDING = 4 * MAX_FRAGMENTS


@dataclass(frozen=True, slots=True)
class EncodedVideo:
    """A whole encoded VP8 frame."""

    timestamp: int
    data: bytes
    keyframe: bool
    first_sequence: int
    last_sequence: int


@dataclass(slots=True)
class ReassemblyStats:
    fragments: int = 0
    duplicate: int = 0
    late: int = 0
    frames: int = 0  # whole frames released
    dropped: int = 0  # incomplete frames given up (a fragment was lost)
    skipped: int = 0  # whole delta frames not released while waiting for a keyframe
    evicted: int = 0  # fragments dropped because the buffer was full


class VideoReassembler:
    def __init__(self, max_pending: int = MAX_PENDING) -> None:
        self._pending: dict[int, MediaFrame] = {}
        self._max_pending = max_pending
        self._next: int | None = None  # the sequence after the last released or dropped frame
        self.keyframe_needed = True
        self.stats = ReassemblyStats()

    def push(self, frame: MediaFrame) -> list[EncodedVideo]:
        """Take one fragment; return the frames it completes (at most one), in order."""
        if frame.stream is not StreamKind.video:
            raise MediaConfigError("the video reassembler takes video frames only")
        self.stats.fragments += 1
        seq = frame.sequence
        if self._next is not None and seq < self._next:
            self.stats.late += 1
            return []
        if seq in self._pending:
            self.stats.duplicate += 1
            return []
        self._pending[seq] = frame
        if len(self._pending) > self._max_pending:
            del self._pending[min(self._pending)]
            self.stats.evicted += 1
        whole = self._complete_around(seq)
        return [] if whole is None else self._release(whole)

    def need_keyframe(self) -> None:
        """Skip delta frames until the next keyframe (the decoder rejected a frame, so the
        ones that refer to it cannot be decoded either)."""
        self.keyframe_needed = True

    def _complete_around(self, seq: int) -> EncodedVideo | None:
        frame = self._pending[seq]
        start = seq
        while not self._pending[start].start:
            prev = self._pending.get(start - 1)
            if (
                prev is None
                or prev.end
                or not _same_frame(prev, frame)
                or seq - start >= MAX_FRAGMENTS
            ):
                return None
            start -= 1
        end = seq
        while not self._pending[end].end:
            nxt = self._pending.get(end + 1)
            if nxt is None or not _same_frame(nxt, frame) or nxt.start:
                return None
            end += 1
        if end - start + 1 > MAX_FRAGMENTS:
            return None
        parts = [self._pending[s] for s in range(start, end + 1)]
        data = b"".join(p.payload for p in parts)
        return EncodedVideo(frame.timestamp, data, frame.keyframe, start, end)

    def _release(self, whole: EncodedVideo) -> list[EncodedVideo]:
        gap = self._next is None or whole.first_sequence != self._next
        older = [s for s in self._pending if s <= whole.last_sequence]
        lost_frames = len({self._pending[s].timestamp for s in older}) - 1
        for s in older:
            del self._pending[s]
        self.stats.dropped += lost_frames
        self._next = whole.last_sequence + 1
        if gap and not whole.keyframe:
            self.keyframe_needed = True
        if whole.keyframe:
            self.keyframe_needed = False
        if self.keyframe_needed:
            self.stats.skipped += 1
            return []
        self.stats.frames += 1
        return [whole]


def _same_frame(a: MediaFrame, b: MediaFrame) -> bool:
    return a.timestamp == b.timestamp and a.keyframe == b.keyframe
