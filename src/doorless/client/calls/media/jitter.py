"""The audio jitter buffer: reorders frames by sequence number and releases one per 20 ms.

Pure logic: the caller passes the time (``now``, seconds on any monotonic clock) to every call.

Playout: the first frame received (sequence ``s0`` at time ``t0``) fixes the schedule; frame
``n`` is due at ``t0 + target_delay + (n - s0) * 20 ms``. `pop(now)` returns a `Slot` for every
sequence number due by ``now``, in order: the frame's payload if it arrived, else ``None`` (the
caller conceals it); adaptive mode may insert an extra concealed slot (``inserted``).
Counting follows RTP (RFC 3550 §6.4.1, appendix A.3 and A.8):

* ``lost`` = expected (highest - first + 1) - received, where received counts distinct frames
  (a frame that arrives too late still counts as received, as in RFC 3550); a sender's
  sequence numbers count the frames it sends, so a muted sender does not advance them;
* ``late``: arrived after its slot was played (concealed, then discarded);
* ``duplicate``: a sequence number already received;
* ``jitter``: the interarrival jitter estimate of RFC 3550 §6.4.1, in seconds.

The target delay is adaptive when ``adaptive=True``: when a slot has to be concealed while
the buffer is empty (an underrun: the frame was late, not lost) and the jitter estimate
says frames arrive later than the target, the schedule moves back by one frame (one concealed
slot, counted) up to ``max_delay``; when the buffer holds more than target + 3 frames (a burst
after a stall), the oldest frames are dropped (``dropped``) to bring the latency back down.

A stream that stops (the sender muted or left) is not concealed forever: after ``max_gap``
seconds with no frame and an empty buffer, `pop` stops emitting and the next frame to arrive
starts a new schedule (``resyncs``); if that frame's sequence number is far below the last
ones (more than `CAPACITY`), the sender restarted its numbering and a new run begins.
"""

from __future__ import annotations

from dataclasses import dataclass

from doorless.client.calls.media.errors import MediaConfigError
from doorless.client.calls.media.frame import MediaFrame
from doorless.client.calls.media.opus import FRAME_MS
from doorless.wire.calls import StreamKind

FRAME_SECONDS = FRAME_MS / 1000
# Frames held at most ahead of the playout point (2 s): a frame further ahead is refused
# ("too_early") so a peer cannot make the buffer grow without bound.
CAPACITY = 100
# Before the first slot is played, a frame up to this many sequence numbers earlier than the
# first one received moves the start back to it (reordering at the very start).
REORDER_AT_START = 10


@dataclass(frozen=True, slots=True)
class Slot:
    sequence: int
    payload: bytes | None  # None: lost or not there in time, conceal it
    # An extra slot played before ``sequence`` to grow the delay (adaptive mode): conceal it.
    inserted: bool = False


@dataclass(slots=True)
class JitterStats:
    received: int = 0
    played: int = 0
    concealed: int = 0
    late: int = 0
    duplicate: int = 0
    too_early: int = 0
    dropped: int = 0
    resyncs: int = 0
    lost: int = 0
    jitter: float = 0.0
    target_delay: float = 0.0


class AudioJitterBuffer:
    def __init__(
        self,
        target_delay: float = 0.06,
        *,
        adaptive: bool = True,
        max_delay: float = 0.4,
        max_gap: float = 0.5,
    ) -> None:
        if not 0 <= target_delay <= max_delay:
            raise MediaConfigError(f"target delay {target_delay} not in 0..{max_delay}")
        self.stats = JitterStats(target_delay=target_delay)
        self._adaptive = adaptive
        self._max_delay = max_delay
        self._max_gap = max_gap
        self._frames: dict[int, bytes] = {}
        self._seen: set[int] = set()  # sequence numbers received in the current window
        # RFC 3550 A.3 counting, per run of sequence numbers (a new run after a restart).
        self._first: int | None = None
        self._highest = -1
        self._received_run = 0
        self._lost_base = 0
        self._next = 0  # the next sequence number to play
        self._epoch_seq = 0  # schedule: sequence ``_epoch_seq`` is due at ``_epoch_time``
        self._epoch_time = 0.0
        self._last_arrival = 0.0
        self._transit: float | None = None
        self._playing = False
        self._started_playout = False

    def push(self, frame: MediaFrame, now: float) -> None:
        if frame.stream is not StreamKind.audio:
            raise MediaConfigError("the audio jitter buffer takes audio frames only")
        seq = frame.sequence
        if seq in self._seen:
            self.stats.duplicate += 1
            return
        if not self._playing and self._first is not None and seq < self._next - CAPACITY:
            self._restart_numbering()
        if self._reordered_at_start(seq):
            # Reordered before the first slot was played: start from this earlier frame, at
            # the time planned for the first one (the schedule moves later, nothing is lost).
            due = self._due(self._next)
            self._next = self._epoch_seq = seq
            self._epoch_time = due
        if self._first is not None and seq < self._next:
            if seq >= self._next - CAPACITY:  # older ones could be replays we no longer track
                self._count_arrival(seq, now)
            self.stats.late += 1
            return
        if not self._playing:
            self._start(seq, now)
        if seq >= self._next + CAPACITY:
            self.stats.too_early += 1
            return
        self._count_arrival(seq, now)
        self._frames[seq] = frame.payload
        if self._adaptive and len(self._frames) > self._target_frames() + 3:
            self._catch_up()

    def pop(self, now: float) -> list[Slot]:
        """Every slot due by ``now``, in sequence order."""
        slots: list[Slot] = []
        while self._playing and self._due(self._next) <= now:
            if not self._frames and now - self._last_arrival > self._max_gap:
                # The stream stopped: wait for it to come back. The slots concealed past the
                # highest frame were never sent, so the next frame is not late.
                self._playing = False
                self.stats.concealed -= self._next - (self._highest + 1)
                self._next = self._highest + 1
                break
            payload = self._frames.pop(self._next, None)
            if payload is None:
                self.stats.concealed += 1
                if self._adaptive and not self._frames and self._should_grow():
                    # An underrun: this frame is late, not lost; play it one slot later.
                    self._epoch_time += FRAME_SECONDS
                    self.stats.target_delay += FRAME_SECONDS
                    slots.append(Slot(self._next, None, inserted=True))
                    continue
            else:
                self.stats.played += 1
            slots.append(Slot(self._next, payload))
            self._next += 1
            self._started_playout = True
        self._seen = {s for s in self._seen if s >= self._next - CAPACITY}
        return slots

    @property
    def depth(self) -> int:
        """Frames waiting to be played."""
        return len(self._frames)

    def _reordered_at_start(self, seq: int) -> bool:
        return (
            self._playing
            and not self._started_playout
            and self._next - REORDER_AT_START <= seq < self._next
        )

    def _restart_numbering(self) -> None:
        """After a stop, a frame far below the last ones: the sender numbers a new run from a
        new start (it restarted sending). The losses counted so far are kept."""
        self._lost_base = self.stats.lost
        self._first, self._highest, self._received_run = None, -1, 0
        self._seen.clear()
        self.stats.resyncs += 1

    def _start(self, seq: int, now: float) -> None:
        if self._first is not None:
            self.stats.resyncs += 1
        self._playing = True
        self._started_playout = False
        self._next = self._epoch_seq = seq
        self._epoch_time = now + self.stats.target_delay
        self._frames.clear()

    def _due(self, seq: int) -> float:
        return self._epoch_time + (seq - self._epoch_seq) * FRAME_SECONDS

    def _count_arrival(self, seq: int, now: float) -> None:
        self._seen.add(seq)
        self.stats.received += 1
        self._received_run += 1
        self._first = seq if self._first is None else min(self._first, seq)
        self._highest = max(self._highest, seq)
        expected = self._highest - self._first + 1
        self.stats.lost = self._lost_base + max(0, expected - self._received_run)
        self._last_arrival = now
        # RFC 3550 §6.4.1: J += (|D| - J) / 16, D the change in transit time; the media clock
        # is the sequence number times the frame duration.
        transit = now - seq * FRAME_SECONDS
        if self._transit is not None:
            self.stats.jitter += (abs(transit - self._transit) - self.stats.jitter) / 16
        self._transit = transit

    def _target_frames(self) -> int:
        return round(self.stats.target_delay / FRAME_SECONDS)

    def _should_grow(self) -> bool:
        return (
            self.stats.target_delay + FRAME_SECONDS <= self._max_delay
            and 3 * self.stats.jitter > self.stats.target_delay
        )

    def _catch_up(self) -> None:
        """Drop the oldest frames down to target + 1 and play the next one at the time the
        first dropped one was due: the latency shrinks by the frames dropped."""
        while len(self._frames) > self._target_frames() + 1:
            oldest = min(self._frames)
            del self._frames[oldest]
            self.stats.dropped += 1
            due = self._due(self._next)
            self._next = self._epoch_seq = oldest + 1
            self._epoch_time = due
