"""Value types of the MLS group API (RFC 9420 §8.4, §12, §14), shared by the lifecycle modules.

Owns: the member's local policy (`GroupConfig`), the PSKs the application holds (`PskStore`),
the pieces of member state that are not the tree (`CachedProposal` §12.1, `PastEpoch` §14), and
the results of processing and committing (`ApplicationMessage`, `ProposalMessage`,
`StagedCommit` §12.4.2, `PendingCommit`/`CommitOutput` §12.4.1, `OpenedWelcome` §12.4.3.1).
No behaviour beyond encoding; every type is immutable.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from doorless.codec import Reader, Writer, encode
from doorless.crypto import CipherSuite
from doorless.errors import ValidationError
from doorless.mls.credential import Credential
from doorless.mls.framing import MLSMessage, Sender, pull_sender, push_sender
from doorless.mls.group_context import GroupContext
from doorless.mls.proposals import (
    Proposal,
    ProposalRef,
    ReInit,
    pull_proposal,
    push_proposal,
)
from doorless.mls.ratchet_tree import RatchetTree
from doorless.mls.schedule import SenderDataSecret
from doorless.mls.secret_tree import SecretTree, SecretTreeConfig
from doorless.mls.tree_math import LeafIndex
from doorless.mls.welcome import GroupInfo, GroupSecrets
from doorless.secret import JoinerSecret, PskSecret

if TYPE_CHECKING:
    from doorless.mls.group import Group

Rng = Callable[[int], bytes]

WELCOME_LABEL = b"Welcome"


def rule(message: str, section: str) -> ValidationError:
    """A `ValidationError` naming the RFC 9420 section whose rule was broken."""
    return ValidationError(message, rule=f"RFC9420 {section}")


# --- configuration and PSKs -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GroupConfig:
    """Local policy of one member (not agreed with the group).

    ``padding_block``: PrivateMessage plaintexts are padded to a multiple of this (§6.3.1,
    hides lengths); ``private_handshakes``: send proposals and commits as PrivateMessage (hides
    the roster from the delivery service, §6); ``max_past_epochs``: how many previous epochs'
    secrets are kept to decrypt late application messages (§14 trade-off against forward
    secrecy); ``resumption_psk_epochs``: how many epochs of resumption PSKs are kept (§8.6).
    ``padding_buckets`` (ascending sizes): if set, a PrivateMessage's plaintext is padded to
    the smallest bucket that holds it (beyond the largest, to a multiple of it) instead, so
    that messages of different purposes look alike to the delivery service (§6.3.1).
    """

    padding_block: int = 32
    padding_buckets: tuple[int, ...] = ()
    private_handshakes: bool = True
    max_past_epochs: int = 2
    resumption_psk_epochs: int = 8
    secret_tree: SecretTreeConfig = field(default_factory=SecretTreeConfig)
    ratchet_tree_in_welcome: bool = True
    external_pub_in_group_info: bool = True


@dataclass(frozen=True, slots=True)
class PskStore:
    """Pre-shared keys the application holds (§8.4): external PSKs by id, and resumption PSKs
    of *other* groups by (group_id, epoch). This group's own resumption PSKs come from its state."""

    external: Mapping[bytes, bytes] = field(default_factory=dict)
    resumption: Mapping[tuple[bytes, int], bytes] = field(default_factory=dict)


NO_PSKS = PskStore()


# --- state pieces --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CachedProposal:
    """A proposal received (or sent) in the current epoch, retrievable by reference (§12.1)."""

    ref: ProposalRef
    proposal: Proposal
    sender: Sender

    def push(self, w: Writer) -> None:
        w.push_opaque(self.ref)
        push_proposal(w, self.proposal)
        push_sender(w, self.sender)

    @classmethod
    def pull(cls, r: Reader) -> CachedProposal:
        return cls(ProposalRef(r.pull_opaque()), pull_proposal(r), pull_sender(r))


@dataclass(frozen=True, slots=True, repr=False, eq=False)
class PastEpoch:
    """What is kept of an earlier epoch to decrypt late application messages (§14)."""

    group_context: GroupContext
    sender_data_secret: SenderDataSecret
    secret_tree: SecretTree
    signature_keys: tuple[tuple[int, bytes, Credential], ...] = ()
    # The epoch's tree, when the epoch was left in this process: merged trees are never changed,
    # so keeping it costs nothing, where copying every member's key cost O(n) per epoch.
    tree: RatchetTree | None = None

    def __repr__(self) -> str:
        return f"PastEpoch(epoch={self.group_context.epoch})"

    def members(self) -> tuple[tuple[int, bytes, Credential], ...]:
        """(leaf index, signature key, credential) of every member of that epoch."""
        if self.tree is None:
            return self.signature_keys
        return tuple((i, n.signature_key, n.credential) for i, n in self.tree.members())

    def member(self, leaf: int) -> tuple[bytes, Credential] | None:
        if self.tree is not None:
            node = self.tree.leaf_node(leaf)
            return None if node is None else (node.signature_key, node.credential)
        for i, key, cred in self.signature_keys:
            if i == leaf:
                return key, cred
        return None


@dataclass(frozen=True, slots=True)
class Member:
    leaf_index: LeafIndex
    credential: Credential
    signature_key: bytes
    encryption_key: bytes


def member_at(tree: RatchetTree, leaf: int) -> Member:
    """The `Member` at a non-blank ``leaf`` of ``tree``."""
    node = tree.leaf_node(leaf)
    assert node is not None
    return Member(LeafIndex(leaf), node.credential, node.signature_key, node.encryption_key)


# --- results of processing ------------------------------------------------------------------


@dataclass(frozen=True, slots=True, repr=False)
class ApplicationMessage:
    """Decrypted application data, from ``sender`` (leaf index and credential) in ``epoch``."""

    group: Group
    sender: LeafIndex
    credential: Credential
    epoch: int
    data: bytes
    authenticated_data: bytes

    def __repr__(self) -> str:
        return f"ApplicationMessage(sender={self.sender}, epoch={self.epoch}, len={len(self.data)})"


@dataclass(frozen=True, slots=True)
class ProposalMessage:
    """A verified proposal, now cached in ``group`` for a later commit."""

    group: Group
    proposal: Proposal
    ref: ProposalRef
    sender: Sender
    credential: Credential | None


@dataclass(frozen=True, slots=True, repr=False)
class StagedCommit:
    """A verified commit, not yet merged. ``group`` is the state of the new epoch.

    ``added``/``removed``/``updated`` list the roster changes (§12.3) so applications can show
    every change to the user (invariant I3). ``self_removed``: the commit removed us; ``group``
    is then our old state marked removed (`Group.removed`), which refuses to send.
    """

    group: Group
    sender: Sender
    credential: Credential
    proposals: tuple[Proposal, ...]
    added: tuple[Member, ...]
    removed: tuple[Member, ...]
    updated: tuple[Member, ...]
    self_removed: bool
    reinit: ReInit | None
    authenticated_data: bytes = b""  # the commit's FramedContent.authenticated_data (§6)

    def __repr__(self) -> str:
        return (
            f"StagedCommit(epoch={self.group.epoch}, added={len(self.added)}, "
            f"removed={len(self.removed)}, updated={len(self.updated)})"
        )


ProcessedMessage = ApplicationMessage | ProposalMessage | StagedCommit


@dataclass(frozen=True, slots=True, repr=False)
class PendingCommit:
    """Our own commit, awaiting the delivery service's verdict: `Group.merge_pending_commit`
    if accepted, `Group.discard_pending_commit` if rejected.

    ``if_rejected`` is the current epoch's state *after* sending the commit: a PrivateMessage
    commit consumed a handshake-ratchet generation, which must stay consumed even if the
    commit loses, or the next handshake would reuse its key and nonce (§9.1)."""

    group: Group
    message: bytes
    added: tuple[Member, ...]
    removed: tuple[Member, ...]
    if_rejected: Group | None = None

    def __repr__(self) -> str:
        return f"PendingCommit(epoch={self.group.epoch})"


@dataclass(frozen=True, slots=True, repr=False)
class CommitOutput:
    """``commit``: the MLSMessage to send to the group; ``welcome``: the MLSMessage for new
    members (None if nobody was added); ``group_info``: a signed GroupInfo of the new epoch.

    The GroupInfo is signed on first access when no Welcome needed it: with the ratchet tree
    in it, it is O(n) bytes to encode and sign, which a commit that nobody joins by should not
    pay (for 10,000 members that was most of the cost of a commit)."""

    commit: bytes
    welcome: bytes | None
    pending: PendingCommit
    _group_info: bytes | None = field(default=None, compare=False)

    @property
    def group_info(self) -> bytes:
        if self._group_info is None:
            signed = encode(MLSMessage(self.pending.group._group_info()))
            object.__setattr__(self, "_group_info", signed)
            return signed
        return self._group_info

    def __repr__(self) -> str:
        return f"CommitOutput(welcome={self.welcome is not None})"


@dataclass(frozen=True, slots=True, repr=False)
class OpenedWelcome:
    """A decrypted Welcome (§12.4.3.1): its GroupSecrets and GroupInfo, not yet verified."""

    suite: CipherSuite
    group_secrets: GroupSecrets
    group_info: GroupInfo
    joiner_secret: JoinerSecret
    psk_secret: PskSecret
    special_psk: bool  # a resumption PSK with usage reinit or branch

    def __repr__(self) -> str:
        return f"OpenedWelcome(epoch={self.group_info.group_context.epoch})"
