"""`UpgradeNotice`: a byte-exact round trip, and malformed notices raise `DecodeError`."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from doorless.codec import decode, encode
from doorless.errors import ConfigurationError, DecodeError
from doorless.wire.upgrade import GROUP_ID_LENGTH, UpgradeNotice

GID = bytes(range(GROUP_ID_LENGTH))


def test_round_trip() -> None:
    notice = UpgradeNotice(GID, 0xF0A1)
    data = encode(notice)
    assert data == b"\x01\x20" + GID + b"\xf0\xa1"  # version, varint length, id, suite
    assert decode(UpgradeNotice, data) == notice


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x02\x20" + GID + b"\x00\x01",  # unknown version
        b"\x01\x1f" + GID[:31] + b"\x00\x01",  # a 31-byte group id
        b"\x01\x20" + GID + b"\x00",  # short suite
        b"\x01\x20" + GID + b"\x00\x01\x00",  # trailing byte
    ],
    ids=["empty", "version", "short-id", "short-suite", "trailing"],
)
def test_malformed(data: bytes) -> None:
    with pytest.raises(DecodeError):
        decode(UpgradeNotice, data)


def test_constructor_checks() -> None:
    with pytest.raises(ConfigurationError):
        UpgradeNotice(b"short", 1)
    with pytest.raises(ConfigurationError):
        UpgradeNotice(GID, 0x10000)


@given(st.binary(max_size=40))
def test_arbitrary_bytes(data: bytes) -> None:
    try:
        notice = decode(UpgradeNotice, data)
    except DecodeError:
        return
    assert encode(notice) == data
