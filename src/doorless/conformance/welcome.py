"""``welcome.json``: decrypt a Welcome, verify its GroupInfo and confirmation tag."""

from __future__ import annotations

from doorless.codec import decode, encode
from doorless.conformance import Case, VectorMismatch, h
from doorless.crypto import cipher_suite
from doorless.errors import DoorlessError
from doorless.mls.framing import MLSMessage
from doorless.mls.group import open_welcome
from doorless.mls.key_package import KeyPackage, make_key_package_ref
from doorless.mls.schedule import key_schedule_from_joiner
from doorless.secret import PrivateKeyBytes


def check(case: Case) -> None:
    suite = cipher_suite(case["cipher_suite"])
    kp = decode(MLSMessage, h(case["key_package"])).body
    if not isinstance(kp, KeyPackage):
        raise VectorMismatch("key_package", "not a KeyPackage MLSMessage")
    try:
        opened = open_welcome(
            h(case["welcome"]),
            make_key_package_ref(suite, kp),
            PrivateKeyBytes(h(case["init_priv"])),
        )
        opened.group_info.verify(suite, h(case["signer_pub"]))
        gc = opened.group_info.group_context
        epoch = key_schedule_from_joiner(suite, opened.joiner_secret, None, encode(gc))
        epoch.secrets.verify_confirmation_tag(
            gc.confirmed_transcript_hash, opened.group_info.confirmation_tag
        )
    except DoorlessError as exc:
        raise VectorMismatch("welcome", f"{type(exc).__name__}: {exc}") from exc
