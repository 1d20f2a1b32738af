"""VP8 through PyAV (libvpx): real-time encoding, keyframes periodically and on request.

The encoder takes PyAV ``VideoFrame`` objects of any size and pixel format (they are scaled to
the configured size in YUV 4:2:0) and returns at most one packet per frame (libvpx may drop a
frame to hold the bitrate). The decoder returns ``VideoFrame`` objects in YUV 4:2:0.
"""

from __future__ import annotations

import fractions
from dataclasses import dataclass

import av
import av.error
from av.video.frame import PictureType

from doorless.client.calls.media.errors import CodecDecodeError, MediaConfigError

_CODEC = "libvpx"

# The largest picture a decoder accepts: a peer's keyframe declaring 16383x16383 would make
# libvpx allocate ~400 MB before anything else could object.
MAX_DECODE_WIDTH, MAX_DECODE_HEIGHT = 1920, 1088


@dataclass(frozen=True, slots=True)
class VideoConfig:
    width: int = 320
    height: int = 240
    fps: int = 15
    bitrate: int = 300_000
    keyframe_interval: float = 5.0  # seconds between periodic keyframes

    def __post_init__(self) -> None:
        # 4:2:0 wants even sizes; receivers decode up to MAX_DECODE_WIDTH x MAX_DECODE_HEIGHT.
        for name, value, top in (
            ("width", self.width, MAX_DECODE_WIDTH),
            ("height", self.height, MAX_DECODE_HEIGHT),
        ):
            if not 16 <= value <= top or value % 2:
                raise MediaConfigError(f"video {name} {value} must be even, 16..{top}")
        if not 1 <= self.fps <= 60:
            raise MediaConfigError(f"video fps {self.fps} not in 1..60")
        if not 50_000 <= self.bitrate <= 8_000_000:
            raise MediaConfigError(f"video bitrate {self.bitrate} not in 50k..8M")
        if not 0.1 <= self.keyframe_interval <= 60:
            raise MediaConfigError(f"keyframe interval {self.keyframe_interval} not in 0.1..60 s")


@dataclass(frozen=True, slots=True)
class Vp8Packet:
    data: bytes
    keyframe: bool


class Vp8Encoder:
    def __init__(self, config: VideoConfig | None = None) -> None:
        self.config = config = config or VideoConfig()
        ctx = av.CodecContext.create(_CODEC, "w")
        assert isinstance(ctx, av.VideoCodecContext)
        ctx.width, ctx.height, ctx.pix_fmt = config.width, config.height, "yuv420p"
        ctx.time_base = fractions.Fraction(1, config.fps)
        ctx.framerate = fractions.Fraction(config.fps, 1)
        ctx.bit_rate = config.bitrate
        ctx.gop_size = max(1, round(config.keyframe_interval * config.fps))
        # One thread: at call sizes libvpx's worker threads cost more in hand-offs than they
        # save, and far more on a loaded machine (measured: 6 ms instead of ~100 ms a frame at
        # 320x240 with the two cores busy).
        ctx.thread_count = 1
        # Real time, no look-ahead (one frame in, at most one packet out); error resilient
        # so a lost frame damages less until the next keyframe.
        ctx.options = {
            "deadline": "realtime",
            "cpu-used": "8",
            "lag-in-frames": "0",
            "auto-alt-ref": "0",
            "error-resilient": "1",
        }
        ctx.open()
        self._ctx = ctx
        self._pts = 0
        self._keyframe_requested = False

    def request_keyframe(self) -> None:
        """Make the next encoded frame a keyframe (a receiver lost a frame or just joined)."""
        self._keyframe_requested = True

    def encode(self, frame: av.VideoFrame) -> Vp8Packet | None:
        c = self.config
        if frame.width != c.width or frame.height != c.height or frame.format.name != "yuv420p":
            frame = frame.reformat(width=c.width, height=c.height, format="yuv420p")
        else:
            # A copy (``reformat()`` with nothing to change returns the same object): the
            # caller's frame keeps its pts and type.
            frame = av.VideoFrame.from_ndarray(frame.to_ndarray(), format="yuv420p")
        frame.pts = self._pts
        self._pts += 1
        # libvpx makes a keyframe of any frame typed I, and a frame decoded from a file
        # carries its source's type (every frame of raw video is I): only a request may ask.
        frame.pict_type = PictureType.I if self._keyframe_requested else PictureType.NONE
        self._keyframe_requested = False
        packets = self._ctx.encode(frame)
        if not packets:
            return None
        if len(packets) != 1:
            raise MediaConfigError(f"libvpx returned {len(packets)} packets for one frame")
        return Vp8Packet(bytes(packets[0]), packets[0].is_keyframe)


def keyframe_size(data: bytes) -> tuple[int, int] | None:
    """The picture size a VP8 keyframe declares (RFC 6386 §9.1), or None for an interframe.

    A keyframe is a 3-byte frame tag whose lowest bit is 0, the start code 9d 01 2a, then
    width and height as 16-bit little-endian values whose low 14 bits are the size.
    """
    if len(data) < 10 or data[0] & 1:
        return None
    if data[3:6] != b"\x9d\x01\x2a":
        raise CodecDecodeError("VP8 keyframe without its start code")
    width = int.from_bytes(data[6:8], "little") & 0x3FFF
    height = int.from_bytes(data[8:10], "little") & 0x3FFF
    return width, height


class Vp8Decoder:
    """``decode(data)`` returns the frame or raises `CodecDecodeError` (counted in ``errors``);
    the decoder stays usable after a rejected packet. Keyframes larger than ``max_width`` x
    ``max_height`` are refused before libvpx sees them."""

    def __init__(
        self, max_width: int = MAX_DECODE_WIDTH, max_height: int = MAX_DECODE_HEIGHT
    ) -> None:
        self.max_width, self.max_height = max_width, max_height
        ctx = av.CodecContext.create(_CODEC, "r")
        assert isinstance(ctx, av.VideoCodecContext)
        ctx.thread_count = 1  # as the encoder: no thread hand-offs per frame
        ctx.open()
        self._ctx = ctx
        self.errors = 0

    def decode(self, data: bytes) -> av.VideoFrame:
        if not data:  # an empty packet would end the decoder
            return self._reject("empty VP8 frame")
        try:
            size = keyframe_size(data)
        except CodecDecodeError as e:
            return self._reject(str(e))
        if size is not None and (size[0] > self.max_width or size[1] > self.max_height):
            return self._reject(f"VP8 keyframe of {size[0]}x{size[1]} is too large")
        try:
            frames = self._ctx.decode(av.Packet(data))
        except av.error.FFmpegError as e:
            return self._reject(f"VP8 decoder rejected the frame: {e.strerror}")
        if len(frames) != 1:
            return self._reject(f"VP8 frame decoded to {len(frames)} pictures")
        frame = frames[0]
        assert isinstance(frame, av.VideoFrame)
        return frame

    def _reject(self, why: str) -> av.VideoFrame:
        self.errors += 1
        raise CodecDecodeError(why)
