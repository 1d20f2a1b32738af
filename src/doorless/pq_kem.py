"""Post-quantum HPKE KEMs: ML-KEM-768 and X-Wing (MLKEM768-X25519), as pyhpke KEMs.

draft-ietf-hpke-pq defines ML-KEM-768 (0x0041) and X-Wing (0x647a) as HPKE KEMs; the MLS PQ
cipher suites (draft-ietf-mls-pq-ciphersuites) use them. ML-KEM itself, X25519, SHAKE256 and
SHA3-256 come from pyca/cryptography (``MLKEM768PrivateKey.from_seed_bytes``); the HPKE key
schedule, AEAD and exporter come from pyhpke, which takes these classes as its KEM. What is
written here is only protocol glue: key expansion from a seed and the X-Wing combiner
(draft-connolly-cfrg-xwing-kem §5), checked byte-exactly against the X-Wing, hpke-pq and
concrete-hybrid-kems vectors (`doorless.conformance.pq_kems`).

Private keys are seeds (64 bytes for ML-KEM-768, 32 for X-Wing), as both drafts serialize them.
"""

from __future__ import annotations

import hashlib
from enum import IntEnum
from typing import cast

import pyhpke
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519

from doorless.errors import DecodeError, DecryptError


class PqKemId(IntEnum):
    """draft-ietf-hpke-pq §7 (IANA): the HPKE KEM ids of the PQ KEMs used by MLS."""

    ML_KEM_768 = 0x0041
    MLKEM768_X25519 = 0x647A  # X-Wing


class SeedDerivation(IntEnum):
    """How HPKE DeriveKeyPair turns input keying material into a KEM seed.

    ``LABELED``: draft-ietf-hpke-pq §4, §5 (SHAKE256.LabeledDerive, draft-ietf-hpke-hpke §4).
    ``SHAKE256_UNLABELED``: X-Wing's seed = SHAKE256(ikm, 32) with no label, as hpke-js
    (``@hpke/hybridkem-x-wing`` 0.7) and therefore ts-mls compute it; used only by the ts-mls
    compatibility suites.
    """

    LABELED = 1
    SHAKE256_UNLABELED = 2


ML_KEM_768_PK = 1184
ML_KEM_768_CT = 1088
X25519_LEN = 32
# draft-connolly-cfrg-xwing-kem §5.3: XWingLabel = "\./" || "/^\"
XWING_LABEL = b"\\.//^\\"


def _labeled_derive(kem_id: int, ikm: bytes, label: bytes, context: bytes, length: int) -> bytes:
    """draft-ietf-hpke-hpke §4 LabeledDerive with SHAKE256 and suite_id = "KEM" || kem_id."""
    suite_id = b"KEM" + kem_id.to_bytes(2, "big")
    labeled_ikm = (
        ikm
        + b"HPKE-v1"
        + suite_id
        + len(label).to_bytes(2, "big")
        + label
        + length.to_bytes(2, "big")
        + context
    )
    return hashlib.shake_256(labeled_ikm).digest(length)


class _Key(pyhpke.KEMKeyInterface):
    """A PQ KEM key as pyhpke sees it: raw bytes (a seed, or a public key)."""

    def __init__(self, value: bytes, private: bool) -> None:
        super().__init__(value)
        self._private = private

    def to_private_bytes(self) -> bytes:
        if not self._private:
            raise DecodeError("not a private key")
        return cast("bytes", self._key)

    def to_public_bytes(self) -> bytes:
        if self._private:
            raise DecodeError("not a public key")
        return cast("bytes", self._key)


def _mlkem_public(data: bytes) -> mlkem.MLKEM768PublicKey:
    try:
        return mlkem.MLKEM768PublicKey.from_public_bytes(data)
    except ValueError:
        raise DecodeError("malformed ML-KEM-768 public key") from None


def _mlkem_private(seed: bytes) -> mlkem.MLKEM768PrivateKey:
    try:
        return mlkem.MLKEM768PrivateKey.from_seed_bytes(seed)
    except ValueError:
        raise DecryptError("malformed ML-KEM-768 private key") from None


class PqKem(pyhpke.KEMInterface):
    """Base: id, (de)serialization as identity (draft-ietf-hpke-pq §4, §5), DeriveKeyPair."""

    kem_id: PqKemId
    seed_length: int
    public_length: int
    enc_length: int

    def __init__(self, derivation: SeedDerivation = SeedDerivation.LABELED) -> None:
        self._derivation = derivation

    @property
    def id(self) -> pyhpke.KEMId:
        # pyhpke only reads ``.value`` (for the HPKE suite_id), which an IntEnum has.
        return cast("pyhpke.KEMId", self.kem_id)

    def seed_from_ikm(self, ikm: bytes) -> bytes:
        """The seed (serialized private key) HPKE DeriveKeyPair(ikm) gives."""
        if self._derivation == SeedDerivation.SHAKE256_UNLABELED:
            return hashlib.shake_256(ikm).digest(self.seed_length)
        return _labeled_derive(self.kem_id, ikm, b"DeriveKeyPair", b"", self.seed_length)

    def public_from_seed(self, seed: bytes) -> bytes:
        raise NotImplementedError

    def derive_key_pair(self, ikm: bytes) -> pyhpke.KEMKeyPair:
        seed = self.seed_from_ikm(ikm)
        return pyhpke.KEMKeyPair(_Key(seed, True), _Key(self.public_from_seed(seed), False))

    def deserialize_private_key(self, key: bytes) -> pyhpke.KEMKeyInterface:
        if len(key) != self.seed_length:
            raise DecryptError("PQ KEM private key has the wrong length")
        return _Key(bytes(key), True)

    def deserialize_public_key(self, key: bytes) -> pyhpke.KEMKeyInterface:
        self.validate_public_key(bytes(key))
        return _Key(bytes(key), False)

    def validate_public_key(self, key: bytes) -> None:
        raise NotImplementedError

    def encap_raw(self, public_key: bytes) -> tuple[bytes, bytes]:
        """-> (shared_secret, enc)."""
        raise NotImplementedError

    def decap_raw(self, enc: bytes, seed: bytes) -> bytes:
        raise NotImplementedError

    def encap(
        self,
        pkr: pyhpke.KEMKeyInterface,
        sks: pyhpke.KEMKeyInterface | None = None,
        eks: pyhpke.KEMKeyPair | None = None,
    ) -> tuple[bytes, bytes]:
        if sks is not None or eks is not None:
            raise DecodeError("PQ KEMs have no auth mode and no caller-chosen ephemeral key")
        return self.encap_raw(pkr.to_public_bytes())

    def decap(
        self, enc: bytes, skr: pyhpke.KEMKeyInterface, pks: pyhpke.KEMKeyInterface | None = None
    ) -> bytes:
        if pks is not None:
            raise DecryptError("PQ KEMs have no auth mode")
        if len(enc) != self.enc_length:
            raise DecryptError("PQ KEM ciphertext has the wrong length")
        return self.decap_raw(bytes(enc), skr.to_private_bytes())


class MlKem768(PqKem):
    """draft-ietf-hpke-pq §4: ML-KEM-768 (FIPS 203) as an HPKE KEM."""

    kem_id = PqKemId.ML_KEM_768
    seed_length = 64
    public_length = ML_KEM_768_PK
    enc_length = ML_KEM_768_CT

    def public_from_seed(self, seed: bytes) -> bytes:
        return _mlkem_private(seed).public_key().public_bytes_raw()

    def validate_public_key(self, key: bytes) -> None:
        _mlkem_public(key)

    def encap_raw(self, public_key: bytes) -> tuple[bytes, bytes]:
        return _mlkem_public(public_key).encapsulate()

    def decap_raw(self, enc: bytes, seed: bytes) -> bytes:
        try:
            return _mlkem_private(seed).decapsulate(enc)
        except ValueError:
            raise DecryptError("ML-KEM decapsulation failed") from None


class XWing(PqKem):
    """X-Wing (draft-connolly-cfrg-xwing-kem; MLKEM768-X25519 in draft-irtf-cfrg-concrete-hybrid-
    kems; HPKE KEM 0x647a in draft-ietf-hpke-pq §5). pk = pk_M || pk_X, ct = ct_M || ct_X."""

    kem_id = PqKemId.MLKEM768_X25519
    seed_length = 32
    public_length = ML_KEM_768_PK + X25519_LEN
    enc_length = ML_KEM_768_CT + X25519_LEN

    @staticmethod
    def expand(seed: bytes) -> tuple[mlkem.MLKEM768PrivateKey, x25519.X25519PrivateKey]:
        """§5.2 expandDecapsulationKey: SHAKE256(sk, 96) = ML-KEM (d, z) || X25519 scalar."""
        if len(seed) != 32:
            raise DecryptError("X-Wing private key has the wrong length")
        expanded = hashlib.shake_256(seed).digest(96)
        return (
            _mlkem_private(expanded[:64]),
            x25519.X25519PrivateKey.from_private_bytes(expanded[64:96]),
        )

    def public_from_seed(self, seed: bytes) -> bytes:
        sk_m, sk_x = self.expand(seed)
        return sk_m.public_key().public_bytes_raw() + sk_x.public_key().public_bytes_raw()

    def validate_public_key(self, key: bytes) -> None:
        if len(key) != self.public_length:
            raise DecodeError("X-Wing public key has the wrong length")
        _mlkem_public(key[:ML_KEM_768_PK])

    @staticmethod
    def combiner(ss_m: bytes, ss_x: bytes, ct_x: bytes, pk_x: bytes) -> bytes:
        """§5.3 Combiner: SHA3-256(ss_M || ss_X || ct_X || pk_X || XWingLabel)."""
        return hashlib.sha3_256(ss_m + ss_x + ct_x + pk_x + XWING_LABEL).digest()

    def encap_raw(self, public_key: bytes) -> tuple[bytes, bytes]:
        self.validate_public_key(public_key)
        pk_m, pk_x = public_key[:ML_KEM_768_PK], public_key[ML_KEM_768_PK:]
        ss_m, ct_m = _mlkem_public(pk_m).encapsulate()
        ek_x = x25519.X25519PrivateKey.generate()
        ct_x = ek_x.public_key().public_bytes_raw()
        try:
            ss_x = ek_x.exchange(x25519.X25519PublicKey.from_public_bytes(pk_x))
        except ValueError:  # a low-order point: the exchange would be all zeros
            raise DecodeError("malformed X-Wing public key") from None
        return self.combiner(ss_m, ss_x, ct_x, pk_x), ct_m + ct_x

    def decap_raw(self, enc: bytes, seed: bytes) -> bytes:
        sk_m, sk_x = self.expand(seed)
        ct_m, ct_x = enc[:ML_KEM_768_CT], enc[ML_KEM_768_CT:]
        try:
            ss_m = sk_m.decapsulate(ct_m)
            ss_x = sk_x.exchange(x25519.X25519PublicKey.from_public_bytes(ct_x))
        except ValueError:
            raise DecryptError("X-Wing decapsulation failed") from None
        return self.combiner(ss_m, ss_x, ct_x, sk_x.public_key().public_bytes_raw())


def pq_kem(kem_id: int, derivation: SeedDerivation = SeedDerivation.LABELED) -> PqKem:
    """The KEM for ``kem_id`` (one of `PqKemId`)."""
    kems: dict[int, type[PqKem]] = {PqKemId.ML_KEM_768: MlKem768, PqKemId.MLKEM768_X25519: XWing}
    return kems[kem_id](derivation)
