"""Checker for ``deserialization.json``: variable-length integer headers (RFC 9420 §2.1.2)."""

from __future__ import annotations

from doorless.codec import Reader, varint_header
from doorless.conformance import Case, VectorMismatch, expect, h
from doorless.errors import DecodeError


def check(case: Case) -> None:
    header = h(case["vlbytes_header"])
    length: int = case["length"]
    expect("vlbytes_header (encode)", varint_header(length), header)
    r = Reader(header)
    try:
        decoded = r.pull_varint()
        r.expect_end()
    except DecodeError as exc:
        raise VectorMismatch("vlbytes_header (decode)", f"does not decode: {exc}") from exc
    expect("length (decode)", decoded, length)
