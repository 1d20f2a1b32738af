"""Opus through PyAV (libopus): 48 kHz mono, 20 ms frames, one packet per frame.

PCM everywhere in this package is signed 16-bit little-endian mono at 48 kHz; one frame is
`FRAME_SAMPLES` samples (`FRAME_BYTES` bytes).
"""

from __future__ import annotations

import fractions

import av
import av.error

from doorless.client.calls.media.errors import CodecDecodeError, MediaConfigError

SAMPLE_RATE = 48_000
FRAME_MS = 20
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000  # 960
FRAME_BYTES = FRAME_SAMPLES * 2
DEFAULT_BITRATE = 32_000
# RFC 6716 §2.1.1: Opus runs from 6 kb/s to 510 kb/s; above 256 kb/s a 20 ms mono packet
# could outgrow one datagram (media frame budget).
MIN_BITRATE, MAX_BITRATE = 6_000, 256_000
_CODEC = "libopus"


class OpusEncoder:
    """``encode(pcm)`` turns one 20 ms PCM frame into one Opus packet."""

    def __init__(self, bitrate: int = DEFAULT_BITRATE) -> None:
        if not MIN_BITRATE <= bitrate <= MAX_BITRATE:
            raise MediaConfigError(f"Opus bitrate {bitrate} not in {MIN_BITRATE}..{MAX_BITRATE}")
        ctx = av.CodecContext.create(_CODEC, "w")
        assert isinstance(ctx, av.AudioCodecContext)
        ctx.sample_rate = SAMPLE_RATE
        ctx.layout = "mono"
        ctx.format = "s16"
        ctx.bit_rate = bitrate
        ctx.time_base = fractions.Fraction(1, SAMPLE_RATE)
        # "voip" favours speech intelligibility (RFC 6716 §2.1.5); 20 ms frames.
        ctx.options = {"frame_duration": str(FRAME_MS), "application": "voip"}
        ctx.open()
        self.bitrate = bitrate
        self._ctx = ctx
        self._pts = 0

    def encode(self, pcm: bytes) -> bytes:
        if len(pcm) != FRAME_BYTES:
            raise MediaConfigError(f"an Opus frame is {FRAME_BYTES} bytes of PCM, got {len(pcm)}")
        frame = av.AudioFrame(format="s16", layout="mono", samples=FRAME_SAMPLES)
        frame.planes[0].update(pcm)
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._pts
        self._pts += FRAME_SAMPLES
        packets = self._ctx.encode(frame)
        # libopus has no frame delay at this setting: one frame in, one packet out.
        if len(packets) != 1:
            raise MediaConfigError(f"libopus returned {len(packets)} packets for one frame")
        return bytes(packets[0])


class OpusDecoder:
    """``decode(packet)`` returns one 20 ms PCM frame or raises `CodecDecodeError`.

    A rejected packet leaves the decoder usable; ``errors`` counts them.
    """

    def __init__(self) -> None:
        ctx = av.CodecContext.create(_CODEC, "r")
        assert isinstance(ctx, av.AudioCodecContext)
        ctx.sample_rate = SAMPLE_RATE
        ctx.layout = "mono"
        ctx.open()
        self._ctx = ctx
        self.errors = 0

    def decode(self, packet: bytes) -> bytes:
        # An empty packet would flush (end) the decoder for good: refuse it first.
        if not packet:
            return self._reject("empty Opus packet")
        try:
            frames = self._ctx.decode(av.Packet(packet))
        except av.error.FFmpegError as e:
            return self._reject(f"Opus decoder rejected the packet: {e.strerror}")
        pcm = b"".join(_s16_mono(f) for f in frames)
        if len(pcm) != FRAME_BYTES:
            return self._reject(f"Opus packet decoded to {len(pcm) // 2} samples, not 20 ms")
        return pcm

    def _reject(self, why: str) -> bytes:
        self.errors += 1
        raise CodecDecodeError(why)


def _s16_mono(frame: av.AudioFrame) -> bytes:
    if frame.format.name != "s16" or frame.layout.nb_channels != 1:
        raise CodecDecodeError(f"unexpected decoder output {frame.format.name}/{frame.layout.name}")
    # A plane's buffer can be padded beyond the samples it holds.
    return bytes(frame.planes[0])[: frame.samples * 2]
