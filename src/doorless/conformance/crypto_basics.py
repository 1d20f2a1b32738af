"""Checker for ``crypto-basics.json`` (README-upstream.md, "Crypto Basics").

Every labeled operation of RFC 9420 §5 and §8 against the vector, including decrypting the given
``encrypt_with_label`` ciphertext and verifying the given signature, then a fresh signature and a
fresh encryption that must round-trip (both are randomized, so only round trips can be checked).
"""

from __future__ import annotations

from doorless.conformance import Case, VectorMismatch, expect, h
from doorless.crypto import CipherSuite, cipher_suite
from doorless.errors import CryptoError


def _ref_hash(suite: CipherSuite, v: Case) -> None:
    expect("ref_hash.out", suite.ref_hash(v["label"].encode(), h(v["value"])), h(v["out"]))


def _expand_with_label(suite: CipherSuite, v: Case) -> None:
    out = suite.expand_with_label(h(v["secret"]), v["label"].encode(), h(v["context"]), v["length"])
    expect("expand_with_label.out", out, h(v["out"]))


def _derive_secret(suite: CipherSuite, v: Case) -> None:
    out = suite.derive_secret(h(v["secret"]), v["label"].encode())
    expect("derive_secret.out", out, h(v["out"]))


def _derive_tree_secret(suite: CipherSuite, v: Case) -> None:
    out = suite.derive_tree_secret(
        h(v["secret"]), v["label"].encode(), v["generation"], v["length"]
    )
    expect("derive_tree_secret.out", out, h(v["out"]))


def _sign_with_label(suite: CipherSuite, v: Case) -> None:
    priv, pub, label, content = h(v["priv"]), h(v["pub"]), v["label"].encode(), h(v["content"])
    expect("sign_with_label.pub", suite.signature_public_key(priv), pub)
    try:
        suite.verify_with_label(pub, label, content, h(v["signature"]))
    except CryptoError as exc:
        raise VectorMismatch("sign_with_label.signature", f"does not verify: {exc}") from exc
    fresh = suite.sign_with_label(priv, label, content)
    try:
        suite.verify_with_label(pub, label, content, fresh)
    except CryptoError as exc:
        raise VectorMismatch("sign_with_label", f"own signature does not verify: {exc}") from exc
    # A signature over other content must not verify (the check can fail).
    try:
        suite.verify_with_label(pub, label, content + b"\x00", fresh)
    except CryptoError:
        pass
    else:
        raise VectorMismatch("sign_with_label", "signature verifies over different content")


def _encrypt_with_label(suite: CipherSuite, v: Case) -> None:
    priv, pub, label, context = h(v["priv"]), h(v["pub"]), v["label"].encode(), h(v["context"])
    plaintext = h(v["plaintext"])
    expect("encrypt_with_label.pub", suite.hpke_public_key(priv), pub)
    try:
        got = suite.decrypt_with_label(priv, label, context, h(v["kem_output"]), h(v["ciphertext"]))
    except CryptoError as exc:
        raise VectorMismatch("encrypt_with_label.ciphertext", f"does not open: {exc}") from exc
    expect("encrypt_with_label.plaintext", got, plaintext)
    kem_output, ciphertext = suite.encrypt_with_label(pub, label, context, plaintext)
    try:
        again = suite.decrypt_with_label(priv, label, context, kem_output, ciphertext)
    except CryptoError as exc:
        raise VectorMismatch("encrypt_with_label", f"own ciphertext does not open: {exc}") from exc
    expect("encrypt_with_label (round trip)", again, plaintext)


def check(case: Case) -> None:
    suite = cipher_suite(case["cipher_suite"])
    _ref_hash(suite, case["ref_hash"])
    _expand_with_label(suite, case["expand_with_label"])
    _derive_secret(suite, case["derive_secret"])
    _derive_tree_secret(suite, case["derive_tree_secret"])
    _sign_with_label(suite, case["sign_with_label"])
    _encrypt_with_label(suite, case["encrypt_with_label"])
