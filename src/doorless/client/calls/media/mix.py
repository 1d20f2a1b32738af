"""Several participants' audio into one stream for one sink (a speaker, a WAV file).

`AudioMixer` keeps one `AudioPlayout` (jitter buffer, decoder, concealment) per sender and
sums their 20 ms frames on one schedule of its own: it starts when the first sender's first
frame plays, and ``pull(now)`` returns one mixed frame per 20 ms elapsed. A sender whose frames
are not there in time (joined later, stopped, behind) adds silence; a sender whose output runs
ahead of the mixer's schedule (clock drift) loses its oldest frames beyond ``max_queue``
(``overflow``). Samples are summed and clipped to 16 bits.
"""

from __future__ import annotations

from array import array
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from typing import Generic, TypeVar

from doorless.client.calls.media.conceal import SILENCE
from doorless.client.calls.media.errors import MediaConfigError
from doorless.client.calls.media.frame import MediaFrame
from doorless.client.calls.media.jitter import FRAME_SECONDS
from doorless.client.calls.media.opus import FRAME_BYTES
from doorless.client.calls.media.playout import AudioPlayout, PlayoutStats

K = TypeVar("K", bound=Hashable)
# At most this many mixed frames (1 s) per pull: after a pause of the caller (or a clock jump)
# the schedule skips ahead instead of returning a flood of silence.
MAX_BACKLOG = 50


def mix_pcm(frames: Sequence[bytes]) -> bytes:
    """Sum 20 ms PCM frames sample by sample, clipped to 16 bits."""
    if any(len(f) != FRAME_BYTES for f in frames):
        raise MediaConfigError(f"mixing takes {FRAME_BYTES}-byte frames")
    if not frames:
        return SILENCE
    if len(frames) == 1:
        return frames[0]
    channels = [array("h", f) for f in frames]
    total = [sum(samples) for samples in zip(*channels, strict=True)]
    return array("h", (max(-32768, min(32767, s)) for s in total)).tobytes()


class AudioMixer(Generic[K]):
    def __init__(
        self, make_playout: Callable[[], AudioPlayout] = AudioPlayout, max_queue: int = 5
    ) -> None:
        self._make_playout = make_playout
        self._max_queue = max_queue
        self._playouts: dict[K, AudioPlayout] = {}
        self._queues: dict[K, deque[bytes]] = {}
        self._start: float | None = None
        self._emitted = 0
        self.overflow = 0  # frames a sender produced beyond ``max_queue``, dropped
        self.skipped = 0  # mixer slots skipped after a long pause of the caller

    def push(self, sender: K, frame: MediaFrame, now: float) -> None:
        playout = self._playouts.get(sender)
        if playout is None:
            playout = self._playouts[sender] = self._make_playout()
            self._queues[sender] = deque()
        playout.push(frame, now)

    def remove(self, sender: K) -> None:
        """A participant left: its queued audio is dropped."""
        self._playouts.pop(sender, None)
        self._queues.pop(sender, None)

    def pull(self, now: float) -> list[bytes]:
        """The mixed 20 ms frames due by ``now``."""
        for sender, playout in self._playouts.items():
            queue = self._queues[sender]
            for played in playout.pull(now):
                queue.append(played.pcm)
                if self._start is None:
                    self._start = now
            while len(queue) > self._max_queue:
                queue.popleft()
                self.overflow += 1
        if self._start is None:
            return []
        due = int((now - self._start) / FRAME_SECONDS + 1e-9) + 1
        if due - self._emitted > MAX_BACKLOG:
            self.skipped += due - self._emitted - MAX_BACKLOG
            self._emitted = due - MAX_BACKLOG
        out = []
        while self._emitted < due:
            out.append(mix_pcm([q.popleft() for q in self._queues.values() if q]))
            self._emitted += 1
        return out

    @property
    def stats(self) -> dict[K, PlayoutStats]:
        return {sender: p.stats for sender, p in self._playouts.items()}
