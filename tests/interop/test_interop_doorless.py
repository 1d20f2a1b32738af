"""Doorless against ts-mls (an independent TypeScript implementation of RFC 9420).

Every test builds one mixed group (`interop_group.MixedGroup`): ts-mls members live in the
driver, Doorless members in this process, and every message one side makes is processed by the
other. After every step all members must agree on the epoch, the epoch authenticator (§8.7), an
exporter value (§8.5), the encoded GroupContext (so the tree hash and the confirmed transcript
hash, §8.1), the encoded ratchet tree and the roster.

Covered for cipher suites 1, 2 and 3, with PrivateMessage and PublicMessage handshakes:

1. ts-mls creates a group and adds a Doorless member (ratchet tree in the Welcome or out of
   band); application messages both ways.
2. Doorless creates a group and adds a ts-mls member; the same.
3. Commits by each side processed by the other: Add (of a member of either implementation),
   empty commit with path, Remove (each side removes a member of the other), and a Doorless
   Update proposal committed by reference by ts-mls and by Doorless.
4. A longer alternating scenario (suite 1).
5. External joins of a Doorless client through a Doorless member's GroupInfo, processed by
   ts-mls members, and a resync (external commit with a Remove of the old leaf). Through a
   ts-mls GroupInfo it fails, because of ts-mls's external_pub encoding (below).

Not covered because the driver has no method for them (ts-mls itself has the API:
``createProposal``, ``joinGroupExternal``): proposals *sent* by ts-mls, and ts-mls joining by
external commit.

Deviations of ts-mls 1.6.4 from RFC 9420 found here (see the tests at the end):

* its signature key generation gives *compressed* P-256 points, where §5.1.1 requires the
  UncompressedPointRepresentation; Doorless rejects such key packages and trees (the driver
  works around it by default, ``compressed_signature_key=False``).
* a member removed by a commit that also adds someone into its freed leaf does not notice its
  removal and fails (§12.4.2); worked around by not handing it that commit.
* it derives ``commit_secret`` up to the root when the root is not on the committer's
  filtered direct path (the left half of the tree blank), one step past what §7.4/§12.4.2
  define; see test_interop_removals.py.
* its joiners refuse a valid tree whose unmerged leaves are listed at two levels (§12.4.3.1
  asks less); see test_interop_removals.py.
* the ``external_pub`` GroupInfo extension holds the bare key, without the ``opaque<V>`` length
  §12.4.3.2 requires; Doorless cannot join a ts-mls group by external commit (and ts-mls could
  not read Doorless's GroupInfo either).
"""

from __future__ import annotations

import random

import pytest
from interop_group import (
    EXPORTER_CONTEXT,
    EXPORTER_LABEL,
    WF_KEY_PACKAGE,
    Impl,
    MixedGroup,
    header,
    identity_of,
)
from tsmls import TsMls, TsMlsError, WireFormat

from doorless.codec import decode, encode
from doorless.crypto import cipher_suite
from doorless.errors import DecodeError, StateError, ValidationError
from doorless.mls.extensions import ExtensionType, ExternalPub, find_extension
from doorless.mls.framing import MLSMessage
from doorless.mls.group import Group, StagedCommit
from doorless.mls.key_package import KeyPackage
from doorless.mls.proposals import Add, Remove
from doorless.mls.welcome import GroupInfo

SUITES = [1, 2, 3]
WIRE_FORMATS: list[WireFormat] = ["private", "public"]
GREASE = frozenset(0x0A0A + 0x1010 * i for i in range(15))  # RFC 9420 §13.5

# Sizes around both sides' padding blocks (Doorless 32 bytes, ts-mls 256) and AEAD limits.
PAYLOADS = [b"", b"x", bytes(range(256)) * 4 + b"tail", "héllo wörld ✓".encode()]


suite_param = pytest.mark.parametrize("suite", SUITES, ids=[f"suite{s}" for s in SUITES])
wire_param = pytest.mark.parametrize("wire_format", WIRE_FORMATS)


def _key_package(message: bytes) -> KeyPackage:
    body = decode(MLSMessage, message).body
    assert isinstance(body, KeyPackage)
    return body


def exchange(g: MixedGroup, a: str, b: str) -> None:
    """Application messages both ways, with and without authenticated data."""
    for i, payload in enumerate(PAYLOADS):
        g.send(a, payload, authenticated_data=b"aad %d" % i if i % 2 else b"")
        g.send(b, payload[::-1], authenticated_data=b"" if i % 2 else b"franking commitment")


# ------------------------------------------------------------------------------------------------
# 1. and 2.: one side creates the group, the other joins from the Welcome


@pytest.mark.parametrize("tree", ["tree_in_welcome", "tree_out_of_band"])
@wire_param
@suite_param
def test_tsmls_creates_doorless_joins(
    ts: TsMls, suite: int, wire_format: WireFormat, tree: str
) -> None:
    g = MixedGroup(ts, suite, wire_format, ratchet_tree_in_welcome=tree == "tree_in_welcome")
    alice = g.create("tsmls")
    dora = g.new_member("doorless")
    g.add(alice, [dora])
    assert g.leaf_of(dora) == 1
    exchange(g, alice, dora)
    view = g.check()
    assert view.epoch == 1
    # The same exporter on both sides, for other labels and lengths too.
    for label, length in (("", 1), ("sframe", 16), ("long label " * 10, 64)):
        assert ts.export_secret(alice, label, b"", length) == g.peer(dora).state.export_secret(
            label.encode(), b"", length
        )


@pytest.mark.parametrize("tree", ["tree_in_welcome", "tree_out_of_band"])
@wire_param
@suite_param
def test_doorless_creates_tsmls_joins(
    ts: TsMls, suite: int, wire_format: WireFormat, tree: str
) -> None:
    g = MixedGroup(ts, suite, wire_format, ratchet_tree_in_welcome=tree == "tree_in_welcome")
    dora = g.create("doorless")
    alice = g.new_member("tsmls")
    g.add(dora, [alice])
    assert g.leaf_of(alice) == 1
    exchange(g, dora, alice)
    assert g.check().epoch == 1
    assert ts.export_secret(alice, EXPORTER_LABEL, EXPORTER_CONTEXT, 32) == g.peer(
        dora
    ).state.export_secret(EXPORTER_LABEL.encode(), EXPORTER_CONTEXT, 32)


def test_doorless_needs_the_tree_when_the_welcome_lacks_it(ts: TsMls) -> None:
    """ts-mls leaves the ratchet tree out of the Welcome by default (§12.4.3.3 allows it);
    Doorless then asks for it instead of guessing."""
    g = MixedGroup(ts, 1, ratchet_tree_in_welcome=False)
    alice = g.create("tsmls")
    dora = g.new_member("doorless")
    result = ts.add_members(alice, [g.key_package(dora)])
    assert result.welcome is not None
    bundle = g.peer(dora).bundle_for(result.welcome)
    with pytest.raises(StateError, match="ratchet tree"):
        Group.join_from_welcome(result.welcome, bundle, now=g.now)
    joined = Group.join_from_welcome(
        result.welcome, bundle, ratchet_tree=ts.ratchet_tree(alice), now=g.now
    )
    assert joined.epoch_authenticator == ts.epoch_authenticator(alice)


# ------------------------------------------------------------------------------------------------
# 3. commits made by each side, processed by the other


def mixed_pair(ts: TsMls, suite: int, wire_format: WireFormat) -> tuple[MixedGroup, str, str]:
    """A ts-mls creator and a Doorless member, at epoch 1."""
    g = MixedGroup(ts, suite, wire_format)
    alice = g.create("tsmls")
    dora = g.new_member("doorless")
    g.add(alice, [dora])
    return g, alice, dora


@wire_param
@suite_param
def test_adds_by_each_side(ts: TsMls, suite: int, wire_format: WireFormat) -> None:
    g, alice, dora = mixed_pair(ts, suite, wire_format)
    # Doorless adds a ts-mls member: ts-mls processes Doorless's Add commit and Welcome.
    bob = g.new_member("tsmls")
    g.add(dora, [bob])
    # ts-mls adds a Doorless member: Doorless processes ts-mls's commit (no UpdatePath).
    dan = g.new_member("doorless")
    g.add(bob, [dan])
    # Both implementations added in one commit, by each side.
    g.add(alice, [g.new_member("doorless"), g.new_member("tsmls")])
    g.add(dan, [g.new_member("tsmls"), g.new_member("doorless")])
    # A Doorless add-only commit without the optional UpdatePath (ts-mls's own habit, §12.4).
    g.add(dora, [g.new_member("tsmls"), g.new_member("doorless")], force_path=False)
    assert g.check().epoch == 6 and len(g.members) == 10
    g.send(dan, b"to all nine others")
    g.send(bob, b"and back")


@wire_param
@suite_param
def test_self_updates_by_each_side(ts: TsMls, suite: int, wire_format: WireFormat) -> None:
    g, alice, dora = mixed_pair(ts, suite, wire_format)
    bob = g.new_member("tsmls")
    g.add(dora, [bob])
    # ts-mls's add-only commits carry no path (§12.4): the first self-updates fill the tree.
    for committer in (dora, alice, bob, dora):
        g.self_update(committer)
        g.send(committer, b"after my update")
        g.send(alice if committer != alice else dora, b"reply")
    assert g.check().epoch == 6


@wire_param
@suite_param
def test_removes_by_each_side(ts: TsMls, suite: int, wire_format: WireFormat) -> None:
    g, alice, dora = mixed_pair(ts, suite, wire_format)
    bob, dan = g.new_member("tsmls"), g.new_member("doorless")
    g.add(dora, [bob, dan])
    g.remove(dora, bob)  # Doorless removes a ts-mls member (who sees its removal)
    g.send(alice, b"bob is gone")
    g.remove(alice, dan)  # ts-mls removes a Doorless member (who sees its removal)
    g.send(dora, b"dan is gone")
    # The freed leaves are reused by the next Add (§12.1.1: leftmost blank leaf).
    carol = g.new_member("doorless")
    g.add(alice, [carol])
    assert g.leaf_of(carol) == 2
    g.remove(carol, alice)  # the creator removed by a Doorless member
    assert g.check().epoch == 6
    g.send(dora, b"two Doorless members left")


@wire_param
@suite_param
def test_update_proposal_committed_by_reference(
    ts: TsMls, suite: int, wire_format: WireFormat
) -> None:
    g, alice, dora = mixed_pair(ts, suite, wire_format)
    dan = g.new_member("doorless")
    g.add(alice, [dan])
    # A Doorless Update proposal (§12.1.2), committed by reference by ts-mls: Doorless applies
    # its own Update with the key it kept, ts-mls and the other Doorless member follow.
    g.propose_update(dora)
    g.commit_pending(alice, updated=[dora])
    g.send(dora, b"my new leaf key works")
    # Committed by reference by a Doorless member; ts-mls processes proposal and commit.
    g.propose_update(dora)
    g.commit_pending(dan, updated=[dora])
    # Two proposals from two members, committed together by ts-mls.
    g.propose_update(dora)
    g.propose_update(dan)
    g.commit_pending(alice, updated=[dora, dan])
    assert g.check().epoch == 5
    g.send(alice, b"all updated")


@wire_param
@suite_param
def test_add_and_remove_proposals_committed_by_reference(
    ts: TsMls, suite: int, wire_format: WireFormat
) -> None:
    g, alice, dora = mixed_pair(ts, suite, wire_format)
    bob, dan = g.new_member("tsmls"), g.new_member("doorless")
    g.add(alice, [bob, dan])
    # Doorless proposes a Remove and an Add; ts-mls commits both by reference (§12.4), its
    # Welcome brings the new member in, and the removed Doorless member sees its removal.
    carol = g.new_member("doorless")
    g.propose(dora, Remove(g.leaf_of(dan)))
    g.propose(dora, Add(_key_package(g.key_package(carol))))
    g.commit_pending(alice, added=[carol], removed=[dan])
    # The same the other way: a Doorless member commits Doorless proposals (a Remove of a
    # ts-mls member, an Add of a ts-mls client) by reference; ts-mls processes both.
    erin = g.new_member("tsmls")
    g.propose(dora, Remove(g.leaf_of(bob)))
    g.propose(dora, Add(_key_package(g.key_package(erin))))
    # WORKAROUND (ts-mls deviation, see test_removed_member_whose_leaf_is_reused): Erin takes
    # Bob's freed leaf, and ts-mls 1.6.4 then fails to see that the commit removed Bob; Bob is
    # not handed the commit.
    g.commit_pending(carol, added=[erin], removed=[bob], unnotified=[bob])
    assert g.leaf_of(erin) == 2
    # And Remove-only by reference of a ts-mls member, who processes it.
    g.propose(dora, Remove(g.leaf_of(alice)))
    g.commit_pending(erin, removed=[alice])
    assert g.check().epoch == 5
    g.chat()


@wire_param
def test_removed_member_whose_leaf_is_reused(ts: TsMls, wire_format: WireFormat) -> None:
    """DEVIATION of ts-mls 1.6.4. A commit that removes a member and adds another gives the
    newcomer the freed leaf (§12.3 applies Removes before Adds; §12.1.1 fills the leftmost
    blank leaf). The removed member must still recognise its removal (§12.4.2: "clients need
    to be prepared to receive a valid Commit message that removes them from the group").
    ts-mls decides "removed" by looking at its leaf *after* the Adds, finds it occupied, tries
    to decrypt the UpdatePath and fails with an InternalError ("No overlap between provided
    private keys and update path"). Every other member, of both implementations, processes the
    commit; Doorless also recognises its own removal in the same situation."""
    g, alice, dora = mixed_pair(ts, 1, wire_format)
    bob, dan = g.new_member("tsmls"), g.new_member("doorless")
    g.add(alice, [bob, dan])  # leaves: alice 0, dora 1, bob 2, dan 3

    # Doorless removes ts-mls's Bob and adds Frank in one commit: Frank gets leaf 2.
    frank = g.new_member("doorless")
    out = g.peer(dora).state.commit(
        [Remove(g.leaf_of(bob)), Add(_key_package(g.key_package(frank)))], now=g.now
    )
    with pytest.raises(TsMlsError, match="No overlap between provided private keys"):
        ts.process_message(bob, out.commit)
    assert ts.epoch(bob) == 2  # ts-mls left Bob's state as it was
    # The other members are fine with the same commit.
    assert ts.process_message(alice, out.commit).epoch == 3
    staged = g.peer(dan).state.process(out.commit, now=g.now)
    assert isinstance(staged, StagedCommit) and not staged.self_removed

    # Doorless's side: ts-mls commits (by reference) Doorless proposals removing Doorless's Dan
    # and adding Gina into Dan's leaf; Dan sees its removal.
    g2, alice2, dora2 = mixed_pair(ts, 1, wire_format)
    dan2 = g2.new_member("doorless")
    g2.add(alice2, [dan2])
    g2.propose(dora2, Remove(g2.leaf_of(dan2)))
    g2.propose(dora2, Add(_key_package(g2.key_package(g2.new_member("tsmls")))))
    commit = ts.self_update(alice2, wire_format=wire_format).commit
    staged = g2.peer(dan2).state.process(commit, now=g2.now)
    assert isinstance(staged, StagedCommit) and staged.self_removed
    assert [identity_of(m) for m in staged.removed] == [dan2.encode()]


# ------------------------------------------------------------------------------------------------
# 4. a longer alternating scenario


@wire_param
def test_long_alternating_scenario(ts: TsMls, wire_format: WireFormat) -> None:
    """Sixteen commits, committers alternating between the implementations, each operation
    drawn from a seeded generator; everyone talks after every step."""
    rnd = random.Random(9420)
    g = MixedGroup(ts, 1, wire_format)
    first = g.create("tsmls")
    g.add(first, [g.new_member("doorless")])
    impls: tuple[Impl, Impl] = ("tsmls", "doorless")
    for step in range(16):
        side = impls[step % 2]
        committers = [m for m in g.members if g.impl(m) == side]
        if not committers:
            g.add(g.members[0], [g.new_member(side)])
            continue
        committer = rnd.choice(committers)
        others = [m for m in g.members if m != committer]
        ops = ["add", "update"]
        if len(g.members) > 2:
            ops.append("remove")
        if any(g.impl(m) == "doorless" for m in others):
            ops.append("proposal")
        op = rnd.choice(ops)
        if op == "add":
            new: list[str] = [g.new_member(rnd.choice(impls)) for _ in range(rnd.randint(1, 2))]
            g.add(committer, new)
        elif op == "update":
            g.self_update(committer)
        elif op == "remove":
            g.remove(committer, rnd.choice(others))
        else:
            proposer = rnd.choice([m for m in others if g.impl(m) == "doorless"])
            g.propose_update(proposer)
            g.commit_pending(committer, updated=[proposer])
        g.send(rnd.choice(g.members), f"step {step}".encode())
    g.chat()
    assert g.check().epoch >= 16


# ------------------------------------------------------------------------------------------------
# 5. external joins


@pytest.mark.parametrize("tree", ["tree_in_group_info", "tree_out_of_band"])
@suite_param
def test_doorless_joins_by_external_commit(ts: TsMls, suite: int, tree: str) -> None:
    """A Doorless client joins a mixed group with a Doorless member's GroupInfo; the ts-mls
    members process its external commit (new_member_commit, ExternalInit, §12.4.3.2), then a
    resync (an external commit that also removes the joiner's old leaf)."""
    in_gi = tree == "tree_in_group_info"
    g = MixedGroup(ts, suite, ratchet_tree_in_welcome=in_gi)
    alice = g.create("tsmls")
    dora = g.new_member("doorless")
    g.add(alice, [dora, g.new_member("tsmls")])
    eve = g.join_external(dora, ratchet_tree_extension=in_gi)
    g.send(eve, b"I joined on my own")
    g.send(alice, b"welcome eve")
    g.self_update(alice)  # ts-mls's path now encrypts to Eve too
    g.self_update(eve)
    g.join_external(dora, ratchet_tree_extension=in_gi, resync=eve)
    g.send(eve, b"back again")
    g.chat()
    assert g.check().epoch == 5


@suite_param
def test_tsmls_external_pub_lacks_its_length_prefix(ts: TsMls, suite: int) -> None:
    """DEVIATION of ts-mls 1.6.4: its GroupInfo's ``external_pub`` extension_data is the bare
    HPKE public key. RFC 9420 §12.4.3.2 defines it as ``struct { HPKEPublicKey external_pub; }``
    and §5.1.1 ``opaque HPKEPublicKey<V>``, so the data must start with the key's varint
    length, as Doorless writes it. Doorless therefore cannot join a ts-mls group by external
    commit (it fails cleanly, with DecodeError). Fixed upstream by ts-mls pull request #449
    (2.0 line): when the pin moves past it, this test fails; then turn the rejection below into
    ``join_external(alice)`` in test_doorless_joins_by_external_commit."""
    npk = len(cipher_suite(suite).derive_key_pair(bytes(32)).public_key)
    g = MixedGroup(ts, suite)
    alice = g.create("tsmls")
    dora = g.new_member("doorless")
    g.add(alice, [dora])

    def external_pub_data(group_info: bytes) -> bytes:
        body = decode(MLSMessage, group_info).body
        assert isinstance(body, GroupInfo)
        ext = find_extension(body.extensions, ExtensionType.external_pub)
        assert ext is not None
        return ext.extension_data

    theirs = external_pub_data(ts.group_info(alice))
    ours = external_pub_data(g.peer(dora).state.group_info())
    assert len(theirs) == npk, "ts-mls now length-prefixes external_pub: see the docstring"
    # Doorless's is the encoded struct (varint length, then the key), and both name the same
    # key pair (derived from the epoch's external_secret, §8).
    assert ours == encode(ExternalPub(theirs)) and len(ours) > npk
    with pytest.raises(DecodeError):
        Group.join_external(
            ts.group_info(alice, ratchet_tree_extension=True),
            g.peer(dora).leaf_template(),
            g.peer(dora).signature_private_key,
            now=g.now,
        )
    # Nothing was sent: the group goes on.
    g.self_update(dora)


# ------------------------------------------------------------------------------------------------
# messages from an earlier epoch


def test_late_application_messages_both_ways(ts: TsMls) -> None:
    """Each side decrypts a message sent two epochs earlier (Doorless keeps 2 past epochs,
    ts-mls 4; §14 lets members keep some for late messages)."""
    g, alice, dora = mixed_pair(ts, 1, "private")
    late_ts = g.encrypt(alice, b"sent in epoch 1 by ts-mls")
    late_dl = g.encrypt(dora, b"sent in epoch 1 by Doorless")
    g.self_update(dora)
    g.self_update(alice)
    g.deliver(alice, 0, late_ts, b"sent in epoch 1 by ts-mls", receivers=[dora])
    g.deliver(dora, 1, late_dl, b"sent in epoch 1 by Doorless", receivers=[alice])
    g.check()


# ------------------------------------------------------------------------------------------------
# ts-mls habits and deviations


def test_grease_and_unknown_suites_in_tsmls_key_packages_are_ignored(ts: TsMls) -> None:
    """ts-mls puts random GREASE values (§13.5) in every capabilities list and advertises its
    unregistered suite ids 77-88; RFC 9420 §13 has receivers ignore unknown values in these
    lists (§13.5). Doorless adds such a member and keeps working with it."""
    g = MixedGroup(ts, 1)
    dora = g.create("doorless")
    for _ in range(60):  # each list holds GREASE with probability 0.8; find one with all four
        name = g.new_member("tsmls")
        kp_message = ts.create_key_package(name, 1).key_package
        kp = _key_package(kp_message)
        caps = kp.leaf_node.capabilities
        lists = (caps.cipher_suites, caps.extensions, caps.proposals, caps.credentials)
        if all(GREASE & set(map(int, values)) for values in lists):
            break
    else:
        pytest.fail("ts-mls produced no key package with GREASE in every capabilities list")
    assert {int(s) for s in caps.cipher_suites} >= {77, 88}
    g.add(dora, [name], key_packages=[kp_message])
    g.send(name, b"greased")
    g.self_update(name)


def test_compressed_p256_signature_key_is_rejected(ts: TsMls) -> None:
    """ts-mls's own key generation encodes P-256 signature keys compressed (33 bytes); RFC 9420
    §5.1.1 requires an UncompressedPointRepresentation. Doorless refuses such a KeyPackage
    (and a tree holding one) rather than accept a non-canonical key encoding; ts-mls accepts
    both forms. The interop tests above use the driver's workaround (uncompressed keys)."""
    g = MixedGroup(ts, 2)
    dora = g.create("doorless")
    info = ts.create_key_package(g.new_member("tsmls"), 2, compressed_signature_key=True)
    assert header(info.key_package) == (1, WF_KEY_PACKAGE)
    assert len(info.signature_key) == 33 and info.signature_key[0] in (2, 3)
    kp = _key_package(info.key_package)
    with pytest.raises(ValidationError, match="KeyPackage signature"):
        g.peer(dora).state.commit([Add(kp)], now=g.now)

    # A ts-mls group whose creator has a compressed key: Doorless cannot join it.
    creator = g.new_member("tsmls")
    ts.create_key_package(creator, 2, compressed_signature_key=True)  # fixes its signature key
    ts.create_group(creator, group_id=b"compressed", suite=2)
    joiner = g.new_member("doorless")
    added = ts.add_members(creator, [g.key_package(joiner)], ratchet_tree_extension=True)
    assert added.welcome is not None
    with pytest.raises(ValidationError, match="GroupInfo signature"):
        Group.join_from_welcome(added.welcome, g.peer(joiner).bundle_for(added.welcome), now=g.now)


def test_doorless_uncompressed_p256_keys_accepted_by_tsmls(ts: TsMls) -> None:
    """The other direction: Doorless writes uncompressed P-256 keys (65 bytes, 0x04), which
    ts-mls verifies."""
    g, _alice, dora = mixed_pair(ts, 2, "public")
    key = g.peer(dora).state.own_leaf_node.signature_key
    assert len(key) == 65 and key[0] == 4
    assert cipher_suite(2).signature_public_key(g.peer(dora).signature_private_key.value) == key
    g.self_update(dora)
    g.send(dora, b"signed with an uncompressed key")
