"""`CallSignal`: byte-exact round trips, and any bytes decode or raise `DecodeError`."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from doorless.codec import decode, encode
from doorless.errors import ConfigurationError, DecodeError
from doorless.wire.call_signal import CALL_ID_LENGTH, CallMedia, CallSignal, CallSignalType

CALL_ID = bytes(range(CALL_ID_LENGTH))


@pytest.mark.parametrize("signal_type", list(CallSignalType), ids=lambda t: t.name)
def test_round_trip(signal_type: CallSignalType) -> None:
    signal = CallSignal(signal_type, CALL_ID, CallMedia.audio | CallMedia.video)
    data = encode(signal)
    assert data == bytes([signal_type]) + CALL_ID + b"\x03"
    assert decode(CallSignal, data) == signal


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00" + CALL_ID + b"\x01",  # type 0
        b"\x07" + CALL_ID + b"\x01",  # unknown type
        b"\x01" + CALL_ID[:15],  # short call id
        b"\x01" + CALL_ID + b"\x04",  # unknown media bit
        b"\x01" + CALL_ID + b"\x01\x00",  # trailing byte
    ],
    ids=["empty", "type0", "type7", "short", "media", "trailing"],
)
def test_malformed(data: bytes) -> None:
    with pytest.raises(DecodeError):
        decode(CallSignal, data)


def test_constructor_checks() -> None:
    with pytest.raises(ConfigurationError):
        CallSignal(CallSignalType.ring, b"short")
    with pytest.raises(ConfigurationError):
        CallSignal(CallSignalType.ring, CALL_ID, CallMedia(4))


@given(st.binary(max_size=40))
def test_arbitrary_bytes(data: bytes) -> None:
    try:
        signal = decode(CallSignal, data)
    except DecodeError:
        return
    assert encode(signal) == data
