"""Removes that blank part of the tree: the exact tree shape after the commit (RFC 9420 §7.7,
§12.1.3), the committer's filtered direct path (§4.1.2), and the commit secret when the root is
not on that path (§7.4, §12.4.2).

In a group A, B, C, D (leaves 0-3), C removing A and B leaves the whole left half blank: the
tree keeps its four leaves (C and D are in the right half, so nothing truncates), and C's
filtered direct path is just node 5, without the root 3, whose copath child 1 now resolves to
nothing. §7.4 makes "a sequence of path secrets of the same length as the filtered direct path"
and §12.4.2 defines ``commit_secret`` as ``path_secret[n+1]`` "derived from the last path
secret value (``path_secret[n]``) derived for the UpdatePath": one derivation past node 5, none
for the blank root. Deriving up to the root as well (the reading before that text, mls-protocol
issue 690) gives another commit secret; a receiver names that case
(`CommitSecretPastFilteredPath`) instead of a bare confirmation-tag mismatch.
No official vector has a path whose root is filtered out (tests/vectors/mls/treekem.json: 434
update paths, the root on every filtered direct path), hence these tests.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

import doorless.mls.commit
from doorless.errors import InvalidMac
from doorless.mls.group import GroupConfig
from doorless.mls.leaf_node import LeafNode
from doorless.mls.nodes import ParentNode
from doorless.mls.proposals import Remove
from doorless.mls.ratchet_tree import RatchetTree
from doorless.mls.treekem import (
    CommitSecretPastFilteredPath,
    PreparedCommitPath,
    commit_secret_to_root,
    decrypt_update_path,
    prepare_commit_path,
)
from doorless.secret import CommitSecret

from .harness import assert_rejected, make_group, retag


def shape(tree: RatchetTree) -> str:
    """One character per node in array order: L leaf, P parent, _ blank."""
    return "".join(
        "_"
        if n is None
        else "L"
        if isinstance(n, LeafNode)
        else "P"
        if isinstance(n, ParentNode)
        else "?"
        for n in tree.nodes
    )


# committer, removed leaves -> node shape after the commit (with the committer's path), and the
# committer's filtered direct path. Worked out by hand from §4.1.2, §7.5 and §12.1.3:
SHAPES = [
    # C (leaf 2) removes A: node 1 is blanked with A's direct path, but its subtree still
    # holds B, so C's filtered direct path covers 5 and the root 3.
    ("c", (0,), "__LPLPL", [5, 3]),
    # C removes A and B: the left half is blank and stays (the right half has members); the
    # root 3 is off C's filtered direct path and stays blank.
    ("c", (0, 1), "____LPL", [5]),
    # A removes D: D's leaf and direct path (5, 3) are blanked; C keeps the right half, so no
    # truncation; A's path refills 1 and 3, node 5 stays blank.
    ("a", (3,), "LPLPL__", [1, 3]),
    # A removes C and D: the right half is blank, the tree is truncated to two leaves.
    ("a", (2, 3), "LPL", [1]),
]


@pytest.mark.parametrize(("committer", "removed", "expected", "fdp"), SHAPES)
def test_tree_shape_after_removes(
    committer: str, removed: tuple[int, ...], expected: str, fdp: list[int]
) -> None:
    h = make_group("abcd")
    # A's Add commit set its own direct path (1, 3); node 5 is not on it.
    assert shape(h.clients["a"].state.tree) == "LPLPL_L"
    h.commit(committer, [Remove(leaf) for leaf in removed])  # every member agrees (check())
    for member in h.members():
        tree = member.state.tree
        assert shape(tree) == expected
        assert tree.filtered_direct_path(h.leaf_of(committer)) == fdp
    h.still_works(h.member_names()[-1])


def _tree_without_left_half() -> tuple[Any, RatchetTree]:
    h = make_group("abcd")
    tree = h.clients["c"].state.tree.copy()
    tree.remove_leaf(0)
    tree.remove_leaf(1)
    return h, tree


def test_commit_secret_comes_from_the_last_filtered_path_node_not_the_blank_root() -> None:
    h, tree = _tree_without_left_half()
    c = h.clients["c"]
    suite = tree.suite
    leaf_secret = bytes(range(suite.hash_length))
    prepared = prepare_commit_path(tree, 2, leaf_secret, c.signature_private_key, c.state.group_id)
    assert prepared.filtered_direct_path == (5,) and tree.root == 3
    path_secret = suite.derive_secret(leaf_secret, b"path")  # path_secret[0], for node 5
    assert [s.value for s in prepared.path_secrets] == [path_secret]
    # §12.4.2: commit_secret = path_secret[1] = DeriveSecret(path_secret[0], "path"); not one
    # step further (a secret for the root, which has none).
    after_node_5 = suite.derive_secret(path_secret, b"path")
    assert prepared.commit_secret.value == after_node_5
    assert prepared.commit_secret.value != suite.derive_secret(after_node_5, b"path")
    assert shape(prepared.tree) == "____LPL"
    # D decrypts node 5's secret and reaches the same commit secret.
    d = h.clients["d"].state
    context = b"provisional group context"
    got = decrypt_update_path(prepared.tree, 2, prepared.encrypt(context), d.private_keys, context)
    assert got.node == 5 and got.commit_secret == prepared.commit_secret
    # The diagnostic's alternative is that one step further; none when the root is on the path.
    to_root = commit_secret_to_root(prepared.tree, 2, prepared.commit_secret)
    assert to_root is not None and to_root.value == suite.derive_secret(after_node_5, b"path")
    full = h.clients["a"].state.tree
    assert commit_secret_to_root(full, 2, prepared.commit_secret) is None


def _derive_to_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make Doorless's committer derive commit_secret one step further (as a committer that
    derives up to the root would when the root is off its filtered direct path)."""
    original = prepare_commit_path  # what doorless.mls.commit calls

    def prepare(*args: Any, **kwargs: Any) -> PreparedCommitPath:
        prepared = original(*args, **kwargs)
        suite = prepared.tree.suite
        further = CommitSecret(suite.derive_secret(prepared.commit_secret.value, b"path"))
        return dataclasses.replace(prepared, commit_secret=further)

    monkeypatch.setattr(doorless.mls.commit, "prepare_commit_path", prepare)


def test_commit_secret_derived_to_the_root_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    h = make_group("abcd", GroupConfig(private_handshakes=False))  # `retag` needs PublicMessages
    _derive_to_root(monkeypatch)
    out = h.make_commit("c", [Remove(0), Remove(1)])
    exc = assert_rejected(h.clients["d"].state, out.commit, CommitSecretPastFilteredPath)
    assert "RFC9420 7.4 and 12.4.2" in str(exc)
    assert isinstance(exc, InvalidMac)  # still a confirmation-tag failure for old handlers
    monkeypatch.undo()
    # A wrong tag for another reason, in the same tree shape, stays a bare InvalidMac.
    out = h.make_commit("c", [Remove(0), Remove(1)])
    wrong = retag(h.clients["c"].state, out.commit, confirmation_tag=bytes(32))
    exc = assert_rejected(h.clients["d"].state, wrong, InvalidMac, "confirmation tag")
    assert not isinstance(exc, CommitSecretPastFilteredPath)
    # The group goes on with the right derivation.
    h.submit("c", out)
    h.still_works("d")


def test_commit_secret_derived_further_with_the_root_on_the_path_is_a_bare_mismatch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The diagnostic only fires where the two readings differ (root off the path)."""
    h = make_group("abcd")
    _derive_to_root(monkeypatch)
    out = h.make_commit("c", [Remove(0)])  # C's filtered direct path is 5, 3: the root is on it
    exc = assert_rejected(h.clients["d"].state, out.commit, InvalidMac, "confirmation tag")
    assert not isinstance(exc, CommitSecretPastFilteredPath)
