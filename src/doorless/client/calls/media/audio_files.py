"""Audio files: any file PyAV reads in (resampled to 48 kHz mono), WAV out.

`WavFileSource` opens the file at once (so a missing or unreadable file fails before the call
starts) and then yields 20 ms PCM frames, the last one padded with silence. `WavFileSink`
writes 16-bit 48 kHz mono WAV (the standard library's `wave` writes the container; no codec).
"""

from __future__ import annotations

import wave
from collections.abc import Iterator
from pathlib import Path

import av
import av.error

from doorless.client.calls.media.closing import Closing
from doorless.client.calls.media.errors import MediaConfigError, MediaFileError
from doorless.client.calls.media.opus import FRAME_BYTES, FRAME_SAMPLES, SAMPLE_RATE


class WavFileSource:
    """20 ms frames of 48 kHz mono s16 PCM from the first audio stream of ``path``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._container = av.open(str(self.path), "r")
        except (av.error.FFmpegError, OSError) as e:
            raise MediaFileError(f"cannot open {self.path.name} as audio: {e}") from None
        if not self._container.streams.audio:
            self._container.close()
            raise MediaFileError(f"{self.path.name} has no audio stream")
        self._read = False

    def __iter__(self) -> Iterator[bytes]:
        self._claim()
        resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        fifo = av.AudioFifo()
        try:
            for frame in self._container.decode(self._container.streams.audio[0]):
                for out in resampler.resample(frame):
                    fifo.write(out)
                yield from _drain(fifo, partial=False)
            for out in resampler.resample(None):
                fifo.write(out)
            yield from _drain(fifo, partial=True)
        except av.error.FFmpegError as e:
            raise MediaFileError(f"{self.path.name} is damaged: {e.strerror}") from None
        finally:
            self._container.close()

    def _claim(self) -> None:
        # A source is read once, front to back (it closes the file at the end).
        if self._read:
            raise MediaConfigError(f"{self.path.name} was already read or closed")
        self._read = True

    def close(self) -> None:
        self._read = True
        self._container.close()


def _drain(fifo: av.AudioFifo, partial: bool) -> Iterator[bytes]:
    while fifo.samples >= FRAME_SAMPLES or (partial and fifo.samples):
        frame = fifo.read(FRAME_SAMPLES, partial=True)
        if frame is None:
            return
        pcm = bytes(frame.planes[0])[: frame.samples * 2]
        yield pcm + bytes(FRAME_BYTES - len(pcm))


class WavFileSink(Closing):
    """Writes 20 ms PCM frames to a 16-bit 48 kHz mono WAV file (a context manager)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._file = self.path.open("wb")
        except OSError as e:
            raise MediaConfigError(f"cannot write {self.path.name}: {e.strerror}") from None
        self._wav = wave.open(self._file, "wb")  # noqa: SIM115 (closed by close())
        self._wav.setnchannels(1)
        self._wav.setsampwidth(2)
        self._wav.setframerate(SAMPLE_RATE)
        self.frames = 0

    def write(self, pcm: bytes) -> None:
        if len(pcm) % 2:
            raise MediaConfigError("PCM must be whole 16-bit samples")
        self._wav.writeframes(pcm)
        self.frames += 1

    def close(self) -> None:
        self._wav.close()  # writes the final header sizes; leaves the file to us
        self._file.close()
