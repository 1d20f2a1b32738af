"""Deterministic CBOR for MIMI content, through `cbor2` (draft-ietf-mimi-content-08 section 6).

Section 6.1 ("Encoding restrictions") requires the deterministic serialization of RFC 8949
section 4.2.1: shortest integers, lengths and floats, no indefinite lengths, and map keys sorted
bytewise by their encoding (not the length-first "canonical" order of RFC 7049, which the draft
forbids). `cbor2`'s ``canonical=True`` sorts maps length-first, so maps are sorted here and
encoded in insertion order; every other item is encoded by `cbor2` in its shortest form.

Decoding accepts a document only if re-encoding it gives back the same bytes: every
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
_SCALARS = (int, str, bytes, bool, float, type(None))
# Section 6.2: integer map keys must be exact as a double.
MAX_SAFE_INT = 2**53 - 1
# A hard cap for `cbor2`'s recursion, above the draft's limits (checked by the model).
_CBOR2_MAX_DEPTH = 16


def _encode_float(encoder: cbor2.CBOREncoder, value: float) -> None:
    # The shortest float that keeps the value (RFC 8949 4.2.1); NaN becomes 0xf97e00.
    encoder.write(cbor2.dumps(value, canonical=True))


def _sort_maps(value: Any) -> Any:
    """Return `value` with every map rebuilt in RFC 8949 4.2.1 key order (bytewise)."""
    if isinstance(value, Mapping):
        items = [(_sort_maps(k), _sort_maps(v)) for k, v in value.items()]
        items.sort(key=lambda kv: encode_item(kv[0]))
        return dict(items)
    if isinstance(value, list | tuple):
        return [_sort_maps(v) for v in value]
    if isinstance(value, cbor2.CBORTag):
        return cbor2.CBORTag(value.tag, _sort_maps(value.value))
    return value


def encode_item(value: Any) -> bytes:
    """Encode one CBOR data item deterministically (RFC 8949 4.2.1)."""
    try:
        return cbor2.dumps(_sort_maps(value), encoders={float: _encode_float})
    except (cbor2.CBOREncodeError, TypeError, ValueError) as exc:
        raise DecodeError(f"value cannot be encoded as CBOR: {type(exc).__name__}") from None


def _check_data_model(value: Any, where: str) -> None:
    """Section 6.2: key types, integer key range, no semantic objects `cbor2` made from tags."""
    if isinstance(value, _SCALARS):
        return
    if isinstance(value, list | tuple):
        for item in value:
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
    """Decode one deterministically encoded CBOR item filling all of `data`.

    Lists come back as tuples and maps as read-only mappings.
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
        ).decode()
    except cbor2.CBORDecodeEOF:
        raise DecodeError("truncated CBOR") from None
    except (cbor2.CBORDecodeError, RecursionError) as exc:
        # Bad UTF-8, duplicate keys, indefinite lengths, too deep. The library's message may quote
        # peer data, so only its kind is kept.
        raise DecodeError(f"invalid CBOR ({type(exc).__name__})") from None
    if stream.tell() != len(data):
        raise DecodeError("trailing bytes after the CBOR item")
    _check_data_model(value, "MIMI content")
    if encode_item(value) != data:
        raise DecodeError("CBOR is not in deterministic encoding (draft 6.1, RFC 8949 4.2.1)")
    return _freeze(value)


def _freeze(value: Any) -> Any:
    """Arrays as tuples, maps as `cbor2.frozendict`, so decoded values can sit in frozen types."""
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, Mapping):
        return cbor2.frozendict({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, cbor2.CBORTag):
        return cbor2.CBORTag(value.tag, _freeze(value.value))
    return value
