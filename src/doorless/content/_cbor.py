"""Deterministic CBOR for MIMI content, through `cbor2` (draft-ietf-mimi-content-08 section 6).

Section 6.1 ("Encoding restrictions") requires the deterministic serialization of RFC 8949
section 4.2.1: shortest integers, lengths and floats, no indefinite lengths, and map keys sorted
bytewise by their encoding (not the length-first "canonical" order of RFC 7049, which the draft
forbids). `cbor2`'s ``canonical=True`` gives the shortest forms but sorts maps length-first, so
maps are written by an encoder hook here that sorts them bytewise.

A document is accepted only if re-encoding what it decoded to gives back the same bytes: every
non-deterministic encoding (long integer or length forms, unsorted keys, wide floats, bignums
that fit an integer, non-preferred NaNs) is rejected that way. Section 6.2's data model
(key types, integer range, UTF-8) is checked on the decoded value. Every failure is a
`DecodeError`; no `cbor2` exception escapes.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import cbor2

from doorless.errors import DecodeError

# Item types a decoded document may contain. `cbor2` turns some tags into other Python objects
# (datetime, Decimal, UUID, ...); those are refused rather than re-encoded differently.
_SCALAR_TYPES = frozenset((int, str, bytes, bool, float, type(None)))
# Section 6.2: integer map keys must be exact as a double.
MAX_SAFE_INT = 2**53 - 1
# A hard cap for `cbor2`'s recursion, above the draft's limits (checked by the model).
_CBOR2_MAX_DEPTH = 16
# Tags `cbor2` would give meaning to (date-times, decimals, regular expressions, MIME messages,
# UUIDs, IP addresses, sets, string references, and shared values, which can build cycles).
# Each is kept as a plain `CBORTag`. Tags 2 and 3 (bignums) keep their meaning: a bignum becomes
# an int, so one that fits a plain integer fails the deterministic re-encoding check.
_PLAIN_TAGS = (0, 1, 4, 5, 25, 28, 29, 30, 35, 36, 37, 52, 54, 100, 256, 258, 260, 261, 1004, 55799)


def _plain_tag(tag: int) -> Any:
    def keep(value: Any, _immutable: bool) -> cbor2.CBORTag:
        return cbor2.CBORTag(tag, value)

    return keep


_SEMANTIC_DECODERS = {tag: _plain_tag(tag) for tag in _PLAIN_TAGS}


def _encode_map(encoder: cbor2.CBOREncoder, value: Mapping[Any, Any]) -> None:
    # RFC 8949 4.2.1: keys sorted bytewise by their deterministic encoding.
    items = sorted(((encode_item(k), v) for k, v in value.items()), key=lambda kv: kv[0])
    encoder.encode_length(5, len(items))
    for key, item in items:
        encoder.write(key)
        encoder.encode(item)


# canonical=True gives shortest integers, lengths and floats (NaN as 0xf97e00); maps go through
# _encode_map instead of cbor2's length-first sort.
_MAP_ENCODERS: dict[type, Any] = {dict: _encode_map, cbor2.frozendict: _encode_map}


def encode_item(value: Any) -> bytes:
    """Encode one CBOR data item deterministically (RFC 8949 4.2.1)."""
    try:
        return cbor2.dumps(value, canonical=True, encoders=_MAP_ENCODERS)
    except (cbor2.CBOREncodeError, TypeError, ValueError) as exc:
        raise DecodeError(f"value cannot be encoded as CBOR: {type(exc).__name__}") from None


def _check_data_model(value: Any, where: str) -> None:
    """Section 6.2: key types, integer key range, no semantic objects `cbor2` made from tags."""
    if type(value) in _SCALAR_TYPES:
        return
    if isinstance(value, list | tuple):
        for item in value:
            if type(item) not in _SCALAR_TYPES:
                _check_data_model(item, where)
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, bool) or not isinstance(key, int | str | bytes):
                raise DecodeError(f"{where}: map key of type {type(key).__name__} (draft 6.2)")
            if isinstance(key, int) and not -MAX_SAFE_INT <= key <= MAX_SAFE_INT:
                raise DecodeError(f"{where}: integer map key outside +-(2^53-1) (draft 6.2)")
            _check_data_model(item, where)
        return
    if isinstance(value, cbor2.CBORTag):
        _check_data_model(value.value, where)
        return
    raise DecodeError(f"{where}: unsupported CBOR item ({type(value).__name__})")


def decode_document(data: bytes, *, max_size: int) -> Any:
    """Decode the one CBOR item filling all of `data` (lists and dicts, tags kept as tags).

    Whether the encoding was deterministic is checked by `require_deterministic` once the
    structure is known to be valid, so a flood of parts or extensions fails before the slower
    re-encoding walks it.
    """
    if not isinstance(data, bytes):
        raise DecodeError("MIMI content must be bytes")
    if len(data) > max_size:
        raise DecodeError(f"MIMI content of {len(data)} octets exceeds the limit of {max_size}")
    stream = io.BytesIO(data)
    try:
        value = cbor2.CBORDecoder(
            stream,
            max_depth=_CBOR2_MAX_DEPTH,
            allow_indefinite=False,
            allow_duplicate_keys=False,
            str_errors="strict",
            read_size=1,
            semantic_decoders=_SEMANTIC_DECODERS,
        ).decode()
    except cbor2.CBORDecodeEOF:
        raise DecodeError("truncated CBOR") from None
    except (cbor2.CBORDecodeError, RecursionError) as exc:
        # Bad UTF-8, duplicate keys, indefinite lengths, too deep. The library's message may quote
        # peer data, so only its kind is kept.
        raise DecodeError(f"invalid CBOR ({type(exc).__name__})") from None
    if stream.tell() != len(data):
        raise DecodeError("trailing bytes after the CBOR item")
    return value


def require_deterministic(data: bytes, reencoded: bytes) -> None:
    """`data` must be exactly the deterministic encoding of what it decoded to (draft 6.1)."""
    if reencoded != data:
        raise DecodeError("CBOR is not in deterministic encoding (draft 6.1, RFC 8949 4.2.1)")


def check_data_model(value: Any, where: str) -> None:
    """Check an uninterpreted CBOR value (an extension's) against the data model of draft 6.2."""
    _check_data_model(value, where)


def frozen_within(encoded: bytes, levels: int) -> tuple[bool, Any]:
    """Decode our own deterministic `encoded` again, frozen (tuples, `cbor2.frozendict`).

    Returns ``(False, None)`` if it nests tags, maps and arrays more than `levels` deep:
    `cbor2`'s ``max_depth`` counts exactly those, so depth and freezing are done in C.
    """
    try:
        value = cbor2.loads(
            encoded, max_depth=levels, immutable=True, semantic_decoders=_SEMANTIC_DECODERS
        )
    except cbor2.CBORDecodeError:
        return False, None
    return True, value
