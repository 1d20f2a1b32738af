"""``passive-client-*.json``: join from a Welcome, then follow every commit of the scenario,
checking the epoch authenticator after each (README-upstream.md, "Passive Client Scenarios")."""

from __future__ import annotations

from doorless.codec import decode
from doorless.conformance import Case, VectorMismatch, expect, h
from doorless.crypto import cipher_suite
from doorless.errors import DoorlessError
from doorless.mls.framing import MLSMessage
from doorless.mls.group import Group, KeyPackageBundle, ProposalMessage, PskStore, StagedCommit
from doorless.mls.key_package import KeyPackage
from doorless.secret import PrivateKeyBytes


def check(case: Case) -> None:
    suite = cipher_suite(case["cipher_suite"])
    kp = decode(MLSMessage, h(case["key_package"])).body
    if not isinstance(kp, KeyPackage):
        raise VectorMismatch("key_package", "not a KeyPackage MLSMessage")
    signature_priv = h(case["signature_priv"])
    encryption_priv = h(case["encryption_priv"])
    init_priv = h(case["init_priv"])
    expect("signature_priv", suite.signature_public_key(signature_priv), kp.leaf_node.signature_key)
    expect("encryption_priv", suite.hpke_public_key(encryption_priv), kp.leaf_node.encryption_key)
    expect("init_priv", suite.hpke_public_key(init_priv), kp.init_key)
    bundle = KeyPackageBundle(
        kp,
        PrivateKeyBytes(init_priv),
        PrivateKeyBytes(encryption_priv),
        PrivateKeyBytes(signature_priv),
    )
    psks = PskStore(external={h(p["psk_id"]): h(p["psk"]) for p in case["external_psks"]})
    tree = case.get("ratchet_tree")
    try:
        group = Group.join_from_welcome(
            h(case["welcome"]), bundle, ratchet_tree=h(tree) if tree else None, psks=psks
        )
    except DoorlessError as exc:
        raise VectorMismatch("welcome", f"join failed: {type(exc).__name__}: {exc}") from exc
    expect(
        "initial_epoch_authenticator",
        group.epoch_authenticator,
        h(case["initial_epoch_authenticator"]),
    )
    for n, epoch in enumerate(case["epochs"]):
        try:
            for i, proposal in enumerate(epoch["proposals"]):
                result = group.process(h(proposal), psks=psks)
                if not isinstance(result, ProposalMessage):
                    raise VectorMismatch(f"epochs[{n}].proposals[{i}]", "not a proposal")
                group = result.group
            staged = group.process(h(epoch["commit"]), psks=psks)
        except DoorlessError as exc:
            raise VectorMismatch(f"epochs[{n}]", f"{type(exc).__name__}: {exc}") from exc
        if not isinstance(staged, StagedCommit):
            raise VectorMismatch(f"epochs[{n}].commit", "not a commit")
        group = group.merge_staged_commit(staged)
        expect(
            f"epochs[{n}].epoch_authenticator",
            group.epoch_authenticator,
            h(epoch["epoch_authenticator"]),
        )
