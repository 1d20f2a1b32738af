"""Opus through PyAV: round trip of a speech-like signal, typed errors on bad input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from doorless.client.calls.media import (
    FRAME_BYTES,
    CodecDecodeError,
    MediaConfigError,
    OpusDecoder,
    OpusEncoder,
)
from support.media import AUDIO_THRESHOLD, audio_similarity, from_pcm, pcm_frames, speech_like


@pytest.mark.parametrize("bitrate", [12_000, 32_000, 64_000])
def test_round_trip_keeps_the_signal(bitrate: int) -> None:
    signal = speech_like("alice", 2.0)
    encoder, decoder = OpusEncoder(bitrate), OpusDecoder()
    packets = [encoder.encode(pcm) for pcm in pcm_frames(signal)]
    assert len(packets) == 100
    # 20 ms at the bitrate, with the encoder's slack: the bitrate is really configured.
    assert sum(map(len, packets)) * 8 / 2.0 < bitrate * 1.5
    out = from_pcm([decoder.decode(p) for p in packets])
    assert out.size == signal.size
    assert audio_similarity(signal, out) > AUDIO_THRESHOLD
    assert decoder.errors == 0


@pytest.mark.parametrize("bitrate", [0, 5_999, 256_001])
def test_bitrate_out_of_range_is_refused(bitrate: int) -> None:
    with pytest.raises(MediaConfigError):
        OpusEncoder(bitrate)


@pytest.mark.parametrize("size", [0, FRAME_BYTES - 2, FRAME_BYTES + 2])
def test_wrong_pcm_length_is_refused(size: int) -> None:
    with pytest.raises(MediaConfigError):
        OpusEncoder().encode(b"\x00" * size)


def test_garbage_and_empty_packets_are_counted_and_the_decoder_goes_on() -> None:
    encoder, decoder = OpusEncoder(), OpusDecoder()
    good = encoder.encode(b"\x10\x00" * (FRAME_BYTES // 2))
    for bad in (b"", b"garbage" * 5):
        with pytest.raises(CodecDecodeError):
            decoder.decode(bad)
    assert decoder.errors == 2
    assert len(decoder.decode(good)) == FRAME_BYTES


@settings(max_examples=200)
@given(st.binary(max_size=400))
def test_arbitrary_packets_decode_to_one_frame_or_raise(data: bytes) -> None:
    decoder = OpusDecoder()
    try:
        pcm = decoder.decode(data)
    except CodecDecodeError:
        assert decoder.errors == 1
    else:
        assert len(pcm) == FRAME_BYTES
