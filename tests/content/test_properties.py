"""Property tests: any bytes decode or raise the typed errors; generated containers round-trip."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cbor2
from hypothesis import given
from hypothesis import strategies as st

from doorless.content import (
    MAX_NESTING_DEPTH,
    Disposition,
    Expiration,
    ExternalPart,
    MimiContent,
    MultiPart,
    NestedPart,
    NullPart,
    PartSemantics,
    SinglePart,
    decode,
)
from doorless.errors import DecodeError, ValidationError

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "mimi-content"
EXAMPLES = [p.read_bytes() for p in sorted(VECTORS.glob("*.cbor")) if p.stem != "implied-original"]


def _decode_or_typed_error(data: bytes) -> None:
    try:
        content = decode(data)
    except (DecodeError, ValidationError):
        return
    # Whatever decodes is deterministic: it re-encodes to exactly the input.
    assert content.encode() == data


@given(st.binary(max_size=512))
def test_arbitrary_bytes_decode_or_raise_typed_errors(data: bytes) -> None:
    _decode_or_typed_error(data)


@given(st.binary(max_size=64))
def test_arbitrary_bytes_after_an_array_header(tail: bytes) -> None:
    # Starting with array(7) gets past the first byte far more often than random bytes.
    _decode_or_typed_error(b"\x87" + tail)


@st.composite
def mutated_example(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(EXAMPLES)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set":
            data[i] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=9))
        elif kind == "delete":
            del data[i : i + draw(st.integers(1, 9))]
        else:
            del data[i:]
    return bytes(data)


@given(mutated_example())
def test_mutated_examples_decode_or_raise_typed_errors(data: bytes) -> None:
    _decode_or_typed_error(data)


# --- generated containers -----------------------------------------------------------------------

texts = st.text(max_size=20)
blobs = st.binary(max_size=40)
dispositions = st.one_of(st.sampled_from(list(Disposition)), st.integers(9, 255))


def _leaf() -> st.SearchStrategy[Any]:
    external = st.builds(
        ExternalPart,
        content_type=texts,
        url=texts,
        expires=st.integers(0, 2**32 - 1),
        size=st.integers(0, 2**64 - 1),
        enc_alg=st.integers(1, 2**16 - 1),
        key=blobs,
        nonce=blobs,
        aad=blobs,
        hash_alg=st.integers(0, 255),
        content_hash=blobs,
        description=texts,
        filename=texts,
    )
    return st.one_of(st.just(NullPart()), st.builds(SinglePart, texts, blobs), external)


def nested_parts(depth: int) -> st.SearchStrategy[NestedPart]:
    leaf = st.builds(NestedPart, dispositions, texts, _leaf())
    if depth == MAX_NESTING_DEPTH:
        return leaf
    multi = st.builds(
        MultiPart,
        st.sampled_from(list(PartSemantics)),
        st.lists(nested_parts(depth + 1), min_size=2, max_size=3).map(tuple),
    )
    return st.one_of(leaf, st.builds(NestedPart, dispositions, texts, multi))


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**64), 2**64 - 1),
    st.text(max_size=10),
    st.binary(max_size=10),
    st.floats(allow_nan=False),
)
ext_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(st.one_of(st.integers(-100, 100), st.text(max_size=5)), inner, max_size=3),
        # Any tag but the bignums (2, 3) stays an uninterpreted tag.
        st.builds(
            cbor2.CBORTag, st.integers(0, 2**64 - 1).filter(lambda t: t not in (2, 3)), inner
        ),
    ),
    max_leaves=8,
).filter(lambda v: _depth(v) <= 3)
ext_keys = st.one_of(
    st.integers(-(2**53) + 1, 2**53 - 1).filter(lambda k: k not in (1, 2)),
    st.text(min_size=1, max_size=20),
)


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, tuple):
        return 1 + max((_depth(v) for v in value), default=0)
    if isinstance(value, cbor2.CBORTag):
        return 1 + _depth(value.value)
    return 0


message_ids = st.none() | st.binary(min_size=32, max_size=32)
containers = st.builds(
    MimiContent,
    salt=st.binary(min_size=16, max_size=16),
    replaces=message_ids,
    topic_id=blobs,
    expires=st.none() | st.builds(Expiration, st.booleans(), st.integers(0, 2**32 - 1)),
    in_reply_to=message_ids,
    body=nested_parts(1),
    sender_uri=st.none() | texts,
    room_uri=st.none() | texts,
    extensions=st.dictionaries(ext_keys, ext_values, max_size=4).map(lambda d: tuple(d.items())),
)


@given(containers)
def test_generated_containers_round_trip(content: MimiContent) -> None:
    data = content.encode()
    again = decode(data)
    assert again == content
    assert again.encode() == data
