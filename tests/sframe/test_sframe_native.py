"""The C per-frame path (`_sframe_native.c`) against the pure-Python
reference: the same bytes out of a sender, the same result or the same typed error (and
message) out of a receiver for any frame, and the same replay window after it; its AEAD
against pyca's; keys that cannot be copied."""

from __future__ import annotations

import copy
import pickle
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from doorless import sframe
from doorless.errors import DoorlessError
from doorless.sframe import BaseKey, SFrameReceiver, SFrameSender, SFrameSuite

SUITES = list(SFrameSuite)
KEY = BaseKey(bytes(range(16)))

# KIDs and CTRs at every width of §4.3 and its edges.
VALUES = st.one_of(
    st.integers(0, 9),
    st.sampled_from([255, 256, 65535, 65536, (1 << 56) - 1, 1 << 56, sframe.MAX_VALUE - 1]),
    st.integers(0, sframe.MAX_VALUE - 1),
)


# The fixtures below hold no per-example state (the module, and the path switch of conftest).
FIXTURES_OK = [HealthCheck.function_scoped_fixture]


@pytest.fixture
def native(sframe_path: str) -> Any:
    assert sframe_path == "native" and sframe.native is not None
    return sframe.native


def _key(suite: SFrameSuite) -> BaseKey:
    return BaseKey(bytes(range(sframe.suite_params(suite).nk)))


def _made(native_on: bool, make: Any) -> Any:
    """``make()`` with the C path on or off."""
    with pytest.MonkeyPatch.context() as m:
        if not native_on:
            m.setattr(sframe, "native", None)
        return make()


def _outcome(receiver: SFrameReceiver, frame: bytes, metadata: bytes) -> tuple[Any, ...]:
    try:
        result = receiver.decrypt(frame, metadata)
    except DoorlessError as e:  # the types and messages are what is compared
        return ("error", type(e).__name__, str(e))
    assert type(result) is sframe.Decrypted
    return ("ok", tuple(result))


def _non_minimal(suite: SFrameSuite, key: BaseKey, frame: bytes, metadata: bytes) -> bytes:
    """The frame's header with its CTR not minimally encoded (§4.3), sealed again so that its
    tag verifies over that header."""
    kid, ctr, n = sframe._parse_header(frame)
    config = frame[0]
    kid_bytes = frame[1 : n - ((config & 0x07) + 1 if config & 0x08 else 0)]
    # 0-7 in one CTR byte (they belong in the config byte); larger CTRs with a leading zero.
    length = 1 if ctr < 8 else (ctr.bit_length() + 7) // 8 + 1
    if length > 8:
        return frame
    header = bytes([(config & 0xF0) | 0x08 | (length - 1)]) + kid_bytes + ctr.to_bytes(length)
    derived = sframe.derive_key_salt(suite, kid, key)
    pt = sframe.aead_decrypt(
        suite, derived.key, sframe.nonce_for(derived.salt, ctr), frame[:n] + metadata, frame[n:]
    )
    nonce = sframe.nonce_for(derived.salt, ctr)
    return header + sframe.aead_encrypt(suite, derived.key, nonce, header + metadata, pt)


OPS = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "fresh",
                "fresh",
                "fresh",
                "replay",
                "flip",
                "cut",
                "unknown_kid",
                "non_minimal",
                "other_metadata",
                "bytearray",
            ]
        ),
        VALUES,  # CTR of a fresh frame
        st.integers(0, 1 << 16),  # which kid / frame / bit
        st.binary(max_size=40),  # plaintext
    ),
    max_size=30,
)


@settings(max_examples=300, deadline=None, suppress_health_check=FIXTURES_OK)
@given(
    suite=st.sampled_from(SUITES),
    window=st.sampled_from([0, 1, 3, 8, 128]),
    kids=st.lists(VALUES, min_size=1, max_size=3, unique=True),
    metadata=st.sampled_from([b"", b"m", b"meta" * 10]),
    ops=OPS,
)
def test_the_c_receiver_agrees_with_the_python_receiver(
    native: Any,
    suite: SFrameSuite,
    window: int,
    kids: list[int],
    metadata: bytes,
    ops: list[tuple[str, int, int, bytes]],
) -> None:
    key = _key(suite)
    receivers = []
    for native_on in (True, False):
        r = _made(native_on, lambda: SFrameReceiver(suite, window=window))
        for kid in kids:
            _made(native_on, lambda r=r, kid=kid: r.add_key(kid, key))
        receivers.append(r)
    c_rx, py_rx = receivers
    assert c_rx._open_frame is not None and py_rx._open_frame is None
    sent: list[bytes] = []
    for op, ctr, pick, pt in ops:
        kid = kids[pick % len(kids)]
        highest = py_rx.window_of(kid)[0]
        if op == "near_top":  # around the highest CTR accepted
            ctr = max(0, highest + pick % 3 - 1)
        elif op == "near_edge":  # around the oldest CTR the window still covers
            ctr = max(0, highest - window + pick % 3)
        if op == "replay" and sent:
            frame = sent[pick % len(sent)]
        else:
            sender = SFrameSender(suite, kid, key, next_ctr=ctr)
            sender.reserve(1)
            frame = sender.encrypt(pt, metadata)
            sent.append(frame)
        meta = metadata
        if op == "flip":
            i = pick % len(frame)
            frame = frame[:i] + bytes([frame[i] ^ (1 << (pick % 8))]) + frame[i + 1 :]
        elif op == "cut":
            frame = frame[: pick % len(frame)]
        elif op == "unknown_kid":
            stranger = SFrameSender(suite, sframe.MAX_VALUE - 7 - pick % 3, key, next_ctr=ctr)
            stranger.reserve(1)
            frame = stranger.encrypt(pt, metadata)
        elif op == "non_minimal":
            frame = _non_minimal(suite, key, frame, metadata)
        elif op == "other_metadata":
            meta = metadata + b"x"
        outcomes = [_outcome(r, frame, meta) for r in (c_rx, py_rx)]
        assert outcomes[0] == outcomes[1], (op, frame.hex())
        for k in kids:
            assert c_rx.window_of(k) == py_rx.window_of(k)


@settings(max_examples=100, deadline=None, suppress_health_check=FIXTURES_OK)
@given(
    suite=st.sampled_from(SUITES),
    kid=VALUES,
    ctr=VALUES,
    pt=st.binary(max_size=300),
    metadata=st.binary(max_size=20),
)
def test_the_c_sender_makes_the_python_senders_bytes(
    native: Any,
    suite: SFrameSuite,
    kid: int,
    ctr: int,
    pt: bytes,
    metadata: bytes,
) -> None:
    frames = []
    for native_on in (True, False):
        s = _made(native_on, lambda: SFrameSender(suite, kid, _key(suite), next_ctr=ctr))
        s.reserve(1)
        frames.append(s.encrypt(pt, metadata))
    assert frames[0] == frames[1]


@settings(max_examples=100, deadline=None, suppress_health_check=FIXTURES_OK)
@given(
    key=st.sampled_from([bytes(range(16)), bytes(range(32))]),
    nonce=st.binary(min_size=12, max_size=12),
    pt=st.binary(max_size=200),
    aad=st.binary(max_size=40),
)
def test_the_c_aead_is_aes_gcm(
    native: Any, key: bytes, nonce: bytes, pt: bytes, aad: bytes
) -> None:
    c = native.FrameKey(key, bytes(12), 0)
    ct = c.seal(nonce, pt, aad)
    assert ct == AESGCM(key).encrypt(nonce, pt, aad)
    assert c.open(nonce, ct, aad) == pt
    assert c.open(nonce, memoryview(ct), bytearray(aad)) == pt
    for bad in (ct[:-1] + bytes([ct[-1] ^ 1]), ct[:15], b""):
        with pytest.raises(InvalidTag):
            c.open(nonce, bad, aad)


def test_bad_key_material_is_refused(native: Any) -> None:
    with pytest.raises(ValueError, match="16 or 32"):
        native.FrameKey(bytes(24), bytes(12), 0)
    with pytest.raises(ValueError, match="tag no longer than the hash"):
        native.FrameKey(bytes(48), bytes(12), 0, 16, "sha256", 33)
    with pytest.raises(ValueError, match="sha256 or sha512"):
        native.FrameKey(bytes(48), bytes(12), 0, 16, "md5", 10)
    with pytest.raises(ValueError, match="HMAC key after it"):
        native.FrameKey(bytes(16), bytes(12), 0, 16, "sha256", 10)
    with pytest.raises(ValueError, match="12 bytes"):
        native.FrameKey(bytes(16), bytes(11), 0)
    with pytest.raises(ValueError, match="negative"):
        native.FrameKey(bytes(16), bytes(12), -1)
    key = native.FrameKey(bytes(16), bytes(12), 0)
    with pytest.raises(ValueError, match="nonce must be 12"):
        key.seal(bytes(8), b"pt", b"")
    with pytest.raises(OverflowError):
        key.seal_frame(b"\x00", -1, b"pt", b"")


def test_a_key_cannot_be_copied_and_shows_no_secret(native: Any) -> None:
    secret = bytes(range(100, 116))
    key = native.FrameKey(secret, bytes(range(12)), 4)
    for clone in (copy.copy, copy.deepcopy, pickle.dumps):
        with pytest.raises(TypeError, match="cannot be copied"):
            clone(key)
    assert secret.hex() not in repr(key) and repr(secret) not in repr(key)
    assert key.salt_int == int.from_bytes(bytes(range(12)), "big")
    key.highest = sframe.MAX_VALUE
    assert key.highest == sframe.MAX_VALUE
    key.highest = -1
    assert key.highest == -1
    with pytest.raises(OverflowError):
        key.highest = -2


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: s.name)
def test_every_suite_takes_the_c_path(native: Any, suite: SFrameSuite) -> None:
    r = SFrameReceiver(suite)
    r.add_key(1, _key(suite))
    assert r._open_frame is native.open_frame and type(r._keys[1]) is native.FrameKey
    s = SFrameSender(suite, 1, _key(suite))
    assert s._seal_frame.__self__.__class__ is native.FrameKey
