"""Post-quantum KEM vectors: X-Wing (draft-connolly-cfrg-xwing-kem), HPKE with PQ KEMs
(draft-ietf-hpke-pq) and the concrete hybrid KEMs (draft-irtf-cfrg-concrete-hybrid-kems).

What pyca/cryptography cannot do is skipped explicitly: it has no derandomized ML-KEM
encapsulation, so a vector's ``eseed``/``randomness``/``ikmE`` cannot reproduce its ciphertext;
every key derivation and every decapsulation (and, for HPKE, every decryption and export after
it) is checked byte-exactly. KEMs and KDFs the MLS suites here do not use are skipped too.
"""

from __future__ import annotations

from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric import x25519
from pyhpke import AEADId, CipherSuite, KDFId
from pyhpke.aead import AEAD
from pyhpke.kdf import KDF

from doorless.conformance import SFRAME_SECTION, Case, VectorSkip, expect, h
from doorless.pq_kem import X25519_LEN, PqKemId, XWing, pq_kem

MODE_BASE = 0
# RFC 9180 two-stage KDFs; the one-stage SHAKE KDFs (0x0010-0x0013) are not used by MLS
# (draft-ietf-mls-pq-ciphersuites §2: MLS needs Extract and Expand).
_HKDFS = frozenset({1, 2, 3})


def check_xwing(case: Case) -> None:
    """seed -> (sk, pk) by §5.2; Decapsulate(ct, sk) -> ss by §5.4."""
    kem = XWing()
    seed, sk = h(case["seed"]), h(case["sk"])
    expect("sk", seed, sk)  # X-Wing's decapsulation key is its 32-byte seed
    expect("pk", kem.public_from_seed(sk), h(case["pk"]))
    ct = h(case["ct"])
    # The X25519 half of the ciphertext is the public key of eseed[32:64] (§5.3).
    ek_x = x25519.X25519PrivateKey.from_private_bytes(h(case["eseed"])[32:64])
    expect("ct_X", ct[-X25519_LEN:], ek_x.public_key().public_bytes_raw())
    expect("ss", kem.decap_raw(ct, sk), h(case["ss"]))


def check_hybrid(case: Case) -> None:
    """MLKEM768-X25519 (= X-Wing): seed -> the two component keys and ek; Decaps -> ss."""
    if case.get(SFRAME_SECTION) != "mlkem768_x25519":
        raise VectorSkip(f"hybrid KEM {case.get(SFRAME_SECTION)!r} is not used by an MLS suite")
    seed = h(case["seed"])
    expect("decapsulation_key", seed, h(case["decapsulation_key"]))
    sk_m, sk_x = XWing.expand(seed)
    expect("decapsulation_key_pq", sk_m.private_bytes_raw(), h(case["decapsulation_key_pq"]))
    expect("decapsulation_key_t", sk_x.private_bytes_raw(), h(case["decapsulation_key_t"]))
    expect("encapsulation_key", XWing().public_from_seed(seed), h(case["encapsulation_key"]))
    expect(
        "shared_secret", XWing().decap_raw(h(case["ciphertext"]), seed), h(case["shared_secret"])
    )


def check_hpke(case: Case) -> None:
    """DeriveKeyPair(ikmR) -> (skRm, pkRm); Decap(enc, skR) -> shared_secret; the key schedule
    (pyhpke) then opens every encryption in sequence and computes every export."""
    if case["kem_id"] not in set(PqKemId):
        raise VectorSkip(f"KEM {case['kem_id']:#06x} is not used by an MLS suite here")
    if case["kdf_id"] not in _HKDFS or case["mode"] != MODE_BASE:
        raise VectorSkip(f"KDF {case['kdf_id']:#06x} / mode {case['mode']} is not used by MLS")
    kem = pq_kem(case["kem_id"])
    pair = kem.derive_key_pair(h(case["ikmR"]))
    expect("skRm", pair.private_key.to_private_bytes(), h(case["skRm"]))
    expect("pkRm", pair.public_key.to_public_bytes(), h(case["pkRm"]))
    enc = h(case["enc"])
    expect("shared_secret", kem.decap(enc, pair.private_key), h(case["shared_secret"]))
    suite = CipherSuite(kem, KDF(KDFId(case["kdf_id"]), b""), AEAD(AEADId(case["aead_id"])))
    ctx = suite.create_recipient_context(enc, pair.private_key, info=h(case["info"]))
    for i, e in enumerate(case["encryptions"]):
        expect(f"encryptions[{i}].pt", ctx.open(h(e["ct"]), h(e["aad"])), h(e["pt"]))
    for i, x in enumerate(case["exports"]):
        got = ctx.export(h(x["exporter_context"]), x["L"])
        expect(f"exports[{i}]", got, h(x["exported_value"]))


# A case's kind, from the keys only its format has.
_CHECKERS: tuple[tuple[frozenset[str], Callable[[Case], None]], ...] = (
    (frozenset({"seed", "eseed", "sk", "pk", "ct", "ss"}), check_xwing),
    (frozenset({"encapsulation_key", "decapsulation_key_pq", "ciphertext"}), check_hybrid),
    (frozenset({"kem_id", "ikmR", "skRm", "pkRm", "enc", "encryptions"}), check_hpke),
)


def check(case: Case) -> None:
    for keys, checker in _CHECKERS:
        if keys <= case.keys():
            checker(case)
            return
    raise VectorSkip("not an X-Wing, hybrid KEM or HPKE-PQ vector")
