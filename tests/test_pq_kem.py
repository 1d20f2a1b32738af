"""The PQ KEMs and suites against pyca's own X-Wing / ML-KEM HPKE (an independent code path for
the same KEMs), plus their negative cases: every bad input is a typed error."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519

from doorless.crypto import CipherSuite, CipherSuiteId, cipher_suite
from doorless.errors import DecodeError, DecryptError, InvalidSignature
from doorless.pq_kem import ML_KEM_768_PK, SeedDerivation, XWing

HYBRID = cipher_suite(CipherSuiteId.MLS_128_MLKEM768X25519_AES128GCM_SHA256_Ed25519)
PURE = cipher_suite(CipherSuiteId.MLS_128_MLKEM768_AES256GCM_SHA384_Ed25519)
INFO = b"doorless pq test"


def _pyca_xwing(public_key: bytes) -> hpke.MLKEM768X25519PublicKey:
    return hpke.MLKEM768X25519PublicKey(
        mlkem.MLKEM768PublicKey.from_public_bytes(public_key[:ML_KEM_768_PK]),
        x25519.X25519PublicKey.from_public_bytes(public_key[ML_KEM_768_PK:]),
    )


def _pyca_xwing_private(seed: bytes) -> hpke.MLKEM768X25519PrivateKey:
    sk_m, sk_x = XWing.expand(seed)
    return hpke.MLKEM768X25519PrivateKey(sk_m, sk_x)


PYCA_HYBRID = hpke.Suite(hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_128_GCM)
PYCA_PURE = hpke.Suite(hpke.KEM.MLKEM768, hpke.KDF.HKDF_SHA384, hpke.AEAD.AES_256_GCM)


def test_pyca_xwing_hpke_opens_what_doorless_seals_and_back() -> None:
    kp = HYBRID.generate_hpke_key_pair()
    enc, ct = HYBRID.seal_base(kp.public_key, INFO, b"to pyca")
    pyca_sk = _pyca_xwing_private(kp.private_key)
    assert PYCA_HYBRID.decrypt(enc + ct, pyca_sk, info=INFO) == b"to pyca"
    out = PYCA_HYBRID.encrypt(b"from pyca", _pyca_xwing(kp.public_key), info=INFO)
    assert HYBRID.open_base(kp.private_key, out[:1120], INFO, out[1120:]) == b"from pyca"


def test_pyca_mlkem_hpke_opens_what_doorless_seals_and_back() -> None:
    kp = PURE.generate_hpke_key_pair()
    enc, ct = PURE.seal_base(kp.public_key, INFO, b"to pyca")
    pyca_sk = mlkem.MLKEM768PrivateKey.from_seed_bytes(kp.private_key)
    assert PYCA_PURE.decrypt(enc + ct, pyca_sk, info=INFO) == b"to pyca"
    out = PYCA_PURE.encrypt(b"from pyca", pyca_sk.public_key(), info=INFO)
    assert PURE.open_base(kp.private_key, out[:1088], INFO, out[1088:]) == b"from pyca"


def test_key_sizes() -> None:
    kp = HYBRID.derive_key_pair(b"\x07" * 32)
    assert (len(kp.private_key), len(kp.public_key)) == (32, 1216)
    kp = PURE.derive_key_pair(b"\x07" * 48)
    assert (len(kp.private_key), len(kp.public_key)) == (64, 1184)


def test_ts_mls_suites_derive_keys_without_the_hpke_label() -> None:
    ikm = b"\x09" * 64
    ts = cipher_suite(CipherSuiteId.MLS_256_XWING_AES256GCM_SHA512_Ed25519).derive_key_pair(ikm)
    assert ts.private_key == hashlib.shake_256(ikm).digest(32)
    labeled = XWing(SeedDerivation.LABELED).seed_from_ikm(ikm)
    assert labeled != ts.private_key
    assert HYBRID.derive_key_pair(ikm).private_key == labeled


@pytest.mark.parametrize("suite", [HYBRID, PURE], ids=["xwing", "mlkem768"])
def test_tampered_kem_output_fails_to_decrypt(suite: CipherSuite) -> None:
    kp = suite.generate_hpke_key_pair()
    enc, ct = suite.encrypt_with_label(kp.public_key, b"label", b"ctx", b"secret")
    bad = bytearray(enc)
    bad[5] ^= 1
    with pytest.raises(DecryptError):
        suite.decrypt_with_label(kp.private_key, b"label", b"ctx", bytes(bad), ct)
    with pytest.raises(DecryptError):
        suite.decrypt_with_label(kp.private_key, b"label", b"ctx", enc[:-1], ct)
    with pytest.raises(DecryptError):
        suite.decrypt_with_label(kp.private_key[:-1], b"label", b"ctx", enc, ct)


@pytest.mark.parametrize("suite", [HYBRID, PURE], ids=["xwing", "mlkem768"])
def test_malformed_public_key_is_a_decode_error(suite: CipherSuite) -> None:
    kp = suite.generate_hpke_key_pair()
    for bad in (b"", kp.public_key[:-1], kp.public_key + b"\x00", b"\xff" * len(kp.public_key)):
        with pytest.raises(DecodeError):
            suite.validate_hpke_public_key(bad)
        with pytest.raises(DecodeError):
            suite.seal_base(bad, INFO, b"x")


def test_mldsa_suite_signs_and_rejects_a_forgery() -> None:
    suite = cipher_suite(CipherSuiteId.MLS_128_MLKEM768X25519_CHACHA20POLY1305_SHA384_MLDSA44)
    kp = suite.generate_signature_key_pair()
    sig = suite.sign_with_label(kp.private_key, b"LeafNodeTBS", b"content")
    suite.verify_with_label(kp.public_key, b"LeafNodeTBS", b"content", sig)
    with pytest.raises(InvalidSignature):
        suite.verify_with_label(kp.public_key, b"LeafNodeTBS", b"content!", sig)
    with pytest.raises(InvalidSignature):
        suite.verify_with_label(kp.public_key[:-1], b"LeafNodeTBS", b"content", sig)
