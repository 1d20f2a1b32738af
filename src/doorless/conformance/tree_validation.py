"""Checker for ``tree-validation.json``: resolutions, tree hashes, parent hashes, leaf signatures
(RFC 9420 §4.1.1, §7.8, §7.9.2, §7.3)."""

from __future__ import annotations

from doorless.conformance import Case, VectorMismatch, expect, h
from doorless.crypto import cipher_suite
from doorless.errors import ValidationError
from doorless.mls.ratchet_tree import RatchetTree


def check(case: Case) -> None:
    tree = RatchetTree.decode(cipher_suite(case["cipher_suite"]), h(case["tree"]))
    expect("tree.encode", tree.encode(), h(case["tree"]))
    resolutions = case["resolutions"]
    expect("len(resolutions)", tree.width, len(resolutions))
    for x, want in enumerate(resolutions):
        got = tree.resolution(x)
        if got != want:
            raise VectorMismatch(f"resolutions[{x}]", f"got {got}, want {want}")
    for x, want_hash in enumerate(case["tree_hashes"]):
        expect(f"tree_hashes[{x}]", tree.node_tree_hash(x), h(want_hash))
    group_id = h(case["group_id"])
    try:
        tree.validate(group_id, tree_hash=h(case["tree_hashes"][tree.root]))
    except ValidationError as exc:
        raise VectorMismatch("validate", str(exc)) from exc
