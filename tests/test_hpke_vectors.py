"""RFC 9180 Appendix A test vectors for the HPKE combinations the MLS cipher suites use.

For every MLS suite whose (KEM, KDF, AEAD) has a base-mode vector in the RFC file, one case per
vector and per check. Which layer each check exercises:

* through `doorless.crypto` (the code under test): DeriveKeyPair(ikmR) and DeriveKeyPair(ikmE)
  (`derive_key_pair`), the public key of skRm (`hpke_public_key`), the exporter
  (`export_receiver`), every encryption's AEAD under the vector's key and nonce (`aead_seal`,
  `aead_open`), and `open_base` (KEM decapsulation + key schedule) on a ciphertext sealed under the
  vector's ``key``/``base_nonce`` with an empty aad (`open_base` has no aad parameter: MLS uses
  aad="", RFC 9420 §5.1.3);
* through pyhpke directly (the library layer under `doorless.crypto`): the vectors' own
  encryptions, which all carry a non-empty aad and sequence numbers 0..256, on a recipient
  context, and on a sender context with the vector's ephemeral key (enc and every ct byte-exact).

RFC 9180 has no vector for DHKEM(P-384, HKDF-SHA384) (suite 7): that combination is counted as
not covered by `test_combinations_covered`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyhpke
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from doorless.crypto import _SUITES, AeadId, CipherSuiteId, cipher_suite

VECTORS = Path(__file__).parent / "vectors" / "hpke" / "rfc9180-test-vectors.json"
MODE_BASE = 0

Vector = dict[str, Any]


def _h(value: str) -> bytes:
    return bytes.fromhex(value)


def _combination(v: Vector) -> tuple[int, int, int]:
    return v["kem_id"], v["kdf_id"], v["aead_id"]


def _suite_combinations() -> dict[tuple[int, int, int], int]:
    """(kem, kdf, aead) -> MLS cipher suite id, from doorless.crypto's own table."""
    return {(int(k), int(f), int(a)): int(s) for s, (k, f, a, _sig) in _SUITES.items()}


def _load() -> tuple[list[object], set[int]]:
    with VECTORS.open("rb") as f:
        data: list[Vector] = json.load(f)
    combos = _suite_combinations()
    params: list[object] = []
    covered: set[int] = set()
    for v in data:
        suite = combos.get(_combination(v))
        if v["mode"] != MODE_BASE or suite is None:
            continue
        covered.add(suite)
        kem, kdf, aead = _combination(v)
        params.append(
            pytest.param(suite, v, id=f"suite{suite}-kem{kem:#06x}-kdf{kdf:#06x}-aead{aead:#06x}")
        )
    return params, covered


PARAMS, COVERED = _load()
vectors = pytest.mark.parametrize(("suite_id", "v"), PARAMS)


def test_combinations_covered() -> None:
    # Suites 1-6 have a base-mode vector; suite 7's DHKEM(P-384) is absent from RFC 9180.
    assert sorted(COVERED) == [1, 2, 3, 4, 5, 6]
    assert len(PARAMS) == 6
    # The post-quantum suites are covered by the PQ vectors (tests/test_pq_vectors.py).
    pq = {s for s in CipherSuiteId if cipher_suite(s).is_post_quantum}
    assert set(_suite_combinations().values()) - COVERED - pq == {CipherSuiteId(7)}


# --- through doorless.crypto ------------------------------------------------------------------


@vectors
def test_derive_key_pair(suite_id: int, v: Vector) -> None:
    cs = cipher_suite(suite_id)
    recipient = cs.derive_key_pair(_h(v["ikmR"]))
    assert recipient.private_key.hex() == v["skRm"]
    assert recipient.public_key.hex() == v["pkRm"]
    ephemeral = cs.derive_key_pair(_h(v["ikmE"]))
    assert ephemeral.private_key.hex() == v["skEm"]
    assert ephemeral.public_key.hex() == v["pkEm"]


@vectors
def test_public_keys(suite_id: int, v: Vector) -> None:
    cs = cipher_suite(suite_id)
    assert cs.hpke_public_key(_h(v["skRm"])).hex() == v["pkRm"]
    assert cs.hpke_public_key(_h(v["skEm"])).hex() == v["pkEm"]
    assert v["enc"] == v["pkEm"]  # DHKEM: enc = SerializePublicKey(pkE), RFC 9180 §4.1
    cs.validate_hpke_public_key(_h(v["pkRm"]))
    cs.validate_hpke_public_key(_h(v["enc"]))


@vectors
def test_export_receiver(suite_id: int, v: Vector) -> None:
    cs = cipher_suite(suite_id)
    assert v["exports"], "vector without exports"
    for i, export in enumerate(v["exports"]):
        got = cs.export_receiver(
            _h(v["skRm"]), _h(v["enc"]), _h(v["info"]), _h(export["exporter_context"]), export["L"]
        )
        assert got.hex() == export["exported_value"], f"exports[{i}]"


@vectors
def test_aead_each_encryption(suite_id: int, v: Vector) -> None:
    cs = cipher_suite(suite_id)
    key = _h(v["key"])
    assert v["encryptions"], "vector without encryptions"
    for i, e in enumerate(v["encryptions"]):
        nonce, aad, pt, ct = _h(e["nonce"]), _h(e["aad"]), _h(e["pt"]), _h(e["ct"])
        assert cs.aead_seal(key, nonce, aad, pt).hex() == e["ct"], f"encryptions[{i}] seal"
        assert cs.aead_open(key, nonce, aad, ct) == pt, f"encryptions[{i}] open"


_AEADS = {
    AeadId.AES_128_GCM: AESGCM,
    AeadId.AES_256_GCM: AESGCM,
    AeadId.CHACHA20_POLY1305: ChaCha20Poly1305,
}


@vectors
def test_open_base_uses_the_vector_key_schedule(suite_id: int, v: Vector) -> None:
    """OpenBase(enc, skRm, info, aad="", ct) recovers a plaintext sealed with the vector's key.

    The ciphertext is made with pyca's AEAD from the vector's ``key`` and ``base_nonce``
    (sequence 0), so it only opens if `open_base` derives exactly that key schedule.
    """
    cs = cipher_suite(suite_id)
    pt = _h(v["encryptions"][0]["pt"])
    ct = _AEADS[cs.aead_id](_h(v["key"])).encrypt(_h(v["base_nonce"]), pt, b"")
    assert cs.open_base(_h(v["skRm"]), _h(v["enc"]), _h(v["info"]), ct) == pt


@vectors
def test_seal_base_opens_with_vector_keys(suite_id: int, v: Vector) -> None:
    cs = cipher_suite(suite_id)
    pt = _h(v["encryptions"][0]["pt"])
    enc, ct = cs.seal_base(_h(v["pkRm"]), _h(v["info"]), pt)
    assert cs.open_base(_h(v["skRm"]), enc, _h(v["info"]), ct) == pt


# --- through pyhpke directly (library layer: aad and sequence numbers) ------------------------


def _pyhpke_suite(v: Vector) -> pyhpke.CipherSuite:
    kem, kdf, aead = _combination(v)
    return pyhpke.CipherSuite.new(pyhpke.KEMId(kem), pyhpke.KDFId(kdf), pyhpke.AEADId(aead))


@vectors
def test_library_recipient_context_opens_every_encryption(suite_id: int, v: Vector) -> None:
    suite = _pyhpke_suite(v)
    skr = suite.kem.deserialize_private_key(_h(v["skRm"]))
    ctx = suite.create_recipient_context(_h(v["enc"]), skr, info=_h(v["info"]))
    for i, e in enumerate(v["encryptions"]):  # in order: each open advances the sequence number
        assert ctx.open(_h(e["ct"]), aad=_h(e["aad"])).hex() == e["pt"], f"encryptions[{i}]"
    for i, export in enumerate(v["exports"]):
        got = ctx.export(_h(export["exporter_context"]), export["L"])
        assert got.hex() == export["exported_value"], f"exports[{i}]"


@vectors
def test_library_sender_context_reproduces_every_ciphertext(suite_id: int, v: Vector) -> None:
    suite = _pyhpke_suite(v)
    pkr = suite.kem.deserialize_public_key(_h(v["pkRm"]))
    ephemeral = suite.kem.derive_key_pair(_h(v["ikmE"]))
    enc, ctx = suite.create_sender_context(pkr, info=_h(v["info"]), eks=ephemeral)
    assert enc.hex() == v["enc"]
    for i, e in enumerate(v["encryptions"]):
        assert ctx.seal(_h(e["pt"]), aad=_h(e["aad"])).hex() == e["ct"], f"encryptions[{i}]"
