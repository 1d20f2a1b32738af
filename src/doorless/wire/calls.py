"""The media relay's wire contract: call ids, joining a call, and the frame envelope.

A call is identified on the relay by ``(group_id, call_id)``: the MLS group of the conversation
and 16 random bytes the caller picks (`CallId.random`) and announces inside the conversation.
Every message between a client and the relay starts with a `RelayMessageType` byte::

    enum { join(1), joined(2), refused(3), frame(4), leave(5), (255) } RelayMessageType;

    struct {                        // client -> relay, once, first
        RelayMessageType type = join;
        uint8 version = 1;
        opaque token<V>;            // the device's bearer token from the main API
        opaque group_id<V>;
        opaque call_id[16];
    } JoinRequest;

    struct {                        // relay -> client: admitted
        RelayMessageType type = joined;
        uint32 participant;         // this connection's number in the call (informational)
        uint16 participants;        // how many were in the call, this one included
    } JoinAccepted;

    struct {                        // relay -> client: not admitted, or dropped later
        RelayMessageType type = refused;
        opaque code<V>;             // an ErrorCode value (UTF-8)
        opaque message<V>;          // UTF-8, for people
    } Refused;

    struct { RelayMessageType type = leave; } Leave;     // client -> relay

    enum { audio(1), video(2), (255) } StreamKind;

    struct {                        // both ways, the same bytes
        RelayMessageType type = frame;
        StreamKind stream_kind;
        opaque sframe[rest];        // one SFrame frame (RFC 9605 4.2): header, ciphertext, tag
    } FrameEnvelope;

A frame envelope is one QUIC datagram (RFC 9221) or, when it does not fit in one, one
unidirectional QUIC stream; over the WebSocket fallback it is one binary message. Control
messages (join, joined, refused, leave) travel on the client's first bidirectional QUIC stream,
each as ``opaque message<V>``, or as one binary WebSocket message each. ``sframe`` has no length
prefix: the datagram, stream or WebSocket message ends it.

The relay reads only ``type``, ``stream_kind`` and the SFrame header (`frame_header`), never
the ciphertext: it cannot, as it holds no key (docs/calls.md).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Self, TypeVar

from doorless.codec import Reader, Writer, decode, encode, encode_opaque
from doorless.errors import ConfigurationError, DecodeError
from doorless.sframe import Header, decode_header

CALL_ID_LENGTH = 16
JOIN_VERSION = 1
MAX_TOKEN_BYTES = 512
MAX_GROUP_ID_BYTES = 255
MAX_CODE_BYTES = 64
MAX_REASON_BYTES = 1024
# One encoded video frame can be large (a VP8 keyframe); an envelope fits one 64 KiB WebSocket
# message (the server's limit) with room to spare.
MAX_FRAME_BYTES = 60 * 1024
# The largest envelope sent as one QUIC datagram: a DATAGRAM frame must fit in one packet of
# the 1200-byte minimum size (RFC 9221 5), minus packet header, frame header and AEAD tag.
MAX_DATAGRAM_ENVELOPE = 1100
T = TypeVar("T")
ALPN = "doorless-relay/1"  # the ALPN of the relay's raw-QUIC protocol


class RelayMessageType(IntEnum):
    join = 1
    joined = 2
    refused = 3
    frame = 4
    leave = 5


class StreamKind(IntEnum):
    audio = 1
    video = 2


@dataclass(frozen=True, slots=True)
class CallId:
    """16 random bytes chosen by the caller; unique per call within a group."""

    value: bytes

    def __post_init__(self) -> None:
        if len(self.value) != CALL_ID_LENGTH:
            raise ConfigurationError(f"a call id is {CALL_ID_LENGTH} bytes")

    @classmethod
    def random(cls, random: Callable[[int], bytes] = os.urandom) -> Self:
        return cls(random(CALL_ID_LENGTH))

    def hex(self) -> str:
        return self.value.hex()


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigurationError(message)


@dataclass(frozen=True, slots=True, repr=False)
class JoinRequest:
    """See the module docstring. The token is a credential: it never appears in a repr."""

    token: str
    group_id: bytes
    call_id: CallId

    def __post_init__(self) -> None:
        _check(0 < len(self.token.encode()) <= MAX_TOKEN_BYTES, "a token is 1..512 bytes")
        _check(0 < len(self.group_id) <= MAX_GROUP_ID_BYTES, "a group id is 1..255 bytes")

    def __repr__(self) -> str:
        return f"JoinRequest(token=***, group_id={self.group_id.hex()}, call={self.call_id.hex()})"

    def push(self, w: Writer) -> None:
        w.push_uint8(RelayMessageType.join)
        w.push_uint8(JOIN_VERSION)
        w.push_opaque(self.token.encode())
        w.push_opaque(self.group_id)
        w.push_bytes(self.call_id.value)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        _expect_type(r, RelayMessageType.join)
        version = r.pull_uint8()
        if version != JOIN_VERSION:
            raise DecodeError(f"unknown join version {version}")
        token = _utf8(r.pull_opaque(), "token")
        group_id = r.pull_opaque()
        call_id = r.pull_bytes(CALL_ID_LENGTH)
        return _build(cls, token, group_id, CallId(call_id))


@dataclass(frozen=True, slots=True)
class JoinAccepted:
    participant: int
    participants: int

    def __post_init__(self) -> None:
        _check(0 <= self.participant < 2**32, "participant is a uint32")
        _check(0 < self.participants < 2**16, "participants is a positive uint16")

    def push(self, w: Writer) -> None:
        w.push_uint8(RelayMessageType.joined)
        w.push_uint32(self.participant)
        w.push_uint16(self.participants)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        _expect_type(r, RelayMessageType.joined)
        return _build(cls, r.pull_uint32(), r.pull_uint16())


@dataclass(frozen=True, slots=True)
class Refused:
    """``code`` is an `doorless.wire.errors.ErrorCode` value (kept as text: a newer relay may
    send a code this client does not know)."""

    code: str
    message: str

    def __post_init__(self) -> None:
        _check(0 < len(self.code.encode()) <= MAX_CODE_BYTES, "a code is 1..64 bytes")
        _check(len(self.message.encode()) <= MAX_REASON_BYTES, "a message is at most 1 KiB")

    def push(self, w: Writer) -> None:
        w.push_uint8(RelayMessageType.refused)
        w.push_opaque(self.code.encode())
        w.push_opaque(self.message.encode())

    @classmethod
    def pull(cls, r: Reader) -> Self:
        _expect_type(r, RelayMessageType.refused)
        code = _utf8(r.pull_opaque(), "code")
        return _build(cls, code, _utf8(r.pull_opaque(), "message"))


@dataclass(frozen=True, slots=True)
class Leave:
    def push(self, w: Writer) -> None:
        w.push_uint8(RelayMessageType.leave)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        _expect_type(r, RelayMessageType.leave)
        return cls()


@dataclass(frozen=True, slots=True, repr=False)
class FrameEnvelope:
    """One media frame: its stream kind and the opaque SFrame frame (never in a repr)."""

    stream_kind: StreamKind
    frame: bytes

    def __post_init__(self) -> None:
        _check(0 < len(self.frame) <= MAX_FRAME_BYTES, "a frame is 1 byte to 60 KiB")

    def __repr__(self) -> str:
        return f"FrameEnvelope({self.stream_kind.name}, <{len(self.frame)} bytes>)"

    def push(self, w: Writer) -> None:
        w.push_uint8(RelayMessageType.frame)
        w.push_uint8(self.stream_kind)
        w.push_bytes(self.frame)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        _expect_type(r, RelayMessageType.frame)
        kind = _stream_kind(r.pull_uint8())
        frame = r.pull_bytes(r.remaining())
        decode_header(frame)  # an envelope always holds an SFrame frame
        return _build(cls, kind, frame)

    def to_bytes(self) -> bytes:
        return b"".join((_FRAME_PREFIX[self.stream_kind], self.frame))


RelayMessage = JoinRequest | JoinAccepted | Refused | Leave | FrameEnvelope

_DECODERS: dict[int, type[RelayMessage]] = {
    RelayMessageType.join: JoinRequest,
    RelayMessageType.joined: JoinAccepted,
    RelayMessageType.refused: Refused,
    RelayMessageType.leave: Leave,
    RelayMessageType.frame: FrameEnvelope,
}
_FRAME_PREFIX = {k: bytes((RelayMessageType.frame, k)) for k in StreamKind}
_STREAM_KINDS = {int(k): k for k in StreamKind}


def encode_message(message: RelayMessage) -> bytes:
    return encode(message)


def decode_message(data: bytes) -> RelayMessage:
    """Any relay message, by its type byte; `DecodeError` for anything malformed."""
    if not data:
        raise DecodeError("relay message: empty")
    cls = _DECODERS.get(data[0])
    if cls is None:
        raise DecodeError(f"relay message: unknown type {data[0]}")
    return decode(cls, data)


MAX_CONTROL_BYTES = 2048


def encode_control(message: RelayMessage) -> bytes:
    """A control message as it travels on the QUIC control stream: ``opaque message<V>``."""
    return encode_opaque(encode(message))


class ControlReader:
    """Splits the bytes of a QUIC control stream into relay messages (`encode_control`)."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[RelayMessage]:
        """The messages completed by ``data``; `DecodeError` for a malformed or oversized one
        (the stream is then unusable)."""
        self._buffer += data
        out: list[RelayMessage] = []
        while self._buffer:
            r = Reader(self._buffer)
            try:
                length = r.pull_varint()
            except DecodeError:
                if len(self._buffer) >= 4:
                    raise
                break  # the length itself is not complete yet
            if length > MAX_CONTROL_BYTES:
                raise DecodeError("relay control message too large")
            if r.remaining() < length:
                if len(self._buffer) > MAX_CONTROL_BYTES + 4:
                    raise DecodeError("relay control message too large")
                break
            out.append(decode_message(r.pull_bytes(length)))
            self._buffer = self._buffer[r.position :]
        return out


def frame_header(data: bytes) -> tuple[StreamKind, Header]:
    """The relay's only look into a frame envelope: its stream kind and SFrame header
    (RFC 9605 4.3). `DecodeError` for anything that is not an envelope holding an SFrame
    frame; the ciphertext is not touched."""
    if len(data) < 3 or data[0] != RelayMessageType.frame:
        raise DecodeError("not a frame envelope")
    if len(data) - 2 > MAX_FRAME_BYTES:
        raise DecodeError("frame envelope too large")
    kind = _stream_kind(data[1])
    header, _ = decode_header(data[2:])
    return kind, header


def _stream_kind(value: int) -> StreamKind:
    kind = _STREAM_KINDS.get(value)
    if kind is None:
        raise DecodeError(f"unknown stream kind {value}")
    return kind


def _expect_type(r: Reader, expected: RelayMessageType) -> None:
    found = r.pull_uint8()
    if found != expected:
        raise DecodeError(f"expected a {expected.name} message, found type {found}")


def _utf8(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError(f"{what} is not UTF-8") from None


def _build(cls: Callable[..., T], *args: object) -> T:
    try:
        return cls(*args)
    except ConfigurationError as exc:
        raise DecodeError(str(exc)) from None


__all__ = [
    "ALPN",
    "CALL_ID_LENGTH",
    "MAX_DATAGRAM_ENVELOPE",
    "MAX_FRAME_BYTES",
    "CallId",
    "ControlReader",
    "FrameEnvelope",
    "JoinAccepted",
    "JoinRequest",
    "Leave",
    "Refused",
    "RelayMessage",
    "RelayMessageType",
    "StreamKind",
    "decode_message",
    "encode_control",
    "encode_message",
    "frame_header",
]
