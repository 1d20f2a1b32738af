"""The one binary codec: the TLS presentation language as RFC 9420 §2.1 uses it.

`Reader` pulls values from bytes and raises `DecodeError` on anything malformed (short input,
non-minimal or reserved varints, trailing bytes); `Writer` pushes them. Every wire struct has a
``push(w)`` method and a ``pull(r)`` classmethod built on these; `encode` and `decode` are the
entry points that add the "no trailing bytes" rule.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol, Self, TypeVar

from doorless.errors import DecodeError

T = TypeVar("T")

# RFC 9420 §2.1.2: varints carry at most 30 bits.
MAX_VARINT = (1 << 30) - 1


class Reader:
    """Cursor over immutable bytes. Reads never run past ``_end`` (the innermost open vector)."""

    __slots__ = ("_data", "_end", "_pos")

    def __init__(self, data: bytes) -> None:
        self._data = bytes(data)
        self._pos = 0
        self._end = len(self._data)

    @property
    def position(self) -> int:
        return self._pos

    def read_since(self, start: int) -> bytes:
        """The bytes read from position ``start`` up to here."""
        return self._data[start : self._pos]

    def eof(self) -> bool:
        return self._pos >= self._end

    def remaining(self) -> int:
        return self._end - self._pos

    def _take(self, n: int) -> bytes:
        pos = self._pos
        end = pos + n
        if end > self._end:
            raise DecodeError(f"need {n} bytes at offset {pos}, have {self._end - pos}")
        self._pos = end
        return self._data[pos:end]

    def pull_bytes(self, n: int) -> bytes:
        """A fixed-length ``opaque[n]``."""
        return self._take(n)

    def pull_uint8(self) -> int:
        if self._pos >= self._end:
            raise DecodeError(f"need 1 byte at offset {self._pos}")
        v = self._data[self._pos]
        self._pos += 1
        return v

    def pull_uint16(self) -> int:
        return int.from_bytes(self._take(2), "big")

    def pull_uint32(self) -> int:
        return int.from_bytes(self._take(4), "big")

    def pull_uint64(self) -> int:
        return int.from_bytes(self._take(8), "big")

    def pull_varint(self) -> int:
        """RFC 9420 §2.1.2 variable-length integer: minimal encoding, prefix 0b11 reserved."""
        first = self.pull_uint8()
        prefix = first >> 6
        if prefix == 0:
            return first
        if prefix == 1:
            v = ((first & 0x3F) << 8) | self.pull_uint8()
            if v < 0x40:
                raise DecodeError("non-minimal varint")
            return v
        if prefix == 2:
            v = ((first & 0x3F) << 24) | int.from_bytes(self._take(3), "big")
            if v < 0x4000:
                raise DecodeError("non-minimal varint")
            return v
        raise DecodeError("invalid varint prefix 0b11")

    def pull_opaque(self) -> bytes:
        """``opaque data<V>``."""
        # The common case inlined (a one-octet length that fits): decoders spend most of
        # their time here. Anything else takes the general path and its errors.
        pos = self._pos
        data = self._data
        if pos < self._end:
            n = data[pos]
            if n < 0x40:
                stop = pos + 1 + n
                if stop <= self._end:
                    self._pos = stop
                    return data[pos + 1 : stop]
            elif n < 0x80 and pos + 1 < self._end:
                n = ((n & 0x3F) << 8) | data[pos + 1]
                stop = pos + 2 + n
                if n >= 0x40 and stop <= self._end:  # minimal encodings only
                    self._pos = stop
                    return data[pos + 2 : stop]
        return self._take(self.pull_varint())

    def pull_vector(self, pull_item: Callable[[Reader], T]) -> list[T]:
        """``T items<V>``: a varint byte length followed by items that fill it exactly."""
        length = self.pull_varint()
        end = self._pos + length
        if end > self._end:
            raise DecodeError(f"vector of {length} bytes overruns input at offset {self._pos}")
        outer = self._end
        self._end = end
        items: list[T] = []
        try:
            while self._pos < end:
                items.append(pull_item(self))
        finally:
            self._end = outer
        return items

    def pull_uint16_vector(self) -> tuple[int, ...]:
        """``uint16 items<V>`` (capabilities lists), read at C speed: a whole number of items
        must fill the vector, as `pull_vector` requires."""
        data = self.pull_opaque()
        if len(data) % 2:
            raise DecodeError(f"uint16 vector of {len(data)} bytes at offset {self._pos}")
        return struct.unpack(f">{len(data) // 2}H", data)

    def pull_optional(self, pull_item: Callable[[Reader], T]) -> T | None:
        """``optional<T>``: a presence octet (0 or 1) then the value."""
        present = self.pull_uint8()
        if present == 0:
            return None
        if present == 1:
            return pull_item(self)
        raise DecodeError(f"optional presence octet must be 0 or 1, got {present}")

    def pull_bool(self) -> bool:
        v = self.pull_uint8()
        if v > 1:
            raise DecodeError(f"boolean must be 0 or 1, got {v}")
        return v == 1

    def expect_end(self) -> None:
        if self._pos != self._end:
            raise DecodeError(f"{self._end - self._pos} trailing bytes")


class Writer:
    """Append-only output buffer."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def getvalue(self) -> bytes:
        return bytes(self._buf)

    def __len__(self) -> int:
        """Bytes written so far."""
        return len(self._buf)

    def push_bytes(self, data: bytes) -> None:
        self._buf += data

    def push_uint8(self, v: int) -> None:
        self._buf.append(v)

    def push_uint16(self, v: int) -> None:
        self._buf += v.to_bytes(2, "big")

    def push_uint32(self, v: int) -> None:
        self._buf += v.to_bytes(4, "big")

    def push_uint64(self, v: int) -> None:
        self._buf += v.to_bytes(8, "big")

    def push_varint(self, v: int) -> None:
        if v < 0x40:
            self._buf.append(v)
        elif v < 0x4000:
            self._buf += (v | 0x4000).to_bytes(2, "big")
        elif v <= MAX_VARINT:
            self._buf += (v | 0x80000000).to_bytes(4, "big")
        else:
            raise ValueError(f"{v} does not fit a 30-bit varint")

    def push_opaque(self, data: bytes | bytearray) -> None:
        n = len(data)
        buf = self._buf
        if n < 0x40:
            buf.append(n)
        elif n < 0x4000:  # the two-octet length inlined too: messages are mostly this size
            buf += (n | 0x4000).to_bytes(2, "big")
        else:
            self.push_varint(n)
        buf += data

    def push_vector(self, items: Iterable[T], push_item: Callable[[Writer, T], None]) -> None:
        inner = Writer()
        for item in items:
            push_item(inner, item)
        self.push_opaque(inner._buf)

    def push_optional(self, item: T | None, push_item: Callable[[Writer, T], None]) -> None:
        if item is None:
            self._buf.append(0)
        else:
            self._buf.append(1)
            push_item(self, item)

    def push_bool(self, v: bool) -> None:
        self._buf.append(1 if v else 0)


class Struct(Protocol):
    """A wire structure: ``push`` writes it, ``pull`` reads it."""

    def push(self, w: Writer) -> None: ...

    @classmethod
    def pull(cls, r: Reader) -> Self: ...


S = TypeVar("S", bound=Struct)


def encode(value: Struct) -> bytes:
    w = Writer()
    value.push(w)
    return w.getvalue()


def decode(cls: type[S], data: bytes) -> S:
    """Decode exactly one ``cls`` from ``data``; trailing bytes are an error."""
    r = Reader(data)
    value = cls.pull(r)
    r.expect_end()
    return value


def push_struct(w: Writer, value: Struct) -> None:
    """Adapter so `Writer.push_vector` can take struct items."""
    value.push(w)


def push_opaque_item(w: Writer, value: bytes) -> None:
    w.push_opaque(value)


def pull_opaque_item(r: Reader) -> bytes:
    return r.pull_opaque()


def push_uint16_item(w: Writer, value: int) -> None:
    w.push_uint16(value)


def pull_uint16_item(r: Reader) -> int:
    return r.pull_uint16()


def push_uint32_item(w: Writer, value: int) -> None:
    w.push_uint32(value)


def pull_uint32_item(r: Reader) -> int:
    return r.pull_uint32()


def encode_opaque(data: bytes) -> bytes:
    """``opaque<V>`` on its own (used in labeled hashes and signatures)."""
    w = Writer()
    w.push_opaque(data)
    return w.getvalue()


def varint_header(length: int) -> bytes:
    w = Writer()
    w.push_varint(length)
    return w.getvalue()


def encode_vector(items: Sequence[Struct]) -> bytes:
    w = Writer()
    w.push_vector(items, push_struct)
    return w.getvalue()
