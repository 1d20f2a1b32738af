"""Checker for ``key-schedule.json`` (README-upstream.md, "Key Schedule").

Runs the key schedule (RFC 9420 §8) over the case's epochs, each from the previous epoch's
``init_secret``, and compares every intermediate value: the GroupContext (built from its fields
with `GroupContext`), the joiner, welcome and init secrets, each epoch secret of the §8 table,
``external_pub`` (§8) and one MLS-Exporter output (§8.5).
"""

from __future__ import annotations

from doorless.codec import encode
from doorless.conformance import Case, expect, h
from doorless.crypto import cipher_suite
from doorless.mls.group_context import GroupContext
from doorless.mls.schedule import EpochSecrets, key_schedule
from doorless.secret import CommitSecret, InitSecret, PskSecret, Secret


def check(case: Case) -> None:
    suite = cipher_suite(case["cipher_suite"])
    group_id = h(case["group_id"])
    init_secret = InitSecret(h(case["initial_init_secret"]))
    for n, e in enumerate(case["epochs"]):
        at = f"epochs[{n}]"
        context = encode(
            GroupContext(
                cipher_suite=suite.id,
                group_id=group_id,
                epoch=n,
                tree_hash=h(e["tree_hash"]),
                confirmed_transcript_hash=h(e["confirmed_transcript_hash"]),
                extensions=(),
            )
        )
        expect(f"{at}.group_context", context, h(e["group_context"]))
        epoch = key_schedule(
            suite,
            init_secret,
            CommitSecret(h(e["commit_secret"])),
            PskSecret(h(e["psk_secret"])),
            context,
        )
        s: EpochSecrets = epoch.secrets
        values: dict[str, Secret] = {
            "joiner_secret": epoch.joiner_secret,
            "welcome_secret": epoch.welcome_secret,
            "encryption_secret": epoch.encryption_secret,
            "init_secret": s.init_secret,
            "sender_data_secret": s.sender_data_secret,
            "exporter_secret": s.exporter_secret,
            "epoch_authenticator": s.epoch_authenticator,
            "external_secret": s.external_secret,
            "confirmation_key": s.confirmation_key,
            "membership_key": s.membership_key,
            "resumption_psk": s.resumption_psk,
        }
        for name, value in values.items():
            expect(f"{at}.{name}", value.value, h(e[name]))
        expect(f"{at}.external_pub", s.external_pub, h(e["external_pub"]))
        x = e["exporter"]
        # The exporter label is a string in the vectors (README-upstream.md), used as its bytes.
        exported = s.exporter(x["label"].encode(), h(x["context"]), x["length"])
        expect(f"{at}.exporter.secret", exported, h(x["secret"]))
        # The persisted form must give back the same secrets.
        expect(
            f"{at}.secrets (round trip)",
            EpochSecrets.from_bytes(s.to_bytes()).to_bytes(),
            s.to_bytes(),
        )
        init_secret = s.init_secret
