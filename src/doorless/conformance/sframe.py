"""RFC 9605 §10 (Appendix C) SFrame vectors: header, AES-CTR+HMAC AEAD and full SFrame cases.

Each case carries its array's name under `SFRAME_SECTION` (see `load_cases`). Every
intermediate value the vector gives is checked, in the order the RFC computes it.
"""

from __future__ import annotations

from doorless import sframe
from doorless.conformance import SFRAME_SECTION, Case, VectorMismatch, expect, h


def check_header(case: Case) -> None:
    encoded = h(case["encoded"])
    expect("encoded", sframe.encode_header(case["kid"], case["ctr"]), encoded)
    header, n = sframe.decode_header(encoded)
    expect("decoded kid", header.kid, case["kid"])
    expect("decoded ctr", header.ctr, case["ctr"])
    expect("decoded length", n, len(encoded))


def check_aead(case: Case) -> None:
    suite = sframe.SFrameSuite(case["cipher_suite"])
    params = sframe.suite_params(suite)
    key = h(case["key"])
    assert params.nka is not None, "AES-CTR vectors name a CTR suite"
    expect("enc_key", key[: params.nka], h(case["enc_key"]))
    expect("auth_key", key[params.nka :], h(case["auth_key"]))
    nonce, aad, pt, ct = h(case["nonce"]), h(case["aad"]), h(case["pt"]), h(case["ct"])
    expect("ct", sframe.aead_encrypt(suite, sframe.SFrameKey(key), nonce, aad, pt), ct)
    expect("pt", sframe.aead_decrypt(suite, sframe.SFrameKey(key), nonce, aad, ct), pt)


def check_sframe(case: Case) -> None:
    suite = sframe.SFrameSuite(case["cipher_suite"])
    kid, ctr = case["kid"], case["ctr"]
    base_key = sframe.BaseKey(h(case["base_key"]))
    expect("sframe_key_label", sframe.key_label(suite, kid), h(case["sframe_key_label"]))
    expect("sframe_salt_label", sframe.salt_label(suite, kid), h(case["sframe_salt_label"]))
    derived = sframe.derive_key_salt(suite, kid, base_key)
    expect("sframe_secret", derived.secret.value, h(case["sframe_secret"]))
    expect("sframe_key", derived.key.value, h(case["sframe_key"]))
    expect("sframe_salt", derived.salt.value, h(case["sframe_salt"]))
    nonce = sframe.nonce_for(derived.salt, ctr)
    expect("nonce", nonce, h(case["nonce"]))
    header = sframe.encode_header(kid, ctr)
    metadata = h(case["metadata"])
    expect("aad", header + metadata, h(case["aad"]))
    ct = h(case["ct"])
    # encrypt(ctr, kid, metadata, pt) through the sender, resumed at the vector's CTR.
    sender = sframe.SFrameSender(suite, kid, base_key, next_ctr=ctr)
    sender.reserve(1)
    expect("ct", sender.encrypt(h(case["pt"]), metadata), ct)
    receiver = sframe.SFrameReceiver(suite)
    receiver.add_key(kid, base_key)
    got = receiver.decrypt(ct, metadata)
    expect("decrypted kid", got.kid, kid)
    expect("decrypted ctr", got.ctr, ctr)
    expect("pt", got.plaintext, h(case["pt"]))


CHECKERS = {
    "header": check_header,
    "aes_ctr_hmac": check_aead,
    "aes_256_ctr_hmac": check_aead,
    "sframe": check_sframe,
    "sframe_aes_256_ctr_hmac": check_sframe,
}


def check(case: Case) -> None:
    section = case.get(SFRAME_SECTION)
    checker = CHECKERS.get(section) if isinstance(section, str) else None
    if checker is None:
        raise VectorMismatch(SFRAME_SECTION, f"unknown SFrame vector section {section!r}")
    checker(case)
