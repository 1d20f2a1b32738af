"""Microphone and speaker through sounddevice (a typed error without PortAudio; the happy
path against a stand-in module), and pacing in real time or as fast as possible."""

from __future__ import annotations

import asyncio
import importlib
import sys
import types
from typing import Any

import pytest

from doorless.client.calls.media import (
    FRAME_BYTES,
    FRAME_SAMPLES,
    AudioDeviceUnavailable,
    MediaConfigError,
    MicrophoneSource,
    SpeakerSink,
    paced,
)


def _portaudio_present() -> bool:
    try:
        importlib.import_module("sounddevice")
    except OSError:
        return False
    return True


@pytest.mark.skipif(_portaudio_present(), reason="this machine has PortAudio")
def test_without_portaudio_devices_raise_a_typed_error() -> None:
    with pytest.raises(AudioDeviceUnavailable, match="PortAudio"):
        MicrophoneSource()
    with pytest.raises(AudioDeviceUnavailable):
        SpeakerSink()


class _FakeStream:
    def __init__(self, **kwargs: Any) -> None:
        assert kwargs["samplerate"] == 48_000 and kwargs["channels"] == 1
        assert kwargs["dtype"] == "int16" and kwargs["blocksize"] == FRAME_SAMPLES
        if kwargs["device"] == "missing":
            raise _FakeModule.PortAudioError("Invalid device")
        self.written: list[bytes] = []
        self.reads = 0

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def close(self) -> None:
        pass

    def read(self, frames: int) -> tuple[bytes, bool]:
        self.reads += 1
        return bytes([self.reads]) * (frames * 2), self.reads == 2

    def write(self, data: bytes) -> bool:
        self.written.append(data)
        return False


class _FakeModule(types.ModuleType):
    class PortAudioError(Exception):
        pass

    RawInputStream = _FakeStream
    RawOutputStream = _FakeStream


@pytest.fixture
def fake_sounddevice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sounddevice", _FakeModule("sounddevice"))


@pytest.mark.usefixtures("fake_sounddevice")
def test_microphone_yields_20ms_frames_and_counts_overflows() -> None:
    with MicrophoneSource() as mic:
        frames = [f for f, _ in zip(mic, range(3), strict=False)]
    assert [len(f) for f in frames] == [FRAME_BYTES] * 3
    assert frames[0][0] == 1 and frames[2][0] == 3
    assert mic.overflows == 1


@pytest.mark.usefixtures("fake_sounddevice")
def test_speaker_plays_20ms_frames_only() -> None:
    with SpeakerSink() as speaker:
        speaker.write(bytes(FRAME_BYTES))
        with pytest.raises(MediaConfigError):
            speaker.write(b"\x00\x01")
    assert speaker.underflows == 0


@pytest.mark.usefixtures("fake_sounddevice")
def test_a_device_portaudio_refuses_is_a_typed_error() -> None:
    with pytest.raises(AudioDeviceUnavailable, match="Invalid device"):
        SpeakerSink(device="missing")


def test_real_time_pacing_sleeps_to_the_schedule() -> None:
    now = [100.0]
    sleeps: list[float] = []

    async def sleep(delay: float) -> None:
        sleeps.append(round(delay, 6))
        now[0] += delay

    async def run() -> list[tuple[str, float]]:
        out = []
        async for item, t in paced("abcd", 0.02, clock=lambda: now[0], sleep=sleep):
            out.append((item, t))
            now[0] += 0.005  # the consumer's own work
        return out

    out = asyncio.run(run())
    assert out == [("a", 0.0), ("b", 0.02), ("c", 0.04), ("d", 0.06)]
    assert sleeps == [0.015, 0.015, 0.015]  # no drift: the work is absorbed


def test_as_fast_as_possible_never_sleeps() -> None:
    async def never(delay: float) -> None:
        raise AssertionError("slept")

    async def run() -> list[float]:
        return [t async for _, t in paced(range(3), 0.02, realtime=False, sleep=never)]

    assert asyncio.run(run()) == [0.0, 0.02, 0.04]
    with pytest.raises(MediaConfigError):
        asyncio.run(run_bad())


async def run_bad() -> None:
    async for _ in paced([1], 0):
        pass
