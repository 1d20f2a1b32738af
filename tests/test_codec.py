"""The codec (RFC 9420 §2.1): varint boundaries, malformed input, and Hypothesis properties.

Expected encodings are written by hand from RFC 9420 §2.1.2 (table "Summary of Integer
Encodings" and its examples), never produced by the code under test.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Self

import pytest
from hypothesis import given
from hypothesis import strategies as st

from doorless.codec import (
    MAX_VARINT,
    Reader,
    Writer,
    decode,
    encode,
    encode_opaque,
    encode_vector,
    pull_opaque_item,
    pull_uint16_item,
    pull_uint32_item,
    push_opaque_item,
    push_uint16_item,
    push_uint32_item,
    varint_header,
)
from doorless.errors import DecodeError, RemoteError


@dataclass(frozen=True, slots=True)
class Sample:
    """Test-only struct that uses every Reader/Writer method::

    struct {
        uint8 a; uint16 b; uint32 c; uint64 d; bool flag;
        opaque data<V>; opaque fixed[4];
        opaque items<V><V>; uint16 nested<V><V>; optional<uint32> maybe;
    } Sample;
    """

    a: int
    b: int
    c: int
    d: int
    flag: bool
    data: bytes
    fixed: bytes
    items: tuple[bytes, ...]
    nested: tuple[tuple[int, ...], ...]
    maybe: int | None

    def push(self, w: Writer) -> None:
        w.push_uint8(self.a)
        w.push_uint16(self.b)
        w.push_uint32(self.c)
        w.push_uint64(self.d)
        w.push_bool(self.flag)
        w.push_opaque(self.data)
        w.push_bytes(self.fixed)
        w.push_vector(self.items, push_opaque_item)
        w.push_vector(self.nested, lambda w2, inner: w2.push_vector(inner, push_uint16_item))
        w.push_optional(self.maybe, push_uint32_item)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        return cls(
            a=r.pull_uint8(),
            b=r.pull_uint16(),
            c=r.pull_uint32(),
            d=r.pull_uint64(),
            flag=r.pull_bool(),
            data=r.pull_opaque(),
            fixed=r.pull_bytes(4),
            items=tuple(r.pull_vector(pull_opaque_item)),
            nested=tuple(
                tuple(inner) for inner in r.pull_vector(lambda r2: r2.pull_vector(pull_uint16_item))
            ),
            maybe=r.pull_optional(pull_uint32_item),
        )


# --- varints (RFC 9420 §2.1.2) ---------------------------------------------------------------

VARINTS = [
    (0, "00"),
    (37, "25"),  # RFC example
    (63, "3f"),  # largest 1-byte
    (64, "4040"),  # smallest 2-byte
    (15293, "7bbd"),  # RFC example
    (16383, "7fff"),  # largest 2-byte
    (16384, "80004000"),  # smallest 4-byte
    (494878333, "9d7f3e7d"),  # RFC example
    ((1 << 30) - 1, "bfffffff"),  # largest 4-byte
]


@pytest.mark.parametrize(("value", "encoding"), VARINTS, ids=[str(v) for v, _ in VARINTS])
def test_varint_encodes_minimally(value: int, encoding: str) -> None:
    w = Writer()
    w.push_varint(value)
    assert w.getvalue().hex() == encoding
    assert varint_header(value).hex() == encoding


@pytest.mark.parametrize(("value", "encoding"), VARINTS, ids=[str(v) for v, _ in VARINTS])
def test_varint_decodes(value: int, encoding: str) -> None:
    r = Reader(bytes.fromhex(encoding))
    assert r.pull_varint() == value
    r.expect_end()


def test_varint_max_is_2_pow_30_minus_1() -> None:
    assert MAX_VARINT == (1 << 30) - 1
    with pytest.raises(ValueError):
        Writer().push_varint(1 << 30)


NON_MINIMAL = [
    "4000",  # 0 in two bytes
    "403f",  # 63 in two bytes
    "4025",  # the RFC's 37, in two bytes
    "80000000",  # 0 in four bytes
    "80003fff",  # 16383 in four bytes
]


@pytest.mark.parametrize("encoding", NON_MINIMAL)
def test_varint_rejects_non_minimal(encoding: str) -> None:
    with pytest.raises(DecodeError, match="non-minimal"):
        Reader(bytes.fromhex(encoding)).pull_varint()


@pytest.mark.parametrize("encoding", ["c0", "c000000000000000", "ff", "ffffffff"])
def test_varint_rejects_prefix_0b11(encoding: str) -> None:
    with pytest.raises(DecodeError, match="0b11"):
        Reader(bytes.fromhex(encoding)).pull_varint()


@pytest.mark.parametrize("encoding", ["", "40", "80", "800040"])
def test_varint_truncated(encoding: str) -> None:
    with pytest.raises(DecodeError):
        Reader(bytes.fromhex(encoding)).pull_varint()


# --- fixed-size integers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "push", "pull"),
    [
        (1, Writer.push_uint8, Reader.pull_uint8),
        (2, Writer.push_uint16, Reader.pull_uint16),
        (4, Writer.push_uint32, Reader.pull_uint32),
        (8, Writer.push_uint64, Reader.pull_uint64),
    ],
    ids=["uint8", "uint16", "uint32", "uint64"],
)
def test_uint_boundaries_and_truncation(
    size: int, push: Callable[[Writer, int], None], pull: Callable[[Reader], int]
) -> None:
    for value in (0, 1, (1 << (8 * size)) - 1):
        w = Writer()
        push(w, value)
        assert w.getvalue() == value.to_bytes(size, "big")  # network byte order
        r = Reader(w.getvalue())
        assert pull(r) == value
        r.expect_end()
    with pytest.raises(DecodeError):
        pull(Reader(b"\xff" * (size - 1)))


# --- vectors, opaque, optional, bool ---------------------------------------------------------


def test_opaque_overrun() -> None:
    with pytest.raises(DecodeError):
        Reader(bytes.fromhex("05010203")).pull_opaque()  # says 5 bytes, has 3


def test_vector_length_overruns_input() -> None:
    with pytest.raises(DecodeError, match="overruns"):
        Reader(bytes.fromhex("0a0001")).pull_vector(pull_uint16_item)


def test_vector_item_cannot_read_past_vector_end() -> None:
    # A 3-byte vector of uint16: the second item would need a byte that lies *after* the
    # vector (the 0x02), which must not be borrowed from the enclosing data.
    r = Reader(bytes.fromhex("03000100" + "02"))
    with pytest.raises(DecodeError):
        r.pull_vector(pull_uint16_item)


def test_vector_restores_outer_bound() -> None:
    r = Reader(bytes.fromhex("0400010002" + "abcd"))
    assert r.pull_vector(pull_uint16_item) == [1, 2]
    assert r.pull_uint16() == 0xABCD  # reading after the vector works again
    r.expect_end()


def test_nested_vector_overruns_outer_vector() -> None:
    # Outer vector of 2 bytes holds an inner vector claiming 3 bytes.
    r = Reader(bytes.fromhex("0203aa" + "bbcc"))
    with pytest.raises(DecodeError):
        r.pull_vector(pull_opaque_item)


def test_empty_vector_and_opaque() -> None:
    r = Reader(b"\x00\x00")
    assert r.pull_vector(pull_uint16_item) == []
    assert r.pull_opaque() == b""
    r.expect_end()


@pytest.mark.parametrize("presence", [2, 3, 0x80, 0xFF])
def test_optional_presence_octet_must_be_0_or_1(presence: int) -> None:
    with pytest.raises(DecodeError, match="presence"):
        Reader(bytes([presence]) + b"\x00\x00\x00\x01").pull_optional(pull_uint32_item)


def test_optional_absent_and_present() -> None:
    assert Reader(b"\x00").pull_optional(pull_uint32_item) is None
    assert Reader(b"\x01\x00\x00\x00\x07").pull_optional(pull_uint32_item) == 7
    with pytest.raises(DecodeError):
        Reader(b"\x01\x00").pull_optional(pull_uint32_item)


@pytest.mark.parametrize("octet", [2, 0xFF])
def test_bool_must_be_0_or_1(octet: int) -> None:
    with pytest.raises(DecodeError):
        Reader(bytes([octet])).pull_bool()


def test_pull_bytes_short() -> None:
    with pytest.raises(DecodeError):
        Reader(b"abc").pull_bytes(4)


# --- whole structs: decode() and trailing bytes ----------------------------------------------

SAMPLE = Sample(
    a=1,
    b=0x0203,
    c=0x04050607,
    d=0x08090A0B0C0D0E0F,
    flag=True,
    data=b"hi",
    fixed=b"WXYZ",
    items=(b"", b"\x01"),
    nested=((1, 2), ()),
    maybe=None,
)
# By hand: each field in order, RFC 9420 §2.1 encodings.
SAMPLE_HEX = "".join(
    [
        "01",  # a
        "0203",  # b
        "04050607",  # c
        "08090a0b0c0d0e0f",  # d
        "01",  # flag
        "026869",  # data<V>
        "5758595a",  # fixed[4]
        "03000101",  # items<V><V>: 3 bytes: <>, <01>
        "06040001000200",  # nested: 6 bytes: <1, 2>, <>
        "00",  # maybe: absent
    ]
)


def test_sample_encodes_as_written_by_hand() -> None:
    assert encode(SAMPLE).hex() == SAMPLE_HEX
    assert decode(Sample, bytes.fromhex(SAMPLE_HEX)) == SAMPLE


def test_decode_rejects_trailing_bytes() -> None:
    with pytest.raises(DecodeError, match="trailing"):
        decode(Sample, bytes.fromhex(SAMPLE_HEX) + b"\x00")


def test_decode_rejects_every_truncation() -> None:
    data = bytes.fromhex(SAMPLE_HEX)
    for n in range(len(data)):
        with pytest.raises(DecodeError):
            decode(Sample, data[:n])


def test_expect_end() -> None:
    r = Reader(b"\x01\x02")
    r.pull_uint8()
    assert r.remaining() == 1 and not r.eof()
    with pytest.raises(DecodeError, match="1 trailing"):
        r.expect_end()
    r.pull_uint8()
    assert r.eof() and r.position == 2
    r.expect_end()


def test_helpers() -> None:
    assert encode_opaque(b"ab").hex() == "026162"
    assert encode_vector([SAMPLE, SAMPLE]) == varint_header(2 * len(encode(SAMPLE))) + 2 * (
        bytes.fromhex(SAMPLE_HEX)
    )
    assert encode_opaque(b"x" * 64)[:2].hex() == "4040"


def test_decode_error_is_a_remote_error_and_a_value_error() -> None:
    assert issubclass(DecodeError, RemoteError)
    assert issubclass(DecodeError, ValueError)


# --- Hypothesis: arbitrary bytes through every Reader method ---------------------------------

PULLS: dict[str, Callable[[Reader], Any]] = {
    "uint8": Reader.pull_uint8,
    "uint16": Reader.pull_uint16,
    "uint32": Reader.pull_uint32,
    "uint64": Reader.pull_uint64,
    "varint": Reader.pull_varint,
    "opaque": Reader.pull_opaque,
    "bool": Reader.pull_bool,
    "bytes5": lambda r: r.pull_bytes(5),
    "vector_uint16": lambda r: r.pull_vector(pull_uint16_item),
    "vector_opaque": lambda r: r.pull_vector(pull_opaque_item),
    "vector_vector": lambda r: r.pull_vector(lambda r2: r2.pull_vector(pull_uint32_item)),
    "optional_uint32": lambda r: r.pull_optional(pull_uint32_item),
    "optional_opaque": lambda r: r.pull_optional(pull_opaque_item),
    "expect_end": Reader.expect_end,
    "sample": Sample.pull,
    "decode_sample": None,  # decode(Sample, data): the whole-struct entry point
}


@pytest.mark.parametrize("name", list(PULLS))
@given(data=st.binary(max_size=64))
def test_arbitrary_bytes_raise_only_decode_error(name: str, data: bytes) -> None:
    r = Reader(data)
    pull = PULLS[name]
    try:
        if pull is None:
            decode(Sample, data)
        else:
            pull(r)
    except DecodeError:
        return
    assert 0 <= r.position <= len(data)


# Encodings are canonical, so whatever decodes re-encodes to exactly the bytes it consumed.
REENCODE: dict[str, tuple[Callable[[Reader], Any], Callable[[Writer, Any], None]]] = {
    "varint": (Reader.pull_varint, Writer.push_varint),
    "opaque": (Reader.pull_opaque, Writer.push_opaque),
    "bool": (Reader.pull_bool, Writer.push_bool),
    "vector_opaque": (
        lambda r: r.pull_vector(pull_opaque_item),
        lambda w, v: w.push_vector(v, push_opaque_item),
    ),
    "optional_opaque": (
        lambda r: r.pull_optional(pull_opaque_item),
        lambda w, v: w.push_optional(v, push_opaque_item),
    ),
    "sample": (Sample.pull, lambda w, v: v.push(w)),
}


@pytest.mark.parametrize("name", list(REENCODE))
@given(data=st.binary(max_size=64))
def test_decoded_prefix_reencodes_byte_exactly(name: str, data: bytes) -> None:
    pull, push = REENCODE[name]
    r = Reader(data)
    try:
        value = pull(r)
    except DecodeError:
        return
    w = Writer()
    push(w, value)
    assert w.getvalue() == data[: r.position]


@given(st.integers(min_value=0, max_value=MAX_VARINT))
def test_varint_round_trip(value: int) -> None:
    encoded = varint_header(value)
    assert len(encoded) == (1 if value < 64 else 2 if value < 16384 else 4)
    r = Reader(encoded)
    assert r.pull_varint() == value
    r.expect_end()


# Opaque lengths across the 1/2/4-byte header boundaries without building huge inputs.
@given(st.sampled_from([0, 1, 63, 64, 65, 16383, 16384, 70000]))
def test_opaque_round_trip_across_header_sizes(n: int) -> None:
    data = bytes(range(256)) * (n // 256) + bytes(range(n % 256))
    r = Reader(encode_opaque(data))
    assert r.pull_opaque() == data
    r.expect_end()


uint8s = st.integers(0, 0xFF)
uint16s = st.integers(0, 0xFFFF)
uint32s = st.integers(0, 0xFFFF_FFFF)
uint64s = st.integers(0, 0xFFFF_FFFF_FFFF_FFFF)

samples = st.builds(
    Sample,
    a=uint8s,
    b=uint16s,
    c=uint32s,
    d=uint64s,
    flag=st.booleans(),
    data=st.binary(max_size=80),
    fixed=st.binary(min_size=4, max_size=4),
    items=st.lists(st.binary(max_size=70), max_size=4).map(tuple),
    nested=st.lists(st.lists(uint16s, max_size=40).map(tuple), max_size=3).map(tuple),
    maybe=st.none() | uint32s,
)


@given(samples)
def test_struct_round_trip(value: Sample) -> None:
    data = encode(value)
    assert decode(Sample, data) == value
    assert encode(decode(Sample, data)) == data


@given(st.lists(st.lists(uint32s, max_size=20), max_size=20))
def test_nested_vector_round_trip(value: list[list[int]]) -> None:
    w = Writer()
    w.push_vector(value, lambda w2, inner: w2.push_vector(inner, push_uint32_item))
    r = Reader(w.getvalue())
    assert r.pull_vector(lambda r2: r2.pull_vector(pull_uint32_item)) == value
    r.expect_end()
