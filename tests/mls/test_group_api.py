"""The Group API an outside adapter needs (RFC 9420 §5.2, §7.8, §8.4, §11, §12.4.2,
§12.4.3.1): knowing it was removed, creating without a KeyPackage, finding the KeyPackage a
Welcome is for, the tree hash and encoded tree, external PSK proposals."""

from __future__ import annotations

import pytest

from doorless.crypto import cipher_suite
from doorless.errors import StateError, ValidationError
from doorless.mls.credential import BasicCredential
from doorless.mls.group import (
    Group,
    GroupConfig,
    PskStore,
    StagedCommit,
    external_psk_proposal,
    find_key_package_bundle,
    welcome_key_package_refs,
)
from doorless.mls.proposals import Add, ExternalPSK, PreSharedKey, Remove
from doorless.mls.ratchet_tree import RatchetTree
from doorless.secret import PrivateKeyBytes

from .harness import NOW, Harness, make_group

SUITE = cipher_suite(1)


def test_removed_group_knows_it_and_refuses_to_send() -> None:
    h = make_group("abc")
    c = h.clients["c"].state
    assert not c.removed and c.usable
    out = h.make_commit("a", [Remove(h.leaf_of("c"))])
    staged = c.process(out.commit, now=NOW)
    assert isinstance(staged, StagedCommit) and staged.self_removed
    assert not c.removed  # processing changed nothing (I4)
    gone = c.merge_staged_commit(staged)
    assert gone.removed and not gone.usable and gone.epoch == c.epoch
    with pytest.raises(StateError, match="removed"):
        gone.encrypt(b"still there?")
    with pytest.raises(StateError, match="removed"):
        gone.commit()
    with pytest.raises(StateError, match="removed"):
        gone.propose_update()
    c.encrypt(b"the old state still works")  # functional: only the new state is marked
    restored = Group.from_bytes(gone.to_bytes())
    assert restored.removed and restored.to_bytes() == gone.to_bytes()
    # A state that was not removed keeps the old format byte for byte.
    assert Group.from_bytes(c.to_bytes()).to_bytes() == c.to_bytes()
    h.submit("a", out)


def test_merge_of_a_removal_staged_by_another_member_is_refused() -> None:
    h = make_group("abc")
    out = h.make_commit("a", [Remove(h.leaf_of("c"))])
    staged = h.clients["c"].state.process(out.commit, now=NOW)
    assert isinstance(staged, StagedCommit)
    with pytest.raises(StateError):
        h.clients["b"].state.merge_staged_commit(staged)


def test_create_with_credential_needs_no_key_package() -> None:
    h = Harness(SUITE)
    alice = h.client("alice")
    group = Group.create_with_credential(
        SUITE, b"new group", alice.credential, alice.signature_private_key, now=NOW, rng=h.rng
    )
    assert group.epoch == 0 and group.tree.member_count() == 1
    leaf = group.own_leaf_node
    assert leaf.credential == alice.credential
    assert leaf.lifetime is not None and leaf.lifetime.contains(NOW)
    bob = h.client("bob")
    out = group.commit([Add(bob.key_package())], rng=h.rng, now=NOW)
    assert out.welcome is not None
    joined = Group.join_from_welcome(out.welcome, next(iter(bob.bundles.values())), now=NOW)
    alice_group = group.merge_pending_commit(out.pending)
    assert joined.epoch_authenticator == alice_group.epoch_authenticator
    _, message = joined.encrypt(b"hi", rng=h.rng)
    received = alice_group.process(message)
    assert received.credential == bob.credential  # type: ignore[union-attr]


def test_create_with_credential_checks_the_signature_key() -> None:
    other = PrivateKeyBytes(SUITE.generate_signature_key_pair().private_key)
    group = Group.create_with_credential(SUITE, b"g", BasicCredential(b"x"), other, now=NOW)
    assert group.own_leaf_node.signature_key == SUITE.signature_public_key(other.value)


def test_finding_the_key_package_a_welcome_is_for() -> None:
    h = make_group("ab")
    d = h.client("d")
    unused = [d.key_package() for _ in range(3)]
    out = h.make_commit("a", [Add(unused[1])])
    assert out.welcome is not None
    bundles = list(d.bundles.values())
    used = find_key_package_bundle(out.welcome, bundles)
    assert used is not None and used.key_package == unused[1]
    assert welcome_key_package_refs(out.welcome) == (used.ref,)
    assert find_key_package_bundle(out.welcome, [bundles[0], bundles[2]]) is None
    group, bundle = Group.join_from_welcome_any(out.welcome, bundles, now=NOW)
    assert bundle is used and group.epoch == h.clients["a"].state.epoch + 1
    with pytest.raises(StateError, match="none of our KeyPackages"):
        Group.join_from_welcome_any(out.welcome, [bundles[0]], now=NOW)


def test_tree_hash_and_ratchet_tree_reachable_from_the_group() -> None:
    h = make_group("abc", GroupConfig(ratchet_tree_in_welcome=False))
    a = h.clients["a"].state
    assert a.tree_hash == a.group_context.tree_hash == a.tree.tree_hash()
    encoded = a.ratchet_tree()
    assert RatchetTree.decode(SUITE, encoded).tree_hash() == a.tree_hash
    # The encoded tree is what a joiner needs when the Welcome does not carry it.
    d = h.client("d", GroupConfig(ratchet_tree_in_welcome=False))
    out = h.make_commit("a", [Add(d.key_package())])
    assert out.welcome is not None
    bundle = find_key_package_bundle(out.welcome, d.bundles.values())
    assert bundle is not None
    with pytest.raises(StateError, match="ratchet tree"):
        Group.join_from_welcome(out.welcome, bundle, now=NOW)
    new = out.pending.group
    joined = Group.join_from_welcome(out.welcome, bundle, ratchet_tree=new.ratchet_tree(), now=NOW)
    assert joined.tree_hash == new.tree_hash


def test_external_psk_proposal_builder() -> None:
    psks = PskStore(external={b"team": b"\x07" * 32})
    h = make_group("abc", psks=psks)
    a = h.clients["a"].state
    proposal = a.external_psk_proposal(b"team", rng=h.rng)
    assert isinstance(proposal, PreSharedKey)
    assert proposal.psk.psk == ExternalPSK(b"team")
    assert len(proposal.psk.psk_nonce) == SUITE.hash_length
    other = external_psk_proposal(SUITE, b"team", rng=h.rng)
    assert isinstance(other, PreSharedKey) and other.psk.psk_nonce != proposal.psk.psk_nonce
    with pytest.raises(ValidationError, match="not available"):
        a.commit([proposal], psks=PskStore(), rng=h.rng, now=NOW)
    h.commit("a", [proposal])  # every member derives the same epoch with the PSK
    h.round_trip("b")
    h.clients["b"].state.propose(a.external_psk_proposal(b"team", rng=h.rng), rng=h.rng)
