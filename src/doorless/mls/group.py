"""The MLS group state machine (RFC 9420 §11, §12), sans I/O: the `Group` facade.

A `Group` is one member's immutable view of one epoch: a `PublicGroup` (tree, GroupContext,
transcript hashes, cached proposals; see `public_group`) plus the member's secrets. Every
operation returns a *new* object and leaves the old one untouched, so a rejected message
changes nothing (invariant I4):

* receiving: ``group.process(message)`` returns an `ApplicationMessage`, a `ProposalMessage`
  or a `StagedCommit`; each carries the state to adopt (``.group``). For a commit, adopting it
  is `Group.merge_staged_commit` — the explicit merge.
* sending: ``group.commit(...)`` returns a `CommitOutput` whose `PendingCommit` is merged with
  `Group.merge_pending_commit` only after the delivery service accepted the commit (or dropped if
  it was rejected); ``group.encrypt(...)`` / ``group.propose(...)`` return the message and the state
  to adopt once it is sent.

The lifecycle lives in modules of its own: `creation` (§11), `join` (§12.4.3), `commit`
(§12.4.1), `processing` (§6, §12.4.2), `state` (serialization), `key_packages` (§10), value
types in `types`. This module owns the facade: construction, read-only views, sending
application messages and proposals (§6.3, §12.1), and merging (§12.4).

Randomness and time come in as parameters (``rng``: a callable returning n random bytes; ``now``:
seconds since the epoch or None to skip lifetime checks).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import replace

from doorless.codec import encode
from doorless.crypto import CipherSuite
from doorless.errors import StateError
from doorless.mls import commit as _commit
from doorless.mls import creation as _creation
from doorless.mls import join as _join
from doorless.mls import key_packages as _key_packages
from doorless.mls import processing as _processing
from doorless.mls import state as _state
from doorless.mls.application_messages import seal_application
from doorless.mls.credential import Credential
from doorless.mls.extensions import Extension
from doorless.mls.framing import (
    AuthenticatedContent,
    FramedContent,
    MLSMessage,
    PublicMessage,
    SenderMember,
    WireFormat,
)
from doorless.mls.group_context import GroupContext
from doorless.mls.join import (
    find_key_package_bundle,
    open_welcome,
    welcome_key_package_refs,
)
from doorless.mls.key_packages import (
    DEFAULT_LIFETIME_SECONDS,
    KeyPackageBundle,
    default_capabilities,
    generate_key_package,
)
from doorless.mls.leaf_node import Capabilities, LeafNode, LeafNodeSource
from doorless.mls.message_protection import authenticate, membership_tag, protect_private
from doorless.mls.proposals import (
    Commit,
    ExternalInit,
    ExternalPSK,
    PreSharedKey,
    PreSharedKeyID,
    Proposal,
    ReInit,
    Update,
    make_proposal_ref,
)
from doorless.mls.public_group import PublicGroup
from doorless.mls.ratchet_tree import RatchetTree
from doorless.mls.schedule import EpochSecrets, ResumptionPsk
from doorless.mls.secret_tree import SecretTree
from doorless.mls.tree_math import LeafIndex
from doorless.mls.treekem import TreePrivateKeys
from doorless.mls.types import (
    NO_PSKS,
    WELCOME_LABEL,
    ApplicationMessage,
    CachedProposal,
    CommitOutput,
    GroupConfig,
    Member,
    OpenedWelcome,
    PastEpoch,
    PendingCommit,
    ProcessedMessage,
    ProposalMessage,
    PskStore,
    Rng,
    StagedCommit,
    member_at,
)
from doorless.mls.welcome import GroupInfo
from doorless.secret import PrivateKeyBytes

__all__ = [
    "DEFAULT_LIFETIME_SECONDS",
    "WELCOME_LABEL",
    "ApplicationMessage",
    "CachedProposal",
    "CommitOutput",
    "Group",
    "GroupConfig",
    "KeyPackageBundle",
    "Member",
    "OpenedWelcome",
    "PastEpoch",
    "PendingCommit",
    "ProcessedMessage",
    "ProposalMessage",
    "PskStore",
    "PublicGroup",
    "Rng",
    "StagedCommit",
    "default_capabilities",
    "external_psk_proposal",
    "find_key_package_bundle",
    "generate_key_package",
    "open_welcome",
    "welcome_key_package_refs",
]

_NO_PSKS = NO_PSKS
_PUBLIC_FIELDS = frozenset(
    {"suite", "group_context", "tree", "interim_transcript_hash", "confirmation_tag", "proposals"}
)


def external_psk_proposal(suite: CipherSuite, psk_id: bytes, *, rng: Rng = os.urandom) -> Proposal:
    """A PreSharedKey proposal for the external PSK ``psk_id`` with a fresh ``psk_nonce`` of
    KDF.Nh bytes (§8.4, §12.1.4)."""
    return PreSharedKey(PreSharedKeyID(ExternalPSK(psk_id), rng(suite.hash_length)))


class Group:
    """One member's state of one MLS group in one epoch. Immutable."""

    __slots__ = (
        "_signature_private_key",
        "config",
        "epoch_secrets",
        "own_leaf",
        "past_epochs",
        "private_keys",
        "public",
        "reinit",
        "removed",
        "resumption_psks",
        "secret_tree",
        "suite",
        "update_keys",
    )

    suite: CipherSuite  # the public group's, kept here too: read on every hot path
    public: PublicGroup
    own_leaf: LeafIndex
    private_keys: TreePrivateKeys
    _signature_private_key: PrivateKeyBytes
    epoch_secrets: EpochSecrets
    secret_tree: SecretTree
    resumption_psks: tuple[tuple[int, ResumptionPsk], ...]
    past_epochs: tuple[PastEpoch, ...]
    reinit: ReInit | None
    update_keys: tuple[tuple[bytes, PrivateKeyBytes], ...]
    config: GroupConfig
    removed: bool

    def __init__(
        self,
        *,
        suite: CipherSuite,
        group_context: GroupContext,
        tree: RatchetTree,
        own_leaf: int,
        private_keys: TreePrivateKeys,
        signature_private_key: PrivateKeyBytes,
        epoch_secrets: EpochSecrets,
        secret_tree: SecretTree,
        interim_transcript_hash: bytes,
        confirmation_tag: bytes,
        proposals: tuple[CachedProposal, ...] = (),
        resumption_psks: tuple[tuple[int, ResumptionPsk], ...] = (),
        past_epochs: tuple[PastEpoch, ...] = (),
        reinit: ReInit | None = None,
        update_keys: tuple[tuple[bytes, PrivateKeyBytes], ...] = (),
        config: GroupConfig | None = None,
    ) -> None:
        self.public = PublicGroup(
            suite, group_context, tree, interim_transcript_hash, confirmation_tag, proposals
        )
        self.suite = suite
        self.own_leaf = LeafIndex(own_leaf)
        self.private_keys = private_keys
        self._signature_private_key = signature_private_key
        self.epoch_secrets = epoch_secrets
        self.secret_tree = secret_tree
        self.resumption_psks = resumption_psks
        self.past_epochs = past_epochs
        self.reinit = reinit
        self.update_keys = update_keys
        self.config = config or GroupConfig()
        self.removed = False

    def _evolve(self, **changes: object) -> Group:
        """A copy with ``changes`` (constructor names; ``removed`` too). The `PublicGroup` is
        shared unless a public field changes."""
        new = Group.__new__(Group)
        public_changes = {k: changes.pop(k) for k in _PUBLIC_FIELDS & changes.keys()}
        new.public = replace(self.public, **public_changes) if public_changes else self.public  # type: ignore[arg-type]
        new.suite = new.public.suite
        own_leaf = changes.pop("own_leaf", self.own_leaf)
        assert isinstance(own_leaf, int)
        new.own_leaf = LeafIndex(own_leaf)
        new._signature_private_key = changes.pop(  # type: ignore[assignment]
            "signature_private_key", self._signature_private_key
        )
        for name in (
            "config",
            "epoch_secrets",
            "past_epochs",
            "private_keys",
            "reinit",
            "removed",
            "resumption_psks",
            "secret_tree",
            "update_keys",
        ):
            object.__setattr__(new, name, changes.pop(name, getattr(self, name)))
        if changes:
            raise TypeError(f"unknown Group fields: {sorted(changes)}")
        return new

    def _with_secret_tree(self, secret_tree: SecretTree) -> Group:
        """`_evolve(secret_tree=...)` without the generic machinery: the hot path of every
        application message sent or received."""
        new = Group.__new__(Group)
        new.suite = self.suite
        new.public = self.public
        new.own_leaf = self.own_leaf
        new.private_keys = self.private_keys
        new._signature_private_key = self._signature_private_key
        new.epoch_secrets = self.epoch_secrets
        new.secret_tree = secret_tree
        new.resumption_psks = self.resumption_psks
        new.past_epochs = self.past_epochs
        new.reinit = self.reinit
        new.update_keys = self.update_keys
        new.config = self.config
        new.removed = self.removed
        return new

    def __repr__(self) -> str:
        return (
            f"Group(group_id={self.group_id.hex()}, epoch={self.epoch}, leaf={self.own_leaf}, "
            f"members={self.tree.member_count()}{', removed' if self.removed else ''})"
        )

    # --- read-only views -------------------------------------------------------------------

    @property
    def group_context(self) -> GroupContext:
        return self.public.group_context

    @property
    def tree(self) -> RatchetTree:
        return self.public.tree

    @property
    def interim_transcript_hash(self) -> bytes:
        return self.public.interim_transcript_hash

    @property
    def confirmation_tag(self) -> bytes:
        return self.public.confirmation_tag

    @property
    def proposals(self) -> tuple[CachedProposal, ...]:
        return self.public.proposals

    @property
    def public_group(self) -> PublicGroup:
        """The public state of this epoch (what a delivery service can track, no secret)."""
        return self.public

    @property
    def group_id(self) -> bytes:
        return self.group_context.group_id

    @property
    def epoch(self) -> int:
        return self.group_context.epoch

    @property
    def tree_hash(self) -> bytes:
        """The ratchet tree's hash (§7.8), as in the GroupContext."""
        return self.group_context.tree_hash

    def ratchet_tree(self) -> bytes:
        """The encoded ``ratchet_tree`` extension value (§12.4.3.3): what a joiner needs when
        the GroupInfo does not carry the tree."""
        return self.tree.encode()

    @property
    def epoch_authenticator(self) -> bytes:
        """§8.7: equal for every member of the epoch; compare out of band to detect a split."""
        return self.epoch_secrets.epoch_authenticator.value

    def export_secret(self, label: bytes, context: bytes, length: int) -> bytes:
        """``MLS-Exporter(label, context, length)`` (§8.5)."""
        return self.epoch_secrets.exporter(label, context, length)

    def members(self) -> list[Member]:
        return [member_at(self.tree, i) for i, _ in self.tree.members()]

    @property
    def own_leaf_node(self) -> LeafNode:
        node = self.tree.leaf_node(self.own_leaf)
        assert node is not None
        return node

    @property
    def extensions(self) -> tuple[Extension, ...]:
        return self.group_context.extensions

    @property
    def usable(self) -> bool:
        """False once a ReInit was committed (§12.4.2: the group must not be used anymore) or
        once a commit removed us."""
        return self.reinit is None and not self.removed

    # --- creation (§11) --------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        suite: CipherSuite,
        group_id: bytes,
        leaf_node: LeafNode,
        encryption_private_key: PrivateKeyBytes,
        signature_private_key: PrivateKeyBytes,
        *,
        extensions: Sequence[Extension] = (),
        rng: Rng = os.urandom,
        config: GroupConfig | None = None,
    ) -> Group:
        """A one-member group with the creator's ``leaf_node`` (a KeyPackage-style leaf)."""
        return _creation.create_group(
            cls,
            suite,
            group_id,
            leaf_node,
            encryption_private_key,
            signature_private_key,
            extensions=extensions,
            rng=rng,
            config=config,
        )

    @classmethod
    def create_with_credential(
        cls,
        suite: CipherSuite,
        group_id: bytes,
        credential: Credential,
        signature_private_key: PrivateKeyBytes,
        *,
        now: int,
        capabilities: Capabilities | None = None,
        leaf_extensions: Sequence[Extension] = (),
        lifetime_seconds: int = DEFAULT_LIFETIME_SECONDS,
        extensions: Sequence[Extension] = (),
        rng: Rng = os.urandom,
        config: GroupConfig | None = None,
    ) -> Group:
        """A one-member group from a credential and signature key alone: the creator's leaf
        and its encryption key are made here (no throw-away KeyPackage)."""
        leaf, encryption_private_key = _key_packages.key_package_leaf_node(
            suite,
            credential,
            signature_private_key,
            now=now,
            rng=rng,
            lifetime_seconds=lifetime_seconds,
            capabilities=capabilities,
            leaf_extensions=leaf_extensions,
        )
        return cls.create(
            suite,
            group_id,
            leaf,
            encryption_private_key,
            signature_private_key,
            extensions=extensions,
            rng=rng,
            config=config,
        )

    # --- sending application data and proposals ---------------------------------------------

    def _check_usable(self) -> None:
        if self.removed:
            raise StateError("we were removed from the group (RFC9420 12.4.2)")
        if self.reinit is not None:
            raise StateError("the group was reinitialized; use the new group (RFC9420 12.4.2)")

    def _frame(
        self, content: bytes | Proposal | Commit, authenticated_data: bytes
    ) -> FramedContent:
        context = self.public.group_context
        return FramedContent(
            context.group_id,
            context.epoch,
            SenderMember(self.own_leaf),
            authenticated_data,
            content,
        )

    def encrypt(
        self, data: bytes, *, authenticated_data: bytes = b"", rng: Rng = os.urandom
    ) -> tuple[Group, bytes]:
        """An application message (a PrivateMessage MLSMessage) and the state to adopt."""
        self._check_usable()
        if self.proposals:
            # §12.4: a member that has seen proposals must commit before sending data.
            raise StateError("pending proposals must be committed before sending application data")
        # The lean path: the same bytes as authenticate + _protect_private.
        sealed = seal_application(
            self.suite,
            self._signature_private_key.value,
            self.group_context,
            self.own_leaf,
            data,
            authenticated_data,
            self.secret_tree,
            self.epoch_secrets.sender_data_secret,
            rng(4),
            self.config.padding_block,
            self.config.padding_buckets,
        )
        return self._with_secret_tree(sealed.tree), sealed.message

    def _protect_private(self, auth: AuthenticatedContent, rng: Rng) -> tuple[Group, bytes]:
        # Pad the actual plaintext (content and auth, §6.3.1) to a size bucket if the
        # configuration has them, else to a multiple of the block.
        protected = protect_private(
            self.suite,
            auth,
            self.secret_tree,
            self.epoch_secrets.sender_data_secret,
            rng(4),
            pad_to=self.config.padding_block,
            buckets=self.config.padding_buckets,
        )
        return self._with_secret_tree(protected.tree), encode(MLSMessage(protected.message))

    def propose(
        self, proposal: Proposal, *, authenticated_data: bytes = b"", rng: Rng = os.urandom
    ) -> tuple[Group, bytes]:
        """Send ``proposal`` as a member; returns the state (with the proposal cached) and the
        MLSMessage."""
        self._check_usable()
        if isinstance(proposal, ExternalInit):
            raise StateError("ExternalInit is only sent inside an external commit")
        wire_format = (
            WireFormat.mls_private_message
            if self.config.private_handshakes
            else WireFormat.mls_public_message
        )
        framed = self._frame(proposal, authenticated_data)
        auth = authenticate(
            self.suite, self._signature_private_key.value, wire_format, framed, self.group_context
        )
        self.public.validate_proposal(proposal, SenderMember(self.own_leaf), None)
        cached = CachedProposal(
            make_proposal_ref(self.suite, encode(auth)), proposal, SenderMember(self.own_leaf)
        )
        state = self._evolve(proposals=(*self.proposals, cached))
        if wire_format == WireFormat.mls_private_message:
            new, message = state._protect_private(auth, rng)
            return new, message
        tag = membership_tag(
            self.suite, self.epoch_secrets.membership_key, auth, self.group_context
        )
        return state, encode(MLSMessage(PublicMessage(framed, auth.auth, tag)))

    def external_psk_proposal(self, psk_id: bytes, *, rng: Rng = os.urandom) -> Proposal:
        """A PreSharedKey proposal for the external PSK ``psk_id`` (§8.4, §12.1.4), to pass to
        `propose` or `commit` (the PSK itself goes in the `PskStore`)."""
        return external_psk_proposal(self.suite, psk_id, rng=rng)

    def propose_update(
        self,
        *,
        leaf_node: LeafNode | None = None,
        authenticated_data: bytes = b"",
        rng: Rng = os.urandom,
    ) -> tuple[Group, bytes]:
        """An Update proposal with a fresh encryption key (§12.1.2). ``leaf_node`` is a template
        (new credential or capabilities); the new private key is kept until the epoch ends and
        used if a commit applies the Update."""
        template = leaf_node if leaf_node is not None else self.own_leaf_node
        key_pair = (
            self.suite.generate_hpke_key_pair()
            if rng is os.urandom
            else (self.suite.derive_key_pair(rng(self.suite.hash_length)))
        )
        new_leaf = replace(
            template,
            encryption_key=key_pair.public_key,
            leaf_node_source=LeafNodeSource.update,
            lifetime=None,
            parent_hash=None,
            signature=b"",
        ).signed(self.suite, self._signature_private_key, self.group_id, self.own_leaf)
        state = self._evolve(
            update_keys=(
                *self.update_keys,
                (key_pair.public_key, PrivateKeyBytes(key_pair.private_key)),
            )
        )
        return state.propose(Update(new_leaf), authenticated_data=authenticated_data, rng=rng)

    # --- committing (§12.4.1) -----------------------------------------------------------------

    def commit(
        self,
        proposals: Sequence[Proposal] = (),
        *,
        include_pending: bool = True,
        force_path: bool = True,
        leaf_node: LeafNode | None = None,
        psks: PskStore = _NO_PSKS,
        authenticated_data: bytes = b"",
        rng: Rng = os.urandom,
        now: int | None = None,
    ) -> CommitOutput:
        """Commit ``proposals`` (by value) and, with ``include_pending``, every cached proposal
        (by reference) that can be committed. ``force_path`` adds an UpdatePath even where it is
        optional (PCS for the committer). ``leaf_node`` replaces our leaf's template (new
        credential or capabilities)."""
        return _commit.create_commit(
            self,
            proposals,
            include_pending=include_pending,
            force_path=force_path,
            leaf_node=leaf_node,
            psks=psks,
            authenticated_data=authenticated_data,
            rng=rng,
            now=now,
        )

    def discard_pending_commit(self, pending: PendingCommit) -> Group:
        """The state to keep when the delivery service rejected our commit (§12.4.1)."""
        if pending.if_rejected is None or pending.if_rejected.epoch != self.epoch:
            return self
        return pending.if_rejected

    def merge_pending_commit(self, pending: PendingCommit) -> Group:
        """Adopt our own commit once the delivery service accepted it (§12.4.1)."""
        if not self._is_next(pending.group):
            raise StateError("this pending commit was not made from this group state")
        return pending.group

    def merge_staged_commit(self, staged: StagedCommit) -> Group:
        """Adopt a processed commit (the explicit merge; I4 holds until this is called). For a
        commit that removed us, the result is this epoch's state marked `removed`."""
        if staged.self_removed:
            new = staged.group
            if not (
                new.removed
                and new.epoch == self.epoch
                and new.group_id == self.group_id
                and new.own_leaf == self.own_leaf
                and new._signature_private_key == self._signature_private_key
            ):
                raise StateError("this staged commit was not made from this group state")
            return new
        if not self._is_next(staged.group):
            raise StateError("this staged commit was not made from this group state")
        return staged.group

    def _is_next(self, new: Group) -> bool:
        # Same group, next epoch, and our own leaf (not another member's state).
        return (
            new.group_id == self.group_id
            and new.epoch == self.epoch + 1
            and new.own_leaf == self.own_leaf
            and new._signature_private_key == self._signature_private_key
        )

    def _group_info(self) -> GroupInfo:
        return _commit.group_info_struct(self)

    def group_info(self) -> bytes:
        """A signed GroupInfo MLSMessage of this epoch (for external joins, §12.4.3.2)."""
        return encode(MLSMessage(self._group_info()))

    # --- receiving (§6, §12.4.2) --------------------------------------------------------------

    def process(
        self,
        message: bytes | MLSMessage,
        *,
        psks: PskStore = _NO_PSKS,
        now: int | None = None,
    ) -> ProcessedMessage:
        """Verify and interpret one group message. Nothing changes until the caller adopts the
        returned ``.group`` (for commits: `merge_staged_commit`). Raises a `RemoteError`
        subclass for anything invalid."""
        return _processing.process(self, message, psks, now)

    # --- joining (§12.4.3.1, §12.4.3.2) -------------------------------------------------------

    @classmethod
    def join_from_welcome(
        cls,
        welcome: bytes | MLSMessage,
        bundle: KeyPackageBundle,
        *,
        ratchet_tree: bytes | None = None,
        psks: PskStore = _NO_PSKS,
        now: int | None = None,
        config: GroupConfig | None = None,
    ) -> Group:
        """Join from a Welcome addressed to ``bundle``'s KeyPackage. ``ratchet_tree`` (the
        encoded ``ratchet_tree`` value) is needed when the GroupInfo does not carry it."""
        return _join.join_from_welcome(
            cls, welcome, bundle, ratchet_tree=ratchet_tree, psks=psks, now=now, config=config
        )

    @classmethod
    def join_from_welcome_any(
        cls,
        welcome: bytes | MLSMessage,
        bundles: Iterable[KeyPackageBundle],
        *,
        ratchet_tree: bytes | None = None,
        psks: PskStore = _NO_PSKS,
        now: int | None = None,
        config: GroupConfig | None = None,
    ) -> tuple[Group, KeyPackageBundle]:
        """Join from a Welcome with whichever of our stored ``bundles`` it is for; the group and
        the bundle used (delete it: a KeyPackage is used once). `StateError` if none is."""
        bundle = find_key_package_bundle(welcome, bundles)
        if bundle is None:
            raise StateError("the Welcome is for none of our KeyPackages")
        group = cls.join_from_welcome(
            welcome, bundle, ratchet_tree=ratchet_tree, psks=psks, now=now, config=config
        )
        return group, bundle

    @classmethod
    def join_external(
        cls,
        group_info: bytes | MLSMessage,
        leaf_node: LeafNode,
        signature_private_key: PrivateKeyBytes,
        *,
        ratchet_tree: bytes | None = None,
        resync_leaf: int | None = None,
        psk_ids: Sequence[PreSharedKeyID] = (),
        psks: PskStore = _NO_PSKS,
        authenticated_data: bytes = b"",
        rng: Rng = os.urandom,
        now: int | None = None,
        config: GroupConfig | None = None,
    ) -> tuple[Group, bytes]:
        """Join by external commit (§12.4.3.2): returns our state of the new epoch (adopt it
        once the delivery service accepts the commit) and the commit MLSMessage (PublicMessage).
        ``leaf_node`` is the template for our leaf (credential, capabilities); ``resync_leaf``
        removes an old appearance of ours."""
        return _join.join_external(
            cls,
            group_info,
            leaf_node,
            signature_private_key,
            ratchet_tree=ratchet_tree,
            resync_leaf=resync_leaf,
            psk_ids=psk_ids,
            psks=psks,
            authenticated_data=authenticated_data,
            rng=rng,
            now=now,
            config=config,
        )

    # --- persistence --------------------------------------------------------------------------

    STATE_VERSION = _state.STATE_VERSION

    def to_bytes(self) -> bytes:
        """The whole member state, for the client's encrypted store. Contains secrets."""
        return _state.group_to_bytes(self)

    @classmethod
    def from_bytes(cls, data: bytes, config: GroupConfig | None = None) -> Group:
        """Restore a state written by `to_bytes`; `DecodeError` if it is not one."""
        return _state.group_from_bytes(cls, data, config)
