"""`PublicGroup`: the public state a delivery service can track without any secret
(RFC 9420 §6.1, §7.9.2, §12.1, §12.2, §12.4.2), judged against the members' own states."""

from __future__ import annotations

import dataclasses

import pytest

from doorless.codec import decode, encode
from doorless.crypto import cipher_suite
from doorless.errors import ValidationError
from doorless.mls.framing import MLSMessage, PublicMessage, SenderMember
from doorless.mls.group import Group, GroupConfig
from doorless.mls.proposals import Add, Commit, Remove
from doorless.mls.public_group import PublicGroup

from .harness import NOW, Harness, forge, make_group

PUBLIC = GroupConfig(private_handshakes=False)


def state(h: Harness, name: str) -> Group:
    return h.clients[name].state


def agrees(public: PublicGroup, member: Group) -> None:
    assert public.group_context == member.group_context
    assert public.tree_hash == member.tree_hash == member.tree.tree_hash()
    assert public.interim_transcript_hash == member.interim_transcript_hash
    assert public.confirmation_tag == member.confirmation_tag
    assert public.ratchet_tree() == member.ratchet_tree()


def tracked(names: str = "abc") -> tuple[Harness, PublicGroup]:
    h = make_group(names, PUBLIC)
    assert h.ds.group_info is not None
    public = PublicGroup.from_group_info(h.ds.group_info, now=NOW)
    agrees(public, state(h, names[0]))
    return h, public


def test_member_group_holds_its_public_group() -> None:
    h = make_group("ab")
    a = state(h, "a")
    assert a.public_group is a.public
    agrees(a.public_group, a)
    assert [m.leaf_index for m in a.public_group.members()] == [0, 1]


def test_delivery_service_tracks_the_group_epoch_after_epoch() -> None:
    h, public = tracked("abc")
    # A self-update of b (a commit with a path and no proposals).
    out = h.make_commit("b")
    public = public.process_commit(out.commit, now=NOW)
    h.submit("b", out)
    agrees(public, state(h, "a"))
    # An Add with a Welcome.
    d = h.client("d", PUBLIC)
    out = h.make_commit("a", [Add(d.key_package())])
    public = public.process_commit(out.commit, now=NOW)
    h.submit("a", out)
    agrees(public, state(h, "d"))
    # A proposal by reference, then its commit.
    message = h.propose("c")
    public = public.process_proposal(message, now=NOW)
    assert [p.ref for p in public.proposals] == [p.ref for p in state(h, "a").proposals]
    out = h.make_commit("a")
    public = public.process_commit(out.commit, now=NOW)
    assert public.proposals == ()
    h.submit("a", out)
    agrees(public, state(h, "c"))
    # A Remove.
    out = h.make_commit("b", [Remove(h.leaf_of("d"))])
    public = public.process_commit(out.commit, now=NOW)
    h.submit("b", out)
    agrees(public, state(h, "a"))
    # An external join.
    joined, message = h.make_external_join("e")
    public = public.process_commit(message, now=NOW)
    h.submit_external_join("e", joined, message)
    agrees(public, state(h, "e"))
    assert public.epoch == 6
    # Persisted and restored.
    assert PublicGroup.from_bytes(public.to_bytes()).to_bytes() == public.to_bytes()


def rejected(public: PublicGroup, message: bytes, match: str) -> None:
    before = public.to_bytes()
    with pytest.raises(ValidationError, match=match):
        public.process_commit(message, now=NOW)
    assert public.to_bytes() == before  # a rejected commit changes nothing


def test_tampered_commit_is_rejected_and_changes_nothing() -> None:
    h, public = tracked("abc")
    out = h.make_commit("b", [Remove(h.leaf_of("c"))])
    body = decode(MLSMessage, out.commit).body
    assert isinstance(body, PublicMessage)
    bad_sig = dataclasses.replace(
        body, auth=dataclasses.replace(body.auth, signature=bytes(len(body.auth.signature)))
    )
    rejected(public, encode(MLSMessage(bad_sig)), "signature is invalid")
    other = dataclasses.replace(body.content, authenticated_data=b"changed after signing")
    rejected(public, encode(MLSMessage(dataclasses.replace(body, content=other))), "signature")
    # The genuine commit is still accepted afterwards.
    assert public.process_commit(out.commit, now=NOW).epoch == public.epoch + 1


def test_commit_breaking_a_proposal_rule_is_rejected() -> None:
    h, public = tracked("abc")
    a = state(h, "a")
    rejected(public, forge(a, Commit((Remove(7),), None)), "blank or absent leaf")
    rejected(public, forge(a, Commit((Remove(0),), None)), "removes the committer")
    rejected(public, forge(a, Commit((), None)), "requires an UpdatePath")


def test_commit_of_another_epoch_or_group_is_rejected() -> None:
    h, public = tracked("ab")
    out = h.make_commit("a")
    h.submit("a", out)
    after = public.process_commit(out.commit, now=NOW)
    rejected(after, out.commit, "epoch")  # a replay
    # Another group under the same id (other members' keys): its signature does not verify.
    other = make_group("ab", PUBLIC)
    rejected(public, other.make_commit("a").commit, "signature is invalid")


def test_private_commit_cannot_be_judged() -> None:
    h = make_group("ab")  # private handshakes
    assert h.ds.group_info is not None
    public = PublicGroup.from_group_info(h.ds.group_info, now=NOW)
    rejected(public, h.make_commit("a").commit, "only judges PublicMessages")


def test_key_package_validation() -> None:
    h, public = tracked("ab")
    kp = h.client("c").key_package()
    public.validate_key_package(kp, now=NOW)
    forged = dataclasses.replace(kp, init_key=kp.leaf_node.encryption_key)
    with pytest.raises(ValidationError, match=r"signature|init_key"):
        public.validate_key_package(forged, now=NOW)
    with pytest.raises(ValidationError, match="lifetime"):
        public.validate_key_package(kp, now=NOW + 10**9)
    other_suite = Harness(cipher_suite(3)).client("x").key_package()
    with pytest.raises(ValidationError, match="cipher suite"):
        public.validate_key_package(other_suite, now=NOW)
    # Adding a client already in the group breaks §12.2 (judged on the list, not alone).
    me = SenderMember(h.leaf_of("a"))
    b_again = h.clients["b"].key_package()
    public.validate_proposal(Add(b_again), me, NOW)
    with pytest.raises(ValidationError, match="already in the group"):
        public.validate_proposal_list([(Add(b_again), me)], me, False, NOW)


def test_every_proposal_type_has_a_rule_and_an_effect() -> None:
    """The tables keyed by ProposalType cover every type we decode (none falls through)."""
    from doorless.mls import proposal_application, public_group
    from doorless.mls.proposals import ProposalType

    assert set(public_group._VALIDATE) == set(ProposalType)
    assert set(proposal_application._APPLY) == set(ProposalType)
