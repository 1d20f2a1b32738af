"""The public state of an MLS group and everything that can be judged from it alone.

A `PublicGroup` is what any party that sees the group's handshake traffic can know without a
secret (RFC 9420 §7.8, §8.2, §12): the ratchet tree, the GroupContext (and so its extensions),
the interim transcript hash and the cached proposals of the epoch. It owns:

* validation of KeyPackages (§10.1), leaf nodes (§7.3), single proposals (§12.1, through a
  table keyed by ProposalType) and proposal lists (§12.2);
* applying a proposal list to the tree and extensions (§12.3; the table keyed by type is in
  `proposal_application`);
* the sender's signature key of a PublicMessage and its signature check (§6.1, §12.1.8);
* the public half of processing a commit (§12.4.2): resolving proposals, applying them,
  merging the UpdatePath with its parent-hash check (§7.9.2), the provisional GroupContext;
* for a delivery service, `process_proposal` / `process_commit` over PublicMessages, which
  track the group epoch after epoch (the membership tag and confirmation tag need epoch
  secrets and are not checked; every signature, proposal rule and tree rule is);
* `from_group_info` (§12.4.3), and `to_bytes` / `from_bytes`.

Immutable: every operation returns a new `PublicGroup` and a rejected input changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from doorless.codec import Reader, Writer, decode, encode
from doorless.crypto import CipherSuite, cipher_suite
from doorless.errors import CryptoError, DecodeError, StateError
from doorless.mls.credential import Credential
from doorless.mls.extensions import (
    Extension,
    ExtensionType,
    ExternalSenders,
    RequiredCapabilities,
    find_extension,
    parse_extension,
)
from doorless.mls.framing import (
    AuthenticatedContent,
    ContentType,
    FramedContentAuthData,
    MLSMessage,
    PublicMessage,
    Sender,
    SenderExternal,
    SenderMember,
    SenderNewMemberCommit,
    SenderNewMemberProposal,
)
from doorless.mls.group_context import GroupContext
from doorless.mls.key_package import KeyPackage
from doorless.mls.leaf_node import LeafNode, LeafNodeSource, check_leaf_node_capabilities
from doorless.mls.message_protection import verify_signature
from doorless.mls.nodes import UpdatePath
from doorless.mls.proposal_application import AppliedProposals, apply_proposals
from doorless.mls.proposals import (
    Add,
    Commit,
    GroupContextExtensions,
    PreSharedKey,
    Proposal,
    ProposalType,
    ReInit,
    Remove,
    ResumptionPSK,
    ResumptionPSKUsage,
    Update,
    make_proposal_ref,
)
from doorless.mls.ratchet_tree import RatchetTree
from doorless.mls.schedule import interim_transcript_hash, transcript_hashes
from doorless.mls.tree_math import LeafIndex
from doorless.mls.treekem import merge_update_path
from doorless.mls.types import CachedProposal, Member, member_at, rule
from doorless.mls.welcome import GroupInfo

# §12.4: proposal types whose presence makes the UpdatePath mandatory.
PATH_REQUIRED = frozenset(
    {
        ProposalType.update,
        ProposalType.remove,
        ProposalType.external_init,
        ProposalType.group_context_extensions,
    }
)
# §12.1.8: proposal types an `external` sender may send.
EXTERNAL_SENDER_TYPES = frozenset(
    {
        ProposalType.add,
        ProposalType.remove,
        ProposalType.psk,
        ProposalType.reinit,
        ProposalType.group_context_extensions,
    }
)
DEFAULT_EXTENSIONS = frozenset(int(t) for t in ExtensionType)
DEFAULT_PROPOSALS = frozenset(int(t) for t in ProposalType)


# --- the public group -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PublicCommit:
    """The public half of a processed commit (§12.4.2): what the commit does to the tree and
    GroupContext, checked as far as that is possible without secrets."""

    proposals: tuple[tuple[Proposal, Sender], ...]
    applied: AppliedProposals
    external: bool
    committer: LeafIndex
    tree: RatchetTree  # after the proposals and the UpdatePath
    provisional: GroupContext  # of the next epoch, before the confirmed transcript hash
    path: UpdatePath | None


_Validator = Callable[
    ["PublicGroup", Proposal, Sender, int | None, Sequence[Extension]],
    None,
]


@dataclass(frozen=True, slots=True, repr=False, eq=False)
class PublicGroup:
    """The public state of one group in one epoch (no secret). Immutable."""

    suite: CipherSuite
    group_context: GroupContext
    tree: RatchetTree
    interim_transcript_hash: bytes
    confirmation_tag: bytes
    proposals: tuple[CachedProposal, ...] = ()

    def __repr__(self) -> str:
        return (
            f"PublicGroup(group_id={self.group_id.hex()}, epoch={self.epoch}, "
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
    def extensions(self) -> tuple[Extension, ...]:
        return self.group_context.extensions

    @property
    def tree_hash(self) -> bytes:
        """The tree hash of the ratchet tree (§7.8), as in the GroupContext."""
        return self.group_context.tree_hash

    def ratchet_tree(self) -> bytes:
        """The encoded ``ratchet_tree`` extension value (§12.4.3.3), for out-of-band delivery."""
        return self.tree.encode()

    def members(self) -> list[Member]:
        return [member_at(self.tree, i) for i, _ in self.tree.members()]

    # --- leaves and KeyPackages (§7.3, §10.1) ------------------------------------------------

    def validate_key_package(
        self, kp: KeyPackage, extensions: Sequence[Extension] | None = None, now: int | None = None
    ) -> None:
        """§10.1 KeyPackage validation plus §7.3 for its leaf node, for joining this group."""
        if extensions is None:
            extensions = self.extensions
        if kp.version != self.group_context.version:
            raise rule("KeyPackage version differs from the group's", "10.1")
        if kp.cipher_suite != self.suite.id:
            raise rule("KeyPackage cipher suite differs from the group's", "10.1")
        try:
            kp.verify(self.suite)
        except CryptoError:
            raise rule("KeyPackage signature is invalid", "10.1") from None
        leaf = kp.leaf_node
        if leaf.leaf_node_source != LeafNodeSource.key_package:
            raise rule("KeyPackage leaf_node_source is not key_package", "7.3")
        try:
            leaf.verify(self.suite)
        except CryptoError:
            raise rule("KeyPackage leaf node signature is invalid", "7.3") from None
        if kp.init_key == leaf.encryption_key:
            raise rule("KeyPackage init_key equals its encryption_key", "10.1")
        try:
            self.suite.validate_hpke_public_key(kp.init_key)
            self.suite.validate_hpke_public_key(leaf.encryption_key)
        except DecodeError:
            raise rule("KeyPackage carries a malformed HPKE key", "10.1") from None
        if now is not None and leaf.lifetime is not None and not leaf.lifetime.contains(now):
            raise rule("KeyPackage is outside its lifetime", "7.3")
        self.validate_leaf_common(leaf, extensions)

    def validate_leaf_common(self, leaf: LeafNode, extensions: Sequence[Extension]) -> None:
        """The group-dependent parts of §7.3: capabilities and credential support."""
        check_leaf_node_capabilities(leaf)
        required = parse_extension(extensions, RequiredCapabilities)
        caps = leaf.capabilities
        if required is not None and not (
            set(required.extension_types) <= set(caps.extensions) | DEFAULT_EXTENSIONS
            and set(required.proposal_types) <= set(caps.proposals) | DEFAULT_PROPOSALS
            and set(required.credential_types) <= set(caps.credentials)
        ):
            raise rule("leaf lacks a capability the group requires", "7.3")
        for e in extensions:
            if int(e.extension_type) not in DEFAULT_EXTENSIONS and (
                int(e.extension_type) not in caps.extensions
            ):
                raise rule("leaf does not support a GroupContext extension", "13.4")
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
                raise rule(f"member {i} does not support the leaf's credential type", "7.3")
            if int(other.credential.credential_type) not in caps.credentials:
                raise rule("leaf does not support a credential type in use", "7.3")

    def check_new_leaf_keys(self, leaf: LeafNode, replacing: int | None) -> None:
        """§7.3: a received leaf's encryption key is new to the tree and (for an Update) its
        signature key belongs to no other member. Checked on receipt, so that a cached
        proposal cannot make every later commit invalid."""
        tree = self.tree  # keeps counts of the keys in use: O(1) instead of a scan
        if tree.encryption_key_in_use(leaf.encryption_key):
            raise rule("leaf encryption key is already in the tree", "7.3")
        if replacing is not None:
            current = tree.leaf_node(replacing)
            own = current is not None and current.signature_key == leaf.signature_key
            if tree.signature_key_users(leaf.signature_key) > int(own):
                raise rule("leaf signature key belongs to another member", "7.3")

    # --- proposals (§12.1, §12.2) -------------------------------------------------------------

    def validate_proposal(
        self,
        proposal: Proposal,
        sender: Sender,
        now: int | None = None,
        extensions: Sequence[Extension] | None = None,
    ) -> None:
        """§12.1 rules for one proposal, judged against the current epoch. ``extensions``:
        the GroupContext extensions to judge leaves by (§12.2: those of a GroupContextExtensions
        proposal in the same commit), default the current ones."""
        _VALIDATE[proposal.proposal_type](
            self, proposal, sender, now, self.extensions if extensions is None else extensions
        )

    def validate_proposal_list(
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
            self.validate_proposal(proposal, sender, now, extensions)
        types = [p.proposal_type for p, _ in proposals]
        if external:
            if types.count(ProposalType.external_init) != 1:
                raise rule("external commit needs exactly one ExternalInit", "12.2")
            if types.count(ProposalType.remove) > 1:
                raise rule("external commit with more than one Remove", "12.2")
            allowed = {ProposalType.external_init, ProposalType.remove, ProposalType.psk}
            if any(t not in allowed for t in types):
                raise rule("external commit with a disallowed proposal type", "12.2")
        else:
            if ProposalType.external_init in types:
                raise rule("ExternalInit in a regular commit", "12.2")
            assert isinstance(committer, SenderMember)
            me = committer.leaf_index
            touched: set[int] = set()
            for proposal, sender in proposals:
                if isinstance(proposal, Update):
                    assert isinstance(sender, SenderMember)
                    if sender.leaf_index == me:
                        raise rule("commit includes the committer's own Update", "12.2")
                    leaf = sender.leaf_index
                elif isinstance(proposal, Remove):
                    if proposal.removed == me:
                        raise rule("commit removes the committer", "12.2")
                    leaf = proposal.removed
                else:
                    continue
                if leaf in touched:
                    raise rule(f"several Update/Remove proposals for leaf {leaf}", "12.2")
                touched.add(leaf)
        if ProposalType.reinit in types and len(types) > 1:
            raise rule("ReInit together with other proposals", "12.2")
        if types.count(ProposalType.group_context_extensions) > 1:
            raise rule("several GroupContextExtensions proposals", "12.2")
        psk_ids = [encode(p.psk) for p, _ in proposals if isinstance(p, PreSharedKey)]
        if len(set(psk_ids)) != len(psk_ids):
            raise rule("several PreSharedKey proposals for the same PSK", "12.2")
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
                    raise rule("two Adds for the same client", "12.2")
                if tree.signature_key_users(key) > removed_keys.count(key):
                    raise rule("Add for a client already in the group", "12.2")
                new_keys.add(key)

    def apply_proposals(self, proposals: Sequence[tuple[Proposal, Sender]]) -> AppliedProposals:
        """`apply_proposals` on this group's tree and extensions (§12.3)."""
        return apply_proposals(self.tree, self.extensions, proposals)

    def check_tree_after(self, applied: AppliedProposals) -> None:
        """The post-commit checks on the new tree that depend on several proposals together:
        GroupContextExtensions support by every remaining member (§12.1.7), unique keys (§7.3)."""
        tree = applied.tree
        if ProposalType.group_context_extensions in applied.types:
            tree.verify_capabilities(
                parse_extension(applied.extensions, RequiredCapabilities), applied.extensions
            )
        tree.verify_unique_keys()

    # --- PublicMessages (§6.1, §6.2) ----------------------------------------------------------

    def check_epoch(self, group_id: bytes, epoch: int) -> None:
        if group_id != self.group_id:
            raise rule("message is for another group", "6")
        if epoch != self.epoch:
            raise rule(f"message is for epoch {epoch}, the group is in {self.epoch}", "6")

    def sender_key(
        self, message: PublicMessage, own_leaf: int | None = None
    ) -> tuple[bytes, Credential | None]:
        """The signature key that must have signed a PublicMessage, by sender type (§6.1).
        ``own_leaf``: a member's own leaf, whose messages are refused as echoes."""
        framed = message.content
        sender = framed.sender
        content = framed.content
        if isinstance(sender, SenderMember):
            leaf = self.tree.leaf_node(sender.leaf_index)
            if leaf is None:
                raise rule(f"sender leaf {sender.leaf_index} is blank", "6.1")
            if sender.leaf_index == own_leaf:
                raise rule("message from our own leaf (a delivery-service echo)", "6.1")
            return leaf.signature_key, leaf.credential
        if isinstance(sender, SenderExternal):
            senders = parse_extension(self.extensions, ExternalSenders)
            if senders is None or sender.sender_index >= len(senders.external_senders):
                raise rule("unknown external sender", "12.1.8.1")
            if isinstance(content, (bytes, Commit)):
                raise rule("external senders only send proposals", "12.1.8")
            if content.proposal_type not in EXTERNAL_SENDER_TYPES:
                raise rule("proposal type not allowed from an external sender", "12.1.8")
            ext = senders.external_senders[sender.sender_index]
            return ext.signature_key, ext.credential
        if isinstance(sender, SenderNewMemberProposal):
            if not isinstance(content, Add):
                raise rule("new_member_proposal senders only send Add proposals", "12.1.8")
            leaf_node = content.key_package.leaf_node
            return leaf_node.signature_key, leaf_node.credential
        assert isinstance(sender, SenderNewMemberCommit)
        if not isinstance(content, Commit) or content.path is None:
            raise rule("new_member_commit must be a commit with a path", "12.4.3.2")
        return content.path.leaf_node.signature_key, content.path.leaf_node.credential

    def verify_signature(
        self, auth: AuthenticatedContent, message: PublicMessage, own_leaf: int | None = None
    ) -> Credential | None:
        """Check the FramedContent signature of ``message`` (§6.1); the sender's credential."""
        key, credential = self.sender_key(message, own_leaf)
        try:
            verify_signature(self.suite, key, auth, self.group_context)
        except CryptoError:
            raise rule("FramedContent signature is invalid", "6.1") from None
        return credential

    def _public_content(self, message: bytes | MLSMessage | PublicMessage) -> PublicMessage:
        if isinstance(message, bytes):
            message = decode(MLSMessage, message)
        body = message.body if isinstance(message, MLSMessage) else message
        if not isinstance(body, PublicMessage):
            raise rule("a PublicGroup only judges PublicMessages", "6")
        content = body.content
        self.check_epoch(content.group_id, content.epoch)
        if content.content_type == ContentType.application:
            raise rule("application data must not be sent as a PublicMessage", "6")
        return body

    # --- commits (§12.4.2) ------------------------------------------------------------------

    def commit_proposals(self, commit: Commit, sender: Sender) -> list[tuple[Proposal, Sender]]:
        """The proposals a commit lists, by value or by reference to the cache (§12.4.2)."""
        external = isinstance(sender, SenderNewMemberCommit)
        listed: list[tuple[Proposal, Sender]] = []
        for item in commit.proposals:
            if isinstance(item, bytes):
                if external:
                    raise rule("external commit with a proposal by reference", "12.4.3.2")
                cached = next((c for c in self.proposals if c.ref == item), None)
                if cached is None:
                    raise rule("commit references an unknown proposal", "12.4.2")
                listed.append((cached.proposal, cached.sender))
            else:
                listed.append((item, sender))
        return listed

    def stage_commit(
        self, auth: AuthenticatedContent, commit: Commit, now: int | None = None
    ) -> PublicCommit:
        """Every check of a commit that needs no secret, and the tree and provisional
        GroupContext of the next epoch (§12.4.2). The signature is the caller's."""
        suite = self.suite
        sender = auth.content.sender
        external = isinstance(sender, SenderNewMemberCommit)
        if not external and not isinstance(sender, SenderMember):
            raise rule("commits come from members or new members only", "6.1")
        if auth.auth.confirmation_tag is None:
            raise rule("commit without a confirmation tag", "6.1")
        listed = self.commit_proposals(commit, sender)
        self.validate_proposal_list(listed, sender, external, now)
        applied = self.apply_proposals(listed)
        path = commit.path
        if (external or not listed or applied.types & PATH_REQUIRED) and path is None:
            raise rule("this commit requires an UpdatePath", "12.4")
        tree = applied.tree
        if external:
            assert path is not None
            if tree is self.tree:  # not copied by apply_proposals
                tree = tree.copy()
            committer = tree.add_leaf(path.leaf_node)
            removed = [p for p, _ in listed if isinstance(p, Remove)]
            if removed and applied.removed[0].credential != path.leaf_node.credential:
                raise rule("resync commit for another identity", "12.4.3.2")
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
                raise rule("committer's new leaf keeps its encryption key", "12.4.2")
            tree = merge_update_path(tree, committer, path)
            try:
                leaf.verify(suite, self.group_id, committer)
            except CryptoError:
                raise rule("UpdatePath leaf node signature is invalid", "7.3") from None
            self.validate_leaf_common(leaf, applied.extensions)
        self.check_tree_after(replace(applied, tree=tree))
        provisional = GroupContext(
            suite.id,
            self.group_id,
            self.epoch + 1,
            tree.tree_hash(),
            self.group_context.confirmed_transcript_hash,
            applied.extensions,
        )
        return PublicCommit(tuple(listed), applied, external, committer, tree, provisional, path)

    def next_epoch(
        self,
        provisional: GroupContext,
        tree: RatchetTree,
        auth: AuthenticatedContent,
    ) -> tuple[PublicGroup, bytes]:
        """The public state after a commit whose confirmation tag is in ``auth`` (§8.2), and
        the confirmed transcript hash (to check the tag against, for who can)."""
        tag = auth.auth.confirmation_tag
        assert tag is not None
        # The confirmed transcript hash does not depend on the tag, only the interim one does.
        provisional_auth = AuthenticatedContent(
            auth.wire_format, auth.content, FramedContentAuthData(auth.auth.signature, b"\x00")
        )
        confirmed, _ = transcript_hashes(self.suite, self.interim_transcript_hash, provisional_auth)
        context = replace(provisional, confirmed_transcript_hash=confirmed)
        interim = interim_transcript_hash(self.suite, confirmed, tag)
        return PublicGroup(self.suite, context, tree, interim, tag), confirmed

    def process_commit(
        self, message: bytes | MLSMessage | PublicMessage, *, now: int | None = None
    ) -> PublicGroup:
        """The public state of the next epoch after a PublicMessage commit, for a delivery
        service. Raises `ValidationError`/`CryptoError` (and leaves this state as it was) for
        a commit that breaks a rule checkable without secrets: its signature, every proposal
        and proposal-list rule, the UpdatePath's leaf and parent hashes, the new tree."""
        body = self._public_content(message)
        content = body.content.content
        if not isinstance(content, Commit):
            raise rule("not a commit", "12.4")
        auth = body.authenticated_content()
        self.verify_signature(auth, body)
        staged = self.stage_commit(auth, content, now)
        new, _ = self.next_epoch(staged.provisional, staged.tree, auth)
        return new

    def process_proposal(
        self, message: bytes | MLSMessage | PublicMessage, *, now: int | None = None
    ) -> PublicGroup:
        """This state with a PublicMessage proposal cached (so a later commit can reference
        it), after checking its signature and the §12.1 rules."""
        body = self._public_content(message)
        content = body.content.content
        if isinstance(content, (bytes, Commit)):
            raise rule("not a proposal", "12.1")
        auth = body.authenticated_content()
        self.verify_signature(auth, body)
        return self.with_proposal(auth, now)

    def with_proposal(self, auth: AuthenticatedContent, now: int | None) -> PublicGroup:
        """This state with the (signature-checked) proposal in ``auth`` validated and cached."""
        proposal = auth.content.content
        assert not isinstance(proposal, (bytes, Commit))
        sender = auth.content.sender
        self.validate_proposal(proposal, sender, now)
        ref = make_proposal_ref(self.suite, encode(auth))
        return replace(self, proposals=(*self.proposals, CachedProposal(ref, proposal, sender)))

    # --- from a GroupInfo (§12.4.3) ---------------------------------------------------------

    @classmethod
    def from_group_info(
        cls,
        group_info: bytes | MLSMessage | GroupInfo,
        *,
        ratchet_tree: bytes | None = None,
        now: int | None = None,
        section: str = "12.4.3.2",
    ) -> PublicGroup:
        """The public state a (signed) GroupInfo describes, after the checks a joiner runs
        (§12.4.3.1): signer's signature, tree hash, parent hashes, leaves. ``ratchet_tree`` (the
        encoded extension value) is needed when the GroupInfo does not carry the tree."""
        if isinstance(group_info, GroupInfo):
            gi = group_info
        else:
            msg = decode(MLSMessage, group_info) if isinstance(group_info, bytes) else group_info
            body = msg.body
            if not isinstance(body, GroupInfo):
                raise rule("not a GroupInfo message", section)
            gi = body
        gc = gi.group_context
        suite = cipher_suite(gc.cipher_suite)
        return cls.from_verified_parts(suite, gi, tree_for(suite, gi, ratchet_tree), now, section)

    @classmethod
    def from_verified_parts(
        cls,
        suite: CipherSuite,
        gi: GroupInfo,
        tree: RatchetTree,
        now: int | None,
        section: str,
    ) -> PublicGroup:
        gc = gi.group_context
        signer = tree.leaf_node(gi.signer)
        if signer is None:
            raise rule("GroupInfo signer leaf is blank", section)
        try:
            gi.verify(suite, signer.signature_key)
        except CryptoError:
            raise rule("GroupInfo signature is invalid", section) from None
        tree.validate(
            gc.group_id,
            tree_hash=gc.tree_hash,
            required_capabilities=parse_extension(gc.extensions, RequiredCapabilities),
            context_extensions=gc.extensions,
            now=now,
        )
        interim = interim_transcript_hash(suite, gc.confirmed_transcript_hash, gi.confirmation_tag)
        return cls(suite, gc, tree, interim, gi.confirmation_tag)

    # --- persistence ------------------------------------------------------------------------

    STATE_VERSION = 1

    def to_bytes(self) -> bytes:
        """The public state, for a delivery service's store. Contains no secret."""
        w = Writer()
        w.push_uint8(self.STATE_VERSION)
        w.push_uint16(self.suite.id)
        self.group_context.push(w)
        w.push_opaque(self.tree.encode())
        w.push_opaque(self.interim_transcript_hash)
        w.push_opaque(self.confirmation_tag)
        w.push_vector(self.proposals, lambda w2, c: c.push(w2))
        return w.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> PublicGroup:
        """Restore a state written by `to_bytes`; `DecodeError` if it is not one."""
        r = Reader(data)
        if r.pull_uint8() != cls.STATE_VERSION:
            raise DecodeError("unknown public group state version")
        suite = cipher_suite(r.pull_uint16())
        gc = GroupContext.pull(r)
        tree = RatchetTree.decode(suite, r.pull_opaque())
        interim = r.pull_opaque()
        tag = r.pull_opaque()
        proposals = tuple(r.pull_vector(CachedProposal.pull))
        r.expect_end()
        return cls(suite, gc, tree, interim, tag, proposals)


def tree_for(suite: CipherSuite, group_info: GroupInfo, ratchet_tree: bytes | None) -> RatchetTree:
    """The tree from the GroupInfo's ``ratchet_tree`` extension, else the one given (§12.4.3.3)."""
    ext = find_extension(group_info.extensions, ExtensionType.ratchet_tree)
    data = ext.extension_data if ext is not None else ratchet_tree
    if data is None:
        raise StateError("the ratchet tree is neither in the GroupInfo nor given")
    return RatchetTree.decode(suite, data)


# --- single-proposal rules (§12.1), keyed by ProposalType ---------------------------------------


def _validate_add(
    g: PublicGroup, p: Proposal, _: Sender, now: int | None, ext: Sequence[Extension]
) -> None:
    assert isinstance(p, Add)
    g.validate_key_package(p.key_package, ext, now)
    g.check_new_leaf_keys(p.key_package.leaf_node, None)


def _validate_update(
    g: PublicGroup, p: Proposal, sender: Sender, _: int | None, ext: Sequence[Extension]
) -> None:
    assert isinstance(p, Update)
    if not isinstance(sender, SenderMember):
        raise rule("only members send Update proposals", "12.1.2")
    leaf = p.leaf_node
    current = g.tree.leaf_node(sender.leaf_index)
    if current is None:
        raise rule("Update from a blank leaf", "12.1.2")
    if leaf.leaf_node_source != LeafNodeSource.update:
        raise rule("Update leaf_node_source is not update", "7.3")
    if leaf.encryption_key == current.encryption_key:
        raise rule("Update does not change the encryption key", "7.3")
    try:
        leaf.verify(g.suite, g.group_id, sender.leaf_index)
    except CryptoError:
        raise rule("Update leaf node signature is invalid", "7.3") from None
    try:
        g.suite.validate_hpke_public_key(leaf.encryption_key)
    except DecodeError:
        raise rule("Update carries a malformed HPKE key", "7.3") from None
    g.check_new_leaf_keys(leaf, sender.leaf_index)
    g.validate_leaf_common(leaf, ext)


def _validate_remove(
    g: PublicGroup, p: Proposal, _: Sender, __: int | None, ___: Sequence[Extension]
) -> None:
    assert isinstance(p, Remove)
    if g.tree.leaf_node(p.removed) is None:
        raise rule(f"Remove of blank or absent leaf {p.removed}", "12.1.3")


def _validate_psk(
    g: PublicGroup, p: Proposal, _: Sender, __: int | None, ___: Sequence[Extension]
) -> None:
    assert isinstance(p, PreSharedKey)
    psk = p.psk
    if isinstance(psk.psk, ResumptionPSK) and psk.psk.usage != ResumptionPSKUsage.application:
        raise rule("resumption PSK with usage reinit/branch in a proposal", "12.1.4")
    if len(psk.psk_nonce) != g.suite.hash_length:
        raise rule("psk_nonce must be KDF.Nh bytes", "12.1.4")


def _validate_reinit(
    g: PublicGroup, p: Proposal, _: Sender, __: int | None, ___: Sequence[Extension]
) -> None:
    assert isinstance(p, ReInit)
    if p.version < g.group_context.version:
        raise rule("ReInit to an older protocol version", "12.1.5")


def _validate_external_init(
    _: PublicGroup, p: Proposal, sender: Sender, __: int | None, ___: Sequence[Extension]
) -> None:
    if not isinstance(sender, SenderNewMemberCommit):
        raise rule("ExternalInit outside an external commit", "12.1.6")


def _validate_extensions(
    _: PublicGroup, __: Proposal, ___: Sender, ____: int | None, _____: Sequence[Extension]
) -> None:
    """Checked against the post-commit tree (`PublicGroup.check_tree_after`)."""


_VALIDATE: dict[ProposalType, _Validator] = {
    ProposalType.add: _validate_add,
    ProposalType.update: _validate_update,
    ProposalType.remove: _validate_remove,
    ProposalType.psk: _validate_psk,
    ProposalType.reinit: _validate_reinit,
    ProposalType.external_init: _validate_external_init,
    ProposalType.group_context_extensions: _validate_extensions,
}
