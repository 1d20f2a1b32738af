"""The default microphone and speaker through `sounddevice` (PortAudio).

`sounddevice` is imported only when a device is opened: on a machine without PortAudio its
import raises ``OSError``, which becomes `AudioDeviceUnavailable` (a typed error the CLI can
show), so files keep working everywhere. Both devices run at 48 kHz mono s16 with 20 ms blocks;
the microphone paces its source in real time by itself.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from types import ModuleType
from typing import Any

from doorless.client.calls.media.closing import Closing
from doorless.client.calls.media.errors import AudioDeviceUnavailable, MediaConfigError
from doorless.client.calls.media.opus import FRAME_BYTES, FRAME_SAMPLES, SAMPLE_RATE


def _sounddevice() -> ModuleType:
    try:
        return importlib.import_module("sounddevice")
    except OSError as e:  # sounddevice's import fails this way when PortAudio is missing
        raise AudioDeviceUnavailable(f"no audio device: PortAudio is not available ({e})") from None


def _open(kind: str, device: int | str | None) -> Any:
    sd = _sounddevice()
    stream_class = sd.RawInputStream if kind == "input" else sd.RawOutputStream
    try:
        stream = stream_class(
            samplerate=SAMPLE_RATE,
            channels=1,
            dtype="int16",
            blocksize=FRAME_SAMPLES,
            device=device,
        )
        stream.start()
    except (sd.PortAudioError, ValueError) as e:
        raise AudioDeviceUnavailable(f"no usable audio {kind} device: {e}") from None
    return stream


class _Device(Closing):
    def __init__(self, kind: str, device: int | str | None) -> None:
        self._stream = _open(kind, device)

    def close(self) -> None:
        self._stream.stop()
        self._stream.close()


class MicrophoneSource(_Device):
    """20 ms PCM frames from the default (or the given) input device, as they are captured.

    ``overflows`` counts blocks PortAudio reported as overflowed (the reader fell behind)."""

    def __init__(self, device: int | str | None = None) -> None:
        super().__init__("input", device)
        self.overflows = 0

    def __iter__(self) -> Iterator[bytes]:
        while True:
            data, overflowed = self._stream.read(FRAME_SAMPLES)
            self.overflows += bool(overflowed)
            yield bytes(data)


class SpeakerSink(_Device):
    """Plays 20 ms PCM frames on the default (or the given) output device.

    ``underflows`` counts blocks PortAudio reported as underflowed (playout fell behind)."""

    def __init__(self, device: int | str | None = None) -> None:
        super().__init__("output", device)
        self.underflows = 0

    def write(self, pcm: bytes) -> None:
        if len(pcm) != FRAME_BYTES:
            raise MediaConfigError(f"the speaker takes {FRAME_BYTES}-byte frames")
        self.underflows += bool(self._stream.write(pcm))
