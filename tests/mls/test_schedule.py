"""Unit tests of the key schedule (RFC 9420 §8) beyond the official vectors.

Expected values come from an independent HKDF written here with `hmac` (not from the code under
test) or from relations the RFC states (a joiner and a committer derive the same epoch).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from doorless.crypto import cipher_suite
from doorless.errors import ConfigurationError, DecodeError, InvalidMac
from doorless.mls.framing import (
    AuthenticatedContent,
    FramedContent,
    FramedContentAuthData,
    SenderMember,
    WireFormat,
)
from doorless.mls.proposals import Remove
from doorless.mls.schedule import (
    EpochSecrets,
    derive_epoch_keys,
    epoch_secret,
    external_init_receiver,
    external_init_sender,
    joiner_secret,
    key_schedule,
    key_schedule_from_joiner,
    psk_secret,
    transcript_hashes,
    welcome_key_nonce,
    welcome_secret,
)
from doorless.secret import CommitSecret, EpochSecret, InitSecret, JoinerSecret, PskSecret

SUITE = cipher_suite(1)
NH = SUITE.hash_length
CONTEXT = b"serialized group context"
VECTORS = Path(__file__).parents[1] / "vectors" / "mls"


def _opaque(b: bytes) -> bytes:
    assert len(b) < 64
    return bytes([len(b)]) + b


def _expand_with_label(secret: bytes, label: bytes, context: bytes, length: int) -> bytes:
    """HKDF-Expand-SHA256 with KDFLabel (RFC 9420 §8, RFC 5869), independent of doorless."""
    info = length.to_bytes(2, "big") + _opaque(b"MLS 1.0 " + label) + _opaque(context)
    out, block, i = b"", b"", 1
    while len(out) < length:
        block = hmac.new(secret, block + info + bytes([i]), hashlib.sha256).digest()
        out += block
        i += 1
    return out[:length]


def _extract(salt: bytes, ikm: bytes) -> bytes:
    return hmac.new(salt, ikm, hashlib.sha256).digest()


def _secrets(seed: int = 1) -> EpochSecrets:
    return derive_epoch_keys(SUITE, EpochSecret(bytes([seed]) * NH)).secrets


# --- the epoch step ---------------------------------------------------------------------------


def test_epoch_step_matches_independent_hkdf() -> None:
    init, commit, psk = bytes([1]) * NH, bytes([2]) * NH, bytes([3]) * NH
    joiner = _expand_with_label(_extract(init, commit), b"joiner", CONTEXT, NH)
    member = _extract(joiner, psk)
    epoch = _expand_with_label(member, b"epoch", CONTEXT, NH)
    got = key_schedule(SUITE, InitSecret(init), CommitSecret(commit), PskSecret(psk), CONTEXT)
    assert got.joiner_secret.value == joiner
    assert got.welcome_secret.value == _expand_with_label(member, b"welcome", b"", NH)
    assert got.encryption_secret.value == _expand_with_label(epoch, b"encryption", b"", NH)
    assert got.secrets.init_secret.value == _expand_with_label(epoch, b"init", b"", NH)
    assert got.secrets.epoch_authenticator.value == _expand_with_label(
        epoch, b"authentication", b"", NH
    )


def test_joiner_and_committer_derive_the_same_epoch() -> None:
    init, commit = InitSecret(bytes(NH)), CommitSecret(bytes([9]) * NH)
    psk = PskSecret(bytes([4]) * NH)
    committer = key_schedule(SUITE, init, commit, psk, CONTEXT)
    joiner = key_schedule_from_joiner(SUITE, committer.joiner_secret, psk, CONTEXT)
    assert joiner.secrets == committer.secrets
    assert joiner.welcome_secret == committer.welcome_secret


def test_no_psk_is_the_zero_vector() -> None:
    joiner = JoinerSecret(bytes([5]) * NH)
    assert welcome_secret(SUITE, joiner, None) == welcome_secret(
        SUITE, joiner, PskSecret(bytes(NH))
    )
    assert psk_secret(SUITE, []).value == bytes(NH)
    assert epoch_secret(SUITE, joiner, None, CONTEXT) != epoch_secret(
        SUITE, joiner, PskSecret(bytes([1]) * NH), CONTEXT
    )


def test_group_context_is_bound() -> None:
    init, commit = InitSecret(bytes(NH)), CommitSecret(bytes(NH))
    a = joiner_secret(SUITE, init, commit, CONTEXT)
    b = joiner_secret(SUITE, init, commit, CONTEXT + b"!")
    assert a != b


def test_welcome_key_nonce_match_independent_hkdf() -> None:
    w = welcome_secret(SUITE, JoinerSecret(bytes([7]) * NH), None)
    key, nonce = welcome_key_nonce(SUITE, w)
    assert key.value == _expand_with_label(w.value, b"key", b"", 16)
    assert nonce.value == _expand_with_label(w.value, b"nonce", b"", 12)


# --- PSKs (§8.4) ------------------------------------------------------------------------------


def test_psk_order_and_nonce_matter() -> None:
    a = (b"\x01\x01a\x01x", b"psk-a")
    b = (b"\x01\x01b\x01y", b"psk-b")
    assert psk_secret(SUITE, [a, b]) != psk_secret(SUITE, [b, a])
    assert psk_secret(SUITE, [a]) != psk_secret(SUITE, [(b"\x01\x01a\x01z", b"psk-a")])


def test_psk_secret_matches_independent_chain() -> None:
    psks = [(b"id-0", b"k0"), (b"id-1", b"k1")]
    secret = bytes(NH)
    for i, (psk_id, psk) in enumerate(psks):
        extracted = _extract(bytes(NH), psk)
        label = psk_id + i.to_bytes(2, "big") + (2).to_bytes(2, "big")
        psk_input = _expand_with_label(extracted, b"derived psk", label, NH)
        secret = _extract(psk_input, secret)
    assert psk_secret(SUITE, psks).value == secret


# --- exporter, external init, confirmation (§8.3, §8.5, §6.1) -----------------------------------


def test_exporter_matches_independent_hkdf() -> None:
    s = _secrets()
    derived = _expand_with_label(s.exporter_secret.value, b"label", b"", NH)
    want = _expand_with_label(derived, b"exported", hashlib.sha256(b"ctx").digest(), 40)
    assert s.exporter(b"label", b"ctx", 40) == want
    assert s.exporter(b"other", b"ctx", 40) != want


@pytest.mark.parametrize("suite_id", [1, 2, 4])
def test_external_init_round_trip(suite_id: int) -> None:
    suite = cipher_suite(suite_id)
    s = derive_epoch_keys(suite, EpochSecret(bytes([3]) * suite.hash_length)).secrets
    pair = s.external_key_pair()
    kem_output, sent = external_init_sender(suite, s.external_pub)
    assert external_init_receiver(suite, pair.private_key, kem_output) == sent
    other = derive_epoch_keys(suite, EpochSecret(bytes([4]) * suite.hash_length)).secrets
    assert external_init_receiver(suite, other.external_key_pair().private_key, kem_output) != sent


def test_confirmation_tag() -> None:
    s = _secrets()
    tag = s.confirmation_tag(b"transcript")
    assert tag == hmac.new(s.confirmation_key.value, b"transcript", hashlib.sha256).digest()
    s.verify_confirmation_tag(b"transcript", tag)
    with pytest.raises(InvalidMac):
        s.verify_confirmation_tag(b"transcript!", tag)
    with pytest.raises(InvalidMac):
        s.verify_confirmation_tag(b"transcript", tag[:-1] + bytes([tag[-1] ^ 1]))
    with pytest.raises(InvalidMac):
        _secrets(2).verify_confirmation_tag(b"transcript", tag)


def _content(confirmation_tag: bytes | None, body: object) -> AuthenticatedContent:
    framed = FramedContent(b"g", 1, SenderMember(0), b"", body)  # type: ignore[arg-type]
    return AuthenticatedContent(
        WireFormat.mls_public_message, framed, FramedContentAuthData(b"sig", confirmation_tag)
    )


def test_transcript_hashes_need_a_commit() -> None:
    with pytest.raises(ConfigurationError):
        transcript_hashes(SUITE, b"", _content(None, Remove(1)))


def test_transcript_hashes_vector_case_by_hand() -> None:
    """The first official case recomputed from the RFC formulas with hashlib alone."""
    from doorless.codec import decode

    case = json.loads((VECTORS / "transcript-hashes.json").read_text())[0]
    raw = bytes.fromhex(case["authenticated_content"])
    content = decode(AuthenticatedContent, raw)
    tag = content.auth.confirmation_tag
    assert tag is not None
    # AuthenticatedContent = ConfirmedTranscriptHashInput || opaque confirmation_tag.
    hash_input = raw[: len(raw) - len(_opaque(tag))]
    before = bytes.fromhex(case["interim_transcript_hash_before"])
    confirmed = hashlib.sha256(before + hash_input).digest()
    interim = hashlib.sha256(confirmed + _opaque(tag)).digest()
    assert transcript_hashes(SUITE, before, content) == (confirmed, interim)


# --- persistence and hygiene ------------------------------------------------------------------


def test_epoch_secrets_round_trip() -> None:
    s = _secrets()
    data = s.to_bytes()
    assert EpochSecrets.from_bytes(data) == s
    assert EpochSecrets.from_bytes(data) != _secrets(2)


def test_epoch_secrets_reject_malformed() -> None:
    data = _secrets().to_bytes()
    with pytest.raises(DecodeError):
        EpochSecrets.from_bytes(data + b"\x00")
    with pytest.raises(DecodeError):
        EpochSecrets.from_bytes(data[:-1])
    with pytest.raises(DecodeError):
        EpochSecrets.from_bytes(b"\x00\x63" + data[2:])  # unknown suite
    # A secret of the wrong length: shorten the first one (its length prefix is byte 2).
    short = data[:2] + bytes([NH - 1]) + data[3 : 3 + NH - 1] + data[3 + NH :]
    with pytest.raises(DecodeError):
        EpochSecrets.from_bytes(short)


@given(st.binary(max_size=400))
def test_epoch_secrets_decoder_total(data: bytes) -> None:
    try:
        s = EpochSecrets.from_bytes(data)
    except DecodeError:
        return
    assert s.to_bytes() == data


def test_reprs_hide_secrets() -> None:
    epoch = key_schedule(SUITE, InitSecret(bytes(NH)), CommitSecret(bytes(NH)), None, CONTEXT)
    s = epoch.secrets
    for text in (
        repr(epoch),
        repr(s),
        str(s),
        repr(derive_epoch_keys(SUITE, EpochSecret(bytes(NH)))),
    ):
        for secret in (s.init_secret, s.membership_key, epoch.joiner_secret):
            assert secret.value.hex() not in text
        assert "***" in text
    with pytest.raises(TypeError):
        hash(s)


# --- the conformance checkers can fail --------------------------------------------------------


def _flip_hex(value: str) -> str:
    b = bytearray.fromhex(value)
    b[-1] ^= 1
    return b.hex()


@pytest.mark.parametrize(
    ("kind", "path"),
    [
        ("key-schedule", ("epochs", 1, "group_context")),
        ("key-schedule", ("epochs", 0, "welcome_secret")),
        ("key-schedule", ("epochs", 2, "init_secret")),
        ("key-schedule", ("epochs", 0, "external_pub")),
        ("key-schedule", ("epochs", 0, "exporter", "secret")),
        ("psk_secret", ("psk_secret",)),
        ("transcript-hashes", ("interim_transcript_hash_after",)),
        ("transcript-hashes", ("confirmation_key",)),
        ("crypto-basics", ("derive_tree_secret", "out")),
        ("crypto-basics", ("sign_with_label", "signature")),
        ("crypto-basics", ("encrypt_with_label", "ciphertext")),
    ],
    ids=lambda v: v if isinstance(v, str) else ".".join(map(str, v)),
)
def test_checker_detects_tampering(kind: str, path: tuple[str | int, ...]) -> None:
    from doorless.conformance import VectorMismatch, checker

    case = json.loads((VECTORS / f"{kind}.json").read_text())[-1]
    node = case
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = _flip_hex(node[path[-1]])
    with pytest.raises(VectorMismatch):
        checker(kind)(case)
