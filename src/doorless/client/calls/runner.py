"""Running a call's media on one device: sources through the codecs and the engine to the
relay, and the relay through the engine, the jitter buffers and the codecs to the sinks.

* **Audio out** (``audio_in``: a `WavFileSource`, a `MicrophoneSource`): 20 ms frames of
  48 kHz mono PCM, Opus-encoded, one `MediaFrame` each, timestamped with the sender's wall
  clock (so the receiver can measure latency).
* **Video out** (``video_in``: a `VideoFileSource`): VP8 at `CALL_VIDEO`, split into
  fragments; a keyframe when a receiver asks for one (the engine's ``keyframe_listener``,
  rate-limited there) and every `KEYFRAME_INTERVAL` seconds as a fallback.
* **Audio in**: per sender an `AudioPlayout` (jitter buffer, Opus, concealment); every 20 ms
  the slots due are pulled and the senders' audio is summed into ``audio_out`` (a
  `WavFileSink`, a `SpeakerSink`).
* **Video in**: per sender a `VideoReassembler` and a `Vp8Decoder`; the frames of the first
  sender that sends video go to ``video_out`` (one file holds one picture). While a sender's
  video cannot be decoded (no keyframe yet, a lost fragment, a decoder error) the runner asks
  that sender for a keyframe (`CallEngine.request_keyframe`, rate-limited per sender).

``speed`` runs the whole call faster than real time (files only): the senders pace at
``speed`` × real time and the receivers' playout clock runs ``speed`` times faster, so jitter
buffers behave as in a real-time call. Statistics go to the engine (late frames from the
jitter buffers); the runner keeps the playout's own counts in `playout_stats`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import av

from doorless.client.calls.engine import CallEngine, Received
from doorless.client.calls.media import (
    AudioJitterBuffer,
    AudioPacketizer,
    AudioPlayout,
    CodecDecodeError,
    MediaFrame,
    OpusEncoder,
    PlayoutStats,
    StreamKind,
    VideoConfig,
    VideoPacketizer,
    VideoReassembler,
    Vp8Decoder,
    Vp8Encoder,
)
from doorless.client.calls.media.mix import mix_pcm
from doorless.client.events import DeviceRef
from doorless.errors import ConfigurationError, DoorlessError

# Periodic keyframes are only the fallback now that receivers ask for one when they cannot
# decode: every 5 s instead of every second cut the keyframes' share of the bitrate from 9.8 %
# to 2.1 % on the test video (10 s: 1.1 %), while a decoder that drifted without noticing
# (or a peer that never asks) still recovers within 5 s (docs/calls.md).
KEYFRAME_INTERVAL = 5.0
CALL_VIDEO = VideoConfig(
    width=320, height=240, fps=15, bitrate=300_000, keyframe_interval=KEYFRAME_INTERVAL
)
_TICK = 0.020  # one audio frame


class AudioSink(Protocol):
    def write(self, pcm: bytes) -> None: ...


class VideoSink(Protocol):
    def write(self, frame: av.VideoFrame) -> None: ...


@dataclass(slots=True)
class _VideoIn:
    reassembler: VideoReassembler = field(default_factory=VideoReassembler)
    decoder: Vp8Decoder = field(default_factory=Vp8Decoder)
    decoded: int = 0
    undecodable: int = 0


class MediaRunner:
    """The media of one call on this device (see the module docstring)."""

    def __init__(
        self,
        engine: CallEngine,
        *,
        audio_out: AudioSink | None = None,
        video_out: VideoSink | None = None,
        speed: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        track_out: Callable[[DeviceRef, bytes], None] | None = None,
        playout_delay: float = 0.06,
        max_playout_delay: float = 0.4,
        video_config: VideoConfig = CALL_VIDEO,
    ) -> None:
        if speed <= 0:
            raise ConfigurationError("speed must be positive")
        self.engine = engine
        self.audio_out = audio_out
        self.track_out = track_out  # each sender's played audio, before the mix
        # The jitter buffers' start and largest delay: short for a speaker, longer for a
        # recording (a file does not mind latency, and a loaded machine delivers late).
        self._delays = (playout_delay, max(playout_delay, max_playout_delay))
        self.video_out = video_out
        self.video_config = video_config
        self.speed = speed
        self._clock = clock
        self._start = clock()
        self._playouts: dict[DeviceRef, AudioPlayout] = {}
        self._video: dict[DeviceRef, _VideoIn] = {}
        self._video_sender: DeviceRef | None = None
        self.frames_written = 0
        self._keyframe_wanted = False
        self.video_frames_written = 0
        self.first_picture_at: float | None = None  # media time of the first decoded picture

    def now(self) -> float:
        """The call's media clock: real time × ``speed`` since the runner started."""
        return (self._clock() - self._start) * self.speed

    async def _sleep_until(self, media_time: float) -> None:
        delay = (media_time - self.now()) / self.speed
        if delay > 0:
            await asyncio.sleep(delay)

    # --- sending --------------------------------------------------------------------------

    def request_keyframe(self) -> None:
        """Make the next video frame a keyframe (a receiver asked for one)."""
        self._keyframe_wanted = True

    async def send_audio(
        self, source: Iterable[bytes], *, seconds: float | None = None, blocking: bool = False
    ) -> int:
        """Send ``source``'s frames (``blocking``: a device read in a thread); returns how
        many were sent (fewer if this device left the conversation)."""
        encoder, packetizer = OpusEncoder(), AudioPacketizer()
        limit = None if seconds is None else round(seconds / _TICK)
        frames: Iterator[bytes] = iter(source)
        start, sent = self.now(), 0
        while limit is None or sent < limit:
            pcm = await asyncio.to_thread(next, frames, None) if blocking else next(frames, None)
            if pcm is None:
                break
            frame = packetizer.packetize(encoder.encode(pcm), self.engine.timestamp())
            if not await self.engine.send(frame):
                break
            sent += 1
            if not blocking:
                await self._sleep_until(start + sent * _TICK)
        return sent

    async def send_video(
        self, source: Iterable[av.VideoFrame], *, seconds: float | None = None
    ) -> int:
        config = self.video_config
        encoder, packetizer = Vp8Encoder(config), VideoPacketizer()
        period = 1 / config.fps
        limit = None if seconds is None else round(seconds * config.fps)
        start, sent = self.now(), 0
        self.engine.keyframe_listener = self.request_keyframe
        try:
            for picture in source:
                if limit is not None and sent >= limit:
                    break
                if self._keyframe_wanted:
                    self._keyframe_wanted = False
                    encoder.request_keyframe()
                packet = await asyncio.to_thread(encoder.encode, picture)  # audio keeps flowing
                if packet is not None:
                    timestamp = self.engine.timestamp()
                    for frame in packetizer.packetize(packet.data, timestamp, packet.keyframe):
                        if not await self.engine.send(frame):
                            return sent
                sent += 1
                await self._sleep_until(start + sent * period)
        finally:
            self.engine.keyframe_listener = None
        return sent

    # --- receiving ------------------------------------------------------------------------

    async def receive(self) -> None:
        """Decrypt frames from the relay into the jitter buffers and the video decoders
        until the channel ends (or the task is cancelled)."""
        while True:
            try:
                data = await self.engine.channel.receive()
            except DoorlessError:
                return  # the relay connection ended
            received = await self.engine.open(data)
            for item in (*self.engine.released(), *((received,) if received else ())):
                await self._on_frame(item)

    async def _on_frame(self, received: Received) -> None:
        if received.frame.stream is StreamKind.audio:
            playout = self._playouts.get(received.sender)
            if playout is None:
                jitter = AudioJitterBuffer(self._delays[0], max_delay=self._delays[1])
                playout = self._playouts[received.sender] = AudioPlayout(jitter)
            playout.push(received.frame, self.now())
        elif self._on_video(received.sender, received.frame):
            # Joined, lost a fragment, or the decoder failed: ask (rate-limited per sender)
            # rather than wait for the periodic keyframe.
            await self.engine.request_keyframe(received.sender)

    def _on_video(self, sender: DeviceRef, frame: MediaFrame) -> bool:
        """Reassemble and decode; True while ``sender``'s video cannot be decoded."""
        state = self._video.get(sender)
        if state is None:
            state = self._video[sender] = _VideoIn()
        for whole in state.reassembler.push(frame):
            try:
                picture = state.decoder.decode(whole.data)
            except CodecDecodeError:
                state.undecodable += 1
                state.reassembler.need_keyframe()
                continue
            state.decoded += 1
            if self.first_picture_at is None:
                self.first_picture_at = self.now()
            self._video_sender = self._video_sender or sender
            if self.video_out is not None and sender == self._video_sender:
                self.video_out.write(picture)
                self.video_frames_written += 1
        return state.reassembler.keyframe_needed

    async def play(self) -> None:
        """Every 20 ms (media time), mix what the jitter buffers release into ``audio_out``."""
        tick = 0
        while True:
            tick += 1
            await self._sleep_until(tick * _TICK)
            self.pull()

    def pull(self, now: float | None = None) -> None:
        at = self.now() if now is None else now
        released = {ref: p.pull(at) for ref, p in self._playouts.items()}
        for ref, playout in self._playouts.items():
            stats = playout.stats
            self.engine.note_playout(ref, late=stats.late, concealed=stats.concealed)
        if self.track_out is not None:
            for ref, played in released.items():
                for p in played:
                    self.track_out(ref, p.pcm)
        longest = max((len(frames) for frames in released.values()), default=0)
        for i in range(longest):
            frames = [f[i].pcm for f in released.values() if i < len(f)]
            if self.audio_out is not None:
                self.audio_out.write(mix_pcm(frames))
                self.frames_written += 1

    def drain(self) -> None:
        """Play what is still buffered (at the end of the call)."""
        self.pull(self.now() + 0.3)

    def playout_stats(self) -> dict[DeviceRef, PlayoutStats]:
        return {ref: p.stats for ref, p in self._playouts.items()}


__all__ = ["CALL_VIDEO", "KEYFRAME_INTERVAL", "AudioSink", "MediaRunner", "VideoSink"]
