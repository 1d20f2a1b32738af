"""Mixing several senders: each through its own playout, summed on one schedule."""

from __future__ import annotations

from array import array

import pytest

from doorless.client.calls.media import (
    FRAME_BYTES,
    AudioMixer,
    AudioPacketizer,
    MediaConfigError,
    MediaFrame,
    OpusEncoder,
    mix_pcm,
)
from doorless.client.calls.media.mix import MAX_BACKLOG
from support.media import AUDIO_THRESHOLD, audio_similarity, from_pcm, pcm_frames, speech_like


def _frames(speaker: str, seconds: float) -> list[MediaFrame]:
    encoder, packetizer = OpusEncoder(), AudioPacketizer()
    return [
        packetizer.packetize(encoder.encode(p), i * 20_000)
        for i, p in enumerate(pcm_frames(speech_like(speaker, seconds)))
    ]


def test_mix_pcm_sums_and_clips() -> None:
    a = array("h", [30_000, -30_000, 5] + [0] * 957).tobytes()
    b = array("h", [10_000, -10_000, 7] + [0] * 957).tobytes()
    assert list(array("h", mix_pcm([a, b]))[:3]) == [32767, -32768, 12]
    assert mix_pcm([a]) == a
    assert mix_pcm([]) == bytes(FRAME_BYTES)
    with pytest.raises(MediaConfigError):
        mix_pcm([a, b"\x00\x00"])


def test_two_senders_are_heard_together_and_counted_apart() -> None:
    alice, bob = _frames("alice", 2.0), _frames("bob", 2.0)
    del bob[20]  # one of bob's frames is lost
    mixer: AudioMixer[str] = AudioMixer()
    out: list[bytes] = []
    for i in range(100):
        now = i * 0.02
        mixer.push("alice", alice[i], now)
        if i < len(bob):
            mixer.push("bob", bob[i], now + 0.01)
        out += mixer.pull(now)
    out += mixer.pull(2.2)
    mixed = from_pcm(out)
    reference = from_pcm(
        [
            mix_pcm([a, b])
            for a, b in zip(
                pcm_frames(speech_like("alice", 2.0)),
                pcm_frames(speech_like("bob", 2.0)),
                strict=True,
            )
        ]
    )
    assert audio_similarity(reference, mixed) > AUDIO_THRESHOLD
    # The mix is neither speaker alone.
    assert audio_similarity(speech_like("alice", 2.0), mixed) < audio_similarity(reference, mixed)
    stats = mixer.stats
    assert stats["alice"].lost == 0 and stats["bob"].lost == 1
    assert stats["bob"].concealed >= 1
    assert 100 <= len(out) <= 112  # one frame per 20 ms from the first played frame


def test_a_sender_that_leaves_stops_adding_audio() -> None:
    alice, bob = _frames("alice", 1.0), _frames("bob", 1.0)
    mixer: AudioMixer[str] = AudioMixer()
    out: list[bytes] = []
    for i in range(50):
        mixer.push("alice", alice[i], i * 0.02)
        if i <= 25:
            mixer.push("bob", bob[i], i * 0.02)
        if i == 25:
            mixer.remove("bob")
        out += mixer.pull(i * 0.02)
    assert set(mixer.stats) == {"alice"}
    # After bob left, the mix is alice alone again: through Opus alone she scores ~0.99;
    # with bob still mixed in, ~0.77 (docs/calls.md).
    alice_pcm = pcm_frames(speech_like("alice", 1.0))
    assert audio_similarity(from_pcm(alice_pcm[35:48]), from_pcm(out[35:48])) > 0.95


def test_nothing_is_played_before_the_first_frame() -> None:
    mixer: AudioMixer[int] = AudioMixer()
    assert mixer.pull(1.0) == []


def test_a_long_pause_of_the_caller_skips_ahead_instead_of_flooding() -> None:
    alice = _frames("alice", 0.2)
    mixer: AudioMixer[str] = AudioMixer()
    mixer.push("alice", alice[0], 0.0)
    assert len(mixer.pull(0.06)) == 1
    assert len(mixer.pull(3600.0)) == MAX_BACKLOG
    assert mixer.skipped > 170_000
