"""SFrame (RFC 9605) beyond the vectors: header rules, the sender's counter, the receiver's
replay window and error paths (each leaves the receiver unchanged), MLS keying (§5.2), reprs,
and Hypothesis properties (decoders raise only typed errors; round trips for every suite)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from doorless import sframe
from doorless.errors import ConfigurationError, DecodeError, RemoteError
from doorless.sframe import (
    BaseKey,
    CounterExhausted,
    FrameDecryptError,
    Header,
    MlsKidLayout,
    ReplayedFrame,
    SFrameReceiver,
    SFrameSender,
    SFrameSuite,
    UnknownKeyId,
    decode_header,
    encode_header,
)
from mls.harness import make_group

KEY = BaseKey(bytes(range(16)))
OTHER = BaseKey(bytes(16))
GCM = SFrameSuite.AES_128_GCM_SHA256_128
CTR80 = SFrameSuite.AES_128_CTR_HMAC_SHA256_80
ALL_SUITES = list(SFrameSuite)
U64 = st.integers(0, sframe.MAX_VALUE)


def sender(
    suite: SFrameSuite = GCM, kid: int = 5, *, next_ctr: int = 0, n: int = 100
) -> SFrameSender:
    s = SFrameSender(suite, kid, KEY, next_ctr=next_ctr)
    s.reserve(n)
    return s


def receiver(suite: SFrameSuite = GCM, kid: int = 5, **kw: int) -> SFrameReceiver:
    r = SFrameReceiver(suite, **kw)
    r.add_key(kid, KEY)
    return r


def snapshot(r: SFrameReceiver) -> dict[int, tuple[int, int]]:
    return {kid: r.window_of(kid) for kid in r.kids()}


# --- suites and header ----------------------------------------------------------------------


def test_suite_constants_match_the_rfc_table() -> None:
    """RFC 9605 §4.5 table: (Nh, Nka, Nk, Nn, Nt)."""
    table = {
        1: (32, 16, 48, 12, 10),
        2: (32, 16, 48, 12, 8),
        3: (32, 16, 48, 12, 4),
        4: (32, None, 16, 12, 16),
        5: (64, None, 32, 12, 16),
    }
    for value, row in table.items():
        p = sframe.suite_params(value)
        assert (p.nh, p.nka, p.nk, p.nn, p.nt) == row


def test_unknown_suite_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="0x0000"):
        sframe.suite_params(0)


@pytest.mark.parametrize(
    "encoded",
    [
        "88" + "05",  # KID 5 in an extension byte: must be in the config byte
        "08" + "07",  # CTR 7 likewise
        "98" + "0009" + "09",  # KID 9 in two bytes with a leading zero
        "89" + "09" + "0009",  # CTR 9 in two bytes
    ],
)
def test_non_minimal_headers_are_rejected(encoded: str) -> None:
    with pytest.raises(DecodeError, match="minimally"):
        decode_header(bytes.fromhex(encoded))


@pytest.mark.parametrize("encoded", ["", "80", "f8" + "ff" * 8, "ff" + "ff" * 15])
def test_truncated_headers_are_rejected(encoded: str) -> None:
    with pytest.raises(DecodeError):
        decode_header(bytes.fromhex(encoded))


def test_out_of_range_values_cannot_be_encoded() -> None:
    for kid, ctr in ((-1, 0), (0, -1), (1 << 64, 0), (0, 1 << 64)):
        with pytest.raises(ConfigurationError):
            encode_header(kid, ctr)
        with pytest.raises(ConfigurationError):
            Header(kid, ctr)


@given(U64, U64)
def test_header_round_trip(kid: int, ctr: int) -> None:
    encoded = encode_header(kid, ctr)
    assert decode_header(encoded + b"rest") == (Header(kid, ctr), len(encoded))


@given(st.binary(max_size=40))
def test_header_decoder_raises_only_decode_error(data: bytes) -> None:
    try:
        header, n = decode_header(data)
    except DecodeError:
        return
    # Whatever decodes re-encodes to exactly the bytes read (no two encodings of one value).
    assert encode_header(header.kid, header.ctr) == data[:n]


# --- sender ---------------------------------------------------------------------------------


def test_counters_are_never_reused_and_need_a_reservation() -> None:
    s = SFrameSender(GCM, 5, KEY)
    with pytest.raises(CounterExhausted):
        s.encrypt(b"frame")
    assert s.reserve(2) == 2
    first, second = s.encrypt(b"a"), s.encrypt(b"a")
    assert decode_header(first)[0].ctr == 0 and decode_header(second)[0].ctr == 1
    assert first != second
    with pytest.raises(CounterExhausted):
        s.encrypt(b"a")
    assert s.next_ctr == 2 == s.reserved_until


def test_a_resumed_sender_continues_after_the_persisted_bound() -> None:
    s = SFrameSender(GCM, 5, KEY)
    persisted = s.reserve(10)
    s.encrypt(b"only one frame sent before a crash")
    resumed = SFrameSender(GCM, 5, KEY, next_ctr=persisted)
    resumed.reserve(1)
    assert decode_header(resumed.encrypt(b"x"))[0].ctr == 10


def test_counter_space_ends_at_2_64() -> None:
    s = SFrameSender(GCM, 5, KEY, next_ctr=sframe.MAX_VALUE)
    assert s.reserve(5) == 1 << 64
    assert decode_header(s.encrypt(b"x"))[0].ctr == sframe.MAX_VALUE
    with pytest.raises(CounterExhausted):
        s.encrypt(b"x")
    with pytest.raises(CounterExhausted):
        s.reserve(1)
    with pytest.raises(ConfigurationError):
        SFrameSender(GCM, 5, KEY, next_ctr=(1 << 64) + 1)


# --- receiver -------------------------------------------------------------------------------


@pytest.mark.parametrize("suite", ALL_SUITES, ids=lambda s: s.name)
def test_tampered_frames_raise_and_change_nothing(suite: SFrameSuite) -> None:
    s, r = sender(suite), receiver(suite)
    r.decrypt(s.encrypt(b"first"))
    frame = s.encrypt(b"audio frame", b"meta")
    before = snapshot(r)
    for i in range(len(frame)):
        bad = bytearray(frame)
        bad[i] ^= 0x01
        with pytest.raises(RemoteError):
            r.decrypt(bytes(bad), b"meta")
    for bad_frame, meta in ((frame, b"other"), (frame[:-1], b"meta"), (frame + b"\0", b"meta")):
        with pytest.raises(FrameDecryptError):
            r.decrypt(bad_frame, meta)
    assert snapshot(r) == before
    assert r.decrypt(frame, b"meta").plaintext == b"audio frame"


def test_a_frame_under_another_key_is_a_decrypt_error() -> None:
    r = SFrameReceiver(GCM)
    r.add_key(5, OTHER)
    with pytest.raises(FrameDecryptError):
        r.decrypt(sender().encrypt(b"x"))


def test_unknown_kid() -> None:
    with pytest.raises(UnknownKeyId, match="KID 6"):
        receiver().decrypt(sender(kid=6).encrypt(b"x"))


def test_replays_are_rejected_and_reordering_within_the_window_is_not() -> None:
    s, r = sender(n=300), receiver(window=64)
    frames = [s.encrypt(bytes([i])) for i in range(200)]
    assert r.decrypt(frames[100]).plaintext == b"\x64"
    assert r.decrypt(frames[40]).plaintext == b"\x28"  # 60 behind: inside the window
    before = snapshot(r)
    for replay in (frames[100], frames[40]):
        with pytest.raises(ReplayedFrame, match="already"):
            r.decrypt(replay)
    with pytest.raises(ReplayedFrame, match="older"):
        r.decrypt(frames[36])  # 64 behind
    assert snapshot(r) == before
    r.decrypt(frames[199])
    with pytest.raises(ReplayedFrame):
        r.decrypt(frames[100])


def test_window_zero_turns_replay_checks_off() -> None:
    s, r = sender(), receiver(window=0)
    frame = s.encrypt(b"x")
    assert r.decrypt(frame) == r.decrypt(frame)


def test_replacing_a_key_resets_its_window_and_removal_forgets_it() -> None:
    s, r = sender(), receiver()
    frame = s.encrypt(b"x")
    r.decrypt(frame)
    r.add_key(5, KEY)
    r.decrypt(frame)
    r.remove_where(lambda kid: kid == 5)
    with pytest.raises(UnknownKeyId):
        r.decrypt(frame)


@given(st.binary(max_size=64), st.binary(max_size=8))
def test_decrypt_of_arbitrary_bytes_raises_only_typed_errors(data: bytes, meta: bytes) -> None:
    r = receiver(CTR80, kid=0)
    r.add_key(9, KEY)
    before = snapshot(r)
    try:
        r.decrypt(data, meta)
    except (DecodeError, UnknownKeyId, FrameDecryptError, ReplayedFrame):
        assert snapshot(r) == before
    else:  # pragma: no cover - a forgery would be found here
        raise AssertionError("arbitrary bytes decrypted")


@given(
    st.sampled_from(ALL_SUITES),
    U64,
    st.integers(0, sframe.MAX_VALUE - 1),
    st.binary(max_size=300),
    st.binary(max_size=20),
)
def test_round_trip_for_every_suite(
    suite: SFrameSuite, kid: int, ctr: int, pt: bytes, meta: bytes
) -> None:
    s = sender(suite, kid, next_ctr=ctr, n=1)
    r = receiver(suite, kid)
    frame = s.encrypt(pt, meta)
    assert len(frame) == len(encode_header(kid, ctr)) + len(pt) + sframe.suite_params(suite).nt
    assert r.decrypt(frame, meta) == (kid, ctr, pt)


# --- secrets and MLS ------------------------------------------------------------------------


def test_secrets_are_masked() -> None:
    derived = sframe.derive_key_salt(GCM, 5, KEY)
    text = repr(derived) + repr(KEY) + repr(sender()) + repr(receiver())
    for secret in (KEY.value, derived.key.value, derived.salt.value, derived.secret.value):
        assert secret.hex() not in text and repr(secret) not in text
    assert "***" in repr(derived)


def test_kid_layout_matches_the_rfc_figure() -> None:
    """RFC 9605 §5.2, "An Example Sequence of KIDs" (E=4, S=6)."""
    layout = MlsKidLayout(epoch_bits=4, index_bits=6)
    assert sframe.index_bits_for(64) == 6
    examples = [
        (14, 3, 0, 0x3E), (14, 7, 0, 0x7E), (14, 20, 0, 0x14E),
        (15, 3, 0, 0x3F), (15, 5, 0, 0x5F),
        (16, 2, 2, 0x820), (16, 2, 3, 0xC20),
        (17, 33, 0, 0x211), (17, 51, 0, 0x331),
    ]  # fmt: skip
    for epoch, index, context, kid in examples:
        assert layout.kid(index, epoch, context) == kid
        assert layout.split(kid) == (context, index, epoch % 16)
    with pytest.raises(ConfigurationError):
        layout.kid(64, 0)
    with pytest.raises(ConfigurationError):
        layout.kid(0, 0, 1 << 54)
    with pytest.raises(ConfigurationError):
        MlsKidLayout(40, 30)


def test_index_bits() -> None:
    assert [sframe.index_bits_for(n) for n in (1, 2, 3, 4, 5, 64, 65)] == [0, 1, 2, 2, 3, 6, 7]
    with pytest.raises(ConfigurationError):
        sframe.index_bits_for(0)


def test_mls_members_share_frames_through_the_exporter() -> None:
    h = make_group("ab")
    alice, bob = h.clients["a"].state, h.clients["b"].state
    layout = MlsKidLayout(epoch_bits=4, index_bits=sframe.index_bits_for(2))
    calls: list[tuple[bytes, bytes, int]] = []

    def export(label: bytes, context: bytes, length: int) -> bytes:
        calls.append((label, context, length))
        return alice.export_secret(label, context, length)

    base = sframe.mls_base_key(export, GCM)
    assert calls == [(b"SFrame 1.0 Base Key", b"", 16)]
    assert base == sframe.mls_base_key(bob.export_secret, GCM)
    kid = layout.kid(int(alice.own_leaf), alice.epoch)
    s = SFrameSender(GCM, kid, base)
    s.reserve(1)
    r = SFrameReceiver(GCM)
    r.add_key(kid, sframe.mls_base_key(bob.export_secret, GCM))
    assert r.decrypt(s.encrypt(b"hello")).plaintext == b"hello"


@given(st.sampled_from(ALL_SUITES), st.integers(1, 1 << 20), st.binary(max_size=64))
def test_arbitrary_bodies_under_a_known_kid_raise_only_frame_decrypt_error(
    suite: SFrameSuite, ctr: int, body: bytes
) -> None:
    r = receiver(suite, kid=300)
    r.decrypt(sender(suite, 300, n=1).encrypt(b"moves the window (CTR 0)"))
    before = snapshot(r)
    with pytest.raises(FrameDecryptError):
        r.decrypt(encode_header(300, ctr) + body)
    assert snapshot(r) == before


def test_an_epoch_rollover_drops_the_old_epochs_keys() -> None:
    """§5.2: a new epoch with the same low E bits replaces the old epoch's keys."""
    layout = MlsKidLayout(epoch_bits=2, index_bits=2)
    r = SFrameReceiver(GCM)
    for index in range(3):
        r.add_key(layout.kid(index, epoch=1), KEY)
        r.add_key(layout.kid(index, epoch=2), KEY)
    r.remove_where(lambda kid: layout.epoch_bits_of(kid) == 5 % 4)  # epoch 5 reuses epoch 1's
    assert sorted(r.kids()) == sorted(layout.kid(i, 2) for i in range(3))


def test_a_sender_cannot_be_copied() -> None:
    """A copy would be a second sender with the same counters (nonce reuse)."""
    import copy
    import pickle

    s = sender()
    for duplicate in (copy.copy, copy.deepcopy, pickle.dumps):
        with pytest.raises(TypeError, match="cannot be copied"):
            duplicate(s)


def test_base_key_from_the_exporter_secret_equals_the_groups_exporter() -> None:
    h = make_group("abc")
    group = h.clients["c"].state
    secrets = group.epoch_secrets
    for suite in ALL_SUITES:
        direct = sframe.mls_base_key_from_secret(secrets.suite, secrets.exporter_secret, suite)
        assert direct == sframe.mls_base_key(group.export_secret, suite)
        assert len(direct) == sframe.suite_params(suite).nk
