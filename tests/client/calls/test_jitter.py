"""The audio jitter buffer and playout: reorder, duplicates, late frames, loss with
concealment, stalls and bursts; the clock is simulated (no sleeping)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from doorless.client.calls.media import (
    FRAME_BYTES,
    AudioPacketizer,
    AudioPlayout,
    MediaConfigError,
    MediaFrame,
    OpusEncoder,
    PlayedAudio,
    StreamKind,
)
from doorless.client.calls.media.jitter import CAPACITY, AudioJitterBuffer, Slot
from support.media import AUDIO_THRESHOLD, audio_similarity, from_pcm, pcm_frames, speech_like

F = 0.02


def _frames(n: int, first: int = 0) -> list[MediaFrame]:
    return [MediaFrame(StreamKind.audio, first + i, i * 20_000, bytes([i % 256])) for i in range(n)]


def _run(
    buffer: AudioJitterBuffer, arrivals: list[tuple[float, MediaFrame]], until: float
) -> list[Slot]:
    """Deliver frames at their arrival times while the playout clock ticks every 5 ms; the
    slots up to the last frame sent (after it, the receiver conceals until ``max_gap``)."""
    arrivals = sorted(arrivals, key=lambda a: a[0])
    slots: list[Slot] = []
    now, i = 0.0, 0
    until = max(until, arrivals[-1][0] + 1.0)  # past the gap limit: the stream has stopped
    while now <= until:
        while i < len(arrivals) and arrivals[i][0] <= now:
            buffer.push(arrivals[i][1], now)
            i += 1
        slots += buffer.pop(now)
        now = round(now + 0.005, 6)
    last = max(f.sequence for _, f in arrivals)
    return [s for s in slots if s.sequence <= last]


def test_in_order_frames_play_in_order_after_the_target_delay() -> None:
    buffer = AudioJitterBuffer(0.06, adaptive=False)
    frames = _frames(50)
    first: list[Slot] = []
    buffer.push(frames[0], 0.0)
    assert buffer.pop(0.059) == []  # not before the target delay
    first = buffer.pop(0.06)
    assert first == [Slot(0, frames[0].payload)]
    slots = first + _run(buffer, [(i * F, f) for i, f in enumerate(frames)][1:], 1.2)
    assert [s.sequence for s in slots] == list(range(50))
    assert all(s.payload == f.payload for s, f in zip(slots, frames, strict=True))
    st = buffer.stats
    assert (st.received, st.played, st.lost, st.concealed, st.late) == (50, 50, 0, 0, 0)


def test_reordered_frames_within_the_delay_are_put_back_in_order() -> None:
    frames = _frames(40)
    # Swap every pair: frame 2k+1 arrives 5 ms before frame 2k.
    arrivals = [(i * F + (0.025 if i % 2 == 0 else 0.0), f) for i, f in enumerate(frames)]
    buffer = AudioJitterBuffer(0.06, adaptive=False)
    slots = _run(buffer, arrivals, 1.0)
    assert [s.sequence for s in slots] == list(range(40))
    assert all(s.payload is not None for s in slots)
    assert buffer.stats.concealed == 0 and buffer.stats.lost == 0


def test_duplicates_are_counted_and_played_once() -> None:
    frames = _frames(20)
    arrivals = [(i * F, f) for i, f in enumerate(frames)] + [
        (i * F + 0.01, f) for i, f in enumerate(frames[:10])
    ]
    buffer = AudioJitterBuffer(0.06, adaptive=False)
    slots = _run(buffer, arrivals, 0.6)
    assert [s.sequence for s in slots] == list(range(20))
    assert buffer.stats.duplicate == 10
    assert buffer.stats.received == 20


def test_a_frame_after_its_slot_is_late_concealed_and_not_lost() -> None:
    frames = _frames(20)
    arrivals = [(i * F + (0.2 if i == 5 else 0.0), f) for i, f in enumerate(frames)]
    buffer = AudioJitterBuffer(0.06, adaptive=False)
    slots = _run(buffer, arrivals, 0.6)
    assert [s.sequence for s in slots] == list(range(20))
    assert slots[5].payload is None
    st = buffer.stats
    assert (st.late, st.concealed, st.lost, st.received) == (1, 1, 0, 20)


def test_missing_frames_are_concealed_and_reported_lost() -> None:
    frames = _frames(30)
    missing = {3, 4, 17}
    arrivals = [(i * F, f) for i, f in enumerate(frames) if i not in missing]
    buffer = AudioJitterBuffer(0.06, adaptive=False)
    slots = _run(buffer, arrivals, 0.8)
    assert [s.sequence for s in slots] == list(range(30))
    assert {s.sequence for s in slots if s.payload is None} == missing
    assert buffer.stats.lost == 3 and buffer.stats.concealed == 3


def test_a_stopped_stream_is_not_concealed_forever_and_resumes() -> None:
    frames = _frames(40)
    # Frames 0..9, then silence from the sender for 2 s, then 10..39 (a new schedule).
    arrivals = [(i * F, f) for i, f in enumerate(frames[:10])]
    arrivals += [(2.0 + i * F, f) for i, f in enumerate(frames[10:])]
    buffer = AudioJitterBuffer(0.06, adaptive=False, max_gap=0.5)
    slots = _run(buffer, arrivals, 3.0)
    played = [s.sequence for s in slots if s.payload is not None]
    assert played == list(range(40))
    # Concealment only until the gap limit, not for the whole 2 s.
    assert len(slots) - 40 <= 0.5 / F + 1
    assert buffer.stats.resyncs == 1 and buffer.stats.lost == 0


def test_a_burst_after_a_stall_is_trimmed_back_to_the_target() -> None:
    frames = _frames(60)
    # 0..19 on time, 20..39 held by the network and delivered at once at 0.7 s, then on time.
    arrivals = [(i * F if not 20 <= i < 40 else 0.7, f) for i, f in enumerate(frames)]
    buffer = AudioJitterBuffer(0.06, adaptive=True)
    _run(buffer, arrivals, 1.6)
    assert buffer.stats.dropped > 0
    assert buffer.depth <= 4


def test_jitter_grows_an_adaptive_target_delay() -> None:
    rng = random.Random(7)
    frames = _frames(200)
    arrivals = [(i * F + rng.uniform(0, 0.15), f) for i, f in enumerate(frames)]
    fixed, adaptive = AudioJitterBuffer(0.02, adaptive=False), AudioJitterBuffer(0.02)
    _run(fixed, list(arrivals), 5.0)
    _run(adaptive, list(arrivals), 5.0)
    assert adaptive.stats.target_delay > 0.02
    assert adaptive.stats.jitter > 0.01
    assert adaptive.stats.late < fixed.stats.late / 2


def test_frames_far_ahead_are_refused() -> None:
    buffer = AudioJitterBuffer()
    buffer.push(_frames(1)[0], 0.0)
    buffer.push(MediaFrame(StreamKind.audio, 10_000, 0, b"x"), 0.0)
    assert buffer.stats.too_early == 1 and buffer.depth == 1


def test_video_frames_are_refused() -> None:
    with pytest.raises(MediaConfigError):
        AudioJitterBuffer().push(MediaFrame(StreamKind.video, 0, 0, b"x"), 0.0)


@pytest.mark.parametrize("seed", [1, 2])
def test_five_percent_loss_keeps_opus_audio_continuous_and_reports_it(seed: int) -> None:
    signal = speech_like("alice", 3.0)
    encoder, packetizer = OpusEncoder(), AudioPacketizer()
    frames = [
        packetizer.packetize(encoder.encode(p), i * 20_000)
        for i, p in enumerate(pcm_frames(signal))
    ]
    rng = random.Random(seed)
    kept = [(i * F + rng.uniform(0, 0.03), f) for i, f in enumerate(frames) if rng.random() >= 0.05]
    playout = AudioPlayout()
    played: list[PlayedAudio] = []
    now, i = 0.0, 0
    kept.sort(key=lambda a: a[0])
    while now < 3.5:
        while i < len(kept) and kept[i][0] <= now:
            playout.push(kept[i][1], now)
            i += 1
        played += playout.pull(now)
        now = round(now + 0.005, 6)
    seqs = [f.sequence for _, f in kept]
    # RFC 3550: losses before the first and after the last frame received are not seen.
    lost = max(seqs) - min(seqs) + 1 - len(kept)
    assert lost > 0
    out = [p for p in played if p.sequence < len(frames) and not p.inserted]
    # Continuous: one 20 ms frame per slot, every slot, the lost ones concealed.
    assert [p.sequence for p in out] == list(range(len(frames)))
    assert all(len(p.pcm) == FRAME_BYTES for p in out)
    st = playout.stats
    assert st.lost == lost
    assert sum(p.concealed for p in out) >= lost
    assert audio_similarity(signal, from_pcm([p.pcm for p in out])) > AUDIO_THRESHOLD


def test_undecodable_packets_are_concealed_and_counted() -> None:
    encoder, packetizer = OpusEncoder(), AudioPacketizer()
    pcm = pcm_frames(speech_like("bob", 0.4))
    frames = [packetizer.packetize(encoder.encode(p), i * 20_000) for i, p in enumerate(pcm)]
    frames[5] = MediaFrame(StreamKind.audio, 5, frames[5].timestamp, b"garbage" * 3)
    playout = AudioPlayout(AudioJitterBuffer(0.04, adaptive=False))
    out: list[PlayedAudio] = []
    for i, f in enumerate(frames):
        playout.push(f, i * F)
        out += playout.pull(i * F)
    out += playout.pull(2.0)
    assert [p.sequence for p in out if p.sequence < 20] == list(range(len(frames)))
    assert [p.sequence for p in out if p.concealed] == [5]
    assert playout.stats.decode_errors == 1 and playout.stats.concealed == 1


@given(
    st.lists(st.tuples(st.integers(0, 400), st.floats(0, 0.1)), max_size=150),
    st.booleans(),
)
def test_any_arrival_pattern_plays_in_order_with_bounded_memory(
    arrivals: list[tuple[int, float]], adaptive: bool
) -> None:
    buffer = AudioJitterBuffer(0.04, adaptive=adaptive)
    now, played = 0.0, []
    for seq, gap in arrivals:
        now += gap
        buffer.push(MediaFrame(StreamKind.audio, seq, 0, seq.to_bytes(2, "big")), now)
        played += buffer.pop(now)
        assert buffer.depth <= CAPACITY
    played += buffer.pop(now + 5.0)
    sequences = [s.sequence for s in played if not s.inserted]
    # Strictly increasing (never twice, never back) within a run; a new run starts only where
    # the buffer stopped and a frame came far below the last ones (the sender restarted).
    runs: list[list[int]] = [[]]
    for seq in sequences:
        if runs[-1] and seq < runs[-1][-1] - CAPACITY:
            runs.append([])
        runs[-1].append(seq)
    assert all(run == sorted(set(run)) for run in runs)
    assert all(s.payload is None or s.payload == s.sequence.to_bytes(2, "big") for s in played)
    st_ = buffer.stats
    assert min(st_.concealed, st_.lost, st_.late, st_.duplicate, st_.received) >= 0
    assert st_.played == sum(s.payload is not None for s in played)


def test_a_sender_that_restarts_its_numbering_after_a_stop_is_played() -> None:
    first_run, second_run = _frames(300), _frames(20)
    arrivals = [(i * F, f) for i, f in enumerate(first_run) if i != 100]  # one lost
    arrivals += [(8.0 + i * F, f) for i, f in enumerate(second_run)]  # numbering from 0 again
    buffer = AudioJitterBuffer(0.06, adaptive=False)
    slots = _run(buffer, arrivals, 9.0)
    played = [s.sequence for s in slots if s.payload is not None]
    assert played == [n for n in range(300) if n != 100] + list(range(20))
    assert buffer.stats.resyncs == 1 and buffer.stats.lost == 1 and buffer.stats.late == 0
