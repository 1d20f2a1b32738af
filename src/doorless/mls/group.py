"""The MLS group state machine (RFC 9420 §11, §12), sans I/O.

A `Group` is one member's immutable view of one epoch. Every operation returns a *new* object
and leaves the old one untouched, so a rejected message changes nothing (invariant I4):

* receiving: ``group.process(message)`` returns an `ApplicationMessage`, a `ProposalMessage`
  or a `StagedCommit`; each carries the state to adopt (``.group``). For a commit, adopting it
  is `Group.merge_staged_commit` — the explicit merge.
* sending: ``group.commit(...)`` returns a `CommitOutput` whose `PendingCommit` is merged with
  `Group.merge_pending_commit` only after the delivery service accepted the commit (or dropped if
  it was rejected); ``group.encrypt(...)`` / ``group.propose(...)`` return the message and the state
  to adopt once it is sent.

Randomness and time come in as parameters (``rng``: a callable returning n random bytes; ``now``:
seconds since the epoch or None to skip lifetime checks).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from doorless.codec import Reader, Writer, decode, encode
from doorless.crypto import CipherSuite, cipher_suite
from doorless.errors import (
    CryptoError,
    DecodeError,
    StateError,
    ValidationError,
)
from doorless.mls.credential import Credential, pull_credential
from doorless.mls.extensions import (
    Extension,
    ExtensionType,
    ExternalPub,
    ExternalSenders,
    RequiredCapabilities,
    find_extension,
    make_extension,
    parse_extension,
)
from doorless.mls.framing import (
    AuthenticatedContent,
    ContentType,
    FramedContent,
    FramedContentAuthData,
    MLSMessage,
    PrivateMessage,
    PublicMessage,
    Sender,
    SenderExternal,
    SenderMember,
    SenderNewMemberCommit,
    SenderNewMemberProposal,
    WireFormat,
    pull_sender,
    push_sender,
)
from doorless.mls.group_context import GroupContext, ProtocolVersion
from doorless.mls.key_package import KeyPackage, make_key_package_ref
from doorless.mls.leaf_node import (
    Capabilities,
    LeafNode,
    LeafNodeSource,
    Lifetime,
    check_leaf_node_capabilities,
)
from doorless.mls.message_protection import (
    authenticate,
    membership_tag,
    protect_private,
    sign_framed_content,
    unprotect_private,
    unprotect_public,
    verify_signature,
)
from doorless.mls.nodes import HPKECiphertext, UpdatePath
from doorless.mls.proposals import (
    Add,
    Commit,
    ExternalInit,
    ExternalPSK,
    GroupContextExtensions,
    PreSharedKey,
    PreSharedKeyID,
    Proposal,
    ProposalRef,
    ProposalType,
    ReInit,
    Remove,
    ResumptionPSK,
    ResumptionPSKUsage,
    Update,
    make_proposal_ref,
    pull_proposal,
    push_proposal,
)
from doorless.mls.ratchet_tree import RatchetTree
from doorless.mls.schedule import (
    EpochSecrets,
    KeyScheduleEpoch,
    ResumptionPsk,
    SenderDataSecret,
    derive_epoch_keys,
    external_init_receiver,
    external_init_sender,
    interim_transcript_hash,
    key_schedule,
    key_schedule_from_joiner,
    psk_secret,
    transcript_hashes,
    welcome_key_nonce,
    welcome_secret,
)
from doorless.mls.secret_tree import SecretTree, SecretTreeConfig
from doorless.mls.tree_math import LeafIndex
from doorless.mls.treekem import (
    TreePrivateKeys,
    decrypt_update_path,
    join_private_keys,
    merge_update_path,
    prepare_commit_path,
)
from doorless.mls.welcome import (
    EncryptedGroupSecrets,
    GroupInfo,
    GroupSecrets,
    Welcome,
)
from doorless.mls.welcome import PathSecret as PathSecretStruct
from doorless.secret import (
    CommitSecret,
    EncryptionSecret,
    EpochSecret,
    InitSecret,
    JoinerSecret,
    PathSecret,
    PrivateKeyBytes,
    PskSecret,
)

Rng = Callable[[int], bytes]

# §12.4: proposal types whose presence makes the UpdatePath mandatory.
_PATH_REQUIRED = frozenset(
    {
        ProposalType.update,
        ProposalType.remove,
        ProposalType.external_init,
        ProposalType.group_context_extensions,
    }
)
# §12.1.8: proposal types an `external` sender may send.
_EXTERNAL_SENDER_TYPES = frozenset(
    {
        ProposalType.add,
        ProposalType.remove,
        ProposalType.psk,
        ProposalType.reinit,
        ProposalType.group_context_extensions,
    }
)

WELCOME_LABEL = b"Welcome"


def _rule(message: str, section: str) -> ValidationError:
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
    """

    padding_block: int = 32
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


_NO_PSKS = PskStore()


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
    every change to the user (invariant I3).
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
class KeyPackageBundle:
    """A KeyPackage and its private keys (the client keeps these until the package is used)."""

    key_package: KeyPackage
    init_private_key: PrivateKeyBytes
    encryption_private_key: PrivateKeyBytes
    signature_private_key: PrivateKeyBytes

    def __repr__(self) -> str:
        return "KeyPackageBundle(***)"

    @property
    def ref(self) -> bytes:
        return make_key_package_ref(cipher_suite(self.key_package.cipher_suite), self.key_package)


# --- proposal application (§12.3) ------------------------------------------------------------


@dataclass(slots=True)
class _Applied:
    """The effect of a proposal list on a copy of the tree and the GroupContext extensions."""

    tree: RatchetTree
    extensions: tuple[Extension, ...]
    added: list[tuple[LeafIndex, KeyPackage]]
    removed: list[Member]
    updated: list[LeafIndex]
    psk_ids: list[PreSharedKeyID]
    external_init: ExternalInit | None
    reinit: ReInit | None
    types: set[int]


def _member(tree: RatchetTree, leaf: int) -> Member:
    node = tree.leaf_node(leaf)
    assert node is not None
    return Member(LeafIndex(leaf), node.credential, node.signature_key, node.encryption_key)


def _apply_proposals(
    tree: RatchetTree,
    extensions: tuple[Extension, ...],
    proposals: Sequence[tuple[Proposal, Sender]],
) -> _Applied:
    """Apply in the order of §12.3: GroupContextExtensions, Updates, Removes, Adds, then note
    PSKs, ExternalInit and ReInit. Works on a copy of ``tree`` if a proposal changes it;
    otherwise ``applied.tree`` *is* ``tree`` (copy it before changing it): a copy touches
    all n nodes, which a self-update of a large group should not pay."""
    changes_tree = any(isinstance(p, (Update, Remove, Add)) for p, _ in proposals)
    new_tree = tree.copy() if changes_tree else tree
    applied = _Applied(new_tree, extensions, [], [], [], [], None, None, set())
    for proposal, _ in proposals:
        applied.types.add(int(proposal.proposal_type))
        if isinstance(proposal, GroupContextExtensions):
            applied.extensions = proposal.extensions
    for proposal, sender in proposals:
        if isinstance(proposal, Update):
            assert isinstance(sender, SenderMember)
            new_tree.update_leaf(sender.leaf_index, proposal.leaf_node)
            applied.updated.append(LeafIndex(sender.leaf_index))
    for proposal, _ in proposals:
        if isinstance(proposal, Remove):
            applied.removed.append(_member(new_tree, proposal.removed))
            new_tree.remove_leaf(proposal.removed)
    for proposal, _ in proposals:
        if isinstance(proposal, Add):
            leaf = new_tree.add_leaf(proposal.key_package.leaf_node)
            applied.added.append((leaf, proposal.key_package))
    for proposal, _ in proposals:
        if isinstance(proposal, PreSharedKey):
            applied.psk_ids.append(proposal.psk)
        elif isinstance(proposal, ExternalInit):
            applied.external_init = proposal
        elif isinstance(proposal, ReInit):
            applied.reinit = proposal
    return applied


# --- the group ------------------------------------------------------------------------------


class Group:
    """One member's state of one MLS group in one epoch. Immutable."""

    __slots__ = (
        "_signature_private_key",
        "config",
        "confirmation_tag",
        "epoch_secrets",
        "group_context",
        "interim_transcript_hash",
        "own_leaf",
        "past_epochs",
        "private_keys",
        "proposals",
        "reinit",
        "resumption_psks",
        "secret_tree",
        "suite",
        "tree",
        "update_keys",
    )

    suite: CipherSuite
    group_context: GroupContext
    tree: RatchetTree
    own_leaf: LeafIndex
    private_keys: TreePrivateKeys
    _signature_private_key: PrivateKeyBytes
    epoch_secrets: EpochSecrets
    secret_tree: SecretTree
    interim_transcript_hash: bytes
    confirmation_tag: bytes
    proposals: tuple[CachedProposal, ...]
    resumption_psks: tuple[tuple[int, ResumptionPsk], ...]
    past_epochs: tuple[PastEpoch, ...]
    reinit: ReInit | None
    update_keys: tuple[tuple[bytes, PrivateKeyBytes], ...]
    config: GroupConfig

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
        self.suite = suite
        self.group_context = group_context
        self.tree = tree
        self.own_leaf = LeafIndex(own_leaf)
        self.private_keys = private_keys
        self._signature_private_key = signature_private_key
        self.epoch_secrets = epoch_secrets
        self.secret_tree = secret_tree
        self.interim_transcript_hash = interim_transcript_hash
        self.confirmation_tag = confirmation_tag
        self.proposals = proposals
        self.resumption_psks = resumption_psks
        self.past_epochs = past_epochs
        self.reinit = reinit
        self.update_keys = update_keys
        self.config = config or GroupConfig()

    def _evolve(self, **changes: object) -> Group:
        values: dict[str, object] = {
            "suite": self.suite,
            "group_context": self.group_context,
            "tree": self.tree,
            "own_leaf": self.own_leaf,
            "private_keys": self.private_keys,
            "signature_private_key": self._signature_private_key,
            "epoch_secrets": self.epoch_secrets,
            "secret_tree": self.secret_tree,
            "interim_transcript_hash": self.interim_transcript_hash,
            "confirmation_tag": self.confirmation_tag,
            "proposals": self.proposals,
            "resumption_psks": self.resumption_psks,
            "past_epochs": self.past_epochs,
            "reinit": self.reinit,
            "update_keys": self.update_keys,
            "config": self.config,
        }
        values.update(changes)
        return Group(**values)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return (
            f"Group(group_id={self.group_id.hex()}, epoch={self.epoch}, leaf={self.own_leaf}, "
            f"members={self.tree.member_count()})"
        )

    # --- read-only views -------------------------------------------------------------------

    @property
    def group_id(self) -> bytes:
        return self.group_context.group_id

    @property
    def epoch(self) -> int:
        return self.group_context.epoch

    @property
    def epoch_authenticator(self) -> bytes:
        """§8.7: equal for every member of the epoch; compare out of band to detect a split."""
        return self.epoch_secrets.epoch_authenticator.value

    def export_secret(self, label: bytes, context: bytes, length: int) -> bytes:
        """``MLS-Exporter(label, context, length)`` (§8.5)."""
        return self.epoch_secrets.exporter(label, context, length)

    def members(self) -> list[Member]:
        return [_member(self.tree, i) for i, _ in self.tree.members()]

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
        """False once a ReInit was committed (§12.4.2: the group must not be used anymore)."""
        return self.reinit is None

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
        if suite.hpke_public_key(encryption_private_key.value) != leaf_node.encryption_key:
            raise StateError("encryption private key does not match the leaf node")
        if suite.signature_public_key(signature_private_key.value) != leaf_node.signature_key:
            raise StateError("signature private key does not match the leaf node")
        tree = RatchetTree.create(suite, leaf_node)
        tree.verify_capabilities(
            parse_extension(extensions, RequiredCapabilities), tuple(extensions)
        )
        gc = GroupContext(suite.id, group_id, 0, tree.tree_hash(), b"", tuple(extensions))
        keys = derive_epoch_keys(suite, EpochSecret(rng(suite.hash_length)))
        tag = keys.secrets.confirmation_tag(b"")
        return cls(
            suite=suite,
            group_context=gc,
            tree=tree,
            own_leaf=0,
            private_keys=TreePrivateKeys.for_leaf(suite, 0, encryption_private_key),
            signature_private_key=signature_private_key,
            epoch_secrets=keys.secrets,
            secret_tree=SecretTree.create(
                suite, keys.encryption_secret, tree.n_leaves, (config or GroupConfig()).secret_tree
            ),
            interim_transcript_hash=interim_transcript_hash(suite, b"", tag),
            confirmation_tag=tag,
            resumption_psks=((0, keys.secrets.resumption_psk),),
            config=config,
        )

    # --- sending application data and proposals ---------------------------------------------

    def _check_usable(self) -> None:
        if self.reinit is not None:
            raise StateError("the group was reinitialized; use the new group (RFC9420 12.4.2)")

    def _frame(
        self, content: bytes | Proposal | Commit, authenticated_data: bytes
    ) -> FramedContent:
        return FramedContent(
            self.group_id,
            self.epoch,
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
        framed = self._frame(data, authenticated_data)
        auth = authenticate(
            self.suite,
            self._signature_private_key.value,
            WireFormat.mls_private_message,
            framed,
            self.group_context,
        )
        return self._protect_private(auth, rng)

    def _protect_private(self, auth: AuthenticatedContent, rng: Rng) -> tuple[Group, bytes]:
        # Pad the actual plaintext (content and auth, §6.3.1) to a multiple of the block.
        protected = protect_private(
            self.suite,
            auth,
            self.secret_tree,
            self.epoch_secrets.sender_data_secret,
            rng(4),
            pad_to=self.config.padding_block,
        )
        return self._evolve(secret_tree=protected.tree), encode(MLSMessage(protected.message))

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
        self._validate_single_proposal(proposal, SenderMember(self.own_leaf), None)
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

    # --- validation helpers -----------------------------------------------------------------

    def _validate_key_package(
        self, kp: KeyPackage, extensions: Sequence[Extension], now: int | None
    ) -> None:
        """§10.1 KeyPackage validation plus §7.3 for its leaf node."""
        if kp.version != self.group_context.version:
            raise _rule("KeyPackage version differs from the group's", "10.1")
        if kp.cipher_suite != self.suite.id:
            raise _rule("KeyPackage cipher suite differs from the group's", "10.1")
        try:
            kp.verify(self.suite)
        except CryptoError:
            raise _rule("KeyPackage signature is invalid", "10.1") from None
        leaf = kp.leaf_node
        if leaf.leaf_node_source != LeafNodeSource.key_package:
            raise _rule("KeyPackage leaf_node_source is not key_package", "7.3")
        try:
            leaf.verify(self.suite)
        except CryptoError:
            raise _rule("KeyPackage leaf node signature is invalid", "7.3") from None
        if kp.init_key == leaf.encryption_key:
            raise _rule("KeyPackage init_key equals its encryption_key", "10.1")
        try:
            self.suite.validate_hpke_public_key(kp.init_key)
            self.suite.validate_hpke_public_key(leaf.encryption_key)
        except DecodeError:
            raise _rule("KeyPackage carries a malformed HPKE key", "10.1") from None
        if now is not None and leaf.lifetime is not None and not leaf.lifetime.contains(now):
            raise _rule("KeyPackage is outside its lifetime", "7.3")
        self._validate_leaf_common(leaf, extensions)

    def _validate_leaf_common(self, leaf: LeafNode, extensions: Sequence[Extension]) -> None:
        """The group-dependent parts of §7.3: capabilities and credential support."""
        check_leaf_node_capabilities(leaf)
        required = parse_extension(extensions, RequiredCapabilities)
        caps = leaf.capabilities
        if required is not None and not (
            set(required.extension_types) <= set(caps.extensions) | _DEFAULT_EXTENSIONS
            and set(required.proposal_types) <= set(caps.proposals) | _DEFAULT_PROPOSALS
            and set(required.credential_types) <= set(caps.credentials)
        ):
            raise _rule("leaf lacks a capability the group requires", "7.3")
        for e in extensions:
            if int(e.extension_type) not in _DEFAULT_EXTENSIONS and (
                int(e.extension_type) not in caps.extensions
            ):
                raise _rule("leaf does not support a GroupContext extension", "13.4")
        cred_type = int(leaf.credential.credential_type)
        tree = self.tree
        # The tree keeps counts of credential types in use and supported: O(1) when the rule
        # holds; the scan below only runs to name the member that breaks it.
        if tree.credential_supported_by_all(cred_type) and tree.credential_types_in_use() <= set(
            caps.credentials
        ):
            return
        for i, other in tree.members():
            if cred_type not in other.capabilities.credentials:
                raise _rule(f"member {i} does not support the leaf's credential type", "7.3")
            if int(other.credential.credential_type) not in caps.credentials:
                raise _rule("leaf does not support a credential type in use", "7.3")

    def _check_new_leaf_keys(self, leaf: LeafNode, replacing: int | None) -> None:
        """§7.3: a received leaf's encryption key is new to the tree and (for an Update) its
        signature key belongs to no other member. Checked on receipt, so that a cached
        proposal cannot make every later commit invalid."""
        tree = self.tree  # keeps counts of the keys in use: O(1) instead of a scan
        if tree.encryption_key_in_use(leaf.encryption_key):
            raise _rule("leaf encryption key is already in the tree", "7.3")
        if replacing is not None:
            current = tree.leaf_node(replacing)
            own = current is not None and current.signature_key == leaf.signature_key
            if tree.signature_key_users(leaf.signature_key) > int(own):
                raise _rule("leaf signature key belongs to another member", "7.3")

    def _validate_single_proposal(
        self,
        proposal: Proposal,
        sender: Sender,
        now: int | None,
        extensions: Sequence[Extension] | None = None,
    ) -> None:
        """§12.1 rules for one proposal, judged against the current epoch. ``extensions``:
        the GroupContext extensions to judge leaves by (§12.2: those of a GroupContextExtensions
        proposal in the same commit), default the current ones."""
        suite = self.suite
        if extensions is None:
            extensions = self.extensions
        if isinstance(proposal, Add):
            self._validate_key_package(proposal.key_package, extensions, now)
            self._check_new_leaf_keys(proposal.key_package.leaf_node, None)
        elif isinstance(proposal, Update):
            if not isinstance(sender, SenderMember):
                raise _rule("only members send Update proposals", "12.1.2")
            leaf = proposal.leaf_node
            current = self.tree.leaf_node(sender.leaf_index)
            if current is None:
                raise _rule("Update from a blank leaf", "12.1.2")
            if leaf.leaf_node_source != LeafNodeSource.update:
                raise _rule("Update leaf_node_source is not update", "7.3")
            if leaf.encryption_key == current.encryption_key:
                raise _rule("Update does not change the encryption key", "7.3")
            try:
                leaf.verify(suite, self.group_id, sender.leaf_index)
            except CryptoError:
                raise _rule("Update leaf node signature is invalid", "7.3") from None
            try:
                suite.validate_hpke_public_key(leaf.encryption_key)
            except DecodeError:
                raise _rule("Update carries a malformed HPKE key", "7.3") from None
            self._check_new_leaf_keys(leaf, sender.leaf_index)
            self._validate_leaf_common(leaf, extensions)
        elif isinstance(proposal, Remove):
            if self.tree.leaf_node(proposal.removed) is None:
                raise _rule(f"Remove of blank or absent leaf {proposal.removed}", "12.1.3")
        elif isinstance(proposal, PreSharedKey):
            psk = proposal.psk
            if (
                isinstance(psk.psk, ResumptionPSK)
                and psk.psk.usage != ResumptionPSKUsage.application
            ):
                raise _rule("resumption PSK with usage reinit/branch in a proposal", "12.1.4")
            if len(psk.psk_nonce) != suite.hash_length:
                raise _rule("psk_nonce must be KDF.Nh bytes", "12.1.4")
        elif isinstance(proposal, ReInit):
            if proposal.version < self.group_context.version:
                raise _rule("ReInit to an older protocol version", "12.1.5")
        elif isinstance(proposal, ExternalInit):
            if not isinstance(sender, SenderNewMemberCommit):
                raise _rule("ExternalInit outside an external commit", "12.1.6")
        elif isinstance(proposal, GroupContextExtensions):
            pass  # checked against the post-commit tree in _validate_proposal_list

    def _validate_proposal_list(
        self,
        proposals: Sequence[tuple[Proposal, Sender]],
        committer: Sender,
        external: bool,
        now: int | None,
    ) -> None:
        """§12.2 proposal list validation, for regular and external commits."""
        extensions = next(
            (p.extensions for p, _ in proposals if isinstance(p, GroupContextExtensions)), None
        )
        for proposal, sender in proposals:
            self._validate_single_proposal(proposal, sender, now, extensions)
        types = [p.proposal_type for p, _ in proposals]
        if external:
            if types.count(ProposalType.external_init) != 1:
                raise _rule("external commit needs exactly one ExternalInit", "12.2")
            if types.count(ProposalType.remove) > 1:
                raise _rule("external commit with more than one Remove", "12.2")
            allowed = {ProposalType.external_init, ProposalType.remove, ProposalType.psk}
            if any(t not in allowed for t in types):
                raise _rule("external commit with a disallowed proposal type", "12.2")
        else:
            if ProposalType.external_init in types:
                raise _rule("ExternalInit in a regular commit", "12.2")
            assert isinstance(committer, SenderMember)
            me = committer.leaf_index
            touched: set[int] = set()
            for proposal, sender in proposals:
                if isinstance(proposal, Update):
                    assert isinstance(sender, SenderMember)
                    if sender.leaf_index == me:
                        raise _rule("commit includes the committer's own Update", "12.2")
                    leaf = sender.leaf_index
                elif isinstance(proposal, Remove):
                    if proposal.removed == me:
                        raise _rule("commit removes the committer", "12.2")
                    leaf = proposal.removed
                else:
                    continue
                if leaf in touched:
                    raise _rule(f"several Update/Remove proposals for leaf {leaf}", "12.2")
                touched.add(leaf)
        if ProposalType.reinit in types and len(types) > 1:
            raise _rule("ReInit together with other proposals", "12.2")
        if types.count(ProposalType.group_context_extensions) > 1:
            raise _rule("several GroupContextExtensions proposals", "12.2")
        psk_ids = [encode(p.psk) for p, _ in proposals if isinstance(p, PreSharedKey)]
        if len(set(psk_ids)) != len(psk_ids):
            raise _rule("several PreSharedKey proposals for the same PSK", "12.2")
        tree = self.tree
        # Signature keys of the members this list removes; the tree counts every member's key.
        removed_keys = [
            removed_leaf.signature_key
            for p, _ in proposals
            if isinstance(p, Remove) and (removed_leaf := tree.leaf_node(p.removed)) is not None
        ]
        new_keys: set[bytes] = set()
        for proposal, _ in proposals:
            if isinstance(proposal, Add):
                key = proposal.key_package.leaf_node.signature_key
                if key in new_keys:
                    raise _rule("two Adds for the same client", "12.2")
                if tree.signature_key_users(key) > removed_keys.count(key):
                    raise _rule("Add for a client already in the group", "12.2")
                new_keys.add(key)

    def _check_tree_after(self, applied: _Applied) -> None:
        """The post-commit checks on the new tree that depend on several proposals together:
        GroupContextExtensions support by every remaining member (§12.1.7), unique keys (§7.3)."""
        tree = applied.tree
        if ProposalType.group_context_extensions in applied.types:
            tree.verify_capabilities(
                parse_extension(applied.extensions, RequiredCapabilities), applied.extensions
            )
        tree.verify_unique_keys()

    # --- PSKs -------------------------------------------------------------------------------

    def _resolve_psks(self, ids: Sequence[PreSharedKeyID], psks: PskStore) -> PskSecret:
        values: list[tuple[bytes, bytes]] = []
        for psk_id in ids:
            value: bytes | None
            if isinstance(psk_id.psk, ExternalPSK):
                value = psks.external.get(psk_id.psk.psk_id)
            else:
                r = psk_id.psk
                value = None
                if r.psk_group_id == self.group_id:
                    for epoch, secret in self.resumption_psks:
                        if epoch == r.psk_epoch:
                            value = secret.value
                if value is None:
                    value = psks.resumption.get((r.psk_group_id, r.psk_epoch))
            if value is None:
                raise _rule("a PreSharedKey the commit uses is not available", "12.4.2")
            values.append((encode(psk_id), value))
        return psk_secret(self.suite, values)

    # --- committing (§12.4.1) -----------------------------------------------------------------

    def _select_pending(self, explicit: Sequence[Proposal]) -> list[CachedProposal]:
        """The cached proposals to commit by reference: every one that keeps the list valid
        together with ``explicit`` (§12.2, §12.4: "as long as this results in a valid proposal
        list"). Dropped: our own Update (the path replaces it) and a Remove of us; a second
        Update/Remove of one leaf (any Remove first, else the most recent Update); an Add of a
        client already added or still in the group; a repeated PSK; a second
        GroupContextExtensions; a ReInit when anything else is committed."""
        cached = self.proposals
        if not cached:
            return []
        removed = {p.removed for p in explicit if isinstance(p, Remove)}
        keep: set[int] = set()  # indexes into `cached`
        for i, c in enumerate(cached):
            p = c.proposal
            if isinstance(p, Remove) and p.removed != self.own_leaf and p.removed not in removed:
                removed.add(p.removed)
                keep.add(i)
        touched = set(removed)
        for i in reversed(range(len(cached))):
            p, s = cached[i].proposal, cached[i].sender
            if (
                isinstance(p, Update)
                and isinstance(s, SenderMember)
                and s.leaf_index != self.own_leaf
                and s.leaf_index not in touched
            ):
                touched.add(s.leaf_index)
                keep.add(i)
        clients = {leaf.signature_key for i, leaf in self.tree.members() if i not in removed}
        clients |= {p.key_package.leaf_node.signature_key for p in explicit if isinstance(p, Add)}
        psks = {encode(p.psk) for p in explicit if isinstance(p, PreSharedKey)}
        extensions = any(isinstance(p, GroupContextExtensions) for p in explicit)
        reinit: int | None = None
        for i, c in enumerate(cached):
            p = c.proposal
            if isinstance(p, Add):
                key = p.key_package.leaf_node.signature_key
                if key in clients:
                    continue
                clients.add(key)
            elif isinstance(p, PreSharedKey):
                if encode(p.psk) in psks:
                    continue
                psks.add(encode(p.psk))
            elif isinstance(p, GroupContextExtensions):
                if extensions:
                    continue
                extensions = True
            elif isinstance(p, ReInit):
                reinit = i if reinit is None else reinit
                continue
            else:
                continue  # Update and Remove were chosen above
            keep.add(i)
        if reinit is not None and not keep and not explicit:
            keep.add(reinit)  # §12.2: other proposals are preferred over a ReInit
        return [cached[i] for i in sorted(keep)]

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
        self._check_usable()
        me = SenderMember(self.own_leaf)
        by_ref = self._select_pending(proposals) if include_pending else []
        listed: list[tuple[Proposal, Sender]] = [(c.proposal, c.sender) for c in by_ref]
        listed += [(p, me) for p in proposals]
        self._validate_proposal_list(listed, me, external=False, now=now)
        applied = _apply_proposals(self.tree, self.extensions, listed)
        if applied.reinit is not None and len(listed) > 1:
            raise _rule("ReInit together with other proposals", "12.2")
        path_required = not listed or bool(applied.types & _PATH_REQUIRED)
        use_path = path_required or force_path
        new_tree = applied.tree
        private_keys = self.private_keys
        commit_secret = CommitSecret(bytes(self.suite.hash_length))
        update_path: UpdatePath | None = None
        prepared = None
        added_leaves = [leaf for leaf, _ in applied.added]
        if use_path:
            prepared = prepare_commit_path(
                new_tree,
                self.own_leaf,
                rng(self.suite.hash_length),
                self._signature_private_key,
                self.group_id,
                leaf_node,
            )
            new_tree = prepared.tree
            private_keys = prepared.private_keys
            commit_secret = prepared.commit_secret
        self._check_tree_after(replace(applied, tree=new_tree) if prepared else applied)
        provisional = GroupContext(
            self.suite.id,
            self.group_id,
            self.epoch + 1,
            new_tree.tree_hash(),
            self.group_context.confirmed_transcript_hash,
            applied.extensions,
        )
        if prepared is not None:
            update_path = prepared.encrypt(encode(provisional), exclude=added_leaves)
        commit = Commit(
            (*(c.ref for c in by_ref), *proposals),
            update_path,
        )
        wire_format = (
            WireFormat.mls_private_message
            if self.config.private_handshakes
            else WireFormat.mls_public_message
        )
        framed = self._frame(commit, authenticated_data)
        signature = sign_framed_content(
            self.suite, self._signature_private_key.value, wire_format, framed, self.group_context
        )
        psk = self._resolve_psks(applied.psk_ids, psks)
        result = self._advance(
            applied=applied,
            new_tree=new_tree,
            provisional=provisional,
            wire_format=wire_format,
            framed=framed,
            signature=signature,
            confirmation_tag=None,
            init_secret=self.epoch_secrets.init_secret,
            commit_secret=commit_secret,
            psk=psk,
            private_keys=private_keys,
            own_leaf=self.own_leaf,
        )
        new_group, auth, epoch = result
        # Protect with the *old* epoch's keys (§12.4.1).
        if wire_format == WireFormat.mls_private_message:
            after_send, message = self._protect_private(auth, rng)
        else:
            after_send = self
            tag = membership_tag(
                self.suite, self.epoch_secrets.membership_key, auth, self.group_context
            )
            message = encode(MLSMessage(PublicMessage(framed, auth.auth, tag)))
        welcome: bytes | None = None
        signed_group_info: bytes | None = None
        if applied.added:
            group_info = new_group._group_info()
            signed_group_info = encode(MLSMessage(group_info))
            welcome = new_group._welcome(
                group_info,
                epoch,
                applied.added,
                applied.psk_ids,
                prepared.path_secret_for if prepared is not None else None,
            )
        added = tuple(_member(new_tree, leaf) for leaf in added_leaves)
        pending = PendingCommit(new_group, message, added, tuple(applied.removed), after_send)
        return CommitOutput(message, welcome, pending, signed_group_info)

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
        """Adopt a processed commit (the explicit merge; I4 holds until this is called)."""
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

    def _advance(
        self,
        *,
        applied: _Applied,
        new_tree: RatchetTree,
        provisional: GroupContext,
        wire_format: WireFormat,
        framed: FramedContent,
        signature: bytes,
        confirmation_tag: bytes | None,
        init_secret: InitSecret,
        commit_secret: CommitSecret,
        psk: PskSecret,
        private_keys: TreePrivateKeys,
        own_leaf: LeafIndex,
    ) -> tuple[Group, AuthenticatedContent, KeyScheduleEpoch]:
        """The common tail of creating and processing a commit (§12.4.1, §12.4.2): transcript
        hashes, key schedule, confirmation tag; returns the new state. ``confirmation_tag`` is
        the received one (verified here) or None when we are the committer (computed here)."""
        suite = self.suite
        # The confirmed transcript hash does not depend on the tag, only the interim one does.
        provisional_auth = AuthenticatedContent(
            wire_format, framed, FramedContentAuthData(signature, b"\x00")
        )
        confirmed, _ = transcript_hashes(suite, self.interim_transcript_hash, provisional_auth)
        new_context = replace(provisional, confirmed_transcript_hash=confirmed)
        epoch = key_schedule(suite, init_secret, commit_secret, psk, encode(new_context))
        tag = epoch.secrets.confirmation_tag(confirmed)
        if confirmation_tag is not None:
            epoch.secrets.verify_confirmation_tag(confirmed, confirmation_tag)
            tag = confirmation_tag
        auth = AuthenticatedContent(wire_format, framed, FramedContentAuthData(signature, tag))
        interim = interim_transcript_hash(suite, confirmed, tag)
        new_group = self._next_epoch(
            new_context,
            new_tree,
            private_keys.prune(new_tree),
            epoch.secrets,
            epoch.encryption_secret,
            interim,
            tag,
            applied.reinit,
            own_leaf,
        )
        return new_group, auth, epoch

    def _next_epoch(
        self,
        context: GroupContext,
        tree: RatchetTree,
        private_keys: TreePrivateKeys,
        secrets: EpochSecrets,
        encryption_secret: EncryptionSecret,
        interim: bytes,
        tag: bytes,
        reinit: ReInit | None,
        own_leaf: LeafIndex,
    ) -> Group:
        past = self.past_epochs
        if self.config.max_past_epochs > 0:
            keep = PastEpoch(
                self.group_context,
                self.epoch_secrets.sender_data_secret,
                self.secret_tree,
                tree=self.tree,
            )
            past = (keep, *past)[: self.config.max_past_epochs]
        else:
            past = ()
        psks = ((context.epoch, secrets.resumption_psk), *self.resumption_psks)
        return self._evolve(
            group_context=context,
            tree=tree,
            own_leaf=own_leaf,
            private_keys=private_keys,
            epoch_secrets=secrets,
            secret_tree=SecretTree.create(
                self.suite, encryption_secret, tree.n_leaves, self.config.secret_tree
            ),
            interim_transcript_hash=interim,
            confirmation_tag=tag,
            proposals=(),
            resumption_psks=psks[: self.config.resumption_psk_epochs],
            past_epochs=past,
            reinit=reinit,
            update_keys=(),
        )

    def _group_info(self) -> GroupInfo:
        extensions: list[Extension] = []
        if self.config.ratchet_tree_in_welcome:
            extensions.append(Extension(ExtensionType.ratchet_tree, self.tree.encode()))
        if self.config.external_pub_in_group_info:
            extensions.append(make_extension(ExternalPub(self.epoch_secrets.external_pub)))
        return GroupInfo.sign(
            self.suite,
            self._signature_private_key.value,
            self.group_context,
            tuple(extensions),
            self.confirmation_tag,
            self.own_leaf,
        )

    def group_info(self) -> bytes:
        """A signed GroupInfo MLSMessage of this epoch (for external joins, §12.4.3.2)."""
        return encode(MLSMessage(self._group_info()))

    def _welcome(
        self,
        group_info: GroupInfo,
        epoch: KeyScheduleEpoch,
        added: Sequence[tuple[LeafIndex, KeyPackage]],
        psk_ids: Sequence[PreSharedKeyID],
        path_secret_for: Callable[[int], PathSecret | None] | None,
    ) -> bytes:
        """One Welcome for every member this commit added (§12.4.3.1)."""
        suite = self.suite
        key, nonce = welcome_key_nonce(suite, epoch.welcome_secret)
        encrypted_group_info = suite.aead_seal(key.value, nonce.value, b"", encode(group_info))
        secrets: list[EncryptedGroupSecrets] = []
        for leaf, kp in added:
            path_secret = path_secret_for(leaf) if path_secret_for is not None else None
            group_secrets = GroupSecrets(
                epoch.joiner_secret.value,
                PathSecretStruct(path_secret.value) if path_secret is not None else None,
                tuple(psk_ids),
            )
            kem_output, ciphertext = suite.encrypt_with_label(
                kp.init_key, WELCOME_LABEL, encrypted_group_info, encode(group_secrets)
            )
            secrets.append(
                EncryptedGroupSecrets(
                    make_key_package_ref(suite, kp), HPKECiphertext(kem_output, ciphertext)
                )
            )
        return encode(MLSMessage(Welcome(suite.id, tuple(secrets), encrypted_group_info)))

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
        msg = decode(MLSMessage, message) if isinstance(message, bytes) else message
        body = msg.body
        if isinstance(body, PublicMessage):
            return self._process_public(body, psks, now)
        if isinstance(body, PrivateMessage):
            return self._process_private(body, psks, now)
        raise _rule(f"{msg.wire_format.name} is not a group message", "6")

    def _check_epoch(self, group_id: bytes, epoch: int) -> None:
        if group_id != self.group_id:
            raise _rule("message is for another group", "6")
        if epoch != self.epoch:
            raise _rule(f"message is for epoch {epoch}, the group is in {self.epoch}", "6")

    def _process_private(
        self, body: PrivateMessage, psks: PskStore, now: int | None
    ) -> ProcessedMessage:
        if body.group_id != self.group_id:
            raise _rule("message is for another group", "6")
        if body.epoch != self.epoch:
            if body.content_type == ContentType.application:
                return self._process_late_application(body)
            raise _rule(f"handshake for epoch {body.epoch}, the group is in {self.epoch}", "6")
        tree = self.tree
        decrypted = unprotect_private(
            self.suite,
            body,
            self.group_context,
            self.secret_tree,
            self.epoch_secrets.sender_data_secret,
            lambda leaf: tree.leaf_node(leaf) is not None,
        )
        sender = LeafIndex(decrypted.sender_data.leaf_index)
        if sender == self.own_leaf:
            raise _rule("message from our own leaf (a delivery-service echo)", "6.3.2")
        leaf = tree.leaf_node(sender)
        assert leaf is not None
        auth = decrypted.content.authenticated_content
        try:
            verify_signature(self.suite, leaf.signature_key, auth, self.group_context)
        except CryptoError:
            raise _rule("FramedContent signature is invalid", "6.1") from None
        state = self._evolve(secret_tree=decrypted.tree)
        content = auth.content.content
        if isinstance(content, bytes):
            return ApplicationMessage(
                state, sender, leaf.credential, self.epoch, content, auth.content.authenticated_data
            )
        return state._handle_handshake(auth, leaf.credential, psks, now)

    def _process_late_application(self, body: PrivateMessage) -> ApplicationMessage:
        """An application message of a previous epoch still kept (§14, ``max_past_epochs``)."""
        for i, past in enumerate(self.past_epochs):
            if past.group_context.epoch != body.epoch:
                continue
            decrypted = unprotect_private(
                self.suite,
                body,
                past.group_context,
                past.secret_tree,
                past.sender_data_secret,
                lambda leaf, past=past: past.member(leaf) is not None,  # type: ignore[misc]
            )
            sender = LeafIndex(decrypted.sender_data.leaf_index)
            member = past.member(sender)
            assert member is not None
            auth = decrypted.content.authenticated_content
            try:
                verify_signature(self.suite, member[0], auth, past.group_context)
            except CryptoError:
                raise _rule("FramedContent signature is invalid", "6.1") from None
            content = auth.content.content
            assert isinstance(content, bytes)
            kept = replace(past, secret_tree=decrypted.tree)
            past_epochs = (*self.past_epochs[:i], kept, *self.past_epochs[i + 1 :])
            return ApplicationMessage(
                self._evolve(past_epochs=past_epochs),
                sender,
                member[1],
                body.epoch,
                content,
                auth.content.authenticated_data,
            )
        raise _rule(f"message for epoch {body.epoch}, whose keys are gone", "6")

    def _public_sender_key(self, message: PublicMessage) -> tuple[bytes, Credential | None]:
        """The signature key that must have signed a PublicMessage, by sender type (§6.1)."""
        framed = message.content
        sender = framed.sender
        content = framed.content
        if isinstance(sender, SenderMember):
            leaf = self.tree.leaf_node(sender.leaf_index)
            if leaf is None:
                raise _rule(f"sender leaf {sender.leaf_index} is blank", "6.1")
            if sender.leaf_index == self.own_leaf:
                raise _rule("message from our own leaf (a delivery-service echo)", "6.1")
            return leaf.signature_key, leaf.credential
        if isinstance(sender, SenderExternal):
            senders = parse_extension(self.extensions, ExternalSenders)
            if senders is None or sender.sender_index >= len(senders.external_senders):
                raise _rule("unknown external sender", "12.1.8.1")
            if isinstance(content, (bytes, Commit)):
                raise _rule("external senders only send proposals", "12.1.8")
            if content.proposal_type not in _EXTERNAL_SENDER_TYPES:
                raise _rule("proposal type not allowed from an external sender", "12.1.8")
            ext = senders.external_senders[sender.sender_index]
            return ext.signature_key, ext.credential
        if isinstance(sender, SenderNewMemberProposal):
            if not isinstance(content, Add):
                raise _rule("new_member_proposal senders only send Add proposals", "12.1.8")
            leaf_node = content.key_package.leaf_node
            return leaf_node.signature_key, leaf_node.credential
        assert isinstance(sender, SenderNewMemberCommit)
        if not isinstance(content, Commit) or content.path is None:
            raise _rule("new_member_commit must be a commit with a path", "12.4.3.2")
        return content.path.leaf_node.signature_key, content.path.leaf_node.credential

    def _process_public(
        self, body: PublicMessage, psks: PskStore, now: int | None
    ) -> ProcessedMessage:
        self._check_epoch(body.content.group_id, body.content.epoch)
        unverified = unprotect_public(
            self.suite, body, self.group_context, self.epoch_secrets.membership_key
        )
        key, credential = self._public_sender_key(body)
        auth = unverified.authenticated_content
        try:
            verify_signature(self.suite, key, auth, self.group_context)
        except CryptoError:
            raise _rule("FramedContent signature is invalid", "6.1") from None
        return self._handle_handshake(auth, credential, psks, now)

    def _handle_handshake(
        self,
        auth: AuthenticatedContent,
        credential: Credential | None,
        psks: PskStore,
        now: int | None,
    ) -> ProcessedMessage:
        content = auth.content.content
        sender = auth.content.sender
        if isinstance(content, Commit):
            assert credential is not None
            return self._process_commit(auth, content, credential, psks, now)
        assert not isinstance(content, bytes)
        self._validate_single_proposal(content, sender, now)
        ref = make_proposal_ref(self.suite, encode(auth))
        cached = CachedProposal(ref, content, sender)
        state = self._evolve(proposals=(*self.proposals, cached))
        return ProposalMessage(state, content, ref, sender, credential)

    def _process_commit(
        self,
        auth: AuthenticatedContent,
        commit: Commit,
        credential: Credential,
        psks: PskStore,
        now: int | None,
    ) -> StagedCommit:
        suite = self.suite
        sender = auth.content.sender
        external = isinstance(sender, SenderNewMemberCommit)
        if not external and not isinstance(sender, SenderMember):
            raise _rule("commits come from members or new members only", "6.1")
        if auth.auth.confirmation_tag is None:
            raise _rule("commit without a confirmation tag", "6.1")
        listed: list[tuple[Proposal, Sender]] = []
        for item in commit.proposals:
            if isinstance(item, bytes):
                if external:
                    raise _rule("external commit with a proposal by reference", "12.4.3.2")
                cached = next((c for c in self.proposals if c.ref == item), None)
                if cached is None:
                    raise _rule("commit references an unknown proposal", "12.4.2")
                listed.append((cached.proposal, cached.sender))
            else:
                listed.append((item, sender))
        self._validate_proposal_list(listed, sender, external, now)
        applied = _apply_proposals(self.tree, self.extensions, listed)
        path = commit.path
        if (external or not listed or applied.types & _PATH_REQUIRED) and path is None:
            raise _rule("this commit requires an UpdatePath", "12.4")
        private_keys = self.private_keys
        own_leaf = self.own_leaf
        removed_leaves = {m.leaf_index for m in applied.removed}
        self_removed = own_leaf in removed_leaves
        if own_leaf in applied.updated:
            new_key = self.tree_leaf_after(applied, own_leaf).encryption_key
            match = next((k for pub, k in self.update_keys if pub == new_key), None)
            if match is None:
                raise _rule("commit applies an Update of ours we did not send", "12.1.2")
            private_keys = private_keys.with_keys({2 * own_leaf: (new_key, match)})
        tree = applied.tree
        commit_secret = CommitSecret(bytes(suite.hash_length))
        added_leaves = [leaf for leaf, _ in applied.added]
        if external:
            assert path is not None
            if tree is self.tree:  # not copied by _apply_proposals
                tree = tree.copy()
            committer = tree.add_leaf(path.leaf_node)
            removed = [p for p, _ in listed if isinstance(p, Remove)]
            if removed and applied.removed[0].credential != path.leaf_node.credential:
                raise _rule("resync commit for another identity", "12.4.3.2")
        else:
            assert isinstance(sender, SenderMember)
            committer = LeafIndex(sender.leaf_index)
        if path is not None:
            leaf = path.leaf_node
            old_leaf = self.tree.leaf_node(committer)
            if (
                not external
                and old_leaf is not None
                and (old_leaf.encryption_key == leaf.encryption_key)
            ):
                raise _rule("committer's new leaf keeps its encryption key", "12.4.2")
            tree = merge_update_path(tree, committer, path)
            try:
                leaf.verify(suite, self.group_id, committer)
            except CryptoError:
                raise _rule("UpdatePath leaf node signature is invalid", "7.3") from None
            self._validate_leaf_common(leaf, applied.extensions)
        self._check_tree_after(replace(applied, tree=tree))
        provisional = GroupContext(
            suite.id,
            self.group_id,
            self.epoch + 1,
            tree.tree_hash(),
            self.group_context.confirmed_transcript_hash,
            applied.extensions,
        )
        added = tuple(_member(tree, leaf) for leaf in added_leaves)
        if self_removed:
            # We cannot follow the group any further (§12.4.2); report and stop here.
            return StagedCommit(
                self,
                sender,
                credential,
                tuple(p for p, _ in listed),
                added,
                tuple(applied.removed),
                (),
                True,
                applied.reinit,
            )
        if path is not None:
            decrypted = decrypt_update_path(
                tree, committer, path, private_keys, encode(provisional), exclude=added_leaves
            )
            private_keys = decrypted.private_keys
            commit_secret = decrypted.commit_secret
        if external:
            assert applied.external_init is not None
            external_priv = self.epoch_secrets.external_key_pair().private_key
            init_secret = external_init_receiver(
                suite, external_priv, applied.external_init.kem_output
            )
        else:
            init_secret = self.epoch_secrets.init_secret
        psk = self._resolve_psks(applied.psk_ids, psks)
        new_group, _, _ = self._advance(
            applied=applied,
            new_tree=tree,
            provisional=provisional,
            wire_format=auth.wire_format,
            framed=auth.content,
            signature=auth.auth.signature,
            confirmation_tag=auth.auth.confirmation_tag,
            init_secret=init_secret,
            commit_secret=commit_secret,
            psk=psk,
            private_keys=private_keys,
            own_leaf=own_leaf,
        )
        updated = [u for u in applied.updated if u not in removed_leaves]
        if external:
            # An external joiner is a new member of the roster (I3: shown as an addition).
            added = (*added, _member(tree, committer))
        elif path is not None:
            updated.append(committer)
        return StagedCommit(
            new_group,
            sender,
            credential,
            tuple(p for p, _ in listed),
            added,
            tuple(applied.removed),
            tuple(_member(tree, u) for u in updated if tree.leaf_node(u) is not None),
            False,
            applied.reinit,
        )

    @staticmethod
    def tree_leaf_after(applied: _Applied, leaf: int) -> LeafNode:
        node = applied.tree.leaf_node(leaf)
        assert node is not None
        return node

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
        opened = open_welcome(welcome, bundle.ref, bundle.init_private_key, psks)
        suite, group_secrets, group_info = opened.suite, opened.group_secrets, opened.group_info
        if suite.id != bundle.key_package.cipher_suite:
            raise _rule("Welcome cipher suite differs from the KeyPackage's", "12.4.3.1")
        joiner, psk, special = opened.joiner_secret, opened.psk_secret, opened.special_psk
        gc = group_info.group_context
        if gc.cipher_suite != suite.id:
            raise _rule("GroupInfo cipher suite differs from the Welcome's", "12.4.3.1")
        tree = _tree_for(suite, group_info, ratchet_tree)
        signer = tree.leaf_node(group_info.signer)
        if signer is None:
            raise _rule("GroupInfo signer leaf is blank", "12.4.3.1")
        try:
            group_info.verify(suite, signer.signature_key)
        except CryptoError:
            raise _rule("GroupInfo signature is invalid", "12.4.3.1") from None
        tree.validate(
            gc.group_id,
            tree_hash=gc.tree_hash,
            required_capabilities=parse_extension(gc.extensions, RequiredCapabilities),
            context_extensions=gc.extensions,
            now=now,
        )
        my_leaf = tree.find_leaf(bundle.key_package.leaf_node)
        if my_leaf is None:
            raise _rule("our KeyPackage's leaf is not in the tree", "12.4.3.1")
        path_secret = (
            PathSecret(group_secrets.path_secret.path_secret)
            if group_secrets.path_secret is not None
            else None
        )
        private_keys = join_private_keys(
            tree, my_leaf, bundle.encryption_private_key, group_info.signer, path_secret
        )
        epoch = key_schedule_from_joiner(suite, joiner, psk, encode(gc))
        epoch.secrets.verify_confirmation_tag(
            gc.confirmed_transcript_hash, group_info.confirmation_tag
        )
        if special and gc.epoch != 1:
            raise _rule("a reinit/branch Welcome must start at epoch 1", "12.4.3.1")
        cfg = config or GroupConfig()
        return cls(
            suite=suite,
            group_context=gc,
            tree=tree,
            own_leaf=my_leaf,
            private_keys=private_keys,
            signature_private_key=bundle.signature_private_key,
            epoch_secrets=epoch.secrets,
            secret_tree=SecretTree.create(
                suite, epoch.encryption_secret, tree.n_leaves, cfg.secret_tree
            ),
            interim_transcript_hash=interim_transcript_hash(
                suite, gc.confirmed_transcript_hash, group_info.confirmation_tag
            ),
            confirmation_tag=group_info.confirmation_tag,
            resumption_psks=((gc.epoch, epoch.secrets.resumption_psk),),
            config=cfg,
        )

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
        msg = decode(MLSMessage, group_info) if isinstance(group_info, bytes) else group_info
        gi = msg.body
        if not isinstance(gi, GroupInfo):
            raise _rule("not a GroupInfo message", "12.4.3.2")
        gc = gi.group_context
        suite = cipher_suite(gc.cipher_suite)
        tree = _tree_for(suite, gi, ratchet_tree)
        signer = tree.leaf_node(gi.signer)
        if signer is None:
            raise _rule("GroupInfo signer leaf is blank", "12.4.3.2")
        try:
            gi.verify(suite, signer.signature_key)
        except CryptoError:
            raise _rule("GroupInfo signature is invalid", "12.4.3.2") from None
        tree.validate(
            gc.group_id,
            tree_hash=gc.tree_hash,
            required_capabilities=parse_extension(gc.extensions, RequiredCapabilities),
            context_extensions=gc.extensions,
            now=now,
        )
        external_pub = parse_extension(gi.extensions, ExternalPub)
        if external_pub is None:
            raise _rule("GroupInfo has no external_pub extension", "12.4.3.2")
        kem_output, init_secret = external_init_sender(suite, external_pub.external_pub)
        proposals: list[Proposal] = [ExternalInit(kem_output)]
        if resync_leaf is not None:
            proposals.append(Remove(resync_leaf))
        proposals += [PreSharedKey(p) for p in psk_ids]
        sender = SenderNewMemberCommit()
        applied = _apply_proposals(tree, gc.extensions, [(p, sender) for p in proposals])
        new_tree = applied.tree if applied.tree is not tree else tree.copy()
        own_leaf = new_tree.add_leaf(leaf_node)
        prepared = prepare_commit_path(
            new_tree,
            own_leaf,
            rng(suite.hash_length),
            signature_private_key,
            gc.group_id,
            leaf_node,
        )
        prepared.tree.verify_unique_keys()
        provisional = GroupContext(
            suite.id,
            gc.group_id,
            gc.epoch + 1,
            prepared.tree.tree_hash(),
            gc.confirmed_transcript_hash,
            applied.extensions,
        )
        commit = Commit(tuple(proposals), prepared.encrypt(encode(provisional)))
        framed = FramedContent(gc.group_id, gc.epoch, sender, authenticated_data, commit)
        signature = sign_framed_content(
            suite, signature_private_key.value, WireFormat.mls_public_message, framed, gc
        )
        values: list[tuple[bytes, bytes]] = []
        for psk_id in psk_ids:
            value = (
                psks.external.get(psk_id.psk.psk_id)
                if isinstance(psk_id.psk, ExternalPSK)
                else psks.resumption.get((psk_id.psk.psk_group_id, psk_id.psk.psk_epoch))
            )
            if value is None:
                raise StateError("a PSK for the external commit is not available")
            values.append((encode(psk_id), value))
        interim_before = interim_transcript_hash(
            suite, gc.confirmed_transcript_hash, gi.confirmation_tag
        )
        provisional_auth = AuthenticatedContent(
            WireFormat.mls_public_message, framed, FramedContentAuthData(signature, b"\x00")
        )
        confirmed, _ = transcript_hashes(suite, interim_before, provisional_auth)
        new_context = replace(provisional, confirmed_transcript_hash=confirmed)
        epoch = key_schedule(
            suite,
            init_secret,
            prepared.commit_secret,
            psk_secret(suite, values),
            encode(new_context),
        )
        tag = epoch.secrets.confirmation_tag(confirmed)
        message = encode(
            MLSMessage(PublicMessage(framed, FramedContentAuthData(signature, tag), None))
        )
        cfg = config or GroupConfig()
        group = cls(
            suite=suite,
            group_context=new_context,
            tree=prepared.tree,
            own_leaf=own_leaf,
            private_keys=prepared.private_keys,
            signature_private_key=signature_private_key,
            epoch_secrets=epoch.secrets,
            secret_tree=SecretTree.create(
                suite, epoch.encryption_secret, prepared.tree.n_leaves, cfg.secret_tree
            ),
            interim_transcript_hash=interim_transcript_hash(suite, confirmed, tag),
            confirmation_tag=tag,
            resumption_psks=((new_context.epoch, epoch.secrets.resumption_psk),),
            config=cfg,
        )
        return group, message

    # --- persistence --------------------------------------------------------------------------

    STATE_VERSION = 1

    def to_bytes(self) -> bytes:
        """The whole member state, for the client's encrypted store. Contains secrets."""
        w = Writer()
        w.push_uint8(self.STATE_VERSION)
        w.push_uint16(self.suite.id)
        self.group_context.push(w)
        w.push_opaque(self.tree.encode())
        w.push_uint32(self.own_leaf)
        w.push_vector(self.private_keys.nodes(), self._push_private_key)
        w.push_opaque(self._signature_private_key.value)
        w.push_opaque(self.epoch_secrets.to_bytes())
        w.push_opaque(self.secret_tree.to_bytes())
        w.push_opaque(self.interim_transcript_hash)
        w.push_opaque(self.confirmation_tag)
        w.push_vector(self.proposals, lambda w2, c: c.push(w2))
        w.push_vector(self.resumption_psks, _push_resumption_psk)
        w.push_vector(self.past_epochs, _push_past_epoch)
        w.push_optional(self.reinit, lambda w2, r: r.push(w2))
        w.push_vector(self.update_keys, _push_key_pair)
        return w.getvalue()

    def _push_private_key(self, w: Writer, x: int) -> None:
        public = self.private_keys.public_key(x)
        private = self.private_keys.private_key(x)
        assert public is not None and private is not None
        w.push_uint32(x)
        w.push_opaque(public)
        w.push_opaque(private.value)

    @classmethod
    def from_bytes(cls, data: bytes, config: GroupConfig | None = None) -> Group:
        """Restore a state written by `to_bytes`; `DecodeError` if it is not one."""
        cfg = config or GroupConfig()
        r = Reader(data)
        if r.pull_uint8() != cls.STATE_VERSION:
            raise DecodeError("unknown group state version")
        suite = cipher_suite(r.pull_uint16())
        gc = GroupContext.pull(r)
        tree = RatchetTree.decode(suite, r.pull_opaque())
        own_leaf = r.pull_uint32()
        keys = {x: (pub, PrivateKeyBytes(priv)) for x, pub, priv in r.pull_vector(_pull_key_entry)}
        signature_private_key = PrivateKeyBytes(r.pull_opaque())
        epoch_secrets = EpochSecrets.from_bytes(r.pull_opaque())
        secret_tree = SecretTree.from_bytes(r.pull_opaque(), cfg.secret_tree)
        interim = r.pull_opaque()
        tag = r.pull_opaque()
        proposals = tuple(r.pull_vector(CachedProposal.pull))
        resumption = tuple(r.pull_vector(_pull_resumption_psk))
        past = tuple(r.pull_vector(lambda r2: _pull_past_epoch(r2, suite, cfg)))
        reinit = r.pull_optional(ReInit.pull)
        update_keys = tuple(
            (pub, PrivateKeyBytes(priv)) for pub, priv in r.pull_vector(_pull_key_pair)
        )
        r.expect_end()
        return cls(
            suite=suite,
            group_context=gc,
            tree=tree,
            own_leaf=own_leaf,
            private_keys=TreePrivateKeys(own_leaf, keys),
            signature_private_key=signature_private_key,
            epoch_secrets=epoch_secrets,
            secret_tree=secret_tree,
            interim_transcript_hash=interim,
            confirmation_tag=tag,
            proposals=proposals,
            resumption_psks=resumption,
            past_epochs=past,
            reinit=reinit,
            update_keys=update_keys,
            config=cfg,
        )


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


def open_welcome(
    welcome: bytes | MLSMessage,
    key_package_ref: bytes,
    init_private_key: PrivateKeyBytes,
    psks: PskStore = _NO_PSKS,
) -> OpenedWelcome:
    """Decrypt our GroupSecrets and the GroupInfo of a Welcome (§12.4.3.1)."""
    msg = decode(MLSMessage, welcome) if isinstance(welcome, bytes) else welcome
    body = msg.body
    if not isinstance(body, Welcome):
        raise _rule("not a Welcome message", "12.4.3.1")
    suite = cipher_suite(body.cipher_suite)
    entry = body.secrets_for(key_package_ref)
    if entry is None:
        raise _rule("Welcome has no entry for this KeyPackage", "12.4.3.1")
    ct = entry.encrypted_group_secrets
    group_secrets = decode(
        GroupSecrets,
        suite.decrypt_with_label(
            init_private_key.value,
            WELCOME_LABEL,
            body.encrypted_group_info,
            ct.kem_output,
            ct.ciphertext,
        ),
    )
    special = [
        p
        for p in group_secrets.psks
        if isinstance(p.psk, ResumptionPSK) and p.psk.usage != ResumptionPSKUsage.application
    ]
    if len(special) > 1:
        raise _rule("several reinit/branch resumption PSKs", "12.4.3.1")
    psk_values: list[tuple[bytes, bytes]] = []
    for psk_id in group_secrets.psks:
        if isinstance(psk_id.psk, ExternalPSK):
            value = psks.external.get(psk_id.psk.psk_id)
        else:
            value = psks.resumption.get((psk_id.psk.psk_group_id, psk_id.psk.psk_epoch))
        if value is None:
            raise _rule("a PSK named in the Welcome is not available", "12.4.3.1")
        psk_values.append((encode(psk_id), value))
    psk = psk_secret(suite, psk_values)
    joiner = JoinerSecret(group_secrets.joiner_secret)
    key, nonce = welcome_key_nonce(suite, welcome_secret(suite, joiner, psk))
    group_info = decode(
        GroupInfo, suite.aead_open(key.value, nonce.value, b"", body.encrypted_group_info)
    )
    return OpenedWelcome(suite, group_secrets, group_info, joiner, psk, bool(special))


_DEFAULT_EXTENSIONS = frozenset(int(t) for t in ExtensionType)
_DEFAULT_PROPOSALS = frozenset(int(t) for t in ProposalType)


def _tree_for(suite: CipherSuite, group_info: GroupInfo, ratchet_tree: bytes | None) -> RatchetTree:
    """The tree from the GroupInfo's ``ratchet_tree`` extension, else the one given (§12.4.3.3)."""
    ext = find_extension(group_info.extensions, ExtensionType.ratchet_tree)
    data = ext.extension_data if ext is not None else ratchet_tree
    if data is None:
        raise StateError("the ratchet tree is neither in the GroupInfo nor given")
    return RatchetTree.decode(suite, data)


def _push_resumption_psk(w: Writer, item: tuple[int, ResumptionPsk]) -> None:
    w.push_uint64(item[0])
    w.push_opaque(item[1].value)


def _pull_resumption_psk(r: Reader) -> tuple[int, ResumptionPsk]:
    return r.pull_uint64(), ResumptionPsk(r.pull_opaque())


def _push_key_pair(w: Writer, item: tuple[bytes, PrivateKeyBytes]) -> None:
    w.push_opaque(item[0])
    w.push_opaque(item[1].value)


def _pull_key_pair(r: Reader) -> tuple[bytes, bytes]:
    return r.pull_opaque(), r.pull_opaque()


def _pull_key_entry(r: Reader) -> tuple[int, bytes, bytes]:
    return r.pull_uint32(), r.pull_opaque(), r.pull_opaque()


def _push_past_epoch(w: Writer, past: PastEpoch) -> None:
    past.group_context.push(w)
    w.push_opaque(past.sender_data_secret.value)
    w.push_opaque(past.secret_tree.to_bytes())

    def push_member(w2: Writer, m: tuple[int, bytes, Credential]) -> None:
        w2.push_uint32(m[0])
        w2.push_opaque(m[1])
        m[2].push(w2)

    w.push_vector(past.members(), push_member)


def _pull_past_epoch(r: Reader, suite: CipherSuite, config: GroupConfig) -> PastEpoch:
    gc = GroupContext.pull(r)
    sds = SenderDataSecret(r.pull_opaque())
    tree = SecretTree.from_bytes(r.pull_opaque(), config.secret_tree)
    members = tuple(
        r.pull_vector(lambda r2: (r2.pull_uint32(), r2.pull_opaque(), pull_credential(r2)))
    )
    return PastEpoch(gc, sds, tree, members)


# --- KeyPackages (§10) ---------------------------------------------------------------------

DEFAULT_LIFETIME_SECONDS = 90 * 24 * 3600


def default_capabilities(suite: CipherSuite, credential: Credential) -> Capabilities:
    return Capabilities(
        versions=(ProtocolVersion.mls10,),
        cipher_suites=(int(suite.id),),
        extensions=(),
        proposals=(),
        credentials=(int(credential.credential_type),),
    )


def generate_key_package(
    suite: CipherSuite,
    credential: Credential,
    signature_private_key: PrivateKeyBytes,
    *,
    now: int,
    lifetime_seconds: int = DEFAULT_LIFETIME_SECONDS,
    capabilities: Capabilities | None = None,
    leaf_extensions: Sequence[Extension] = (),
    extensions: Sequence[Extension] = (),
    rng: Rng = os.urandom,
) -> KeyPackageBundle:
    """A signed KeyPackage with fresh init and encryption keys (§10)."""
    init = suite.derive_key_pair(rng(suite.hash_length))
    enc = suite.derive_key_pair(rng(suite.hash_length))
    leaf = LeafNode(
        encryption_key=enc.public_key,
        signature_key=suite.signature_public_key(signature_private_key.value),
        credential=credential,
        capabilities=capabilities or default_capabilities(suite, credential),
        leaf_node_source=LeafNodeSource.key_package,
        lifetime=Lifetime(max(0, now - 3600), now + lifetime_seconds),
        parent_hash=None,
        extensions=tuple(leaf_extensions),
        signature=b"",
    ).signed(suite, signature_private_key)
    kp = KeyPackage(
        ProtocolVersion.mls10, suite.id, init.public_key, leaf, tuple(extensions), b""
    ).signed(suite, signature_private_key)
    return KeyPackageBundle(
        kp,
        PrivateKeyBytes(init.private_key),
        PrivateKeyBytes(enc.private_key),
        signature_private_key,
    )
