"""A mixed MLS group for the interop tests: Doorless members and ts-mls members side by side.

* Doorless members are in-process `DoorlessPeer` objects (a signature key, KeyPackage bundles and
  one `doorless.mls.group.Group` state); ts-mls members live in the `TsMls` driver under their name.
* `MixedGroup` is a toy delivery service: every commit, proposal and application message one
  member makes is handed, as bytes, to every other member, whatever its implementation, and the
  result is checked (content type, sender leaf, plaintext, roster changes, removal).
* `MixedGroup.check()` runs after every step and asserts that every member, of both
  implementations, agrees on the epoch, the epoch authenticator (RFC 9420 §8.7), an exporter
  value (§8.5), the encoded GroupContext (tree hash and confirmed transcript hash, §8.1), the
  encoded ratchet tree (§12.4.3.3) and the roster (leaf index, identity, signature key).

Handshake messages use the group's wire format (``"private"`` or ``"public"``, RFC 9420 §6) on
both sides; external commits are always PublicMessages (§12.4.3.2).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from tsmls import TsMls, WireFormat

from doorless.codec import Reader, decode, encode
from doorless.crypto import CipherSuite, cipher_suite
from doorless.mls.credential import BasicCredential
from doorless.mls.framing import MLSMessage, SenderMember, SenderNewMemberCommit
from doorless.mls.group import (
    ApplicationMessage,
    Group,
    GroupConfig,
    KeyPackageBundle,
    Member,
    ProposalMessage,
    StagedCommit,
    generate_key_package,
)
from doorless.mls.key_package import KeyPackage
from doorless.mls.leaf_node import LeafNode
from doorless.mls.proposals import Add, Proposal, Remove
from doorless.mls.welcome import Welcome
from doorless.secret import PrivateKeyBytes

Impl = Literal["doorless", "tsmls"]

# RFC 9420 §6: MLSMessage wire formats.
WF_PUBLIC, WF_PRIVATE, WF_WELCOME, WF_GROUP_INFO, WF_KEY_PACKAGE = 1, 2, 3, 4, 5
WIRE_FORMAT_ID: dict[WireFormat, int] = {"public": WF_PUBLIC, "private": WF_PRIVATE}

EXPORTER_LABEL = "doorless ts-mls interop"
EXPORTER_CONTEXT = bytes(range(16))
EXPORTER_LENGTH = 42  # not a hash length, so a truncation bug would show

_names = itertools.count()


def fresh(prefix: str) -> str:
    """A member name unused in this driver process (the driver is shared per test module)."""
    return f"{prefix}{next(_names)}"


def header(message: bytes) -> tuple[int, int]:
    """(version, wire_format) of an MLSMessage, read by hand (RFC 9420 §6)."""
    r = Reader(message)
    return r.pull_uint16(), r.pull_uint16()


def _key_package(message: bytes) -> KeyPackage:
    body = decode(MLSMessage, message).body
    assert isinstance(body, KeyPackage)
    return body


def identity_of(member: Member) -> bytes:
    assert isinstance(member.credential, BasicCredential)
    return member.credential.identity


@dataclass
class DoorlessPeer:
    """One Doorless client: a signature key, a basic credential (its name), KeyPackage bundles
    by reference, and at most one group state."""

    name: str
    suite: CipherSuite
    config: GroupConfig
    now: int
    credential: BasicCredential = field(init=False)
    signature_private_key: PrivateKeyBytes = field(init=False)
    bundles: dict[bytes, KeyPackageBundle] = field(default_factory=dict)
    group: Group | None = None

    def __post_init__(self) -> None:
        self.credential = BasicCredential(self.name.encode())
        self.signature_private_key = PrivateKeyBytes(
            self.suite.generate_signature_key_pair().private_key
        )

    def new_bundle(self) -> KeyPackageBundle:
        bundle = generate_key_package(
            self.suite, self.credential, self.signature_private_key, now=self.now
        )
        self.bundles[bundle.ref] = bundle
        return bundle

    def key_package(self) -> bytes:
        """A fresh KeyPackage as an MLSMessage."""
        return encode(MLSMessage(self.new_bundle().key_package))

    def leaf_template(self) -> LeafNode:
        """A leaf node for an external join (the commit path replaces its keys)."""
        return self.new_bundle().key_package.leaf_node

    def bundle_for(self, welcome: bytes) -> KeyPackageBundle:
        """The bundle a Welcome is addressed to (used once, RFC 9420 §16.8)."""
        body = decode(MLSMessage, welcome).body
        assert isinstance(body, Welcome)
        for ref in list(self.bundles):
            if body.secrets_for(ref) is not None:
                return self.bundles.pop(ref)
        raise AssertionError(f"the Welcome names none of {self.name}'s key packages")

    @property
    def state(self) -> Group:
        assert self.group is not None, f"{self.name} is in no group"
        return self.group


@dataclass(frozen=True)
class View:
    """What every member of one epoch must agree on."""

    epoch: int
    epoch_authenticator: bytes
    exporter: bytes
    group_context: bytes
    ratchet_tree: bytes
    roster: tuple[tuple[int, bytes, bytes], ...]  # (leaf index, identity, signature key)


class MixedGroup:
    """One MLS group whose members are Doorless and ts-mls clients."""

    def __init__(
        self,
        ts: TsMls,
        suite: int,
        wire_format: WireFormat = "private",
        *,
        ratchet_tree_in_welcome: bool = True,
        grease: bool = True,
    ) -> None:
        self.ts = ts
        self.suite_id = suite
        self.suite = cipher_suite(suite)
        self.wire_format: WireFormat = wire_format
        # ts-mls checks key package lifetimes against the wall clock; Doorless gets the same time.
        self.now = int(time.time())
        self.config = GroupConfig(
            private_handshakes=wire_format == "private",
            ratchet_tree_in_welcome=ratchet_tree_in_welcome,
        )
        self.grease = grease
        self.doorless: dict[str, DoorlessPeer] = {}
        self.members: list[str] = []  # current members, in joining order
        self.group_id = fresh("mixed group ").encode()
        self.current_epoch = 0
        self.steps = 0

    # --- members ---------------------------------------------------------------------------

    def impl(self, name: str) -> Impl:
        return "doorless" if name in self.doorless else "tsmls"

    def peer(self, name: str) -> DoorlessPeer:
        return self.doorless[name]

    def new_member(self, impl: Impl, prefix: str | None = None) -> str:
        """A new client (not yet in the group)."""
        name = fresh(prefix or ("dl" if impl == "doorless" else "ts"))
        if impl == "doorless":
            self.doorless[name] = DoorlessPeer(name, self.suite, self.config, self.now)
        return name

    def key_package(self, name: str) -> bytes:
        if self.impl(name) == "doorless":
            return self.peer(name).key_package()
        info = self.ts.create_key_package(name, self.suite_id, grease=self.grease)
        return info.key_package

    def leaf_of(self, name: str) -> int:
        """``name``'s leaf index, from its own state."""
        if self.impl(name) == "doorless":
            return int(self.peer(name).state.own_leaf)
        return self.ts.group_summary(name).leaf_index

    def create(self, impl: Impl) -> str:
        name = self.new_member(impl, "creator")
        if impl == "doorless":
            peer = self.peer(name)
            bundle = peer.new_bundle()
            del peer.bundles[bundle.ref]
            peer.group = Group.create(
                self.suite,
                self.group_id,
                bundle.key_package.leaf_node,
                bundle.encryption_private_key,
                peer.signature_private_key,
                config=self.config,
            )
        else:
            epoch = self.ts.create_group(
                name, group_id=self.group_id, suite=self.suite_id, grease=self.grease
            )
            assert epoch == 0
        self.members.append(name)
        self.check()
        return name

    # --- commits ---------------------------------------------------------------------------

    def add(
        self,
        committer: str,
        new: Sequence[str],
        *,
        ratchet_tree_extension: bool | None = None,
        ratchet_tree_out_of_band: bool = False,
        force_path: bool = True,
        key_packages: Sequence[bytes] | None = None,
    ) -> None:
        """``committer`` adds the clients ``new`` in one commit; they join from its Welcome.
        ``ratchet_tree_extension``: for a ts-mls committer, put the tree in the Welcome
        (default: the group's ``ratchet_tree_in_welcome``); Doorless committers follow their
        config. ``ratchet_tree_out_of_band``: hand the joiners the tree even if the Welcome has
        it. ``force_path=False``: a Doorless committer leaves the optional UpdatePath out, as
        ts-mls does for add-only commits (§12.4). ``key_packages``: the joiners' KeyPackages
        (MLSMessages) if already made, else fresh ones."""
        if key_packages is None:
            key_packages = [self.key_package(n) for n in new]
        if ratchet_tree_extension is None:
            ratchet_tree_extension = self.config.ratchet_tree_in_welcome
        if self.impl(committer) == "tsmls":
            result = self.ts.add_members(
                committer,
                list(key_packages),
                wire_format=self.wire_format,
                ratchet_tree_extension=ratchet_tree_extension,
            )
            commit, welcome = result.commit, result.welcome
        else:
            commit, welcome = self._doorless_commit(
                committer, [Add(_key_package(kp)) for kp in key_packages], force_path=force_path
            )
        tree_in_welcome = (
            ratchet_tree_extension
            if self.impl(committer) == "tsmls"
            else self.config.ratchet_tree_in_welcome
        )
        self._finish_commit(
            committer,
            commit,
            welcome,
            added=new,
            tree_out_of_band=ratchet_tree_out_of_band or not tree_in_welcome,
        )
        self._step()

    def self_update(self, committer: str) -> None:
        """An empty commit with an UpdatePath (fresh leaf and path secrets, RFC 9420 §12.4)."""
        if self.impl(committer) == "tsmls":
            commit = self.ts.self_update(committer, wire_format=self.wire_format).commit
        else:
            commit, _ = self._doorless_commit(committer, [])
        self._deliver_commit(committer, commit, updated=[committer])
        self._step()

    def remove(self, committer: str, victim: str) -> None:
        leaf = self.leaf_of(victim)
        if self.impl(committer) == "tsmls":
            commit = self.ts.remove_member(committer, leaf, wire_format=self.wire_format).commit
        else:
            commit, _ = self._doorless_commit(committer, [Remove(leaf)])
        self._deliver_commit(committer, commit, removed=[victim])
        self._step()

    def propose(self, proposer: str, proposal: Proposal | None = None) -> None:
        """A Doorless member sends ``proposal`` (None: an Update of its own leaf, §12.1.2);
        every other member caches it. (The ts-mls driver has no method to send proposals, and
        ts-mls 1.6.4 has no API to make an Update leaf node.)"""
        peer = self.peer(proposer)
        leaf = self.leaf_of(proposer)
        if proposal is None:
            peer.group, message = peer.state.propose_update()
        else:
            peer.group, message = peer.state.propose(proposal)
        assert header(message) == (1, WIRE_FORMAT_ID[self.wire_format])
        for name in self.members:
            if name == proposer:
                continue
            if self.impl(name) == "tsmls":
                got = self.ts.process_message(name, message)
                assert (got.kind, got.sender_leaf, got.epoch) == (
                    "proposal",
                    leaf,
                    self.current_epoch,
                )
            else:
                other = self.peer(name)
                result = other.state.process(message, now=self.now)
                assert isinstance(result, ProposalMessage)
                assert result.ref == peer.state.proposals[-1].ref
                other.group = result.group

    def propose_update(self, proposer: str) -> None:
        self.propose(proposer, None)

    def commit_pending(
        self,
        committer: str,
        *,
        updated: Sequence[str] = (),
        added: Sequence[str] = (),
        removed: Sequence[str] = (),
        unnotified: Sequence[str] = (),
    ) -> None:
        """``committer`` commits every cached proposal by reference (ts-mls's createCommit always
        includes them; Doorless's ``commit(include_pending=True)``), with a path. ``updated``,
        ``added``, ``removed``: the members those proposals concern (an Add's joiner joins from
        the Welcome, with the tree out of band: the driver's self_update puts none in it).
        ``unnotified``: removed members that are not handed the commit."""
        welcome: bytes | None
        if self.impl(committer) == "tsmls":
            result = self.ts.self_update(committer, wire_format=self.wire_format)
            commit, welcome = result.commit, result.welcome
        else:
            assert self.peer(committer).state.proposals, "nothing to commit by reference"
            commit, welcome = self._doorless_commit(committer, [])
        self._finish_commit(
            committer,
            commit,
            welcome,
            added=added,
            removed=removed,
            updated=[*updated, committer],
            by_reference=True,
            tree_out_of_band=True,
            unnotified=unnotified,
        )
        self._step()

    def join_external(
        self,
        via: str,
        *,
        ratchet_tree_extension: bool = True,
        resync: str | None = None,
    ) -> str:
        """A Doorless client joins by external commit (RFC 9420 §12.4.3.2) with ``via``'s
        GroupInfo; ``resync``: an existing Doorless member rejoins, removing its old leaf."""
        if self.impl(via) == "tsmls":
            group_info = self.ts.group_info(via, ratchet_tree_extension=ratchet_tree_extension)
        else:
            assert ratchet_tree_extension == self.config.ratchet_tree_in_welcome
            group_info = self.peer(via).state.group_info()
        assert header(group_info) == (1, WF_GROUP_INFO)
        tree = None if ratchet_tree_extension else self._ratchet_tree(via)
        name = resync or self.new_member("doorless", "external")
        peer = self.peer(name)
        old_leaf = None if resync is None else self.leaf_of(resync)
        group, commit = Group.join_external(
            group_info,
            peer.leaf_template(),
            peer.signature_private_key,
            ratchet_tree=tree,
            resync_leaf=old_leaf,
            now=self.now,
            config=self.config,
        )
        assert header(commit) == (1, WF_PUBLIC)  # §12.4.3.2: always a PublicMessage
        receivers = [m for m in self.members if m != resync]
        # Doorless reports an external joiner as an addition to the roster (I3).
        self._deliver_commit(
            None,
            commit,
            receivers=receivers,
            added=[name],
            removed=[resync] if resync else [],
            external=True,
        )
        peer.group = group
        self.members.append(name)  # a resync's old leaf left the list with the Remove
        self._step()
        return name

    # --- application messages ------------------------------------------------------------------

    def encrypt(self, sender: str, data: bytes, authenticated_data: bytes = b"") -> bytes:
        if self.impl(sender) == "tsmls":
            message = self.ts.encrypt(sender, data, authenticated_data=authenticated_data)
        else:
            peer = self.peer(sender)
            peer.group, message = peer.state.encrypt(data, authenticated_data=authenticated_data)
        assert header(message) == (1, WF_PRIVATE)
        return message

    def deliver(
        self,
        sender: str,
        sender_leaf: int,
        message: bytes,
        data: bytes,
        authenticated_data: bytes = b"",
        *,
        receivers: Sequence[str] | None = None,
    ) -> None:
        for name in self.members if receivers is None else receivers:
            if name == sender:
                continue
            if self.impl(name) == "tsmls":
                got = self.ts.process_message(name, message)
                assert (got.kind, got.application_data, got.sender_leaf) == (
                    "application",
                    data,
                    sender_leaf,
                )
            else:
                peer = self.peer(name)
                result = peer.state.process(message, now=self.now)
                assert isinstance(result, ApplicationMessage)
                assert (result.data, result.authenticated_data, result.sender) == (
                    data,
                    authenticated_data,
                    sender_leaf,
                )
                assert result.credential == BasicCredential(sender.encode())
                peer.group = result.group

    def send(self, sender: str, data: bytes, authenticated_data: bytes = b"") -> None:
        """``sender`` encrypts ``data``; every other member decrypts it."""
        leaf = self.leaf_of(sender)
        message = self.encrypt(sender, data, authenticated_data)
        self.deliver(sender, leaf, message, data, authenticated_data)

    def chat(self) -> None:
        """Every member sends one message to all the others."""
        for name in list(self.members):
            self.send(
                name, f"epoch {self.current_epoch}: hello from {name}".encode(), name.encode()
            )

    # --- agreement -------------------------------------------------------------------------

    def view(self, name: str) -> View:
        if self.impl(name) == "tsmls":
            summary = self.ts.group_summary(name)
            return View(
                summary.epoch,
                self.ts.epoch_authenticator(name),
                self.ts.export_secret(name, EXPORTER_LABEL, EXPORTER_CONTEXT, EXPORTER_LENGTH),
                summary.group_context,
                self.ts.ratchet_tree(name),
                tuple((m.leaf_index, m.identity, m.signature_key) for m in summary.members),
            )
        group = self.peer(name).state
        return View(
            group.epoch,
            group.epoch_authenticator,
            group.export_secret(EXPORTER_LABEL.encode(), EXPORTER_CONTEXT, EXPORTER_LENGTH),
            encode(group.group_context),
            group.tree.encode(),
            tuple((int(m.leaf_index), identity_of(m), m.signature_key) for m in group.members()),
        )

    def check(self) -> View:
        """Every member agrees on everything in `View`, and the roster is ``members``."""
        views = {name: self.view(name) for name in self.members}
        first_name, first = next(iter(views.items()))
        for name, view in views.items():
            for attribute in View.__dataclass_fields__:
                mine, theirs = getattr(view, attribute), getattr(first, attribute)
                assert mine == theirs, (
                    f"step {self.steps}: {name} ({self.impl(name)}) and {first_name} "
                    f"({self.impl(first_name)}) disagree on {attribute}"
                )
        assert sorted(identity for _, identity, _ in first.roster) == sorted(
            name.encode() for name in self.members
        )
        assert first.epoch == self.current_epoch
        assert first.exporter != bytes(EXPORTER_LENGTH)
        return first

    # --- internals -------------------------------------------------------------------------

    def _step(self) -> None:
        self.steps += 1
        self.check()

    def _ratchet_tree(self, name: str) -> bytes:
        if self.impl(name) == "tsmls":
            return self.ts.ratchet_tree(name)
        return self.peer(name).state.tree.encode()

    def _doorless_commit(
        self, committer: str, proposals: Sequence[Proposal], *, force_path: bool = True
    ) -> tuple[bytes, bytes | None]:
        """A Doorless commit, merged at once (the toy delivery service accepts every commit)."""
        peer = self.peer(committer)
        out = peer.state.commit(proposals, force_path=force_path, now=self.now)
        peer.group = peer.state.merge_pending_commit(out.pending)
        return out.commit, out.welcome

    def _finish_commit(
        self,
        committer: str,
        commit: bytes,
        welcome: bytes | None,
        *,
        added: Sequence[str] = (),
        removed: Sequence[str] = (),
        updated: Sequence[str] = (),
        by_reference: bool = False,
        tree_out_of_band: bool = False,
        unnotified: Sequence[str] = (),
    ) -> None:
        """Deliver a commit; the clients it added join from ``welcome``."""
        if added:
            assert welcome is not None and header(welcome) == (1, WF_WELCOME)
        else:
            assert welcome is None
        self._deliver_commit(
            committer,
            commit,
            added=added,
            removed=removed,
            updated=updated,
            by_reference=by_reference,
            unnotified=unnotified,
        )
        tree = self._ratchet_tree(committer) if tree_out_of_band else None
        for name in added:
            assert welcome is not None
            self._join(name, welcome, tree)

    def _deliver_commit(
        self,
        committer: str | None,
        commit: bytes,
        *,
        receivers: Sequence[str] | None = None,
        added: Sequence[str] = (),
        removed: Sequence[str] = (),
        updated: Sequence[str] = (),
        by_reference: bool = False,
        external: bool = False,
        unnotified: Sequence[str] = (),
    ) -> None:
        """Every member but the committer (and the removed ``unnotified`` ones) processes
        ``commit``; the roster changes Doorless reports, and ts-mls's view of the sender and
        of its own removal, are checked."""
        assert set(unnotified) <= set(removed)
        if not external:
            assert header(commit) == (1, WIRE_FORMAT_ID[self.wire_format])
        # A member's own commit never moves its leaf (only external joiners get a new one).
        committer_leaf = None if committer is None else self.leaf_of(committer)
        old_epoch = self.current_epoch
        targets = [
            m
            for m in (self.members if receivers is None else receivers)
            if m != committer and m not in unnotified
        ]
        for name in targets:
            gone = name in removed
            if self.impl(name) == "tsmls":
                got = self.ts.process_message(name, commit)
                assert got.kind == "commit" and got.removed == gone
                if committer_leaf is not None:
                    assert got.sender_leaf == committer_leaf
                assert got.epoch == (old_epoch if gone else old_epoch + 1)
                continue
            peer = self.peer(name)
            staged = peer.state.process(commit, now=self.now)
            assert isinstance(staged, StagedCommit)
            assert staged.self_removed == gone
            assert isinstance(staged.sender, SenderNewMemberCommit if external else SenderMember)
            assert sorted(identity_of(m) for m in staged.added) == sorted(n.encode() for n in added)
            assert sorted(identity_of(m) for m in staged.removed) == sorted(
                n.encode() for n in removed
            )
            if by_reference:
                # The proposals committed by reference are in the staged commit's list.
                assert staged.proposals
            if not gone:  # a removed member's StagedCommit stops before the path
                assert {identity_of(m) for m in staged.updated} >= {
                    n.encode() for n in updated if n not in removed
                }
            if gone:
                peer.group = None
            else:
                peer.group = peer.state.merge_staged_commit(staged)
        for name in removed:
            self.members.remove(name)
        self.current_epoch += 1

    def _join(self, name: str, welcome: bytes, ratchet_tree: bytes | None) -> None:
        if self.impl(name) == "tsmls":
            joined = self.ts.join_from_welcome(name, welcome, ratchet_tree=ratchet_tree)
            assert joined.group_id == self.group_id
        else:
            peer = self.peer(name)
            peer.group = Group.join_from_welcome(
                welcome,
                peer.bundle_for(welcome),
                ratchet_tree=ratchet_tree,
                now=self.now,
                config=self.config,
            )
        self.members.append(name)
