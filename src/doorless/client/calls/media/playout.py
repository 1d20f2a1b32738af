"""Received audio to PCM: the jitter buffer, the Opus decoder and concealment together.

``push(frame, now)`` on every decrypted audio `MediaFrame`; ``pull(now)`` returns the 20 ms
`PlayedAudio` frames due by ``now`` (decoded, or concealed when the frame is lost, late or
undecodable) for the sink. ``stats`` has the counts the call reports.
"""

from __future__ import annotations

from dataclasses import dataclass

from doorless.client.calls.media.conceal import FadingConcealer
from doorless.client.calls.media.errors import CodecDecodeError
from doorless.client.calls.media.frame import MediaFrame
from doorless.client.calls.media.jitter import AudioJitterBuffer, Slot
from doorless.client.calls.media.opus import OpusDecoder


@dataclass(frozen=True, slots=True)
class PlayedAudio:
    """20 ms of PCM for the sink; ``concealed`` when it stands in for a missing frame."""

    sequence: int
    pcm: bytes
    concealed: bool
    inserted: bool = False  # an extra slot before ``sequence`` (the delay grew)


@dataclass(frozen=True, slots=True)
class PlayoutStats:
    received: int
    played: int  # frames decoded and played
    concealed: int  # slots filled by concealment (lost, late, undecodable, underrun)
    lost: int  # RFC 3550: expected - received
    late: int
    duplicate: int
    too_early: int
    dropped: int
    resyncs: int
    decode_errors: int
    jitter_ms: float
    target_delay_ms: float


class AudioPlayout:
    def __init__(
        self, jitter: AudioJitterBuffer | None = None, decoder: OpusDecoder | None = None
    ) -> None:
        self.jitter = jitter or AudioJitterBuffer()
        self._decoder = decoder or OpusDecoder()
        self._concealer = FadingConcealer()
        self._decode_errors = 0

    def push(self, frame: MediaFrame, now: float) -> None:
        self.jitter.push(frame, now)

    def pull(self, now: float) -> list[PlayedAudio]:
        """The audio due by ``now``, one entry per 20 ms slot, in order."""
        return [self._play(slot) for slot in self.jitter.pop(now)]

    def _play(self, slot: Slot) -> PlayedAudio:
        sequence, payload = slot.sequence, slot.payload
        if payload is not None:
            try:
                pcm = self._decoder.decode(payload)
            except CodecDecodeError:
                # Counted, and heard as a lost frame: a peer's bad packet never stops playout.
                self._decode_errors += 1
            else:
                return PlayedAudio(sequence, self._concealer.good(pcm), False)
        return PlayedAudio(sequence, self._concealer.conceal(), True, slot.inserted)

    @property
    def stats(self) -> PlayoutStats:
        j = self.jitter.stats
        return PlayoutStats(
            received=j.received,
            played=j.played - self._decode_errors,
            concealed=j.concealed + self._decode_errors,
            lost=j.lost,
            late=j.late,
            duplicate=j.duplicate,
            too_early=j.too_early,
            dropped=j.dropped,
            resyncs=j.resyncs,
            decode_errors=self._decode_errors,
            jitter_ms=j.jitter * 1000,
            target_delay_ms=j.target_delay * 1000,
        )
