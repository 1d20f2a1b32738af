"""Live statistics of a call, per participant (docs/calls.md).

Counted by the receiver from what the relay delivers: frames received, lost (gaps in the
sender's frame numbers that never filled), late (arrived after the jitter buffer played past
them), concealed (20 ms slots the playout filled in for a missing frame), failed to decrypt
by reason (``tampered``, ``replayed``, ``unknown_kid``, ``malformed``), latency (the
sender's clock at encryption to this device's clock at decryption: meaningful on one machine
or with synchronised clocks) and received bitrate.
Keyframe requests are counted per pair: on another participant's row, ``sent`` are this
device's requests to them, ``received`` theirs to this device, ``honoured`` those of theirs
that made this device's next video frame a keyframe (the others were rate-limited, or this
device sends no video).
"""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, field

_LATENCY_SAMPLES = 4096  # the latest samples kept for percentiles


class FailureKind:
    """Why a frame from the relay was dropped before the jitter buffer."""

    TAMPERED = "tampered"  # the tag did not verify (altered, forged, or a key we lack)
    REPLAYED = "replayed"  # a CTR already accepted, or too old for the replay window
    UNKNOWN_KID = "unknown_kid"  # no key for the KID (not a member, or an expired epoch)
    MALFORMED = "malformed"  # not an SFrame frame, or not a media frame inside


@dataclass(frozen=True, slots=True)
class ParticipantStats:
    """One participant's frames as this device saw them (``sent`` only for this device)."""

    user: str
    device_id: str
    frames_sent: int = 0
    frames_received: int = 0
    frames_lost: int = 0
    frames_late: int = 0
    frames_concealed: int = 0
    decrypt_failures: dict[str, int] = field(default_factory=dict)
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    bitrate_kbps: float = 0.0
    keyframe_requests_sent: int = 0
    keyframe_requests_received: int = 0
    keyframe_requests_honoured: int = 0

    def to_json(self) -> dict[str, object]:
        return {
            "user": self.user,
            "device_id": self.device_id,
            "frames_sent": self.frames_sent,
            "frames_received": self.frames_received,
            "frames_lost": self.frames_lost,
            "frames_late": self.frames_late,
            "frames_concealed": self.frames_concealed,
            "failed_to_decrypt": sum(self.decrypt_failures.values()),
            "decrypt_failures": dict(sorted(self.decrypt_failures.items())),
            "latency_p50_ms": self.latency_p50_ms,
            "latency_p95_ms": self.latency_p95_ms,
            "bitrate_kbps": round(self.bitrate_kbps, 1),
            "keyframe_requests_sent": self.keyframe_requests_sent,
            "keyframe_requests_received": self.keyframe_requests_received,
            "keyframe_requests_honoured": self.keyframe_requests_honoured,
        }


def percentile(sorted_values: list[float], q: float) -> float | None:
    """The nearest-rank ``q`` percentile (0 < q <= 100) of sorted values, or None."""
    if not sorted_values:
        return None
    rank = max(1, -(-len(sorted_values) * q // 100))
    return sorted_values[int(rank) - 1]


class Meter:
    """The running counters of one participant."""

    def __init__(self, user: str, device_id: str) -> None:
        self.user = user
        self.device_id = device_id
        self.sent = 0
        self.received = 0
        self.late = 0
        self.concealed = 0
        self.failures: Counter[str] = Counter()
        self.bytes_received = 0
        self.keyframe_requests_sent = 0  # by this device to this participant
        self.keyframe_requests_received = 0  # from this participant to this device
        self.keyframe_requests_honoured = 0
        self.first_at: float | None = None
        self.last_at: float | None = None
        self._latencies: list[float] = []
        self._recent: list[float] = []
        self._highest: dict[int, int] = {}  # stream -> highest frame number
        self._lowest: dict[int, int] = {}
        self._seen: dict[int, int] = {}

    def on_frame(self, stream: int, number: int, size: int, latency_ms: float, now: float) -> None:
        self.received += 1
        self.bytes_received += size
        self.first_at = now if self.first_at is None else self.first_at
        self.last_at = now
        self._highest[stream] = max(self._highest.get(stream, number), number)
        self._lowest[stream] = min(self._lowest.get(stream, number), number)
        self._seen[stream] = self._seen.get(stream, 0) + 1
        self._recent.append(latency_ms)
        if len(self._recent) > _LATENCY_SAMPLES:
            del self._recent[0]
        bisect.insort(self._latencies, latency_ms)
        if len(self._latencies) > _LATENCY_SAMPLES:
            self._latencies = sorted(self._recent)

    def lost(self) -> int:
        """Frames that never arrived: per stream, the span of numbers seen minus those seen
        (a duplicate never counts twice: the replay window drops it first)."""
        return sum(
            max(0, self._highest[s] - self._lowest[s] + 1 - self._seen[s]) for s in self._seen
        )

    def snapshot(self) -> ParticipantStats:
        seconds = (
            (self.last_at - self.first_at)
            if self.first_at is not None and self.last_at is not None
            else 0.0
        )
        return ParticipantStats(
            user=self.user,
            device_id=self.device_id,
            frames_sent=self.sent,
            frames_received=self.received,
            frames_lost=self.lost(),
            frames_late=self.late,
            frames_concealed=self.concealed,
            decrypt_failures=dict(self.failures),
            latency_p50_ms=percentile(self._latencies, 50),
            latency_p95_ms=percentile(self._latencies, 95),
            bitrate_kbps=(8 * self.bytes_received / seconds / 1000) if seconds > 0 else 0.0,
            keyframe_requests_sent=self.keyframe_requests_sent,
            keyframe_requests_received=self.keyframe_requests_received,
            keyframe_requests_honoured=self.keyframe_requests_honoured,
        )


__all__ = ["FailureKind", "Meter", "ParticipantStats", "percentile"]
