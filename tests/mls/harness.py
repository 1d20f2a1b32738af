"""An in-memory multi-party MLS harness (STYLE.md convention 9): clients and a toy delivery
service, no sockets, no clock.

* `Client`: one party with a signature key, a credential, its KeyPackage bundles and at most
  one `Group` state (the harness tracks one group).
* `DeliveryService`: orders handshake messages of the group and accepts exactly one commit per
  epoch (RFC 9420 §14 "the Delivery Service ... ensures that only one Commit is accepted per
  epoch"). A rejected committer drops its pending commit. Every accepted message is delivered
  to every member except its sender; Welcomes go to the clients whose KeyPackage they name.
* `Harness`: the world. After every step `check()` asserts that all members agree on epoch,
  tree hash, epoch authenticator, an exporter value and the roster.

Randomness is a seeded `random.Random` passed as ``rng`` wherever the group takes one, so a
scenario's choices are reproducible from its seed.
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from doorless.codec import decode, encode
from doorless.crypto import CipherSuite, cipher_suite
from doorless.errors import RemoteError, ValidationError
from doorless.mls.credential import BasicCredential, Credential
from doorless.mls.extensions import Extension
from doorless.mls.framing import (
    AuthenticatedContent,
    FramedContent,
    FramedContentAuthData,
    MLSMessage,
    PublicMessage,
    Sender,
    SenderMember,
    WireFormat,
    peek_routing,
)
from doorless.mls.group import (
    ApplicationMessage,
    CommitOutput,
    Group,
    GroupConfig,
    KeyPackageBundle,
    PendingCommit,
    ProposalMessage,
    PskStore,
    StagedCommit,
    generate_key_package,
)
from doorless.mls.key_package import KeyPackage
from doorless.mls.leaf_node import Capabilities, LeafNode
from doorless.mls.message_protection import membership_tag, sign_framed_content
from doorless.mls.proposals import Add, Commit, Proposal
from doorless.mls.welcome import Welcome
from doorless.secret import PrivateKeyBytes

NOW = 1_700_000_000
EXPORTER_LABEL = b"harness"


def identity(group: Group, leaf: int) -> str:
    node = group.tree.leaf_node(leaf)
    assert node is not None
    assert isinstance(node.credential, BasicCredential)
    return node.credential.identity.decode()


def roster(group: Group) -> dict[str, int]:
    """name -> leaf index, from a member's view of the tree."""
    names = {identity(group, m.leaf_index): int(m.leaf_index) for m in group.members()}
    assert len(names) == group.tree.member_count(), "two leaves with one identity"
    return names


@dataclass
class Client:
    """One party. ``group`` is its current state (None before joining / after removal)."""

    name: str
    suite: CipherSuite
    rng: Callable[[int], bytes]
    config: GroupConfig
    signature_private_key: PrivateKeyBytes = field(init=False)
    credential: BasicCredential = field(init=False)
    group: Group | None = None
    pending: PendingCommit | None = None
    bundles: dict[bytes, KeyPackageBundle] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.new_signature_key()
        self.credential = BasicCredential(self.name.encode())

    def new_signature_key(self) -> None:
        self.signature_private_key = PrivateKeyBytes(
            self.suite.generate_signature_key_pair().private_key
        )

    def key_package(
        self, *, capabilities: Capabilities | None = None, credential: Credential | None = None
    ) -> KeyPackage:
        bundle = generate_key_package(
            self.suite,
            credential or self.credential,
            self.signature_private_key,
            now=NOW,
            capabilities=capabilities,
            rng=self.rng,
        )
        self.bundles[bundle.ref] = bundle
        return bundle.key_package

    def leaf_template(self) -> LeafNode:
        """A leaf node for an external join (its keys are replaced by the commit path)."""
        bundle = generate_key_package(
            self.suite, self.credential, self.signature_private_key, now=NOW, rng=self.rng
        )
        return bundle.key_package.leaf_node

    @property
    def state(self) -> Group:
        assert self.group is not None, f"{self.name} is not a member"
        return self.group


def message_epoch(message: bytes) -> int:
    epoch = peek_routing(message).epoch
    assert epoch is not None
    return epoch


@dataclass
class DeliveryService:
    """Orders the handshake messages of one group; one commit per epoch wins."""

    group_id: bytes
    epoch: int = 0
    log: list[bytes] = field(default_factory=list)
    rejected: int = 0
    group_info: bytes | None = None

    def accept_commit(self, message: bytes) -> bool:
        routing = peek_routing(message)
        if routing.group_id != self.group_id or routing.epoch != self.epoch:
            self.rejected += 1
            return False
        self.epoch += 1
        self.log.append(message)
        return True

    def accept_proposal(self, message: bytes) -> bool:
        routing = peek_routing(message)
        if routing.group_id != self.group_id or routing.epoch != self.epoch:
            return False
        self.log.append(message)
        return True


@dataclass
class SentApplication:
    """An application message in flight: who sent it, in which epoch, to whom, and what."""

    sender: str
    epoch: int
    message: bytes
    data: bytes
    authenticated_data: bytes
    recipients: frozenset[str]


class Harness:
    """The world: clients, one group, one delivery service."""

    def __init__(
        self,
        suite: CipherSuite,
        *,
        seed: int = 0,
        psks: PskStore | None = None,
        group_id: bytes = b"harness group",
    ) -> None:
        self.suite = suite
        self.random = random.Random(seed)
        self.psks = psks if psks is not None else PskStore()
        self.clients: dict[str, Client] = {}
        self.ds = DeliveryService(group_id)
        self.group_id = group_id
        self.steps = 0

    def rng(self, n: int) -> bytes:
        return self.random.randbytes(n)

    # --- parties ---------------------------------------------------------------------------

    def client(self, name: str, config: GroupConfig | None = None) -> Client:
        if name not in self.clients:
            self.clients[name] = Client(name, self.suite, self.rng, config or GroupConfig())
        return self.clients[name]

    def members(self) -> list[Client]:
        return [c for c in self.clients.values() if c.group is not None]

    def member_names(self) -> list[str]:
        return sorted(c.name for c in self.members())

    def leaf_of(self, name: str) -> int:
        return int(self.clients[name].state.own_leaf)

    def create(
        self,
        name: str,
        config: GroupConfig | None = None,
        *,
        extensions: Sequence[Extension] = (),
        capabilities: Capabilities | None = None,
    ) -> Client:
        creator = self.client(name, config)
        kp = creator.key_package(capabilities=capabilities)
        bundle = creator.bundles.pop(next(reversed(creator.bundles)))
        creator.group = Group.create(
            self.suite,
            self.group_id,
            kp.leaf_node,
            bundle.encryption_private_key,
            creator.signature_private_key,
            extensions=extensions,
            rng=self.rng,
            config=creator.config,
        )
        self.ds.group_info = creator.group.group_info()
        self.check()
        return creator

    # --- handshakes ------------------------------------------------------------------------

    def propose(self, name: str, proposal: Proposal | None = None) -> bytes:
        """``name`` sends ``proposal`` (None: an Update of its own leaf); every other member
        caches it."""
        sender = self.clients[name]
        group = sender.state
        if proposal is None:
            new, message = group.propose_update(rng=self.rng)
        else:
            new, message = group.propose(proposal, rng=self.rng)
        assert self.ds.accept_proposal(message)
        sender.group = new
        for member in self.members():
            if member is sender:
                continue
            result = member.state.process(message, psks=self.psks, now=NOW)
            assert isinstance(result, ProposalMessage)
            assert result.ref == new.proposals[-1].ref
            member.group = result.group
        self.check()
        return message

    def make_commit(
        self, name: str, proposals: Sequence[Proposal] = (), **kwargs: object
    ) -> CommitOutput:
        """``name`` creates a commit (not sent yet)."""
        committer = self.clients[name]
        kwargs.setdefault("psks", self.psks)
        kwargs.setdefault("now", NOW)
        out = committer.state.commit(proposals, rng=self.rng, **kwargs)  # type: ignore[arg-type]
        committer.pending = out.pending
        return out

    def submit(self, name: str, out: CommitOutput) -> StagedCommit | None:
        """Hand ``out`` to the delivery service. Accepted: the committer merges, every other
        member processes and merges, new members join from the Welcome. Rejected: the
        committer drops its pending commit. Returns one receiver's StagedCommit (None when
        rejected or when the committer is alone)."""
        committer = self.clients[name]
        if not self.ds.accept_commit(out.commit):
            committer.pending = None
            return None
        staged = self._deliver_commit(out.commit, committer)
        assert committer.pending is out.pending
        committer.group = committer.state.merge_pending_commit(out.pending)
        committer.pending = None
        self.ds.group_info = out.group_info
        if out.welcome is not None:
            tree = None if committer.config.ratchet_tree_in_welcome else committer.state.tree
            self._deliver_welcome(out.welcome, None if tree is None else tree.encode())
        self.check()
        return staged

    def commit(
        self, name: str, proposals: Sequence[Proposal] = (), **kwargs: object
    ) -> StagedCommit | None:
        out = self.make_commit(name, proposals, **kwargs)
        staged = self.submit(name, out)
        return staged

    def _deliver_commit(self, message: bytes, sender: Client | None) -> StagedCommit | None:
        staged: StagedCommit | None = None
        for member in self.members():
            if member is sender:
                continue
            before = member.state.to_bytes()
            result = member.state.process(message, psks=self.psks, now=NOW)
            assert isinstance(result, StagedCommit)
            # Processing changed nothing in the old state (I4: stage, then merge).
            assert member.state.to_bytes() == before
            if result.self_removed:
                # A removed member cannot follow the group into the new epoch (§12.4.2).
                assert result.group.epoch == member.state.epoch
                member.group = None
            else:
                member.group = member.state.merge_staged_commit(result)
            member.pending = None  # a concurrent commit of ours lost
            if staged is None or not result.self_removed:
                staged = result
        return staged

    def _deliver_welcome(self, welcome: bytes, ratchet_tree: bytes | None) -> None:
        body = decode(MLSMessage, welcome).body
        assert isinstance(body, Welcome)
        joined = 0
        for entry in body.secrets:
            owner = next(c for c in self.clients.values() if entry.new_member in c.bundles)
            bundle = owner.bundles.pop(entry.new_member)
            assert owner.group is None, f"{owner.name} is already a member"
            owner.group = Group.join_from_welcome(
                welcome,
                bundle,
                ratchet_tree=ratchet_tree,
                psks=self.psks,
                now=NOW,
                config=owner.config,
            )
            joined += 1
        assert joined == len(body.secrets)

    def external_join(self, name: str, *, resync: bool = False) -> StagedCommit | None:
        """``name`` joins by external commit from the delivery service's GroupInfo; with
        ``resync`` it is a member that lost its state and replaces its old leaf."""
        group, message = self.make_external_join(name, resync=resync)
        return self.submit_external_join(name, group, message)

    def make_external_join(self, name: str, *, resync: bool = False) -> tuple[Group, bytes]:
        """``name``'s external commit (not sent yet) and its state once accepted."""
        joiner = self.client(name)
        resync_leaf: int | None = None
        if resync:
            resync_leaf = self.leaf_of(name)
            joiner.group = None  # "lost" state: it must not be used any more
        else:
            assert joiner.group is None
        assert self.ds.group_info is not None
        joiner.new_signature_key()
        return Group.join_external(
            self.ds.group_info,
            joiner.leaf_template(),
            joiner.signature_private_key,
            resync_leaf=resync_leaf,
            rng=self.rng,
            now=NOW,
            config=joiner.config,
        )

    def submit_external_join(self, name: str, group: Group, message: bytes) -> StagedCommit | None:
        """Hand an external commit to the delivery service (None if another commit won)."""
        if not self.ds.accept_commit(message):
            return None
        joiner = self.clients[name]
        staged = self._deliver_commit(message, joiner)
        joiner.group = group
        self.ds.group_info = group.group_info()
        self.check()
        return staged

    # --- application messages -----------------------------------------------------------------

    def send(self, name: str, data: bytes | None = None, aad: bytes = b"") -> SentApplication:
        sender = self.clients[name]
        if data is None:
            data = self.rng(self.random.randrange(0, 64))
        new, message = sender.state.encrypt(data, authenticated_data=aad, rng=self.rng)
        sender.group = new
        recipients = frozenset(m.name for m in self.members() if m is not sender)
        return SentApplication(name, sender.state.epoch, message, data, aad, recipients)

    def deliver(self, sent: SentApplication) -> int:
        """Deliver ``sent`` to its recipients that are still members and still hold that
        epoch's keys; returns how many decrypted it."""
        delivered = 0
        for member in self.members():
            if member.name not in sent.recipients:
                continue
            group = member.state
            if sent.epoch != group.epoch and not any(
                p.group_context.epoch == sent.epoch for p in group.past_epochs
            ):
                continue
            result = group.process(sent.message, psks=self.psks, now=NOW)
            assert isinstance(result, ApplicationMessage)
            assert result.data == sent.data
            assert result.authenticated_data == sent.authenticated_data
            assert result.epoch == sent.epoch
            assert isinstance(result.credential, BasicCredential)
            assert result.credential.identity == sent.sender.encode()
            member.group = result.group
            delivered += 1
        return delivered

    # --- state ------------------------------------------------------------------------------

    def round_trip(self, name: str) -> None:
        """Persist ``name``'s state and restore it (the store round trip)."""
        client = self.clients[name]
        data = client.state.to_bytes()
        restored = Group.from_bytes(data, config=client.config)
        assert restored.to_bytes() == data
        client.group = restored
        self.check()

    def check(self) -> None:
        """Every member agrees on epoch, tree hash, epoch authenticator, an exporter value and
        the roster; the roster is exactly the clients holding a state; the DS agrees on the
        epoch."""
        self.steps += 1
        members = self.members()
        assert members, "the group is empty"
        first = members[0].state
        names = roster(first)
        assert sorted(names) == self.member_names()
        expected = (
            first.epoch,
            first.tree.tree_hash(),
            first.epoch_authenticator,
            first.export_secret(EXPORTER_LABEL, b"", 32),
            first.group_context,
        )
        assert first.epoch == self.ds.epoch
        for member in members:
            group = member.state
            got = (
                group.epoch,
                group.tree.tree_hash(),
                group.epoch_authenticator,
                group.export_secret(EXPORTER_LABEL, b"", 32),
                group.group_context,
            )
            assert got == expected, f"{member.name} disagrees with {members[0].name}"
            assert roster(group) == names
            assert identity(group, group.own_leaf) == member.name
            assert group.own_leaf_node.signature_key == self.suite.signature_public_key(
                member.signature_private_key.value
            )
            group.private_keys.check_consistent(group.tree)

    def still_works(self, name: str) -> None:
        """``name``'s current state (the one a rejected input was offered to) keeps working:
        it sends, receives and follows a commit with everyone."""
        others = [n for n in self.member_names() if n != name]
        self.commit(others[0] if others else name)  # also commits any pending proposals
        assert self.deliver(self.send(name)) == len(others)
        if others:
            assert self.deliver(self.send(others[0])) == len(others)


def make_group(
    names: str,
    config: GroupConfig | None = None,
    *,
    suite_id: int = 1,
    psks: PskStore | None = None,
    extensions: Sequence[Extension] = (),
    capabilities: Capabilities | None = None,
) -> Harness:
    """A group of single-letter members: the first creates it and adds the others."""
    h = Harness(cipher_suite(suite_id), seed=len(names), psks=psks)
    h.create(names[0], config, extensions=extensions, capabilities=capabilities)
    for n in names[1:]:
        h.client(n, config)
    if len(names) > 1:
        h.commit(
            names[0],
            [Add(h.clients[n].key_package(capabilities=capabilities)) for n in names[1:]],
        )
    return h


def assert_rejected(
    group: Group,
    message: bytes,
    error: type[RemoteError],
    match: str | None = None,
    *,
    rule: str | None = None,
    psks: PskStore | None = None,
) -> RemoteError:
    """``group.process(message)`` raises ``error`` (citing ``rule``, a section of RFC 9420)
    and the state is exactly as before (I4)."""
    before = group.to_bytes()
    try:
        group.process(message, psks=psks or PskStore(), now=NOW)
    except error as exc:
        if match is not None:
            assert re.search(match, str(exc)), f"{exc!r} does not match {match!r}"
        if rule is not None:
            assert isinstance(exc, ValidationError)
            assert exc.rule == f"RFC9420 {rule}", exc.rule
        assert group.to_bytes() == before
        return exc
    raise AssertionError(f"no {error.__name__} raised")


# --- forging (for negative tests) -----------------------------------------------------------
#
# A malicious insider holds the epoch's keys, so it can sign, tag and encrypt anything. These
# helpers build such messages without the sender-side checks of `Group`, so the *receiver's*
# checks are what the negative tests exercise.


def forge(
    group: Group,
    content: bytes | Proposal | Commit,
    *,
    wire_format: WireFormat = WireFormat.mls_public_message,
    sender: Sender | None = None,
    signature_private_key: PrivateKeyBytes | None = None,
    confirmation_tag: bytes | None = None,
    authenticated_data: bytes = b"",
    rng: Callable[[int], bytes] = os.urandom,
) -> bytes:
    """An MLSMessage from ``group``'s member (or ``sender``) carrying ``content``, signed with
    ``signature_private_key`` (default: the member's), membership-tagged with the epoch's key
    (member senders of PublicMessages) and, for PrivateMessages, encrypted with the epoch's
    secret tree. A commit gets ``confirmation_tag`` (default: zeros, i.e. wrong)."""
    suite = group.suite
    framed = FramedContent(
        group.group_id,
        group.epoch,
        sender if sender is not None else SenderMember(group.own_leaf),
        authenticated_data,
        content,
    )
    key = signature_private_key or group._signature_private_key
    signature = sign_framed_content(suite, key.value, wire_format, framed, group.group_context)
    tag = None
    if isinstance(content, Commit):
        tag = confirmation_tag if confirmation_tag is not None else bytes(suite.hash_length)
    auth = AuthenticatedContent(wire_format, framed, FramedContentAuthData(signature, tag))
    if wire_format == WireFormat.mls_private_message:
        return group._protect_private(auth, rng)[1]
    return encode(MLSMessage(with_membership_tag(group, auth)))


def with_membership_tag(group: Group, auth: AuthenticatedContent) -> PublicMessage:
    """``auth`` as a PublicMessage, membership-tagged with ``group``'s epoch key if needed."""
    tag = None
    if isinstance(auth.content.sender, SenderMember):
        tag = membership_tag(
            group.suite, group.epoch_secrets.membership_key, auth, group.group_context
        )
    return PublicMessage(auth.content, auth.auth, tag)


def public_body(message: bytes) -> PublicMessage:
    body = decode(MLSMessage, message).body
    assert isinstance(body, PublicMessage)
    return body


def retag(group: Group, message: bytes, **auth_changes: bytes) -> bytes:
    """A PublicMessage with its auth data changed (signature / confirmation_tag) and a valid
    membership tag again, as an insider could produce."""
    body = public_body(message)
    auth = AuthenticatedContent(
        WireFormat.mls_public_message, body.content, replace(body.auth, **auth_changes)
    )
    return encode(MLSMessage(with_membership_tag(group, auth)))


def flip(data: bytes, index: int = -1) -> bytes:
    """``data`` with one bit of byte ``index`` flipped."""
    b = bytearray(data)
    b[index] ^= 0x01
    return bytes(b)
