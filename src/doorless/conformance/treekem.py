"""Checker for ``treekem.json``: merging, decrypting and creating UpdatePaths (RFC 9420 §7.4-§7.6).

The GroupContext for each path is built from the vector's fields with the tree hash of the
tree after the path is merged and no extensions (README-upstream.md, "TreeKEM").
"""

from __future__ import annotations

from typing import Any

from doorless.codec import decode, encode
from doorless.conformance import Case, VectorMismatch, expect, h
from doorless.crypto import CipherSuite, cipher_suite
from doorless.errors import DoorlessError
from doorless.mls.group_context import GroupContext
from doorless.mls.nodes import UpdatePath
from doorless.mls.ratchet_tree import RatchetTree
from doorless.mls.treekem import (
    TreePrivateKeys,
    decrypt_update_path,
    merge_update_path,
    prepare_commit_path,
)
from doorless.secret import PathSecret, PrivateKeyBytes


def _context(case: Case, tree: RatchetTree) -> bytes:
    return encode(
        GroupContext(
            cipher_suite=case["cipher_suite"],
            group_id=h(case["group_id"]),
            epoch=case["epoch"],
            tree_hash=tree.tree_hash(),
            confirmed_transcript_hash=h(case["confirmed_transcript_hash"]),
            extensions=(),
        )
    )


def _private_state(suite: CipherSuite, tree: RatchetTree, entry: dict[str, Any]) -> TreePrivateKeys:
    keys = TreePrivateKeys.for_leaf(
        suite, entry["index"], PrivateKeyBytes(h(entry["encryption_priv"]))
    )
    for ps in entry["path_secrets"]:
        keys = keys.with_path_secret(suite, ps["node"], PathSecret(h(ps["path_secret"])))
    try:
        keys.check_consistent(tree)
    except DoorlessError as exc:
        raise VectorMismatch(f"leaves_private[{entry['index']}]", str(exc)) from exc
    return keys


def check(case: Case) -> None:
    suite = cipher_suite(case["cipher_suite"])
    tree = RatchetTree.decode(suite, h(case["ratchet_tree"]))
    group_id = h(case["group_id"])
    private = {e["index"]: _private_state(suite, tree, e) for e in case["leaves_private"]}
    signature_priv = {e["index"]: h(e["signature_priv"]) for e in case["leaves_private"]}

    for n, entry in enumerate(case["update_paths"]):
        where = f"update_paths[{n}]"
        sender = entry["sender"]
        path = decode(UpdatePath, h(entry["update_path"]))
        try:
            after = merge_update_path(tree, sender, path)
        except DoorlessError as exc:
            raise VectorMismatch(f"{where}.update_path", f"not parent-hash valid: {exc}") from exc
        expect(f"{where}.tree_hash_after", after.tree_hash(), h(entry["tree_hash_after"]))
        context = _context(case, after)
        receivers = [j for j in private if j != sender and tree.leaf_node(j) is not None]
        for j in receivers:
            got = decrypt_update_path(after, sender, path, private[j], context)
            expect(f"{where}.path_secrets[{j}]", got.path_secret.value, h(entry["path_secrets"][j]))
            expect(
                f"{where}.commit_secret[{j}]", got.commit_secret.value, h(entry["commit_secret"])
            )
            got.private_keys.check_consistent(after)

        # Our own path from the same tree: every other member must reach our commit secret.
        leaf_secret = suite.hash(b"doorless treekem vector" + sender.to_bytes(4, "big"))
        prepared = prepare_commit_path(tree, sender, leaf_secret, signature_priv[sender], group_id)
        new_context = _context(case, prepared.tree)
        new_path = prepared.encrypt(new_context)
        prepared.tree.verify_parent_hashes()
        merged = merge_update_path(tree, sender, decode(UpdatePath, encode(new_path)))
        expect(f"{where}.new_tree_hash", merged.tree_hash(), prepared.tree.tree_hash())
        prepared.private_keys.check_consistent(prepared.tree)
        for j in receivers:
            got = decrypt_update_path(merged, sender, new_path, private[j], new_context)
            if got.commit_secret != prepared.commit_secret:
                raise VectorMismatch(f"{where}.new_commit_secret[{j}]", "differs")
            expect(
                f"{where}.new_path_secret[{j}]",
                got.path_secret.value,
                (prepared.path_secret_for(j) or PathSecret(b"")).value,
            )
