"""Video files: any file PyAV reads in, WebM (VP8), Matroska (FFV1, lossless) or Y4M out.

`VideoFileSource` opens the file at once and then yields ``VideoFrame`` objects at the call's
frame rate and size (a frame is repeated or skipped to map the file's timing onto the call's
rate). `VideoFileSink` writes the frames it is given, one per 1/fps.
"""

from __future__ import annotations

import fractions
from collections.abc import Iterator
from pathlib import Path

import av
import av.error

from doorless.client.calls.media.closing import Closing
from doorless.client.calls.media.errors import MediaConfigError, MediaFileError
from doorless.client.calls.media.vp8 import VideoConfig

# Times closer than this are equal: containers round timestamps (Matroska to milliseconds).
_EPSILON = 1e-3
# Output container by file extension: (format, codec).
SINK_FORMATS: dict[str, tuple[str, str]] = {
    ".webm": ("webm", "libvpx"),
    ".mkv": ("matroska", "ffv1"),
    ".y4m": ("yuv4mpegpipe", "rawvideo"),
}


class VideoFileSource:
    def __init__(self, path: str | Path, config: VideoConfig | None = None) -> None:
        self.path = Path(path)
        self.config = config or VideoConfig()
        try:
            self._container = av.open(str(self.path), "r")
        except (av.error.FFmpegError, OSError) as e:
            raise MediaFileError(f"cannot open {self.path.name} as video: {e}") from None
        if not self._container.streams.video:
            self._container.close()
            raise MediaFileError(f"{self.path.name} has no video stream")
        self._read = False

    def __iter__(self) -> Iterator[av.VideoFrame]:
        self._claim()
        stream = self._container.streams.video[0]
        stream.codec_context.thread_count = 1  # see vp8.py
        rate = stream.average_rate or stream.guessed_rate or fractions.Fraction(self.config.fps)
        period = 1 / float(rate)
        slot = 0  # the call's frame number: slot k shows the file at time k / fps
        previous: tuple[av.VideoFrame, float] | None = None
        try:
            for index, frame in enumerate(self._container.decode(stream)):
                t = float(frame.time) if frame.time is not None else index * period
                if previous is not None:
                    while self._slot_time(slot) < t - _EPSILON:
                        yield self._scaled(previous[0])
                        slot += 1
                previous = (frame, t)
            if previous is not None:
                while self._slot_time(slot) < previous[1] + period - _EPSILON:
                    yield self._scaled(previous[0])
                    slot += 1
        except av.error.FFmpegError as e:
            raise MediaFileError(f"{self.path.name} is damaged: {e.strerror}") from None
        finally:
            self._container.close()

    def _slot_time(self, slot: int) -> float:
        return slot / self.config.fps

    def _scaled(self, frame: av.VideoFrame) -> av.VideoFrame:
        c = self.config
        return frame.reformat(width=c.width, height=c.height, format="yuv420p")

    def _claim(self) -> None:
        # A source is read once, front to back (it closes the file at the end).
        if self._read:
            raise MediaConfigError(f"{self.path.name} was already read or closed")
        self._read = True

    def close(self) -> None:
        self._read = True
        self._container.close()


class VideoFileSink(Closing):
    """Writes frames to ``path``; the container and codec follow the extension
    (`SINK_FORMATS`)."""

    def __init__(self, path: str | Path, config: VideoConfig | None = None) -> None:
        self.path = Path(path)
        self.config = c = config or VideoConfig()
        fmt = SINK_FORMATS.get(self.path.suffix.lower())
        if fmt is None:
            raise MediaConfigError(f"video output must end in one of {', '.join(SINK_FORMATS)}")
        try:
            self._container = av.open(str(self.path), "w", format=fmt[0])
        except (av.error.FFmpegError, OSError) as e:
            raise MediaConfigError(f"cannot write {self.path.name}: {e}") from None
        stream = self._container.add_stream(fmt[1], rate=c.fps)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height, stream.pix_fmt = c.width, c.height, "yuv420p"
        stream.time_base = fractions.Fraction(1, c.fps)
        stream.codec_context.thread_count = 1  # see vp8.py
        if fmt[1] == "libvpx":
            stream.bit_rate = c.bitrate * 4  # an archive copy: keep more than the call sent
            stream.codec_context.options = {"deadline": "realtime", "cpu-used": "8"}
        self._stream = stream
        self._open = True
        self.frames = 0

    def write(self, frame: av.VideoFrame) -> None:
        if not self._open:
            raise MediaConfigError(f"{self.path.name} is closed")
        c = self.config
        out = frame.reformat(width=c.width, height=c.height, format="yuv420p")
        out.pts = self.frames
        out.time_base = fractions.Fraction(1, c.fps)
        self._container.mux(self._stream.encode(out))
        self.frames += 1

    def close(self) -> None:
        if self._open:
            self._open = False
            self._container.mux(self._stream.encode(None))
            self._container.close()
