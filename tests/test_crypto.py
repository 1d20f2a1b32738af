"""Negative tests for every primitive of every cipher suite, and secret hygiene.

The positive values are checked against official vectors elsewhere (crypto-basics, RFC 9180);
here each primitive must reject what it must reject, with the typed error of `doorless.errors`.
"""

from __future__ import annotations

import hmac
import pickle
from functools import cache

import pytest

import doorless.secret
from doorless.crypto import SUPPORTED_SUITES, CipherSuite, KeyPair, SignatureScheme, cipher_suite
from doorless.errors import (
    ConfigurationError,
    CryptoError,
    DecodeError,
    DecryptError,
    InvalidSignature,
)
from doorless.secret import (
    EpochSecret,
    PathSecret,
    PrivateKeyBytes,
    Secret,
    constant_time_equal,
)

SUITE_IDS = [int(s) for s in SUPPORTED_SUITES]
suites = pytest.mark.parametrize("suite_id", SUITE_IDS, ids=[f"suite{i}" for i in SUITE_IDS])

MLDSA_SCHEMES = (SignatureScheme.MLDSA44, SignatureScheme.MLDSA65, SignatureScheme.MLDSA87)
MESSAGE = b"Doorless test message"
INFO = b"test info"


def flip(data: bytes, index: int = -1) -> bytes:
    """``data`` with one bit flipped at ``index``."""
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)


@cache
def signature_keys(suite_id: int) -> tuple[KeyPair, KeyPair]:
    cs = cipher_suite(suite_id)
    return cs.generate_signature_key_pair(), cs.generate_signature_key_pair()


@cache
def hpke_keys(suite_id: int) -> tuple[KeyPair, KeyPair]:
    cs = cipher_suite(suite_id)
    return cs.derive_key_pair(b"\x01" * cs.hash_length), cs.derive_key_pair(
        b"\x02" * cs.hash_length
    )


def test_every_rfc9420_suite_is_supported() -> None:
    assert SUITE_IDS[:7] == [1, 2, 3, 4, 5, 6, 7]
    # ts-mls 1.6.4 PQ ids, then the PQ draft's TBD1, TBD6, TBD9 at 0xF000 + n.
    assert SUITE_IDS[7:] == [83, 84, 87, 88, 0xF001, 0xF006, 0xF009]


@pytest.mark.parametrize("suite_id", [0, 8, 0xFFFF, 0x0A0A])
def test_unknown_suite_is_a_decode_error(suite_id: int) -> None:
    with pytest.raises(DecodeError):
        cipher_suite(suite_id)


# --- signatures -----------------------------------------------------------------------------


@suites
def test_signature_verifies_and_rejects_tampering(suite_id: int) -> None:
    cs = cipher_suite(suite_id)
    kp, other = signature_keys(suite_id)
    assert cs.signature_public_key(kp.private_key) == kp.public_key
    sig = cs.sign(kp.private_key, MESSAGE)
    cs.verify(kp.public_key, MESSAGE, sig)
    with pytest.raises(InvalidSignature):
        cs.verify(kp.public_key, MESSAGE, flip(sig))  # tampered signature
    with pytest.raises(InvalidSignature):
        cs.verify(kp.public_key, flip(MESSAGE), sig)  # tampered message
    with pytest.raises(InvalidSignature):
        cs.verify(other.public_key, MESSAGE, sig)  # wrong key
    with pytest.raises(InvalidSignature):
        cs.verify(kp.public_key, MESSAGE, b"")  # empty signature
    with pytest.raises(InvalidSignature):
        cs.verify(kp.public_key, MESSAGE, sig + b"\x00")  # trailing byte


@suites
def test_sign_with_label_binds_the_label(suite_id: int) -> None:
    cs = cipher_suite(suite_id)
    kp, _ = signature_keys(suite_id)
    sig = cs.sign_with_label(kp.private_key, b"LeafNodeTBS", MESSAGE)
    cs.verify_with_label(kp.public_key, b"LeafNodeTBS", MESSAGE, sig)
    with pytest.raises(InvalidSignature):
        cs.verify_with_label(kp.public_key, b"KeyPackageTBS", MESSAGE, sig)
    with pytest.raises(InvalidSignature):
        cs.verify(kp.public_key, MESSAGE, sig)  # a labeled signature is not a plain one


def _malformed_signature_keys(scheme: SignatureScheme, public_key: bytes) -> list[bytes]:
    bad = [b"", public_key[:-1], public_key + b"\x00"]
    if public_key[:1] == b"\x04":  # ECDSA: compressed form, and a point not on the curve
        bad.append(b"\x02" + public_key[1 : 1 + (len(public_key) - 1) // 2])
        bad.append(public_key[:-1] + bytes([public_key[-1] ^ 0x01]))
    return bad


@suites
def test_malformed_signature_public_key_is_invalid_signature(suite_id: int) -> None:
    cs = cipher_suite(suite_id)
    kp, _ = signature_keys(suite_id)
    sig = cs.sign(kp.private_key, MESSAGE)
    for bad in _malformed_signature_keys(cs.signature_scheme, kp.public_key):
        with pytest.raises(InvalidSignature):
            cs.verify(bad, MESSAGE, sig)


@suites
def test_malformed_signature_private_key_is_configuration_error(suite_id: int) -> None:
    cs = cipher_suite(suite_id)
    kp, _ = signature_keys(suite_id)
    for bad in (b"", kp.private_key + b"\x00\x00", b"\x00" * len(kp.private_key)):
        seeded = (SignatureScheme.ED25519, SignatureScheme.ED448, *MLDSA_SCHEMES)
        if cs.signature_scheme in seeded and len(bad) == len(kp.private_key):
            continue  # every 32/57-byte string is an EdDSA (or ML-DSA) seed
        with pytest.raises(ConfigurationError):
            cs.sign(bad, MESSAGE)


# --- HPKE -------------------------------------------------------------------------------------


@suites
def test_hpke_round_trip_and_rejections(suite_id: int) -> None:
    cs = cipher_suite(suite_id)
    kp, other = hpke_keys(suite_id)
    assert cs.hpke_public_key(kp.private_key) == kp.public_key
    enc, ct = cs.seal_base(kp.public_key, INFO, MESSAGE)
    assert cs.open_base(kp.private_key, enc, INFO, ct) == MESSAGE
    with pytest.raises(DecryptError):
        cs.open_base(kp.private_key, enc, INFO, flip(ct))  # tampered ciphertext (tag)
    with pytest.raises(DecryptError):
        cs.open_base(kp.private_key, enc, INFO, flip(ct, 0))  # tampered ciphertext (body)
    with pytest.raises(DecryptError):
        cs.open_base(kp.private_key, enc, INFO, ct[:-1])  # truncated
    with pytest.raises(DecryptError):
        cs.open_base(kp.private_key, flip(enc), INFO, ct)  # tampered kem output
    with pytest.raises(DecryptError):
        cs.open_base(kp.private_key, enc[:-1], INFO, ct)  # short kem output
    with pytest.raises(DecryptError):
        cs.open_base(other.private_key, enc, INFO, ct)  # wrong private key
    with pytest.raises(DecryptError):
        cs.open_base(kp.private_key, enc, INFO + b"!", ct)  # wrong info
    with pytest.raises(DecryptError):
        cs.open_base(b"\x00" * 3, enc, INFO, ct)  # malformed private key


@suites
def test_hpke_fresh_encapsulation_each_time(suite_id: int) -> None:
    cs = cipher_suite(suite_id)
    kp, _ = hpke_keys(suite_id)
    (enc1, ct1), (enc2, ct2) = (cs.seal_base(kp.public_key, INFO, MESSAGE) for _ in range(2))
    assert enc1 != enc2 and ct1 != ct2


@suites
def test_encrypt_with_label_binds_label_and_context(suite_id: int) -> None:
    cs = cipher_suite(suite_id)
    kp, _ = hpke_keys(suite_id)
    enc, ct = cs.encrypt_with_label(kp.public_key, b"UpdatePathNode", b"ctx", MESSAGE)
    assert cs.decrypt_with_label(kp.private_key, b"UpdatePathNode", b"ctx", enc, ct) == MESSAGE
    with pytest.raises(DecryptError):
        cs.decrypt_with_label(kp.private_key, b"Welcome", b"ctx", enc, ct)
    with pytest.raises(DecryptError):
        cs.decrypt_with_label(kp.private_key, b"UpdatePathNode", b"ctX", enc, ct)


def _malformed_hpke_public_keys(public_key: bytes) -> list[bytes]:
    bad = [b"", public_key[:-1], public_key + b"\x00"]
    if public_key[:1] == b"\x04":  # NIST curves: a point off the curve
        bad.append(public_key[:-1] + bytes([public_key[-1] ^ 0x01]))
    return bad


@suites
def test_malformed_hpke_public_key_is_decode_error(suite_id: int) -> None:
    cs = cipher_suite(suite_id)
    kp, _ = hpke_keys(suite_id)
    cs.validate_hpke_public_key(kp.public_key)
    for bad in _malformed_hpke_public_keys(kp.public_key):
        with pytest.raises(DecodeError):
            cs.validate_hpke_public_key(bad)
        with pytest.raises(DecodeError):
            cs.seal_base(bad, INFO, MESSAGE)
        with pytest.raises(DecodeError):
            cs.export_sender(bad, INFO, b"ctx", 32)


NIST_KEM_SUITES = [2, 5, 7]


@pytest.mark.parametrize("suite_id", NIST_KEM_SUITES, ids=[f"suite{i}" for i in NIST_KEM_SUITES])
def test_compressed_hpke_public_key_is_decode_error(suite_id: int) -> None:
    cs = cipher_suite(suite_id)
    kp, _ = hpke_keys(suite_id)
    x = kp.public_key[1 : 1 + (len(kp.public_key) - 1) // 2]
    compressed = bytes([2 + (kp.public_key[-1] & 1)]) + x  # the same point, compressed
    with pytest.raises(DecodeError):
        cs.validate_hpke_public_key(compressed)
    with pytest.raises(DecodeError):
        cs.seal_base(compressed, INFO, MESSAGE)
    with pytest.raises(DecodeError):
        cs.export_sender(compressed, INFO, b"ctx", 32)


@suites
def test_hpke_exporter_agrees_and_binds_inputs(suite_id: int) -> None:
    cs = cipher_suite(suite_id)
    kp, other = hpke_keys(suite_id)
    enc, secret = cs.export_sender(kp.public_key, INFO, b"ctx", 32)
    assert len(secret) == 32
    assert cs.export_receiver(kp.private_key, enc, INFO, b"ctx", 32) == secret
    assert cs.export_receiver(kp.private_key, enc, INFO, b"ctX", 32) != secret
    assert cs.export_receiver(kp.private_key, enc, INFO + b"!", b"ctx", 32) != secret
    assert cs.export_receiver(other.private_key, enc, INFO, b"ctx", 32) != secret
    with pytest.raises(DecryptError):
        cs.export_receiver(kp.private_key, enc[:-1], INFO, b"ctx", 32)


@suites
def test_derive_key_pair_is_deterministic(suite_id: int) -> None:
    cs = cipher_suite(suite_id)
    ikm = bytes(range(cs.hash_length))
    a, b = cs.derive_key_pair(ikm), cs.derive_key_pair(ikm)
    assert a == b
    assert cs.derive_key_pair(flip(ikm)) != a
    assert cs.hpke_public_key(a.private_key) == a.public_key


# --- AEAD -------------------------------------------------------------------------------------


@suites
def test_aead_rejects_wrong_key_nonce_aad_and_tampering(suite_id: int) -> None:
    cs = cipher_suite(suite_id)
    key = bytes(range(cs.aead_key_length))
    nonce = bytes(range(100, 100 + cs.aead_nonce_length))
    ct = cs.aead_seal(key, nonce, b"aad", MESSAGE)
    assert cs.aead_open(key, nonce, b"aad", ct) == MESSAGE
    with pytest.raises(DecryptError):
        cs.aead_open(flip(key), nonce, b"aad", ct)  # wrong key
    with pytest.raises(DecryptError):
        cs.aead_open(key, flip(nonce), b"aad", ct)  # wrong nonce
    with pytest.raises(DecryptError):
        cs.aead_open(key, nonce, b"aaD", ct)  # wrong aad
    with pytest.raises(DecryptError):
        cs.aead_open(key, nonce, b"aad", flip(ct))  # tampered tag
    with pytest.raises(DecryptError):
        cs.aead_open(key, nonce, b"aad", flip(ct, 0))  # tampered body
    with pytest.raises(DecryptError):
        cs.aead_open(key, nonce, b"aad", ct[:15])  # shorter than a tag
    with pytest.raises(DecryptError):
        cs.aead_open(key[:-1], nonce, b"aad", ct)  # key of the wrong length


@suites
def test_mac_and_hash_sizes(suite_id: int) -> None:
    cs = cipher_suite(suite_id)
    assert len(cs.hash(b"")) == cs.hash_length
    tag = cs.mac(b"key", MESSAGE)
    assert len(tag) == cs.hash_length
    assert cs.mac(b"kez", MESSAGE) != tag
    assert cs.mac(b"key", flip(MESSAGE)) != tag


def test_crypto_errors_share_one_root() -> None:
    for exc in (InvalidSignature, DecryptError):
        assert issubclass(exc, CryptoError)


# --- secret hygiene ---------------------------------------------------------------------------

SECRET_BYTES = bytes.fromhex("deadbeefcafebabe0011223344556677")


@suites
def test_key_pair_repr_hides_private_key(suite_id: int) -> None:
    for kp in (*signature_keys(suite_id), *hpke_keys(suite_id)):
        text = repr(kp) + str(kp) + f"{kp}"
        assert kp.private_key.hex() not in text
        assert repr(kp.private_key) not in text
        assert "***" in text
        assert kp.public_key.hex() in repr(kp)


def test_cipher_suite_repr_is_its_name() -> None:
    assert repr(cipher_suite(1)) == "CipherSuite(MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519)"
    assert isinstance(cipher_suite(1), CipherSuite)


@pytest.mark.parametrize("cls", [Secret, EpochSecret, PathSecret, PrivateKeyBytes])
def test_secret_repr_and_str_are_masked(cls: type[Secret]) -> None:
    s = cls(SECRET_BYTES)
    for text in (repr(s), str(s), f"{s}", f"{s!r}", repr([s]), repr({"k": s})):
        assert SECRET_BYTES.hex() not in text
        assert "deadbeef" not in text
        assert repr(SECRET_BYTES) not in text
    assert repr(s) == f"{cls.__name__}(***)"


def test_secret_equality_is_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(doorless.secret.hmac, "compare_digest", spy)
    a, b, c = EpochSecret(SECRET_BYTES), EpochSecret(SECRET_BYTES), EpochSecret(flip(SECRET_BYTES))
    assert a == b
    assert a != c
    assert constant_time_equal(b"tag", b"tag")
    assert not constant_time_equal(b"tag", b"taG")
    assert len(calls) == 4  # every comparison went through hmac.compare_digest


def test_secret_kinds_do_not_mix() -> None:
    assert EpochSecret(SECRET_BYTES) != PathSecret(SECRET_BYTES)
    assert EpochSecret(SECRET_BYTES) != SECRET_BYTES


def test_secret_is_unhashable() -> None:
    with pytest.raises(TypeError):
        hash(EpochSecret(SECRET_BYTES))
    with pytest.raises(TypeError):
        _ = {EpochSecret(SECRET_BYTES)}


def test_secret_keeps_value_and_pickles() -> None:
    source = bytearray(SECRET_BYTES)
    s = PathSecret(source)  # type: ignore[arg-type]  # a bytearray is copied, not aliased
    source[0] ^= 0xFF
    assert s.value == SECRET_BYTES and len(s) == len(SECRET_BYTES)
    restored = pickle.loads(pickle.dumps(s))
    assert type(restored) is PathSecret and restored == s
