"""Checker for ``secret-tree.json`` (README-upstream.md, "Secret Tree").

The sender-data key and nonce (RFC 9420 §6.3.2), then, for a secret tree over as many leaves
as the case lists, the handshake and application key and nonce of every listed generation of
every leaf (§9). Generations are requested in the listed (ascending) order, so the lazy tree
and the out-of-order window are exercised too.
"""

from __future__ import annotations

from doorless.conformance import Case, expect, h
from doorless.crypto import cipher_suite
from doorless.mls.schedule import SenderDataSecret
from doorless.mls.secret_tree import RatchetType, SecretTree, sender_data_key_nonce
from doorless.mls.tree_math import LeafIndex
from doorless.secret import EncryptionSecret


def check(case: Case) -> None:
    suite = cipher_suite(case["cipher_suite"])
    sd = case["sender_data"]
    key, nonce = sender_data_key_nonce(
        suite, SenderDataSecret(h(sd["sender_data_secret"])), h(sd["ciphertext"])
    )
    expect("sender_data.key", key.value, h(sd["key"]))
    expect("sender_data.nonce", nonce.value, h(sd["nonce"]))

    leaves = case["leaves"]
    tree = SecretTree.create(suite, EncryptionSecret(h(case["encryption_secret"])), len(leaves))
    for i, generations in enumerate(leaves):
        for g in generations:
            for kind in RatchetType:
                step = tree.key_for(LeafIndex(i), kind, g["generation"])
                at = f"leaves[{i}][generation {g['generation']}].{kind.name}"
                expect(f"{at}_key", step.key.key.value, h(g[f"{kind.name}_key"]))
                expect(f"{at}_nonce", step.key.nonce.value, h(g[f"{kind.name}_nonce"]))
                tree = step.tree
