"""The MLS group state machine, one behaviour per test (RFC 9420 §11, §12, §14).

Every test runs on the in-memory harness, which after each step checks that all members agree
on epoch, tree hash, epoch authenticator, exporter and roster.
"""

from __future__ import annotations

import dataclasses

import pytest

from doorless.codec import decode
from doorless.crypto import cipher_suite
from doorless.errors import StateError, ValidationError
from doorless.mls.extensions import Extension
from doorless.mls.framing import MLSMessage, PrivateMessage, PublicMessage, WireFormat
from doorless.mls.group import Group, GroupConfig, PskStore, StagedCommit
from doorless.mls.leaf_node import LeafNode
from doorless.mls.message_protection import bucket_size, unprotect_private
from doorless.mls.proposals import (
    Add,
    Commit,
    ExternalPSK,
    GroupContextExtensions,
    PreSharedKey,
    PreSharedKeyID,
    Remove,
    ResumptionPSK,
    ResumptionPSKUsage,
)

from .harness import NOW, Harness, make_group, public_body

SUITE = cipher_suite(1)
PSKS = PskStore(external={b"team psk": b"\x42" * 32})


def wire_format(message: bytes) -> WireFormat:
    return decode(MLSMessage, message).wire_format


@pytest.mark.parametrize("suite_id", [1, 2, 3])
def test_two_members_talk(suite_id: int) -> None:
    h = Harness(cipher_suite(suite_id))
    h.create("alice")
    h.client("bob")
    h.commit("alice", [Add(h.clients["bob"].key_package())])
    assert h.clients["bob"].state.epoch == 1
    for sender in ("alice", "bob", "bob", "alice"):
        assert h.deliver(h.send(sender, b"hello from " + sender.encode(), b"aad")) == 1
    h.commit("bob")
    assert h.deliver(h.send("alice", b"after the update")) == 1


def test_batched_add_then_everyone_talks() -> None:
    h = make_group("abcde")
    assert h.member_names() == list("abcde")
    assert h.clients["e"].state.epoch == 1
    for name in "abcde":
        assert h.deliver(h.send(name)) == 4


def test_commit_and_staged_commit_report_roster_changes() -> None:
    """§12.3: the committer and every receiver learn who was added, removed and updated."""
    h = make_group("abc")
    h.client("d")
    h.propose("b")  # an Update by reference
    out = h.make_commit("a", [Add(h.clients["d"].key_package()), Remove(h.leaf_of("c"))])
    assert [m.credential for m in out.pending.added] == [h.clients["d"].credential]
    assert [m.credential for m in out.pending.removed] == [h.clients["c"].credential]
    staged = h.submit("a", out)
    assert isinstance(staged, StagedCommit)
    assert [m.credential for m in staged.added] == [h.clients["d"].credential]
    assert [m.credential for m in staged.removed] == [h.clients["c"].credential]
    assert {m.credential for m in staged.updated} == {
        h.clients["a"].credential,  # the committer's path
        h.clients["b"].credential,  # the Update
    }
    assert h.member_names() == ["a", "b", "d"]


def test_update_by_reference_applies_the_proposed_key() -> None:
    h = make_group("abc")
    h.propose("b")
    new_key = h.clients["b"].state.update_keys[-1][0]
    h.commit("c")
    assert h.clients["b"].state.own_leaf_node.encryption_key == new_key
    assert h.clients["b"].state.update_keys == ()  # the private key moved into the tree keys
    assert h.deliver(h.send("b")) == 2


def test_own_update_is_replaced_by_the_path() -> None:
    """§12.2: a committer never commits its own Update; the path supersedes it."""
    h = make_group("ab")
    h.propose("a")
    proposed = h.clients["a"].state.update_keys[-1][0]
    h.commit("a")
    assert h.clients["a"].state.own_leaf_node.encryption_key != proposed


def test_remove_by_reference_and_removed_member_cannot_follow() -> None:
    h = make_group("abc")
    h.propose("a", Remove(h.leaf_of("c")))
    old_c = h.clients["c"].state
    staged = h.commit("b")
    assert staged is not None
    assert h.member_names() == ["a", "b"]
    # c's last state is of the old epoch: everything newer is rejected, nothing changes.
    before = old_c.to_bytes()
    sent = h.send("a")
    with pytest.raises(ValidationError):
        old_c.process(sent.message)
    assert old_c.to_bytes() == before


def test_removed_member_sees_itself_removed() -> None:
    h = make_group("abc")
    c = h.clients["c"].state
    out = h.make_commit("a", [Remove(h.leaf_of("c"))])
    staged = c.process(out.commit)
    assert isinstance(staged, StagedCommit)
    assert staged.self_removed
    assert staged.group.epoch == c.epoch  # no state of the new epoch for c
    h.submit("a", out)


def test_add_by_reference() -> None:
    h = make_group("ab")
    h.client("c")
    h.propose("b", Add(h.clients["c"].key_package()))
    h.commit("a")
    assert h.member_names() == ["a", "b", "c"]
    assert h.deliver(h.send("c")) == 2


def test_commit_without_path_for_add_only() -> None:
    """§12.4: an Add-only commit may omit the path (no PCS for the committer)."""
    h = make_group("ab")
    h.client("c")
    out = h.make_commit("a", [Add(h.clients["c"].key_package())], force_path=False)
    body = decode(MLSMessage, out.commit).body
    assert isinstance(body, PrivateMessage)  # private handshakes by default
    key_before = h.clients["a"].state.own_leaf_node.encryption_key
    h.submit("a", out)
    assert h.clients["a"].state.own_leaf_node.encryption_key == key_before
    assert h.deliver(h.send("c")) == 2


def test_empty_commit_always_has_a_path() -> None:
    h = make_group("ab", GroupConfig(private_handshakes=False))
    out = h.make_commit("a", force_path=False)
    content = public_body(out.commit).content.content
    assert isinstance(content, Commit)
    assert content.path is not None
    h.submit("a", out)


def test_public_and_private_handshakes() -> None:
    h = make_group("ab", GroupConfig(private_handshakes=False))
    assert wire_format(h.propose("a")) == WireFormat.mls_public_message
    out = h.make_commit("b")
    assert wire_format(out.commit) == WireFormat.mls_public_message
    assert isinstance(decode(MLSMessage, out.commit).body, PublicMessage)
    h.submit("b", out)
    h.clients["a"].config = GroupConfig(private_handshakes=True)
    h.round_trip("a")  # the config is local policy: reload with the new one
    out = h.make_commit("a")
    assert wire_format(out.commit) == WireFormat.mls_private_message
    h.submit("a", out)
    # Application data is always a PrivateMessage.
    assert wire_format(h.send("b").message) == WireFormat.mls_private_message


def test_padding_hides_lengths() -> None:
    h = make_group("ab", GroupConfig(padding_block=64))
    sizes = {len(h.send("a", b"x" * n).message) for n in (0, 1, 10, 30)}
    assert len(sizes) == 1


def test_psk_proposal_by_value_and_reference() -> None:
    h = make_group("abc", psks=PSKS)
    psk = PreSharedKeyID(ExternalPSK(b"team psk"), h.rng(32))
    h.commit("a", [PreSharedKey(psk)])
    psk2 = PreSharedKeyID(ExternalPSK(b"team psk"), h.rng(32))
    h.propose("b", PreSharedKey(psk2))
    h.commit("c")


def test_psk_in_welcome_needs_the_psk() -> None:
    h = make_group("ab", psks=PSKS)
    d = h.client("d")
    kp = d.key_package()
    psk = PreSharedKey(PreSharedKeyID(ExternalPSK(b"team psk"), h.rng(32)))
    out = h.make_commit("a", [Add(kp), psk])
    bundle = d.bundles[next(iter(d.bundles))]
    with pytest.raises(ValidationError, match="PSK named in the Welcome is not available"):
        Group.join_from_welcome(out.welcome or b"", bundle, now=NOW)
    h.submit("a", out)  # with the PSK store, the harness's join works
    assert "d" in h.member_names()


def test_external_join_and_resync() -> None:
    h = make_group("abc")
    h.external_join("d")
    assert h.member_names() == list("abcd")
    leaf_before = h.leaf_of("b")
    h.external_join("b", resync=True)
    assert h.member_names() == list("abcd")
    assert h.leaf_of("b") != leaf_before or h.clients["b"].state.epoch == h.ds.epoch
    for name in "abcd":
        assert h.deliver(h.send(name)) == 3


def test_concurrent_commits_one_wins_and_loser_retries() -> None:
    h = make_group("abc")
    out_a = h.make_commit("a")
    out_b = h.make_commit("b")
    epoch = h.ds.epoch
    assert h.submit("b", out_b) is not None
    assert h.submit("a", out_a) is None  # same epoch: rejected by the DS
    assert h.ds.epoch == epoch + 1
    assert h.clients["a"].pending is None
    h.commit("a")  # retry from the new epoch
    assert h.ds.epoch == epoch + 2


def test_out_of_order_and_late_application_messages() -> None:
    h = make_group("abc")
    batch = [h.send("a") for _ in range(5)]
    for sent in reversed(batch[2:]):
        assert h.deliver(sent) == 2
    h.commit("b")  # epoch changes while two messages are still in flight
    for sent in batch[:2]:
        assert h.deliver(sent) == 2  # decrypted with the kept past epoch (§14)


def test_welcome_without_ratchet_tree() -> None:
    """§12.4.3.1: without the ratchet_tree extension the joiner gets the tree out of band."""
    h = make_group("ab", GroupConfig(ratchet_tree_in_welcome=False))
    c = h.client("c")
    out = h.make_commit("a", [Add(c.key_package())])
    bundle = c.bundles[next(iter(c.bundles))]
    with pytest.raises(StateError, match="ratchet tree"):
        Group.join_from_welcome(out.welcome or b"", bundle, now=NOW)
    tree = out.pending.group.tree.encode()
    joined = Group.join_from_welcome(out.welcome or b"", bundle, ratchet_tree=tree, now=NOW)
    assert joined.epoch_authenticator == out.pending.group.epoch_authenticator


def test_epoch_secrets_change_every_epoch() -> None:
    h = make_group("ab")
    seen = set()
    for _ in range(3):
        g = h.clients["a"].state
        seen.add((g.epoch_authenticator, g.export_secret(b"x", b"", 16)))
        h.commit("b")
    assert len(seen) == 3


def test_state_round_trip_mid_epoch() -> None:
    """Persist with cached proposals, update keys and past epochs; then continue."""
    h = make_group("abc")
    late = h.send("c")
    h.commit("a")
    h.propose("b")
    assert h.clients["b"].state.update_keys
    for name in "abc":
        h.round_trip(name)
    h.commit("c")  # commits b's Update: b needs the restored update key
    assert h.deliver(late) == 2  # past epoch secrets survived the round trip


def test_group_info_for_external_join_is_signed_by_a_member() -> None:
    h = make_group("ab")
    info = decode(MLSMessage, h.clients["b"].state.group_info()).body
    h.external_join("c")
    assert info is not None
    assert h.member_names() == ["a", "b", "c"]


def test_merge_of_a_foreign_pending_commit_is_refused() -> None:
    h = make_group("ab")
    out = h.make_commit("a")
    with pytest.raises(StateError):  # another member's state
        h.clients["b"].state.merge_pending_commit(out.pending)
    with pytest.raises(StateError):  # not the state it was made from
        out.pending.group.merge_pending_commit(out.pending)
    staged = h.clients["b"].state.process(out.commit)
    assert isinstance(staged, StagedCommit)
    with pytest.raises(StateError):
        staged.group.merge_staged_commit(staged)
    with pytest.raises(StateError):
        h.clients["a"].state.merge_staged_commit(staged)
    h.submit("a", out)


def test_application_data_while_proposals_are_pending() -> None:
    """§12.4: a member that has seen proposals must commit before sending data."""
    h = make_group("ab")
    h.propose("a")
    for name in "ab":
        group = h.clients[name].state
        before = group.to_bytes()
        with pytest.raises(StateError, match="pending proposals"):
            group.encrypt(b"data")
        assert group.to_bytes() == before
    h.commit("b")
    assert h.deliver(h.send("a")) == 1


# --- which pending proposals a commit includes (§12.2, §12.4) ---------------------------------


def test_two_removes_of_one_member_are_committed_once() -> None:
    h = make_group("abcd")
    h.propose("a", Remove(h.leaf_of("d")))
    h.propose("b", Remove(h.leaf_of("d")))
    staged = h.commit("c")
    assert staged is not None
    assert len(staged.removed) == 1
    assert h.member_names() == ["a", "b", "c"]


def test_remove_is_preferred_over_update_of_the_same_leaf() -> None:
    h = make_group("abc")
    h.propose("c")
    h.propose("a", Remove(h.leaf_of("c")))
    staged = h.commit("b")
    assert staged is not None
    assert staged.proposals == (Remove(2),)
    assert h.member_names() == ["a", "b"]


def test_most_recent_update_of_a_member_is_committed() -> None:
    h = make_group("ab")
    h.propose("b")
    h.propose("b")
    latest = h.clients["b"].state.update_keys[-1][0]
    h.commit("a")
    assert h.clients["b"].state.own_leaf_node.encryption_key == latest


def test_pending_remove_of_the_committer_is_left_for_others() -> None:
    h = make_group("abc")
    h.propose("b", Remove(h.leaf_of("a")))
    staged = h.commit("a")
    assert staged is not None
    assert staged.removed == ()
    assert h.member_names() == ["a", "b", "c"]
    h.propose("b", Remove(h.leaf_of("a")))
    h.commit("c")
    assert h.member_names() == ["b", "c"]


def test_adds_of_one_client_and_of_a_member_are_dropped() -> None:
    h = make_group("abc")
    d = h.client("d")
    h.propose("a", Add(d.key_package()))
    h.propose("b", Add(d.key_package()))  # another KeyPackage of the same client
    h.propose("c", Add(h.clients["b"].key_package()))  # b is already a member
    staged = h.commit("a")
    assert staged is not None
    assert [m.credential for m in staged.added] == [d.credential]
    # The unused KeyPackage stays with d.
    assert len(d.bundles) == 1
    h.clients["b"].bundles.clear()


def test_repeated_psk_is_committed_once() -> None:
    h = make_group("abc", psks=PSKS)
    psk = PreSharedKey(PreSharedKeyID(ExternalPSK(b"team psk"), h.rng(32)))
    h.propose("a", psk)
    h.propose("b", psk)
    staged = h.commit("c")
    assert staged is not None
    assert staged.proposals == (psk,)


def test_by_value_remove_supersedes_pending_one() -> None:
    h = make_group("abc")
    h.propose("a", Remove(h.leaf_of("c")))
    staged = h.commit("b", [Remove(h.leaf_of("c"))])
    assert staged is not None
    assert len(staged.removed) == 1


def test_resumption_psk_of_an_earlier_epoch() -> None:
    """§8.6: a PSK proposal may inject this group's resumption secret of a kept epoch."""
    h = make_group("abc")
    epoch = h.ds.epoch
    h.commit("b")
    resumption = ResumptionPSK(ResumptionPSKUsage.application, h.group_id, epoch)
    h.commit("a", [PreSharedKey(PreSharedKeyID(resumption, h.rng(32)))])
    h.external_join("d")  # d holds no resumption secret of that epoch
    out = h.make_commit("a", [PreSharedKey(PreSharedKeyID(resumption, h.rng(32)))])
    d = h.clients["d"].state
    with pytest.raises(ValidationError, match="not available"):
        d.process(out.commit)


def test_rejected_private_commit_does_not_reuse_its_generation() -> None:
    h = make_group("abc", GroupConfig(private_handshakes=True))
    out = h.make_commit("b")
    h.clients["b"].pending = None  # the DS rejected it (say, a concurrent commit won)
    b = h.clients["b"].state.discard_pending_commit(out.pending)
    _, proposal = b.propose(Remove(h.leaf_of("c")))
    c = h.clients["c"].state

    def generation(message: bytes) -> int:
        body = decode(MLSMessage, message).body
        assert isinstance(body, PrivateMessage)
        return unprotect_private(
            c.suite, body, c.group_context, c.secret_tree, c.epoch_secrets.sender_data_secret
        ).sender_data.generation

    assert generation(out.commit) != generation(proposal)


def test_larger_group_with_blanks_and_truncation() -> None:
    h = make_group("abcdefghijkl")
    for name in "cfgl":  # blanks in the middle and at the right edge (truncation)
        h.commit("a", [Remove(h.leaf_of(name))])
    h.external_join("m")  # fills the leftmost blank
    assert h.leaf_of("m") == 2
    for name in "bdk":
        h.commit(name)
    h.propose("e")
    h.propose("h")
    h.commit("j")
    for name in ("a", "m", "k"):
        assert h.deliver(h.send(name)) == len(h.member_names()) - 1


def test_capabilities_upgrade_then_new_group_context_extension() -> None:
    """Members advertise a new extension (commit path, Update), then a GCE requires it."""
    new_type = 0xFF0B
    h = make_group("abc")

    def with_extension(name: str) -> LeafNode:
        leaf = h.clients[name].state.own_leaf_node
        caps = dataclasses.replace(leaf.capabilities, extensions=(new_type,))
        return dataclasses.replace(leaf, capabilities=caps)

    gce = GroupContextExtensions((Extension(new_type, b"on"),))
    h.commit("a", leaf_node=with_extension("a"))
    b = h.clients["b"]
    b.group, message = b.state.propose_update(leaf_node=with_extension("b"), rng=h.rng)
    for name in "ac":
        h.clients[name].group = h.clients[name].state.process(message).group
    h.commit("a")  # commits b's Update
    with pytest.raises(ValidationError):  # c does not support it yet
        h.clients["a"].state.commit([gce])
    h.commit("c", leaf_node=with_extension("c"))
    h.commit("b", [gce])
    assert h.clients["c"].state.extensions == gce.extensions


def test_application_messages_padded_to_buckets() -> None:
    """RFC 9420 §6.3.1 padding: with buckets, plaintexts of different lengths fill one size."""
    buckets = (256, 1024)
    h = make_group("ab", GroupConfig(padding_buckets=buckets))
    sizes = {len(h.send("a", b"x" * n).message) for n in (0, 10, 100)}
    assert len(sizes) == 1
    assert len(h.send("a", b"x" * 600).message) > sizes.pop()
    assert bucket_size(1, buckets) == 256 and bucket_size(257, buckets) == 1024
    assert bucket_size(1025, buckets) == 2048
