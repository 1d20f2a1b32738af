"""Video fragmentation and reassembly: sizes within the budget, reordering, duplicates, loss,
keyframe needs; audio packetization."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from doorless.client.calls.media import (
    DATAGRAM_BUDGET,
    MAX_PAYLOAD,
    AudioPacketizer,
    EncodedVideo,
    FrameFlags,
    MediaConfigError,
    MediaFrame,
    StreamKind,
    VideoPacketizer,
    VideoReassembler,
    decode_frame,
    encode_frame,
)
from doorless.client.calls.media.packetize import MAX_FRAGMENTS


def _video(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def test_audio_frames_are_numbered_and_whole() -> None:
    packetizer = AudioPacketizer(first_sequence=5)
    a, b = packetizer.packetize(b"op1", 0), packetizer.packetize(b"op2", 20_000)
    assert (a.sequence, b.sequence) == (5, 6)
    assert a.start and a.end and not a.keyframe and a.stream is StreamKind.audio


@pytest.mark.parametrize(
    ("size", "count"), [(1, 1), (MAX_PAYLOAD, 1), (MAX_PAYLOAD + 1, 2), (10_000, 10)]
)
def test_fragments_fit_the_datagram_budget(size: int, count: int) -> None:
    data = _video(size, size)
    frames = VideoPacketizer().packetize(data, 1234, keyframe=True)
    assert len(frames) == count
    assert all(len(encode_frame(f)) <= DATAGRAM_BUDGET for f in frames)
    assert [f.sequence for f in frames] == list(range(count))
    assert frames[0].start and frames[-1].end
    assert not any(f.start for f in frames[1:]) and not any(f.end for f in frames[:-1])
    assert all(f.keyframe and f.timestamp == 1234 for f in frames)
    assert b"".join(f.payload for f in frames) == data


def test_a_frame_too_big_or_empty_is_refused() -> None:
    with pytest.raises(MediaConfigError):
        VideoPacketizer().packetize(b"x" * (MAX_PAYLOAD * MAX_FRAGMENTS + 1), 0, True)
    with pytest.raises(MediaConfigError):
        VideoPacketizer().packetize(b"", 0, True)


def _stream(sizes: list[int], keyframes: set[int]) -> tuple[list[bytes], list[list[MediaFrame]]]:
    packetizer = VideoPacketizer()
    datas = [_video(s, i) for i, s in enumerate(sizes)]
    return datas, [
        packetizer.packetize(d, i * 66_666, keyframe=i in keyframes) for i, d in enumerate(datas)
    ]


def _feed(reassembler: VideoReassembler, frames: list[MediaFrame]) -> list[EncodedVideo]:
    out: list[EncodedVideo] = []
    for f in frames:
        out += reassembler.push(decode_frame(encode_frame(f)))
    return out


def test_reordered_and_duplicated_fragments_reassemble_in_order() -> None:
    datas, fragments = _stream([3000, 500, 2500, 4000], keyframes={0})
    reassembler = VideoReassembler()
    wire: list[MediaFrame] = []
    for frame_fragments in fragments:
        shuffled = list(reversed(frame_fragments))  # reordered within each video frame
        wire += shuffled[:1] + shuffled  # and one duplicate
    out = _feed(reassembler, wire)
    assert [v.data for v in out] == datas
    assert out[0].keyframe and not out[1].keyframe
    # A duplicate of a pending fragment is a duplicate; of a released frame (the 500-byte one
    # is a single fragment, released at once), late.
    assert (reassembler.stats.duplicate, reassembler.stats.late) == (3, 1)
    assert reassembler.stats.frames == 4 and reassembler.stats.dropped == 0
    assert not reassembler.keyframe_needed


def test_a_lost_fragment_drops_its_frame_and_waits_for_a_keyframe() -> None:
    datas, fragments = _stream([3000, 3000, 2000, 2000, 3000, 1000], keyframes={0, 4})
    del fragments[1][1]  # frame 1 loses its middle fragment
    reassembler = VideoReassembler()
    out = _feed(reassembler, [f for group in fragments for f in group])
    # Frame 1 is gone; frames 2 and 3 depend on it and are skipped; 4 is a keyframe.
    assert [v.data for v in out] == [datas[0], datas[4], datas[5]]
    st = reassembler.stats
    assert (st.dropped, st.skipped, st.frames) == (1, 2, 3)
    assert not reassembler.keyframe_needed


def test_a_stream_joined_midway_waits_for_a_keyframe_and_says_so() -> None:
    datas, fragments = _stream([1500, 1500, 1500], keyframes={2})
    reassembler = VideoReassembler()
    assert _feed(reassembler, fragments[1]) == []
    assert reassembler.keyframe_needed
    assert [v.data for v in _feed(reassembler, fragments[2])] == [datas[2]]
    assert not reassembler.keyframe_needed


def test_late_fragments_of_a_released_frame_are_counted() -> None:
    _, fragments = _stream([2000, 2000], keyframes={0, 1})
    reassembler = VideoReassembler()
    _feed(reassembler, fragments[0])
    _feed(reassembler, fragments[1])
    _feed(reassembler, fragments[0][:1])
    assert reassembler.stats.late == 1


def test_fragments_of_different_frames_never_join() -> None:
    # Sequence 0 is the START of a frame at timestamp 1, sequence 1 the END of one at 2.
    start = VideoPacketizer().packetize(b"a" * 2000, 1, keyframe=True)[0]
    end = VideoPacketizer().packetize(b"b" * 2000, 2, keyframe=True)[1]
    assert (start.sequence, start.start, end.sequence, end.end) == (0, True, 1, True)
    reassembler = VideoReassembler()
    assert reassembler.push(start) == [] and reassembler.push(end) == []


def test_the_pending_buffer_is_bounded() -> None:
    reassembler = VideoReassembler(max_pending=10)
    packetizer = VideoPacketizer()
    for i in range(30):
        # Only the first fragment of each frame arrives: nothing completes.
        reassembler.push(packetizer.packetize(b"x" * 3000, i, True)[0])
    assert reassembler.stats.evicted == 20


def test_audio_frames_are_refused() -> None:
    with pytest.raises(MediaConfigError):
        VideoReassembler().push(AudioPacketizer().packetize(b"x", 0))


@given(
    st.lists(
        st.tuples(
            st.integers(0, 40),
            st.integers(0, 3),
            st.sampled_from([0, 1, 2, 3, 4, 5, 6, 7]),
            st.binary(min_size=1, max_size=5),
        ),
        max_size=60,
    )
)
def test_arbitrary_fragments_never_crash_and_output_stays_ordered(
    items: list[tuple[int, int, int, bytes]],
) -> None:
    reassembler = VideoReassembler(max_pending=16)
    out: list[EncodedVideo] = []
    for seq, ts, flags, payload in items:
        out += reassembler.push(MediaFrame(StreamKind.video, seq, ts, payload, FrameFlags(flags)))
    firsts = [v.first_sequence for v in out]
    assert firsts == sorted(firsts) and len(set(firsts)) == len(firsts)
    assert all(v.first_sequence <= v.last_sequence for v in out)
