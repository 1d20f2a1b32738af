"""MLS cipher suites (RFC 9420 §5.1, §17.1) and their labeled operations.

Every primitive comes from `cryptography` (pyca). HPKE (RFC 9180) comes from pyca's
``hpke.Suite`` where it covers the KEM (base-mode seal/open); `pyhpke` supplies what pyca lacks:
DHKEM(X448), DeriveKeyPair and the exporter (used by external joins, RFC 9420 §12.1.8). The
post-quantum KEMs (ML-KEM-768, X-Wing) are pyhpke KEMs over pyca's ML-KEM (`doorless.pq_kem`);
ML-DSA signatures are pyca's.

Post-quantum suites (draft-ietf-mls-pq-ciphersuites-06, whose code points are still TBD) use
private-use code points (RFC 9420 §17.1: 0xF000-0xFFFF): 0xF000 + n for the draft's TBDn. The
ts-mls 1.6.4 PQ suites that map onto the same primitives keep ts-mls's own ids (83, 84, 87, 88)
so that groups can be shared with it; the client never picks them (see docs/architecture.md).

This module is the boundary where errors from those libraries become `doorless.errors`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from enum import IntEnum
from functools import cache, lru_cache
from typing import cast

import pyhpke
from cryptography.exceptions import InvalidSignature as _PycaInvalidSignature
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hpke as pyca_hpke
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, mldsa, x448, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pyhpke.aead import AEAD as PyhpkeAEAD
from pyhpke.kdf import KDF as PyhpkeKDF

from doorless.errors import ConfigurationError, DecodeError, DecryptError, InvalidSignature
from doorless.pq_kem import PqKem, SeedDerivation, pq_kem

MLS_LABEL_PREFIX = b"MLS 1.0 "


class CipherSuiteId(IntEnum):
    """RFC 9420 §17.1."""

    MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519 = 1
    MLS_128_DHKEMP256_AES128GCM_SHA256_P256 = 2
    MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519 = 3
    MLS_256_DHKEMX448_AES256GCM_SHA512_Ed448 = 4
    MLS_256_DHKEMP521_AES256GCM_SHA512_P521 = 5
    MLS_256_DHKEMX448_CHACHA20POLY1305_SHA512_Ed448 = 6
    MLS_256_DHKEMP384_AES256GCM_SHA384_P384 = 7
    # ts-mls 1.6.4's own ids (X-Wing with its unlabeled DeriveKeyPair); interop only.
    MLS_256_XWING_AES256GCM_SHA512_Ed25519 = 83
    MLS_256_XWING_CHACHA20POLY1305_SHA512_Ed25519 = 84
    MLS_256_XWING_AES256GCM_SHA512_MLDSA87 = 87
    MLS_256_XWING_CHACHA20POLY1305_SHA512_MLDSA87 = 88
    # draft-ietf-mls-pq-ciphersuites-06 §3 TBD1, TBD6, TBD9 at private-use 0xF000 + n.
    MLS_128_MLKEM768X25519_AES128GCM_SHA256_Ed25519 = 0xF001
    MLS_128_MLKEM768_AES256GCM_SHA384_Ed25519 = 0xF006
    MLS_128_MLKEM768X25519_CHACHA20POLY1305_SHA384_MLDSA44 = 0xF009


class KemId(IntEnum):
    """RFC 9180 §7.1."""

    DHKEM_P256_HKDF_SHA256 = 0x0010
    DHKEM_P384_HKDF_SHA384 = 0x0011
    DHKEM_P521_HKDF_SHA512 = 0x0012
    DHKEM_X25519_HKDF_SHA256 = 0x0020
    DHKEM_X448_HKDF_SHA512 = 0x0021
    ML_KEM_768 = 0x0041  # draft-ietf-hpke-pq (`doorless.pq_kem.PqKemId`)
    MLKEM768_X25519 = 0x647A  # X-Wing


class KdfId(IntEnum):
    HKDF_SHA256 = 0x0001
    HKDF_SHA384 = 0x0002
    HKDF_SHA512 = 0x0003


class AeadId(IntEnum):
    AES_128_GCM = 0x0001
    AES_256_GCM = 0x0002
    CHACHA20_POLY1305 = 0x0003


class SignatureScheme(IntEnum):
    """TLS SignatureScheme values used by the MLS cipher suites."""

    ECDSA_SECP256R1_SHA256 = 0x0403
    ECDSA_SECP384R1_SHA384 = 0x0503
    ECDSA_SECP521R1_SHA512 = 0x0603
    ED25519 = 0x0807
    ED448 = 0x0808
    MLDSA44 = 0x0904  # draft-ietf-tls-mldsa
    MLDSA65 = 0x0905
    MLDSA87 = 0x0906


_HASHES: dict[KdfId, tuple[str, type[hashes.HashAlgorithm], int]] = {
    KdfId.HKDF_SHA256: ("sha256", hashes.SHA256, 32),
    KdfId.HKDF_SHA384: ("sha384", hashes.SHA384, 48),
    KdfId.HKDF_SHA512: ("sha512", hashes.SHA512, 64),
}

# hashlib's named constructors (faster than hashlib.new(name); trees hash thousands of nodes).
_HASH_NEW = {
    KdfId.HKDF_SHA256: hashlib.sha256,
    KdfId.HKDF_SHA384: hashlib.sha384,
    KdfId.HKDF_SHA512: hashlib.sha512,
}

_EC_CURVES: dict[SignatureScheme, tuple[ec.EllipticCurve, type[hashes.HashAlgorithm], int]] = {
    SignatureScheme.ECDSA_SECP256R1_SHA256: (ec.SECP256R1(), hashes.SHA256, 32),
    SignatureScheme.ECDSA_SECP384R1_SHA384: (ec.SECP384R1(), hashes.SHA384, 48),
    SignatureScheme.ECDSA_SECP521R1_SHA512: (ec.SECP521R1(), hashes.SHA512, 66),
}

_KEM_CURVES: dict[KemId, tuple[ec.EllipticCurve, int]] = {
    KemId.DHKEM_P256_HKDF_SHA256: (ec.SECP256R1(), 32),
    KemId.DHKEM_P384_HKDF_SHA384: (ec.SECP384R1(), 48),
    KemId.DHKEM_P521_HKDF_SHA512: (ec.SECP521R1(), 66),
}

_PYCA_KEMS = {
    KemId.DHKEM_X25519_HKDF_SHA256: pyca_hpke.KEM.X25519,
    KemId.DHKEM_P256_HKDF_SHA256: pyca_hpke.KEM.P256,
    KemId.DHKEM_P384_HKDF_SHA384: pyca_hpke.KEM.P384,
    KemId.DHKEM_P521_HKDF_SHA512: pyca_hpke.KEM.P521,
}
_PYCA_KDFS = {
    KdfId.HKDF_SHA256: pyca_hpke.KDF.HKDF_SHA256,
    KdfId.HKDF_SHA384: pyca_hpke.KDF.HKDF_SHA384,
    KdfId.HKDF_SHA512: pyca_hpke.KDF.HKDF_SHA512,
}
_PYCA_AEADS = {
    AeadId.AES_128_GCM: pyca_hpke.AEAD.AES_128_GCM,
    AeadId.AES_256_GCM: pyca_hpke.AEAD.AES_256_GCM,
    AeadId.CHACHA20_POLY1305: pyca_hpke.AEAD.CHACHA20_POLY1305,
}

_AEAD_SIZES = {  # (Nk, Nn)
    AeadId.AES_128_GCM: (16, 12),
    AeadId.AES_256_GCM: (32, 12),
    AeadId.CHACHA20_POLY1305: (32, 12),
}

_SUITES: dict[CipherSuiteId, tuple[KemId, KdfId, AeadId, SignatureScheme]] = {
    CipherSuiteId(1): (KemId(0x20), KdfId(1), AeadId(1), SignatureScheme.ED25519),
    CipherSuiteId(2): (KemId(0x10), KdfId(1), AeadId(1), SignatureScheme.ECDSA_SECP256R1_SHA256),
    CipherSuiteId(3): (KemId(0x20), KdfId(1), AeadId(3), SignatureScheme.ED25519),
    CipherSuiteId(4): (KemId(0x21), KdfId(3), AeadId(2), SignatureScheme.ED448),
    CipherSuiteId(5): (KemId(0x12), KdfId(3), AeadId(2), SignatureScheme.ECDSA_SECP521R1_SHA512),
    CipherSuiteId(6): (KemId(0x21), KdfId(3), AeadId(3), SignatureScheme.ED448),
    CipherSuiteId(7): (KemId(0x11), KdfId(2), AeadId(2), SignatureScheme.ECDSA_SECP384R1_SHA384),
    CipherSuiteId(83): (KemId(0x647A), KdfId(3), AeadId(2), SignatureScheme.ED25519),
    CipherSuiteId(84): (KemId(0x647A), KdfId(3), AeadId(3), SignatureScheme.ED25519),
    CipherSuiteId(87): (KemId(0x647A), KdfId(3), AeadId(2), SignatureScheme.MLDSA87),
    CipherSuiteId(88): (KemId(0x647A), KdfId(3), AeadId(3), SignatureScheme.MLDSA87),
    CipherSuiteId(0xF001): (KemId(0x647A), KdfId(1), AeadId(1), SignatureScheme.ED25519),
    CipherSuiteId(0xF006): (KemId(0x0041), KdfId(2), AeadId(2), SignatureScheme.ED25519),
    CipherSuiteId(0xF009): (KemId(0x647A), KdfId(2), AeadId(3), SignatureScheme.MLDSA44),
}

# ts-mls derives X-Wing keys with hpke-js's unlabeled SHAKE256 (see `SeedDerivation`).
_UNLABELED_SEED_SUITES = frozenset(CipherSuiteId(i) for i in (83, 84, 87, 88))

_MLDSA: dict[
    SignatureScheme,
    tuple[
        type[mldsa.MLDSA44PrivateKey | mldsa.MLDSA65PrivateKey | mldsa.MLDSA87PrivateKey],
        type[mldsa.MLDSA44PublicKey | mldsa.MLDSA65PublicKey | mldsa.MLDSA87PublicKey],
    ],
] = {
    SignatureScheme.MLDSA44: (mldsa.MLDSA44PrivateKey, mldsa.MLDSA44PublicKey),
    SignatureScheme.MLDSA65: (mldsa.MLDSA65PrivateKey, mldsa.MLDSA65PublicKey),
    SignatureScheme.MLDSA87: (mldsa.MLDSA87PrivateKey, mldsa.MLDSA87PublicKey),
}

# The suites new conversations choose between (client default, docs/architecture.md).
HYBRID_SUITE = CipherSuiteId.MLS_128_MLKEM768X25519_AES128GCM_SHA256_Ed25519
CLASSIC_SUITE = CipherSuiteId.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519


def _opaque(data: bytes) -> bytes:
    """``opaque<V>`` encoding (RFC 9420 §2.1.2), inlined here to keep crypto codec-free."""
    n = len(data)
    if n < 0x40:
        return bytes((n,)) + data
    if n < 0x4000:
        return (n | 0x4000).to_bytes(2, "big") + data
    return (n | 0x80000000).to_bytes(4, "big") + data


@lru_cache(maxsize=256)
def _mls_label(label: bytes) -> bytes:
    """``opaque label<V> = "MLS 1.0 " + Label`` (the labels are a few constants)."""
    return _opaque(MLS_LABEL_PREFIX + label)


@dataclass(frozen=True, slots=True)
class KeyPair:
    """A private key (wire encoding) and its public key. ``repr`` hides the private key."""

    private_key: bytes
    public_key: bytes

    def __repr__(self) -> str:
        return f"KeyPair(private_key=***, public_key={self.public_key.hex()})"


@dataclass(frozen=True, slots=True, repr=False)
class CipherSuite:
    """One MLS cipher suite: its algorithms and the labeled operations of RFC 9420 §5.1, §8."""

    id: CipherSuiteId
    kem_id: KemId
    kdf_id: KdfId
    aead_id: AeadId
    signature_scheme: SignatureScheme

    def __repr__(self) -> str:
        return f"CipherSuite({self.id.name})"

    # --- sizes ---------------------------------------------------------------------------

    @property
    def hash_length(self) -> int:
        """Nh: the output size of the suite's hash / KDF."""
        return _HASHES[self.kdf_id][2]

    @property
    def aead_key_length(self) -> int:
        return _AEAD_SIZES[self.aead_id][0]

    @property
    def aead_nonce_length(self) -> int:
        return _AEAD_SIZES[self.aead_id][1]

    # --- hash, MAC, KDF ------------------------------------------------------------------

    def hash(self, data: bytes) -> bytes:
        return _HASH_NEW[self.kdf_id](data).digest()

    def mac(self, key: bytes, data: bytes) -> bytes:
        """RFC 9420 §5.1: MAC is HMAC with the suite's hash."""
        return hmac.new(key, data, _HASHES[self.kdf_id][0]).digest()

    def kdf_extract(self, salt: bytes, ikm: bytes) -> bytes:
        return HKDF.extract(_HASHES[self.kdf_id][1](), salt, ikm)

    def kdf_expand(self, prk: bytes, info: bytes, length: int) -> bytes:
        return HKDFExpand(_HASHES[self.kdf_id][1](), length, info).derive(prk)

    def ref_hash(self, label: bytes, value: bytes) -> bytes:
        """RFC 9420 §5.2 RefHash; ``label`` is the full one (b"MLS 1.0 Proposal Reference")."""
        return self.hash(_opaque(label) + _opaque(value))

    def expand_with_label(self, secret: bytes, label: bytes, context: bytes, length: int) -> bytes:
        """RFC 9420 §8: KDFLabel = {uint16 length; opaque label<V>; opaque context<V>}."""
        info = length.to_bytes(2, "big") + _mls_label(label) + _opaque(context)
        return HKDFExpand(_HASHES[self.kdf_id][1](), length, info).derive(secret)

    def derive_secret(self, secret: bytes, label: bytes) -> bytes:
        return self.expand_with_label(secret, label, b"", self.hash_length)

    def derive_tree_secret(
        self, secret: bytes, label: bytes, generation: int, length: int
    ) -> bytes:
        """RFC 9420 §9.1: the context is the generation as uint32."""
        return self.expand_with_label(secret, label, generation.to_bytes(4, "big"), length)

    # --- AEAD ----------------------------------------------------------------------------

    def _aead(self, key: bytes) -> AESGCM | ChaCha20Poly1305:
        if len(key) != self.aead_key_length:
            raise DecryptError("AEAD key has the wrong length")
        if self.aead_id == AeadId.CHACHA20_POLY1305:
            return ChaCha20Poly1305(key)
        return AESGCM(key)

    def aead_seal(self, key: bytes, nonce: bytes, aad: bytes, plaintext: bytes) -> bytes:
        return self._aead(key).encrypt(nonce, plaintext, aad)

    def aead_open(self, key: bytes, nonce: bytes, aad: bytes, ciphertext: bytes) -> bytes:
        try:
            return self._aead(key).decrypt(nonce, ciphertext, aad)
        except InvalidTag:
            raise DecryptError("AEAD authentication failed") from None

    # --- signatures (RFC 9420 §5.1.2) ------------------------------------------------------

    def generate_signature_key_pair(self) -> KeyPair:
        scheme = self.signature_scheme
        if scheme == SignatureScheme.ED25519:
            sk25519 = ed25519.Ed25519PrivateKey.generate()
            return KeyPair(sk25519.private_bytes_raw(), sk25519.public_key().public_bytes_raw())
        if scheme == SignatureScheme.ED448:
            sk448 = ed448.Ed448PrivateKey.generate()
            return KeyPair(sk448.private_bytes_raw(), sk448.public_key().public_bytes_raw())
        if scheme in _MLDSA:  # the private key is the 32-byte seed (FIPS 204 §6.1)
            skdsa = _MLDSA[scheme][0].generate()
            return KeyPair(skdsa.private_bytes_raw(), skdsa.public_key().public_bytes_raw())
        curve, _, size = _EC_CURVES[scheme]
        skec = ec.generate_private_key(curve)
        return KeyPair(
            skec.private_numbers().private_value.to_bytes(size, "big"),
            skec.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint),
        )

    def signature_public_key(self, private_key: bytes) -> bytes:
        """The public key that belongs to a signature private key."""
        return _signing_key(self.signature_scheme, private_key)[1]

    def sign(self, private_key: bytes, message: bytes) -> bytes:
        key, _ = _cached_signing_key(self.signature_scheme, private_key)
        # Dispatch on the scheme: isinstance against pyca's key ABCs costs microseconds.
        curve = _EC_CURVES.get(self.signature_scheme)
        if curve is not None:
            return cast("ec.EllipticCurvePrivateKey", key).sign(message, ec.ECDSA(curve[1]()))
        # ML-DSA: pure mode with an empty context (draft-ietf-tls-mldsa §3).
        return cast("_EdOrDsaPrivate", key).sign(message)

    def verify(self, public_key: bytes, message: bytes, signature: bytes) -> None:
        """Raise `InvalidSignature` unless ``signature`` is valid (malformed keys included)."""
        key = _verifying_key(self.signature_scheme, public_key)
        curve = _EC_CURVES.get(self.signature_scheme)
        try:
            if curve is not None:
                cast("ec.EllipticCurvePublicKey", key).verify(
                    signature, message, ec.ECDSA(curve[1]())
                )
            else:
                cast("_EdOrDsaPublic", key).verify(signature, message)
        except _PycaInvalidSignature:
            raise InvalidSignature("signature does not verify") from None

    def sign_with_label(self, private_key: bytes, label: bytes, content: bytes) -> bytes:
        return self.sign(private_key, _mls_label(label) + _opaque(content))

    def verify_with_label(
        self, public_key: bytes, label: bytes, content: bytes, signature: bytes
    ) -> None:
        self.verify(public_key, _mls_label(label) + _opaque(content), signature)

    # --- HPKE (RFC 9180 base mode) ---------------------------------------------------------

    def _pyhpke(self) -> pyhpke.CipherSuite:
        return _pyhpke_suite(self.kem_id, self.kdf_id, self.aead_id, self._derivation)

    @property
    def _derivation(self) -> SeedDerivation:
        if self.id in _UNLABELED_SEED_SUITES:
            return SeedDerivation.SHAKE256_UNLABELED
        return SeedDerivation.LABELED

    @property
    def _pq_kem(self) -> PqKem | None:
        """The post-quantum KEM of this suite, or None for a DHKEM."""
        if self.kem_id in _PQ_KEMS:
            return pq_kem(self.kem_id, self._derivation)
        return None

    @property
    def is_post_quantum(self) -> bool:
        """Whether the suite's KEM resists a quantum adversary (harvest now, decrypt later)."""
        return self.kem_id in _PQ_KEMS

    def _check_hpke_public(self, public_key: bytes) -> None:
        pq = self._pq_kem
        if pq is not None:
            pq.validate_public_key(public_key)
        else:
            _hpke_public(self.kem_id, public_key)

    def derive_key_pair(self, ikm: bytes) -> KeyPair:
        """RFC 9180 §7.1.3 DeriveKeyPair (TreeKEM node keys, RFC 9420 §7.4)."""
        kp = self._pyhpke().kem.derive_key_pair(ikm)
        private_key = kp.private_key.to_private_bytes()
        if self.kem_id in _KEM_CURVES:
            # pyhpke 0.6.5 pads EC scalars to key_size *bits*; RFC 9180 §7.1.2 wants Nsk bytes.
            private_key = int.from_bytes(private_key, "big").to_bytes(
                _KEM_CURVES[self.kem_id][1], "big"
            )
        return KeyPair(private_key, kp.public_key.to_public_bytes())

    def generate_hpke_key_pair(self) -> KeyPair:
        return self.derive_key_pair(os.urandom(self.hash_length))

    def hpke_public_key(self, private_key: bytes) -> bytes:
        """The HPKE public key that belongs to ``private_key``."""
        pq = self._pq_kem
        if pq is not None:
            pq.deserialize_private_key(private_key)  # the length check
            return pq.public_from_seed(private_key)
        sk = _hpke_private(self.kem_id, private_key)
        pk = sk.public_key()
        if isinstance(pk, ec.EllipticCurvePublicKey):
            return pk.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        return pk.public_bytes_raw()

    def validate_hpke_public_key(self, public_key: bytes) -> None:
        """Raise `DecodeError` unless ``public_key`` is a valid public key for this KEM."""
        self._check_hpke_public(public_key)

    def seal_base(self, public_key: bytes, info: bytes, plaintext: bytes) -> tuple[bytes, bytes]:
        """SealBase(pkR, info, aad="", pt) -> (enc, ct)."""
        pyca_kem = _PYCA_KEMS.get(self.kem_id)
        if pyca_kem is not None:
            suite = _pyca_suite(self.kem_id, self.kdf_id, self.aead_id)
            # X448 is not a pyca HPKE KEM, so this is an X25519 or EC key.
            pk = cast(
                "x25519.X25519PublicKey | ec.EllipticCurvePublicKey",
                _hpke_public(self.kem_id, public_key),
            )
            out = suite.encrypt(plaintext, pk, info=info)
            n = pyca_kem.enc_length()
            return out[:n], out[n:]
        self._check_hpke_public(public_key)
        try:
            pkr = self._pyhpke().kem.deserialize_public_key(public_key)
            enc, ctx = self._pyhpke().create_sender_context(pkr, info=info)
            return bytes(enc), bytes(ctx.seal(plaintext, b""))
        except (ValueError, pyhpke.PyHPKEError) as exc:
            raise DecodeError("malformed HPKE public key") from exc

    def open_base(self, private_key: bytes, enc: bytes, info: bytes, ciphertext: bytes) -> bytes:
        """OpenBase(enc, skR, info, aad="", ct); raises `DecryptError`."""
        if self.kem_id in _PYCA_KEMS:
            suite = _pyca_suite(self.kem_id, self.kdf_id, self.aead_id)
            sk = cast(  # X448 is not a pyca HPKE KEM
                "x25519.X25519PrivateKey | ec.EllipticCurvePrivateKey",
                _hpke_private(self.kem_id, private_key),
            )
            try:
                return suite.decrypt(enc + ciphertext, sk, info=info)
            except (InvalidTag, ValueError):
                raise DecryptError("HPKE decryption failed") from None
        try:
            skr = self._pyhpke().kem.deserialize_private_key(private_key)
            ctx = self._pyhpke().create_recipient_context(enc, skr, info=info)
            return bytes(ctx.open(ciphertext, b""))
        except (ValueError, pyhpke.PyHPKEError):
            raise DecryptError("HPKE decryption failed") from None

    def encrypt_with_label(
        self, public_key: bytes, label: bytes, context: bytes, plaintext: bytes
    ) -> tuple[bytes, bytes]:
        """RFC 9420 §5.1.3 -> (kem_output, ciphertext)."""
        info = _mls_label(label) + _opaque(context)
        return self.seal_base(public_key, info, plaintext)

    def decrypt_with_label(
        self, private_key: bytes, label: bytes, context: bytes, kem_output: bytes, ciphertext: bytes
    ) -> bytes:
        info = _mls_label(label) + _opaque(context)
        return self.open_base(private_key, kem_output, info, ciphertext)

    def export_sender(
        self, public_key: bytes, info: bytes, exporter_context: bytes, length: int
    ) -> tuple[bytes, bytes]:
        """SetupBaseS(pkR, info) then Export(exporter_context, L) -> (enc, secret)."""
        self._check_hpke_public(public_key)
        try:
            pkr = self._pyhpke().kem.deserialize_public_key(public_key)
            enc, ctx = self._pyhpke().create_sender_context(pkr, info=info)
            return bytes(enc), bytes(ctx.export(exporter_context, length))
        except (ValueError, pyhpke.PyHPKEError) as exc:
            raise DecodeError("malformed HPKE public key") from exc

    def export_receiver(
        self, private_key: bytes, enc: bytes, info: bytes, exporter_context: bytes, length: int
    ) -> bytes:
        """SetupBaseR(enc, skR, info) then Export(exporter_context, L)."""
        try:
            skr = self._pyhpke().kem.deserialize_private_key(private_key)
            ctx = self._pyhpke().create_recipient_context(enc, skr, info=info)
            return bytes(ctx.export(exporter_context, length))
        except (ValueError, pyhpke.PyHPKEError):
            raise DecryptError("HPKE setup failed") from None


# --- key object construction (cached: parsing a point costs more than using it) ----------

_MLDSAPrivate = mldsa.MLDSA44PrivateKey | mldsa.MLDSA65PrivateKey | mldsa.MLDSA87PrivateKey
_MLDSAPublic = mldsa.MLDSA44PublicKey | mldsa.MLDSA65PublicKey | mldsa.MLDSA87PublicKey
_EdOrDsaPrivate = ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey | _MLDSAPrivate
_EdOrDsaPublic = ed25519.Ed25519PublicKey | ed448.Ed448PublicKey | _MLDSAPublic
_SigningKey = _EdOrDsaPrivate | ec.EllipticCurvePrivateKey


@lru_cache(maxsize=4096)
def _verifying_key(
    scheme: SignatureScheme, public_key: bytes
) -> _EdOrDsaPublic | ec.EllipticCurvePublicKey:
    try:
        if scheme in _MLDSA:
            return _MLDSA[scheme][1].from_public_bytes(public_key)
        if scheme == SignatureScheme.ED25519:
            return ed25519.Ed25519PublicKey.from_public_bytes(public_key)
        if scheme == SignatureScheme.ED448:
            return ed448.Ed448PublicKey.from_public_bytes(public_key)
        curve = _EC_CURVES[scheme][0]
        if public_key[:1] != b"\x04":  # RFC 9420 §5.1.1: UncompressedPointRepresentation only
            raise ValueError("compressed point")
        return ec.EllipticCurvePublicKey.from_encoded_point(curve, public_key)
    except ValueError:
        raise InvalidSignature("malformed signature public key") from None


# HPKE private keys are not cached: a cache would keep deleted keys alive (RFC 9420 §16.8).
# Signature keys are a member's long-lived identity keys (no forward secrecy depends on
# deleting them), and parsing one costs as much as a signature (Ed25519 derives the public
# key), so the few a client signs with are kept parsed.
@lru_cache(maxsize=8)
def _cached_signing_key(scheme: SignatureScheme, private_key: bytes) -> tuple[_SigningKey, bytes]:
    return _signing_key(scheme, private_key)


def _signing_key(scheme: SignatureScheme, private_key: bytes) -> tuple[_SigningKey, bytes]:
    try:
        if scheme in _MLDSA:
            kdsa = _MLDSA[scheme][0].from_seed_bytes(private_key)
            return kdsa, kdsa.public_key().public_bytes_raw()
        if scheme == SignatureScheme.ED25519:
            k25519 = ed25519.Ed25519PrivateKey.from_private_bytes(private_key)
            return k25519, k25519.public_key().public_bytes_raw()
        if scheme == SignatureScheme.ED448:
            k448 = ed448.Ed448PrivateKey.from_private_bytes(private_key)
            return k448, k448.public_key().public_bytes_raw()
        curve = _EC_CURVES[scheme][0]
        kec = ec.derive_private_key(int.from_bytes(private_key, "big"), curve)
        return kec, kec.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    except ValueError:
        raise ConfigurationError("malformed signature private key") from None


@lru_cache(maxsize=4096)
def _hpke_public(
    kem: KemId, public_key: bytes
) -> x25519.X25519PublicKey | x448.X448PublicKey | ec.EllipticCurvePublicKey:
    try:
        if kem == KemId.DHKEM_X25519_HKDF_SHA256:
            return x25519.X25519PublicKey.from_public_bytes(public_key)
        if kem == KemId.DHKEM_X448_HKDF_SHA512:
            return x448.X448PublicKey.from_public_bytes(public_key)
        if public_key[:1] != b"\x04":  # RFC 9180 §7.1.1: SerializePublicKey is uncompressed
            raise ValueError("compressed point")
        return ec.EllipticCurvePublicKey.from_encoded_point(_KEM_CURVES[kem][0], public_key)
    except ValueError:
        raise DecodeError("malformed HPKE public key") from None


def _hpke_private(
    kem: KemId, private_key: bytes
) -> x25519.X25519PrivateKey | x448.X448PrivateKey | ec.EllipticCurvePrivateKey:
    try:
        if kem == KemId.DHKEM_X25519_HKDF_SHA256:
            return x25519.X25519PrivateKey.from_private_bytes(private_key)
        if kem == KemId.DHKEM_X448_HKDF_SHA512:
            return x448.X448PrivateKey.from_private_bytes(private_key)
        curve, size = _KEM_CURVES[kem]
        # Some implementations (and the official MLS vectors) drop leading zero octets of the
        # scalar; RFC 9180 §7.1.2 says Nsk octets, so accept shorter but never longer.
        if not 0 < len(private_key) <= size:
            raise ValueError("wrong length")
        return ec.derive_private_key(int.from_bytes(private_key, "big"), curve)
    except ValueError:
        raise DecryptError("malformed HPKE private key") from None


@cache
def _pyca_suite(kem: KemId, kdf: KdfId, aead: AeadId) -> pyca_hpke.Suite:
    return pyca_hpke.Suite(_PYCA_KEMS[kem], _PYCA_KDFS[kdf], _PYCA_AEADS[aead])


_PQ_KEMS = frozenset({KemId.ML_KEM_768, KemId.MLKEM768_X25519})


@cache
def _pyhpke_suite(
    kem: KemId, kdf: KdfId, aead: AeadId, derivation: SeedDerivation
) -> pyhpke.CipherSuite:
    if kem in _PQ_KEMS:
        kdf_id, aead_id = pyhpke.KDFId(kdf), pyhpke.AEADId(aead)
        # pyhpke's key schedule rebuilds the HPKE suite_id from the three ids, so the KDF's
        # own suite_id is unused (RFC 9180 §5.1).
        return pyhpke.CipherSuite(
            pq_kem(kem, derivation), PyhpkeKDF(kdf_id, b""), PyhpkeAEAD(aead_id)
        )
    return pyhpke.CipherSuite.new(pyhpke.KEMId(kem), pyhpke.KDFId(kdf), pyhpke.AEADId(aead))


@cache
def cipher_suite(suite_id: int) -> CipherSuite:
    """The `CipherSuite` for a numeric id; unknown ids (off the wire) raise `DecodeError`."""
    try:
        sid = CipherSuiteId(suite_id)
    except ValueError:
        raise DecodeError(f"unsupported cipher suite {suite_id}") from None
    kem, kdf, aead, sig = _SUITES[sid]
    return CipherSuite(sid, kem, kdf, aead, sig)


SUPPORTED_SUITES = tuple(CipherSuiteId)
