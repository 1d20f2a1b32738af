"""Checker for ``tree-operations.json``: applying Add, Update and Remove proposals to a tree
(RFC 9420 §12.1.1-§12.1.3, §7.7)."""

from __future__ import annotations

from collections.abc import Callable

from doorless.codec import Reader
from doorless.conformance import Case, VectorMismatch, expect, h
from doorless.crypto import cipher_suite
from doorless.mls.proposals import Add, Proposal, Remove, Update, pull_proposal
from doorless.mls.ratchet_tree import RatchetTree


def _add(tree: RatchetTree, proposal: Proposal, sender: int) -> None:
    assert isinstance(proposal, Add)
    tree.add_leaf(proposal.key_package.leaf_node)


def _update(tree: RatchetTree, proposal: Proposal, sender: int) -> None:
    assert isinstance(proposal, Update)
    tree.update_leaf(sender, proposal.leaf_node)


def _remove(tree: RatchetTree, proposal: Proposal, sender: int) -> None:
    assert isinstance(proposal, Remove)
    tree.remove_leaf(proposal.removed)


_APPLY: dict[type, Callable[[RatchetTree, Proposal, int], None]] = {
    Add: _add,
    Update: _update,
    Remove: _remove,
}


def check(case: Case) -> None:
    suite = cipher_suite(case["cipher_suite"])
    before = RatchetTree.decode(suite, h(case["tree_before"]))
    expect("tree_hash_before", before.tree_hash(), h(case["tree_hash_before"]))
    r = Reader(h(case["proposal"]))
    proposal = pull_proposal(r)
    r.expect_end()
    apply = _APPLY.get(type(proposal))
    if apply is None:
        raise VectorMismatch("proposal", f"type {proposal.proposal_type} is not add/update/remove")
    after = before.copy()
    apply(after, proposal, case["proposal_sender"])
    expect("tree_after", after.encode(), h(case["tree_after"]))
    expect("tree_hash_after", after.tree_hash(), h(case["tree_hash_after"]))
    # The copy must not have changed the original (trees are copied per staged commit).
    expect("tree_before (unchanged)", before.encode(), h(case["tree_before"]))
    expect("tree_hash_before (unchanged)", before.tree_hash(), h(case["tree_hash_before"]))
    # The cached hashes after the edits agree with hashes computed from scratch.
    fresh = RatchetTree.decode(suite, h(case["tree_after"]))
    expect("tree_hash_after (fresh)", fresh.tree_hash(), h(case["tree_hash_after"]))
