"""Building a commit and entering the next epoch (RFC 9420 §12.4.1, §8, §12.4.3.1).

Owns: choosing which cached proposals to commit by reference (§12.2, §12.4), creating the
Commit with its UpdatePath (§7.5, §12.4.1), resolving PSKs (§8.4), the common tail of creating
and processing a commit (transcript hashes §8.2, key schedule §8, confirmation tag §6.1), the
member state of the next epoch (past-epoch keys §14, resumption PSKs §8.6), signed GroupInfo
(§12.4.3) and Welcome messages (§12.4.3.1).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from doorless.codec import encode
from doorless.mls.extensions import Extension, ExtensionType, ExternalPub, make_extension
from doorless.mls.framing import (
    AuthenticatedContent,
    FramedContent,
    FramedContentAuthData,
    MLSMessage,
    PublicMessage,
    Sender,
    SenderMember,
    WireFormat,
)
from doorless.mls.group_context import GroupContext
from doorless.mls.key_package import KeyPackage, make_key_package_ref
from doorless.mls.leaf_node import LeafNode
from doorless.mls.message_protection import membership_tag, sign_framed_content
from doorless.mls.nodes import HPKECiphertext, UpdatePath
from doorless.mls.proposal_application import AppliedProposals
from doorless.mls.proposals import (
    Add,
    Commit,
    ExternalPSK,
    GroupContextExtensions,
    PreSharedKey,
    PreSharedKeyID,
    Proposal,
    ReInit,
    Remove,
    Update,
)
from doorless.mls.public_group import PATH_REQUIRED
from doorless.mls.ratchet_tree import RatchetTree
from doorless.mls.schedule import (
    EpochSecrets,
    KeyScheduleEpoch,
    interim_transcript_hash,
    key_schedule,
    psk_secret,
    transcript_hashes,
    welcome_key_nonce,
)
from doorless.mls.secret_tree import SecretTree
from doorless.mls.tree_math import LeafIndex
from doorless.mls.treekem import TreePrivateKeys, prepare_commit_path
from doorless.mls.types import (
    WELCOME_LABEL,
    CachedProposal,
    CommitOutput,
    PastEpoch,
    PendingCommit,
    PskStore,
    Rng,
    member_at,
    rule,
)
from doorless.mls.welcome import EncryptedGroupSecrets, GroupInfo, GroupSecrets, Welcome
from doorless.mls.welcome import PathSecret as PathSecretStruct
from doorless.secret import CommitSecret, EncryptionSecret, InitSecret, PathSecret, PskSecret

if TYPE_CHECKING:
    from doorless.mls.group import Group


def resolve_psks(group: Group, ids: Sequence[PreSharedKeyID], psks: PskStore) -> PskSecret:
    """The ``psk_secret`` of the PSKs a commit uses (§8.4): external ones from ``psks``,
    resumption ones from this group's state or ``psks``."""
    values: list[tuple[bytes, bytes]] = []
    for psk_id in ids:
        value: bytes | None
        if isinstance(psk_id.psk, ExternalPSK):
            value = psks.external.get(psk_id.psk.psk_id)
        else:
            r = psk_id.psk
            value = None
            if r.psk_group_id == group.group_id:
                for epoch, secret in group.resumption_psks:
                    if epoch == r.psk_epoch:
                        value = secret.value
            if value is None:
                value = psks.resumption.get((r.psk_group_id, r.psk_epoch))
        if value is None:
            raise rule("a PreSharedKey the commit uses is not available", "12.4.2")
        values.append((encode(psk_id), value))
    return psk_secret(group.suite, values)


def select_pending(group: Group, explicit: Sequence[Proposal]) -> list[CachedProposal]:
    """The cached proposals to commit by reference: every one that keeps the list valid
    together with ``explicit`` (§12.2, §12.4: "as long as this results in a valid proposal
    list"). Dropped: our own Update (the path replaces it) and a Remove of us; a second
    Update/Remove of one leaf (any Remove first, else the most recent Update); an Add of a
    client already added or still in the group; a repeated PSK; a second
    GroupContextExtensions; a ReInit when anything else is committed."""
    cached = group.proposals
    if not cached:
        return []
    own_leaf = group.own_leaf
    removed = {p.removed for p in explicit if isinstance(p, Remove)}
    keep: set[int] = set()  # indexes into `cached`
    for i, c in enumerate(cached):
        p = c.proposal
        if isinstance(p, Remove) and p.removed != own_leaf and p.removed not in removed:
            removed.add(p.removed)
            keep.add(i)
    touched = set(removed)
    for i in reversed(range(len(cached))):
        p, s = cached[i].proposal, cached[i].sender
        if (
            isinstance(p, Update)
            and isinstance(s, SenderMember)
            and s.leaf_index != own_leaf
            and s.leaf_index not in touched
        ):
            touched.add(s.leaf_index)
            keep.add(i)
    clients = {leaf.signature_key for i, leaf in group.tree.members() if i not in removed}
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


def create_commit(
    group: Group,
    proposals: Sequence[Proposal],
    *,
    include_pending: bool,
    force_path: bool,
    leaf_node: LeafNode | None,
    psks: PskStore,
    authenticated_data: bytes,
    rng: Rng,
    now: int | None,
) -> CommitOutput:
    """`Group.commit` (§12.4.1)."""
    group._check_usable()
    suite = group.suite
    public = group.public
    me = SenderMember(group.own_leaf)
    by_ref = select_pending(group, proposals) if include_pending else []
    listed: list[tuple[Proposal, Sender]] = [(c.proposal, c.sender) for c in by_ref]
    listed += [(p, me) for p in proposals]
    public.validate_proposal_list(listed, me, external=False, now=now)
    applied = public.apply_proposals(listed)
    if applied.reinit is not None and len(listed) > 1:
        raise rule("ReInit together with other proposals", "12.2")
    path_required = not listed or bool(applied.types & PATH_REQUIRED)
    use_path = path_required or force_path
    new_tree = applied.tree
    private_keys = group.private_keys
    commit_secret = CommitSecret(bytes(suite.hash_length))
    update_path: UpdatePath | None = None
    prepared = None
    added_leaves = [leaf for leaf, _ in applied.added]
    if use_path:
        prepared = prepare_commit_path(
            new_tree,
            group.own_leaf,
            rng(suite.hash_length),
            group._signature_private_key,
            group.group_id,
            leaf_node,
        )
        new_tree = prepared.tree
        private_keys = prepared.private_keys
        commit_secret = prepared.commit_secret
    public.check_tree_after(replace(applied, tree=new_tree) if prepared else applied)
    provisional = GroupContext(
        suite.id,
        group.group_id,
        group.epoch + 1,
        new_tree.tree_hash(),
        group.group_context.confirmed_transcript_hash,
        applied.extensions,
    )
    if prepared is not None:
        update_path = prepared.encrypt(encode(provisional), exclude=added_leaves)
    commit = Commit((*(c.ref for c in by_ref), *proposals), update_path)
    wire_format = (
        WireFormat.mls_private_message
        if group.config.private_handshakes
        else WireFormat.mls_public_message
    )
    framed = group._frame(commit, authenticated_data)
    signature = sign_framed_content(
        suite, group._signature_private_key.value, wire_format, framed, group.group_context
    )
    psk = resolve_psks(group, applied.psk_ids, psks)
    new_group, auth, epoch = advance(
        group,
        applied=applied,
        new_tree=new_tree,
        provisional=provisional,
        wire_format=wire_format,
        framed=framed,
        signature=signature,
        confirmation_tag=None,
        init_secret=group.epoch_secrets.init_secret,
        commit_secret=commit_secret,
        psk=psk,
        private_keys=private_keys,
        own_leaf=group.own_leaf,
    )
    # Protect with the *old* epoch's keys (§12.4.1).
    if wire_format == WireFormat.mls_private_message:
        after_send, message = group._protect_private(auth, rng)
    else:
        after_send = group
        tag = membership_tag(suite, group.epoch_secrets.membership_key, auth, group.group_context)
        message = encode(MLSMessage(PublicMessage(framed, auth.auth, tag)))
    welcome: bytes | None = None
    signed_group_info: bytes | None = None
    if applied.added:
        group_info = new_group._group_info()
        signed_group_info = encode(MLSMessage(group_info))
        welcome = build_welcome(
            new_group,
            group_info,
            epoch,
            applied.added,
            applied.psk_ids,
            prepared.path_secret_for if prepared is not None else None,
        )
    added = tuple(member_at(new_tree, leaf) for leaf in added_leaves)
    pending = PendingCommit(new_group, message, added, tuple(applied.removed), after_send)
    return CommitOutput(message, welcome, pending, signed_group_info)


def commit_key_schedule(
    group: Group,
    *,
    provisional: GroupContext,
    wire_format: WireFormat,
    framed: FramedContent,
    signature: bytes,
    init_secret: InitSecret,
    commit_secret: CommitSecret,
    psk: PskSecret,
) -> tuple[GroupContext, KeyScheduleEpoch]:
    """The new epoch's GroupContext (with the confirmed transcript hash, §8.2) and key
    schedule (§8) for a commit; its ``confirmation_key`` gives the confirmation tag (§6.1)."""
    # The confirmed transcript hash does not depend on the tag, only the interim one does.
    provisional_auth = AuthenticatedContent(
        wire_format, framed, FramedContentAuthData(signature, b"\x00")
    )
    confirmed, _ = transcript_hashes(group.suite, group.interim_transcript_hash, provisional_auth)
    new_context = replace(provisional, confirmed_transcript_hash=confirmed)
    epoch = key_schedule(group.suite, init_secret, commit_secret, psk, encode(new_context))
    return new_context, epoch


def advance(
    group: Group,
    *,
    applied: AppliedProposals,
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
    suite = group.suite
    new_context, epoch = commit_key_schedule(
        group,
        provisional=provisional,
        wire_format=wire_format,
        framed=framed,
        signature=signature,
        init_secret=init_secret,
        commit_secret=commit_secret,
        psk=psk,
    )
    confirmed = new_context.confirmed_transcript_hash
    tag = epoch.secrets.confirmation_tag(confirmed)
    if confirmation_tag is not None:
        epoch.secrets.verify_confirmation_tag(confirmed, confirmation_tag)
        tag = confirmation_tag
    auth = AuthenticatedContent(wire_format, framed, FramedContentAuthData(signature, tag))
    interim = interim_transcript_hash(suite, confirmed, tag)
    new_group = next_epoch(
        group,
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


def next_epoch(
    group: Group,
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
    """The member state of the next epoch, keeping the old epoch's keys (§14)."""
    config = group.config
    past = group.past_epochs
    if config.max_past_epochs > 0:
        keep = PastEpoch(
            group.group_context,
            group.epoch_secrets.sender_data_secret,
            group.secret_tree,
            tree=group.tree,
        )
        past = (keep, *past)[: config.max_past_epochs]
    else:
        past = ()
    psks = ((context.epoch, secrets.resumption_psk), *group.resumption_psks)
    return group._evolve(
        group_context=context,
        tree=tree,
        own_leaf=own_leaf,
        private_keys=private_keys,
        epoch_secrets=secrets,
        secret_tree=SecretTree.create(
            group.suite, encryption_secret, tree.n_leaves, config.secret_tree
        ),
        interim_transcript_hash=interim,
        confirmation_tag=tag,
        proposals=(),
        resumption_psks=psks[: config.resumption_psk_epochs],
        past_epochs=past,
        reinit=reinit,
        update_keys=(),
    )


def group_info_struct(group: Group) -> GroupInfo:
    """A GroupInfo of ``group``'s epoch signed by us (§12.4.3), with the ratchet tree and
    ``external_pub`` as configured."""
    extensions: list[Extension] = []
    if group.config.ratchet_tree_in_welcome:
        extensions.append(Extension(ExtensionType.ratchet_tree, group.tree.encode()))
    if group.config.external_pub_in_group_info:
        extensions.append(make_extension(ExternalPub(group.epoch_secrets.external_pub)))
    return GroupInfo.sign(
        group.suite,
        group._signature_private_key.value,
        group.group_context,
        tuple(extensions),
        group.confirmation_tag,
        group.own_leaf,
    )


def build_welcome(
    group: Group,
    group_info: GroupInfo,
    epoch: KeyScheduleEpoch,
    added: Sequence[tuple[LeafIndex, KeyPackage]],
    psk_ids: Sequence[PreSharedKeyID],
    path_secret_for: Callable[[int], PathSecret | None] | None,
) -> bytes:
    """One Welcome for every member this commit added (§12.4.3.1)."""
    suite = group.suite
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
