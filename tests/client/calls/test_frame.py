"""The media frame inside SFrame: byte-exact round trip, every rule, arbitrary bytes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from doorless.client.calls.media import (
    DATAGRAM_BUDGET,
    MAX_PAYLOAD,
    FrameFlags,
    MediaConfigError,
    MediaFrame,
    MediaFrameError,
    StreamKind,
    decode_frame,
    encode_frame,
)
from doorless.client.calls.media.frame import RELAY_DATAGRAM_ENVELOPE
from doorless.errors import DecodeError
from doorless.sframe import BaseKey, SFrameSender, SFrameSuite, suite_params


def test_round_trip_is_byte_exact() -> None:
    frame = MediaFrame(
        StreamKind.video, 7, 1_000_020, b"\x9d\x01\x2a", FrameFlags.KEYFRAME | FrameFlags.START
    )
    data = encode_frame(frame)
    # version, stream, flags, sequence, timestamp, opaque<V>
    assert (
        data
        == bytes([1, 2, 3])
        + (7).to_bytes(4, "big")
        + (1_000_020).to_bytes(8, "big")
        + b"\x03\x9d\x01\x2a"
    )
    assert decode_frame(data) == frame
    assert frame.keyframe and frame.start and not frame.end


def test_largest_frame_fits_the_datagram_budget() -> None:
    frame = MediaFrame(StreamKind.video, 2**32 - 1, 2**64 - 1, b"x" * MAX_PAYLOAD, FrameFlags.END)
    data = encode_frame(frame)
    assert len(data) == DATAGRAM_BUDGET
    assert decode_frame(data) == frame


@pytest.mark.parametrize(
    ("args", "why"),
    [
        ((StreamKind.audio, -1, 0, b"x"), "sequence"),
        ((StreamKind.audio, 2**32, 0, b"x"), "sequence"),
        ((StreamKind.audio, 0, 2**64, b"x"), "timestamp"),
        ((StreamKind.audio, 0, 0, b""), "empty"),
        ((StreamKind.video, 0, 0, b"x" * (MAX_PAYLOAD + 1)), "payload"),
        ((StreamKind.audio, 0, 0, b"x", FrameFlags.START), "audio"),
        ((StreamKind.video, 0, 0, b"x", FrameFlags(0x80)), "flags"),
    ],
    ids=["negative-seq", "big-seq", "big-ts", "empty", "too-big", "audio-fragment", "flags"],
)
def test_invalid_frames_cannot_be_built(args: tuple[object, ...], why: str) -> None:
    with pytest.raises(MediaConfigError, match=why):
        MediaFrame(*args)  # type: ignore[arg-type]


GOOD = encode_frame(MediaFrame(StreamKind.audio, 1, 2, b"opus"))


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\x02" + GOOD[1:], "version"),
        (GOOD[:1] + b"\x03" + GOOD[2:], "stream kind"),
        (GOOD[:2] + b"\x08" + GOOD[3:], "flags"),
        (GOOD[:2] + b"\x04" + GOOD[3:], "never fragmented"),
        (GOOD[:-1], "malformed"),
        (GOOD + b"\x00", "trailing"),
        (GOOD[:15] + b"\x00", "empty"),
        (b"", "malformed"),
        (b"\x01" * (DATAGRAM_BUDGET + 1), f"> {DATAGRAM_BUDGET}"),
    ],
    ids=[
        "version",
        "stream",
        "unknown-flag",
        "audio-fragment",
        "short",
        "trailing",
        "empty",
        "nothing",
        "oversize",
    ],
)
def test_malformed_frames_raise_media_frame_error(data: bytes, why: str) -> None:
    with pytest.raises(MediaFrameError, match=why):
        decode_frame(data)


@given(st.binary(max_size=1200))
def test_arbitrary_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    try:
        frame = decode_frame(data)
    except DecodeError as e:
        assert isinstance(e, MediaFrameError)
    else:
        assert encode_frame(frame) == data


@pytest.mark.parametrize("suite", list(SFrameSuite), ids=lambda s: s.name)
def test_the_largest_frame_under_sframe_fits_the_relays_datagram_envelope(
    suite: SFrameSuite,
) -> None:
    """The budget holds for every SFrame suite with the longest header (8-byte KID and CTR):
    2 envelope bytes + SFrame header + ciphertext + tag <= the relay's 1,100 bytes."""
    frame = MediaFrame(StreamKind.video, 2**32 - 1, 2**64 - 1, b"x" * MAX_PAYLOAD, FrameFlags.END)
    key = BaseKey(bytes(suite_params(suite).nk))
    sender = SFrameSender(suite, 2**63, key, next_ctr=2**63)
    sender.reserve(1)
    envelope = 2 + len(sender.encrypt(encode_frame(frame)))
    assert envelope <= RELAY_DATAGRAM_ENVELOPE
    if suite_params(suite).nt == 16:  # the longest tag: the budget is used up exactly
        assert envelope == RELAY_DATAGRAM_ENVELOPE
