"""Test signals and similarity measures for call media (issue #13).

Signals are generated at test time (nothing big is committed):

* `speech_like(speaker, seconds)`: a "speaker" is a pitch and a rhythm; each syllable is a
  harmonic tone with a gliding pitch (a chirp) under a raised-cosine envelope, with short
  pauses, so the signal has speech's on/off structure and a speaker-specific spectrum.
* `moving_video(path, ...)`: a gradient background with a bright square that moves, written by
  PyAV in any container it writes (``.webm``, ``.mkv``, ``.mp4``, ``.y4m``).

Similarity (each proven to FAIL on silence, on another signal and on garbage in
``tests/client/calls/test_media_support.py``):

* `audio_similarity(reference, received)`: the received audio is aligned to the reference by
  the lag of the peak of their cross-correlation within +-1 s (codec delay, jitter-buffer
  delay, a receiver that started late), then the
  log-magnitude spectrograms (20 ms windows, 60 bands up to 8 kHz) are compared by Pearson
  correlation over time x frequency. Silence or near-silence scores 0. `AUDIO_THRESHOLD`
  is justified by the measurements documented in docs/calls.md ("Media").
* `video_similarity(reference, received)`: mean PSNR of the luma of paired frames (check the
  frame counts separately); `aligned_video_similarity` first finds the offset of the received
  frames into the reference; `VIDEO_PSNR_THRESHOLD` is justified like the audio one.
* `longest_hole_ms(received)`: the longest silence with sound right before and after it (a
  lost frame not concealed, in the middle of a syllable; a concealed one leaves none).
"""

from __future__ import annotations

import fractions
import itertools
import wave
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt

RATE = 48_000
Samples = npt.NDArray[np.int16]
Luma = npt.NDArray[np.uint8]

# Measured in docs/calls.md ("Media"): the same signal through Opus scores >= 0.9, another
# speaker 0.40, noise 0.16, silence 0 and garbage 0.01.
AUDIO_THRESHOLD = 0.7
# Measured in docs/calls.md: the same video through VP8 ~50 dB; another video 9 dB, the same
# video 5 frames off 12 dB, black 5 dB, random pixels 8.5 dB.
VIDEO_PSNR_THRESHOLD = 24.0

# Speakers: (base pitch Hz, syllable seconds, pause seconds, glide factor).
SPEAKERS: dict[str, tuple[float, float, float, float]] = {
    "alice": (220.0, 0.18, 0.07, 1.25),
    "bob": (130.0, 0.27, 0.11, 0.8),
    "carol": (330.0, 0.13, 0.05, 1.5),
}


def speech_like(speaker: str = "alice", seconds: float = 3.0, rate: int = RATE) -> Samples:
    """A deterministic speech-like signal for ``speaker`` (see the module docstring)."""
    pitch, syllable, pause, glide = SPEAKERS[speaker]
    rng = np.random.default_rng(sum(map(ord, speaker)))
    out = np.zeros(int(seconds * rate), dtype=np.float64)
    pos = 0
    while pos < out.size:
        n = min(int(syllable * rate * rng.uniform(0.7, 1.3)), out.size - pos)
        t = np.arange(n) / rate
        f0 = pitch * rng.uniform(0.8, 1.3)
        # A linear glide of the pitch: phase = integral of the instantaneous frequency.
        f1 = f0 * glide
        phase = 2 * np.pi * (f0 * t + (f1 - f0) * t * t / (2 * max(t[-1], 1e-9)))
        tone = sum(np.sin(k * phase) / k for k in (1, 2, 3, 4, 5))
        envelope = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / max(n - 1, 1))
        out[pos : pos + n] = tone * envelope
        pos += n + int(pause * rate * rng.uniform(0.5, 1.5))
    peak = float(np.max(np.abs(out))) or 1.0
    return (out / peak * 0.6 * 32767).astype(np.int16)


def white_noise(seconds: float = 3.0, seed: int = 1, rate: int = RATE) -> Samples:
    rng = np.random.default_rng(seed)
    return (rng.uniform(-0.5, 0.5, int(seconds * rate)) * 32767).astype(np.int16)


def silence(seconds: float = 3.0, rate: int = RATE) -> Samples:
    return np.zeros(int(seconds * rate), dtype=np.int16)


def write_wav(path: Path, samples: Samples, rate: int = RATE, channels: int = 1) -> Path:
    """Write mono ``samples`` as a 16-bit WAV, duplicated on ``channels`` channels."""
    data = np.repeat(samples[:, None], channels, axis=1) if channels > 1 else samples
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.ascontiguousarray(data, dtype="<i2").tobytes())
    return path


def read_wav(path: Path) -> tuple[Samples, int]:
    """Mono samples (the first channel) and the rate of a 16-bit WAV."""
    with wave.open(str(path), "rb") as w:
        channels, rate = w.getnchannels(), w.getframerate()
        assert w.getsampwidth() == 2, "16-bit WAV expected"
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return data.reshape(-1, channels)[:, 0].astype(np.int16), rate


def pcm_frames(samples: Samples, frame: int = 960) -> list[bytes]:
    """Split mono samples into 20 ms s16le frames (the last one zero-padded)."""
    pad = (-samples.size) % frame
    padded = np.concatenate([samples, np.zeros(pad, dtype=np.int16)])
    return [padded[i : i + frame].astype("<i2").tobytes() for i in range(0, padded.size, frame)]


def from_pcm(frames: list[bytes]) -> Samples:
    return np.frombuffer(b"".join(frames), dtype="<i2").astype(np.int16)


def best_lag(reference: Samples, received: Samples, max_lag: int = RATE) -> int:
    """The delay (in samples) of ``received`` behind ``reference``, in -max_lag..max_lag: the
    argmax of the cross-correlation, computed with an FFT. Negative: ``received`` starts
    later in the signal (the receiver joined late)."""
    a = reference.astype(np.float64)
    b = received.astype(np.float64)
    n = 1 << int(np.ceil(np.log2(a.size + b.size)))
    corr = np.fft.irfft(np.fft.rfft(b, n) * np.conj(np.fft.rfft(a, n)), n)
    # Index k holds lag k; index n - k holds lag -k.
    lags = np.concatenate([np.arange(0, max_lag + 1), np.arange(-max_lag, 0)])
    values = np.concatenate([corr[: max_lag + 1], corr[n - max_lag :]])
    return int(lags[int(np.argmax(values))])


def _log_spectrogram(x: npt.NDArray[np.float64], rate: int) -> npt.NDArray[np.float64]:
    win = rate // 50  # 20 ms
    frames = x[: (x.size // win) * win].reshape(-1, win) * np.hanning(win)
    spec = np.abs(np.fft.rfft(frames, axis=1))
    freqs = np.fft.rfftfreq(win, 1 / rate)
    edges = np.linspace(0, 8000, 61)
    bands = np.stack(
        [spec[:, (freqs >= lo) & (freqs < hi)].sum(axis=1) for lo, hi in itertools.pairwise(edges)],
        axis=1,
    )
    # A floor 60 dB under full scale, so silence is flat (and scores 0), not amplified noise.
    floor = win * 32767 * 1e-3
    return np.asarray(np.log10(bands + floor), dtype=np.float64)


def audio_similarity(reference: Samples, received: Samples, rate: int = RATE) -> float:
    """Spectral similarity in [-1, 1] after alignment (see the module docstring); 0 when
    either signal is (near) silent."""
    if received.size == 0 or reference.size == 0:
        return 0.0
    lag = best_lag(reference, received)
    b = received[max(lag, 0) :].astype(np.float64)
    a = reference[max(-lag, 0) :][: b.size].astype(np.float64)
    b = b[: a.size]
    if a.size < rate // 10 or _rms(a) < 30 or _rms(b) < 30:  # ~ -60 dBFS: silence
        return 0.0
    sa, sb = _log_spectrogram(a, rate).ravel(), _log_spectrogram(b, rate).ravel()
    sa, sb = sa - sa.mean(), sb - sb.mean()
    denom = float(np.sqrt((sa * sa).sum() * (sb * sb).sum()))
    return float((sa * sb).sum() / denom) if denom else 0.0


def _rms(x: npt.NDArray[np.float64]) -> float:
    return float(np.sqrt(np.mean(x * x)))


HOLE_WINDOW_MS = 5
SILENT_RMS = 30  # ~ -60 dBFS, as in `audio_similarity`
SOUND_RMS = 300  # ~ -40 dBFS


def longest_hole_ms(received: Samples, rate: int = RATE) -> int:
    """The longest hole in ``received``: a run of silent `HOLE_WINDOW_MS` windows with sound
    right before and right after it, in ms (0: none). `speech_like` has none (its syllables
    fade in and out), so a hole is silence where the input had sound: what a lost frame
    that is not concealed leaves in the middle of a syllable (the mixer plays silence for a
    sender with nothing to play: 20 ms, or 15 where the windows straddle its edges). A
    concealed loss is the frame before again, fading: no hole. It needs no alignment with
    the input, so a playout whose delay moved during the call (a slot inserted for a late
    frame, frames dropped to catch up) does not confuse it."""
    win = rate * HOLE_WINDOW_MS // 1000
    n = received.size // win
    x = received[: n * win].astype(np.float64).reshape(n, win)
    rms = np.sqrt(np.mean(x * x, axis=1))
    longest, i = 0, 0
    while i < n:
        if rms[i] >= SILENT_RMS:
            i += 1
            continue
        j = i
        while j < n and rms[j] < SILENT_RMS:
            j += 1
        if i > 0 and j < n and rms[i - 1] > SOUND_RMS and rms[j] > SOUND_RMS:
            longest = max(longest, (j - i) * HOLE_WINDOW_MS)
        i = j
    return longest


# -- video ---------------------------------------------------------------------------------


def moving_luma(index: int, width: int, height: int, variant: int = 0) -> Luma:
    """Frame ``index`` of a synthetic video: a gradient and a bright square moving across."""
    y, x = np.mgrid[0:height, 0:width]
    base = ((x * (1 + variant) + y * 2 + index * 3) % 200 + 20).astype(np.uint8)
    size = height // 4
    cx = (index * 7 * (1 + variant)) % max(width - size, 1)
    cy = (index * 3 + variant * height // 3) % max(height - size, 1)
    base[cy : cy + size, cx : cx + size] = 235 - 200 * (variant % 2)
    return np.asarray(base, dtype=np.uint8)


def moving_video(
    path: Path,
    frames: int = 30,
    width: int = 160,
    height: int = 120,
    fps: int = 15,
    variant: int = 0,
    codec: str | None = None,
) -> Path:
    """Write the synthetic video to ``path`` (codec from the extension unless given)."""
    suffix = path.suffix.lower()
    codec = codec or {".webm": "libvpx", ".y4m": "rawvideo", ".mkv": "ffv1"}.get(suffix, "mpeg4")
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = fractions.Fraction(1, fps)
        stream.codec_context.thread_count = 1  # fast on a loaded machine (see media/vp8.py)
        if codec == "libvpx":
            stream.codec_context.options = {"deadline": "realtime", "cpu-used": "8"}
        for i in range(frames):
            gray = moving_luma(i, width, height, variant)
            frame = av.VideoFrame.from_ndarray(gray, format="gray").reformat(format="yuv420p")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def luma_of(frame: av.VideoFrame) -> Luma:
    return np.asarray(frame.to_ndarray(format="gray"), dtype=np.uint8)


def read_video_luma(path: Path) -> list[Luma]:
    with av.open(str(path)) as container:
        return [luma_of(f) for f in container.decode(video=0)]


def psnr(a: Luma, b: Luma) -> float:
    """Peak signal-to-noise ratio of two luma planes, in dB (capped at 100)."""
    if a.shape != b.shape:
        return 0.0
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 100.0 if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def video_similarity(reference: list[Luma], received: list[Luma]) -> float:
    """Mean PSNR over paired frames (0 if there are none)."""
    pairs = list(zip(reference, received, strict=False))
    return sum(psnr(a, b) for a, b in pairs) / len(pairs) if pairs else 0.0


def aligned_video_similarity(
    reference: list[Luma], received: list[Luma], max_offset: int = 30
) -> tuple[float, int]:
    """The best mean PSNR over the offsets 0..max_offset of ``received`` into ``reference``
    (a receiver that joined late or waited for a keyframe starts later), and that offset."""
    scores = [
        (video_similarity(reference[k:], received), k)
        for k in range(min(max_offset, len(reference) - 1) + 1)
    ]
    return max(scores) if scores else (0.0, 0)


def iter_lumas(frames: Iterator[av.VideoFrame]) -> list[Luma]:
    return [luma_of(f) for f in frames]
