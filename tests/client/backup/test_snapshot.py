"""The backup's plaintext records: byte-exact round trip, and malformed content refused."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from doorless.client.backup.errors import BackupCorrupt
from doorless.client.backup.snapshot import (
    GroupDisplay,
    Meta,
    Snapshot,
    TableDump,
    decode_snapshot,
    encode_end,
    encode_meta,
    encode_row,
    encode_snapshot,
)

META = Meta(1_700_000_000_000, 2, "alice", "dev1", "https://example.org")
values = st.one_of(
    st.none(),
    st.integers(-(1 << 63), (1 << 63) - 1),
    st.text(max_size=20),
    st.binary(max_size=20),
)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(values, values, values), max_size=10), st.binary(max_size=50))
def test_round_trip(rows: list[tuple[object, object, object]], blob: bytes) -> None:
    snapshot = Snapshot(
        META,
        (TableDump("messages", ("a", "b", "c"), tuple(rows)),),  # type: ignore[arg-type]
        (GroupDisplay(b"g" * 32, blob, b""),),
        (("config.toml", blob),),
    )
    data = b"".join(encode_snapshot(snapshot))
    assert decode_snapshot(data) == snapshot
    assert b"".join(encode_snapshot(decode_snapshot(data))) == data


def test_malformed_content() -> None:
    meta = encode_meta(META)
    for data in (
        b"",
        encode_end(),  # no meta first
        meta,  # no end
        meta + encode_row((1,)) + encode_end(),  # a row outside a table
        meta + encode_end() + b"\x00",  # trailing bytes
        meta + meta + encode_end(),
        meta + b"\x09\x00" + encode_end(),  # unknown record type
    ):
        with pytest.raises(BackupCorrupt):
            decode_snapshot(data)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=500))
def test_random_bytes(data: bytes) -> None:
    # Random records either make a snapshot or are refused, never another exception.
    try:
        snapshot = decode_snapshot(encode_meta(META) + data)
    except BackupCorrupt:
        return
    assert b"".join(encode_snapshot(snapshot)) == encode_meta(META) + data
