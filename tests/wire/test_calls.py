"""The relay's wire contract (`doorless.wire.calls`): byte-exact round trips, garbage and
near-misses rejected with `DecodeError`, the control-stream framing, and the relay's header-only
look into a frame envelope."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from doorless.codec import encode
from doorless.errors import ConfigurationError, DecodeError
from doorless.sframe import encode_header
from doorless.wire.calls import (
    CALL_ID_LENGTH,
    MAX_FRAME_BYTES,
    CallId,
    ControlReader,
    FrameEnvelope,
    JoinAccepted,
    JoinRequest,
    Leave,
    Refused,
    StreamKind,
    decode_message,
    encode_control,
    frame_header,
)

CALL = CallId(bytes(range(16)))
FRAME = encode_header(3, 300) + b"ciphertext-and-tag"

# Each message with its expected bytes, written out by hand from the module's struct text.
EXACT = [
    (
        JoinRequest("tok", b"\x01\x02", CALL),
        b"\x01\x01" + b"\x03tok" + b"\x02\x01\x02" + bytes(range(16)),
    ),
    (JoinAccepted(7, 3), b"\x02" + b"\x00\x00\x00\x07" + b"\x00\x03"),
    (Refused("not_found", "no"), b"\x03" + b"\x09not_found" + b"\x02no"),
    (Leave(), b"\x05"),
    (FrameEnvelope(StreamKind.video, FRAME), b"\x04\x02" + FRAME),
]


@pytest.mark.parametrize(("message", "data"), EXACT, ids=lambda v: type(v).__name__)
def test_round_trip_is_byte_exact(message: object, data: bytes) -> None:
    assert encode(message) == data  # type: ignore[arg-type]
    assert decode_message(data) == message


def test_envelope_to_bytes_is_its_encoding() -> None:
    envelope = FrameEnvelope(StreamKind.audio, FRAME)
    assert envelope.to_bytes() == encode(envelope)
    assert "ciphertext" not in repr(envelope)


def test_token_never_in_a_repr() -> None:
    assert "secret-token" not in repr(JoinRequest("secret-token", b"g", CALL))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00",  # unknown type
        b"\x09",
        b"\x01\x02" + b"\x03tok\x02\x01\x02" + bytes(16),  # join version 2
        b"\x01\x01" + b"\x03tok\x02\x01\x02" + bytes(15),  # call id too short
        b"\x01\x01" + b"\x00" + b"\x02\x01\x02" + bytes(16),  # empty token
        b"\x01\x01" + b"\x02\xff\xfe" + b"\x02\x01\x02" + bytes(16),  # token not UTF-8
        b"\x02\x00\x00\x00\x07\x00\x00",  # zero participants
        b"\x02\x00\x00\x00\x07\x00\x03\x00",  # trailing byte
        b"\x03\x00\x00",  # empty code
        b"\x05\x00",  # leave with a trailing byte
        b"\x04\x03" + FRAME,  # unknown stream kind
        b"\x04\x01",  # no frame
        b"\x04\x01\x90",  # truncated SFrame header (a KID byte is missing)
        b"\x04\x01\x88\x00\x00",  # non-minimal SFrame header
        b"\x04\x01" + b"\x00" * (MAX_FRAME_BYTES + 1),  # too large
    ],
)
def test_malformed_messages_are_decode_errors(data: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_message(data)


@given(st.binary(max_size=200))
def test_arbitrary_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    try:
        message = decode_message(data)
    except DecodeError:
        return
    assert encode(message) == data  # what decodes, re-encodes to the same bytes


@given(st.binary(max_size=200))
def test_frame_header_reads_header_or_raises_decode_error(data: bytes) -> None:
    try:
        kind, header = frame_header(data)
    except DecodeError:
        return
    assert data[:2] == bytes((4, kind)) and data[2:].startswith(header.encode())


def test_frame_header_reads_only_kind_and_header() -> None:
    kind, header = frame_header(b"\x04\x01" + FRAME)
    assert (kind, header.kid, header.ctr) == (StreamKind.audio, 3, 300)
    with pytest.raises(DecodeError):
        frame_header(encode(Leave()))


def test_construction_checks() -> None:
    with pytest.raises(ConfigurationError):
        CallId(b"short")
    with pytest.raises(ConfigurationError):
        FrameEnvelope(StreamKind.audio, b"")
    with pytest.raises(ConfigurationError):
        JoinRequest("", b"g", CALL)
    assert len(CallId.random().value) == CALL_ID_LENGTH
    assert CallId.random() != CallId.random()


def test_control_reader_splits_and_waits_for_complete_messages() -> None:
    messages = [JoinRequest("t", b"g", CALL), JoinAccepted(1, 1), Refused("x", "y")]
    stream = b"".join(encode_control(m) for m in messages)
    reader = ControlReader()
    got = []
    for i in range(len(stream)):  # one byte at a time
        got += reader.feed(stream[i : i + 1])
    assert got == messages


def test_control_reader_refuses_garbage_and_oversized() -> None:
    with pytest.raises(DecodeError):
        ControlReader().feed(b"\x02\x00\x00")  # a complete message of unknown type 0
    with pytest.raises(DecodeError):
        ControlReader().feed(b"\x80\x01\x00\x00")  # 65536 bytes announced
