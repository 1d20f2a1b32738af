"""Checker for ``psk_secret.json`` (README-upstream.md, "Pre-Shared Keys").

Each PSK is an external one: its ``PreSharedKeyID`` is built with the structs of
`doorless.mls.proposals`, encoded, and chained into ``psk_secret`` (RFC 9420 §8.4).
"""

from __future__ import annotations

from doorless.codec import encode
from doorless.conformance import Case, expect, h
from doorless.crypto import cipher_suite
from doorless.mls.proposals import ExternalPSK, PreSharedKeyID
from doorless.mls.schedule import psk_secret


def check(case: Case) -> None:
    suite = cipher_suite(case["cipher_suite"])
    psks = [
        (encode(PreSharedKeyID(ExternalPSK(h(p["psk_id"])), h(p["psk_nonce"]))), h(p["psk"]))
        for p in case["psks"]
    ]
    expect("psk_secret", psk_secret(suite, psks).value, h(case["psk_secret"]))
