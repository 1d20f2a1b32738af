"""Running a call's audio: a PCM source through Opus and the engine to the relay, and the
relay through the engine and Opus to a mix of every other participant.

* **Sending**: 20 ms frames of 48 kHz mono PCM from ``source`` (a WAV file, the microphone:
  `doorless.client.calls.media`), Opus-encoded, one `MediaFrame` each with the sender's wall
  clock as timestamp, paced at ``speed`` × real time (0: as fast as the relay accepts, for
  files).
* **Receiving**: each decrypted frame goes to `AudioMix`: per sender its own Opus decoder,
  frames placed on the call's timeline by the sender's frame number; a frame that never came
  is concealed (the sender's previous frame at half amplitude, then silence) and counted as
  lost in the engine's statistics; a frame that came after the mix was written past it is
  counted late.

The mix is written at the end (a file) or pulled as it fills (a speaker).
"""

from __future__ import annotations

import array
import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from doorless.client.calls.engine import CallEngine
from doorless.client.calls.media import (
    FRAME_BYTES,
    FRAME_SAMPLES,
    CodecDecodeError,
    MediaFrame,
    OpusDecoder,
    OpusEncoder,
    StreamKind,
)
from doorless.client.events import DeviceRef
from doorless.errors import DoorlessError

_SILENCE = bytes(FRAME_BYTES)


def _quieter(pcm: bytes) -> bytes:
    samples = array.array("h", pcm)
    return array.array("h", (s // 2 for s in samples)).tobytes()


@dataclass(slots=True)
class _Track:
    decoder: OpusDecoder = field(default_factory=OpusDecoder)
    frames: dict[int, bytes] = field(default_factory=dict)  # frame number -> PCM
    first: int | None = None
    concealed: int = 0


class AudioMix:
    """Every other participant's audio on one timeline (see the module docstring)."""

    def __init__(self) -> None:
        self.tracks: dict[DeviceRef, _Track] = {}
        self.undecodable = 0

    def add(self, sender: DeviceRef, frame: MediaFrame) -> None:
        track = self.tracks.get(sender)
        if track is None:
            track = self.tracks[sender] = _Track()
        if frame.sequence in track.frames:
            return
        try:
            pcm = track.decoder.decode(frame.payload)
        except CodecDecodeError:
            self.undecodable += 1
            return
        track.frames[frame.sequence] = pcm
        track.first = frame.sequence if track.first is None else min(track.first, frame.sequence)

    def track_pcm(self, sender: DeviceRef) -> bytes:
        """One sender's audio from its first frame to its last, losses concealed."""
        track = self.tracks[sender]
        if track.first is None:
            return b""
        out, previous, concealed = [], _SILENCE, 0
        for number in range(track.first, max(track.frames) + 1):
            pcm = track.frames.get(number)
            if pcm is None:
                concealed += 1
                pcm = _quieter(previous) if concealed == 1 else _SILENCE
                previous = pcm
            else:
                concealed = 0
                previous = pcm
            out.append(pcm)
        return b"".join(out)

    def mixed(self) -> bytes:
        """All tracks summed (clipped to 16 bits), each from the start of the mix."""
        tracks = [array.array("h", self.track_pcm(s)) for s in sorted(self.tracks)]
        length = max((len(t) for t in tracks), default=0)
        total = array.array("h", bytes(2 * length))
        for t in tracks:
            for i, v in enumerate(t):
                total[i] = max(-32768, min(32767, total[i] + v))
        return total.tobytes()


async def send_audio(
    engine: CallEngine,
    source: Iterable[bytes],
    *,
    speed: float = 1.0,
    seconds: float | None = None,
    stop: asyncio.Event | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Encode and send ``source``'s 20 ms frames; returns how many were sent."""
    encoder = OpusEncoder()
    start = clock()
    sent = 0
    limit = None if seconds is None else int(seconds * 1000 / 20)
    for number, pcm in enumerate(source):
        if (limit is not None and number >= limit) or (stop is not None and stop.is_set()):
            break
        if len(pcm) != FRAME_BYTES:
            pcm = pcm.ljust(FRAME_BYTES, b"\0")[:FRAME_BYTES]
        frame = MediaFrame(StreamKind.AUDIO, number, engine.timestamp(), encoder.encode(pcm))
        if not await engine.send(frame):
            break  # this device is no longer in the conversation
        sent += 1
        if speed > 0:
            delay = start + (number + 1) * 0.020 / speed - clock()
            if delay > 0:
                await asyncio.sleep(delay)
        elif number % 16 == 15:
            await asyncio.sleep(0)  # let the receive side run
    return sent


async def receive_audio(engine: CallEngine, mix: AudioMix) -> None:
    """Decrypt frames from the relay into ``mix`` until the channel ends (or cancelled)."""
    while True:
        try:
            data = await engine.channel.receive()
        except DoorlessError:
            return  # the relay connection ended
        received = await engine.open(data)
        if received is not None and received.frame.stream is StreamKind.AUDIO:
            mix.add(received.sender, received.frame)


def frames_of(pcm: bytes) -> list[bytes]:
    """48 kHz mono s16 PCM in 20 ms frames (the last one padded with silence)."""
    return [
        pcm[i : i + FRAME_BYTES].ljust(FRAME_BYTES, b"\0")
        for i in range(0, len(pcm), FRAME_SAMPLES * 2)
    ]


__all__ = ["AudioMix", "frames_of", "receive_audio", "send_audio"]
