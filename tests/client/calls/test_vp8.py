"""VP8 through PyAV: round trip with content similarity, keyframes periodic and on request,
typed errors on garbage, and the whole video path (encode, fragment, lose, reassemble)."""

from __future__ import annotations

import av
import pytest
from av.video.frame import PictureType
from hypothesis import given, settings
from hypothesis import strategies as st

from doorless.client.calls.media import (
    CodecDecodeError,
    MediaConfigError,
    VideoConfig,
    VideoPacketizer,
    VideoReassembler,
    Vp8Decoder,
    Vp8Encoder,
)
from doorless.client.calls.media.vp8 import keyframe_size
from support.media import VIDEO_PSNR_THRESHOLD, luma_of, moving_luma, video_similarity

W, H = 160, 120


def _frame(i: int) -> av.VideoFrame:
    return av.VideoFrame.from_ndarray(moving_luma(i, W, H), format="gray")


def test_round_trip_keeps_the_content() -> None:
    encoder, decoder = Vp8Encoder(VideoConfig(W, H, fps=15)), Vp8Decoder()
    packets = [encoder.encode(_frame(i)) for i in range(30)]
    assert all(p is not None for p in packets)
    out = [luma_of(decoder.decode(p.data)) for p in packets if p is not None]
    assert len(out) == 30 and out[0].shape == (H, W)
    assert video_similarity([moving_luma(i, W, H) for i in range(30)], out) > VIDEO_PSNR_THRESHOLD


def test_frames_of_another_size_are_scaled() -> None:
    encoder, decoder = Vp8Encoder(VideoConfig(W, H)), Vp8Decoder()
    big = av.VideoFrame.from_ndarray(moving_luma(0, 640, 480), format="gray")
    packet = encoder.encode(big)
    assert packet is not None
    frame = decoder.decode(packet.data)
    assert (frame.width, frame.height) == (W, H)


def test_keyframes_come_periodically_and_on_request() -> None:
    encoder = Vp8Encoder(VideoConfig(W, H, fps=10, keyframe_interval=1.0))
    keys = []
    for i in range(25):
        if i == 13:
            encoder.request_keyframe()
        packet = encoder.encode(_frame(i))
        assert packet is not None
        keys.append(packet.keyframe)
    # libvpx counts the interval from the last keyframe, requested or not.
    assert [i for i, k in enumerate(keys) if k] == [0, 10, 13, 23]


def test_frames_typed_i_by_their_source_are_not_all_keyframes() -> None:
    # A frame decoded from a file carries its source's picture type (raw video: all I); the
    # encoder must not take that for a request, nor change the caller's frame.
    encoder = Vp8Encoder(VideoConfig(W, H, fps=15, keyframe_interval=60))
    keys = []
    for i in range(10):
        picture = _frame(i).reformat(format="yuv420p")
        picture.pict_type, picture.pts = PictureType.I, 1000 + i
        packet = encoder.encode(picture)
        assert packet is not None
        keys.append(packet.keyframe)
        assert picture.pict_type == PictureType.I and picture.pts == 1000 + i
    assert keys == [True] + [False] * 9


@pytest.mark.parametrize(
    "kwargs",
    [{"width": 15}, {"height": 121}, {"fps": 0}, {"bitrate": 10}, {"keyframe_interval": 0}],
)
def test_bad_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(MediaConfigError):
        VideoConfig(**kwargs)  # type: ignore[arg-type]


def test_garbage_is_a_typed_error_and_the_decoder_goes_on() -> None:
    encoder, decoder = Vp8Encoder(VideoConfig(W, H)), Vp8Decoder()
    key = encoder.encode(_frame(0))
    assert key is not None
    for bad in (b"", b"garbage" * 10):
        with pytest.raises(CodecDecodeError):
            decoder.decode(bad)
    assert decoder.errors == 2
    assert decoder.decode(key.data).width == W


@settings(max_examples=100)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_decode_or_raise(data: bytes) -> None:
    decoder = Vp8Decoder()
    try:
        decoder.decode(data)
    except CodecDecodeError:
        assert decoder.errors == 1


def test_video_path_with_a_lost_fragment_recovers_at_the_requested_keyframe() -> None:
    config = VideoConfig(W, H, fps=15, bitrate=1_000_000, keyframe_interval=60)
    encoder, decoder = Vp8Encoder(config), Vp8Decoder()
    packetizer, reassembler = VideoPacketizer(), VideoReassembler()
    shown: list[int] = []
    for i in range(30):
        if reassembler.keyframe_needed and i > 0:
            encoder.request_keyframe()  # in a call: a KeyframeRequest inside SFrame
        packet = encoder.encode(_frame(i))
        assert packet is not None
        fragments = packetizer.packetize(packet.data, i, packet.keyframe)
        if i == 10:
            fragments = fragments[1:]  # the first fragment is lost on the way
        for fragment in fragments:
            for whole in reassembler.push(fragment):
                frame = decoder.decode(whole.data)
                assert video_similarity([moving_luma(whole.timestamp, W, H)], [luma_of(frame)]) > (
                    VIDEO_PSNR_THRESHOLD
                )
                shown.append(whole.timestamp)
    # Frame 10 is lost and frame 11 skipped (it refers to 10); 12 is the requested keyframe.
    assert shown == [*range(10), *range(12, 30)]
    assert reassembler.stats.skipped == 1


def test_keyframe_size_is_read_from_the_header() -> None:
    packet = Vp8Encoder(VideoConfig(W, H)).encode(_frame(0))
    assert packet is not None and packet.keyframe
    assert keyframe_size(packet.data) == (W, H)
    assert keyframe_size(b"\x01" + packet.data[1:]) is None  # an interframe


def test_a_keyframe_declaring_a_huge_picture_is_refused_before_decoding() -> None:
    packet = Vp8Encoder(VideoConfig(W, H)).encode(_frame(0))
    assert packet is not None
    huge = packet.data[:6] + (16_383).to_bytes(2, "little") * 2 + packet.data[10:]
    decoder = Vp8Decoder()
    with pytest.raises(CodecDecodeError, match="too large"):
        decoder.decode(huge)
    with pytest.raises(CodecDecodeError, match="start code"):
        decoder.decode(packet.data[:3] + b"\x00\x00\x00" + packet.data[6:])
    assert decoder.errors == 2
    with pytest.raises(CodecDecodeError):
        Vp8Decoder(max_width=W - 2).decode(packet.data)
    assert decoder.decode(packet.data).width == W
