"""Fixed-width TLS vectors as the KEYTRANS draft writes them (draft-ietf-keytrans-protocol §2.1).

The draft uses RFC 8446 length prefixes (as many bytes as the ceiling needs) instead of the
RFC 9420 varints, and counts *elements*, not bytes: ``T items<0..2^8-1>`` is a one-byte element
count followed by the items. Cryptographic inputs (commitments, search keys, log entries) MUST
use this encoding, so the KT structures use these helpers on top of `doorless.codec`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from doorless.codec import Reader, Writer
from doorless.errors import ConfigurationError

T = TypeVar("T")

_PULL_LENGTH: dict[int, Callable[[Reader], int]] = {
    1: Reader.pull_uint8,
    2: Reader.pull_uint16,
    4: Reader.pull_uint32,
}
_PUSH_LENGTH: dict[int, Callable[[Writer, int], None]] = {
    1: Writer.push_uint8,
    2: Writer.push_uint16,
    4: Writer.push_uint32,
}


def push_opaque_fixed(w: Writer, data: bytes, width: int) -> None:
    """``opaque data<0..2^(8*width)-1>`` with a ``width``-byte length prefix."""
    if len(data) >= 1 << (8 * width):
        raise ConfigurationError(f"{len(data)} bytes do not fit a {width}-byte length prefix")
    _PUSH_LENGTH[width](w, len(data))
    w.push_bytes(data)


def pull_opaque_fixed(r: Reader, width: int) -> bytes:
    return r.pull_bytes(_PULL_LENGTH[width](r))


def push_counted(
    w: Writer, items: Sequence[T], width: int, push_item: Callable[[Writer, T], None]
) -> None:
    """``T items<0..2^(8*width)-1>``: an element count, then the elements."""
    if len(items) >= 1 << (8 * width):
        raise ConfigurationError(f"{len(items)} items do not fit a {width}-byte count")
    _PUSH_LENGTH[width](w, len(items))
    for item in items:
        push_item(w, item)


def pull_counted(r: Reader, width: int, pull_item: Callable[[Reader], T]) -> list[T]:
    count = _PULL_LENGTH[width](r)
    return [pull_item(r) for _ in range(count)]
