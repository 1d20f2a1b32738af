"""Receiving group messages as a member (RFC 9420 §6, §12.1, §12.4.2, §14).

Owns: dispatch of an MLSMessage to PublicMessage (§6.2) or PrivateMessage (§6.3) handling,
decryption with the current epoch's or a kept past epoch's keys (§14), signature checks (§6.1),
caching proposals (§12.1), and the secret half of processing a commit: our own Update's key,
decrypting the UpdatePath (§7.5), the init secret of an external commit (§8.3), PSKs (§8.4) and
the confirmation tag (§6.1). The public half is `PublicGroup.stage_commit`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from doorless.codec import decode, encode
from doorless.errors import CryptoError, InvalidMac
from doorless.mls.application_messages import open_application
from doorless.mls.commit import advance, commit_key_schedule, resolve_psks
from doorless.mls.credential import Credential
from doorless.mls.framing import (
    AuthenticatedContent,
    ContentType,
    MLSMessage,
    PrivateMessage,
    PublicMessage,
)
from doorless.mls.message_protection import unprotect_private, unprotect_public, verify_signature
from doorless.mls.proposals import Commit
from doorless.mls.schedule import external_init_receiver
from doorless.mls.tree_math import LeafIndex
from doorless.mls.treekem import (
    CommitSecretPastFilteredPath,
    commit_secret_to_root,
    decrypt_update_path,
)
from doorless.mls.types import (
    ApplicationMessage,
    ProcessedMessage,
    ProposalMessage,
    PskStore,
    StagedCommit,
    member_at,
    rule,
)
from doorless.secret import CommitSecret, InitSecret, PskSecret, constant_time_equal

if TYPE_CHECKING:
    from doorless.mls.group import Group
    from doorless.mls.group_context import GroupContext
    from doorless.mls.ratchet_tree import RatchetTree


def process(
    group: Group, message: bytes | MLSMessage, psks: PskStore, now: int | None
) -> ProcessedMessage:
    """`Group.process`."""
    msg = decode(MLSMessage, message) if isinstance(message, bytes) else message
    body = msg.body
    if isinstance(body, PublicMessage):
        return process_public(group, body, psks, now)
    if isinstance(body, PrivateMessage):
        return process_private(group, body, psks, now)
    raise rule(f"{msg.wire_format.name} is not a group message", "6")


def process_private(
    group: Group, body: PrivateMessage, psks: PskStore, now: int | None
) -> ProcessedMessage:
    if body.group_id != group.group_id:
        raise rule("message is for another group", "6")
    if body.epoch != group.epoch:
        if body.content_type == ContentType.application:
            return process_late_application(group, body)
        raise rule(f"handshake for epoch {body.epoch}, the group is in {group.epoch}", "6")
    tree = group.tree
    if body.content_type == ContentType.application:
        return process_application(group, body)
    decrypted = unprotect_private(
        group.suite,
        body,
        group.group_context,
        group.secret_tree,
        group.epoch_secrets.sender_data_secret,
        lambda leaf: tree.leaf_node(leaf) is not None,
    )
    sender = LeafIndex(decrypted.sender_data.leaf_index)
    if sender == group.own_leaf:
        raise rule("message from our own leaf (a delivery-service echo)", "6.3.2")
    leaf = tree.leaf_node(sender)
    assert leaf is not None
    auth = decrypted.content.authenticated_content
    try:
        verify_signature(group.suite, leaf.signature_key, auth, group.group_context)
    except CryptoError:
        raise rule("FramedContent signature is invalid", "6.1") from None
    state = group._with_secret_tree(decrypted.tree)
    content = auth.content.content
    if isinstance(content, bytes):
        return ApplicationMessage(
            state, sender, leaf.credential, group.epoch, content, auth.content.authenticated_data
        )
    return handle_handshake(state, auth, leaf.credential, psks, now)


def process_application(group: Group, body: PrivateMessage) -> ApplicationMessage:
    """An application message of the current epoch, on the lean path (same checks)."""
    tree = group.tree
    decrypted = open_application(
        group.suite,
        body,
        group.group_context,
        group.secret_tree,
        group.epoch_secrets.sender_data_secret,
        lambda leaf: tree.leaf_node(leaf) is not None,
    )
    sender = decrypted.sender
    if sender == group.own_leaf:
        raise rule("message from our own leaf (a delivery-service echo)", "6.3.2")
    leaf = tree.leaf_node(sender)
    assert leaf is not None
    try:
        verified = decrypted.verify(group.suite, leaf.signature_key)
    except CryptoError:
        raise rule("FramedContent signature is invalid", "6.1") from None
    return ApplicationMessage(
        group._with_secret_tree(verified.tree),
        sender,
        leaf.credential,
        group.epoch,
        verified.data,
        verified.authenticated_data,
    )


def process_late_application(group: Group, body: PrivateMessage) -> ApplicationMessage:
    """An application message of a previous epoch still kept (§14, ``max_past_epochs``)."""
    for i, past in enumerate(group.past_epochs):
        if past.group_context.epoch != body.epoch:
            continue
        decrypted = unprotect_private(
            group.suite,
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
            verify_signature(group.suite, member[0], auth, past.group_context)
        except CryptoError:
            raise rule("FramedContent signature is invalid", "6.1") from None
        content = auth.content.content
        assert isinstance(content, bytes)
        kept = replace(past, secret_tree=decrypted.tree)
        past_epochs = (*group.past_epochs[:i], kept, *group.past_epochs[i + 1 :])
        return ApplicationMessage(
            group._evolve(past_epochs=past_epochs),
            sender,
            member[1],
            body.epoch,
            content,
            auth.content.authenticated_data,
        )
    raise rule(f"message for epoch {body.epoch}, whose keys are gone", "6")


def process_public(
    group: Group, body: PublicMessage, psks: PskStore, now: int | None
) -> ProcessedMessage:
    public = group.public
    public.check_epoch(body.content.group_id, body.content.epoch)
    unverified = unprotect_public(
        group.suite, body, group.group_context, group.epoch_secrets.membership_key
    )
    auth = unverified.authenticated_content
    credential = public.verify_signature(auth, body, group.own_leaf)
    return handle_handshake(group, auth, credential, psks, now)


def handle_handshake(
    group: Group,
    auth: AuthenticatedContent,
    credential: Credential | None,
    psks: PskStore,
    now: int | None,
) -> ProcessedMessage:
    content = auth.content.content
    if isinstance(content, Commit):
        assert credential is not None
        return process_commit(group, auth, content, credential, psks, now)
    assert not isinstance(content, bytes)
    public = group.public.with_proposal(auth, now)
    cached = public.proposals[-1]
    state = group._evolve(proposals=public.proposals)
    return ProposalMessage(state, content, cached.ref, auth.content.sender, credential)


def process_commit(
    group: Group,
    auth: AuthenticatedContent,
    commit: Commit,
    credential: Credential,
    psks: PskStore,
    now: int | None,
) -> StagedCommit:
    """A verified commit, staged (§12.4.2): the public checks, then the secret ones."""
    suite = group.suite
    sender = auth.content.sender
    staged = group.public.stage_commit(auth, commit, now)
    applied, tree, path = staged.applied, staged.tree, staged.path
    external, committer = staged.external, staged.committer
    listed = staged.proposals
    private_keys = group.private_keys
    own_leaf = group.own_leaf
    removed_leaves = {m.leaf_index for m in applied.removed}
    self_removed = own_leaf in removed_leaves
    if own_leaf in applied.updated:
        new_leaf = applied.tree.leaf_node(own_leaf)
        assert new_leaf is not None
        new_key = new_leaf.encryption_key
        match = next((k for pub, k in group.update_keys if pub == new_key), None)
        if match is None:
            raise rule("commit applies an Update of ours we did not send", "12.1.2")
        private_keys = private_keys.with_keys({2 * own_leaf: (new_key, match)})
    added_leaves = [leaf for leaf, _ in applied.added]
    added = tuple(member_at(tree, leaf) for leaf in added_leaves)
    if self_removed:
        # We cannot follow the group any further (§12.4.2): report, and mark our state removed.
        return StagedCommit(
            group._evolve(removed=True),
            sender,
            credential,
            tuple(p for p, _ in listed),
            added,
            tuple(applied.removed),
            (),
            True,
            applied.reinit,
            auth.content.authenticated_data,
        )
    commit_secret = CommitSecret(bytes(suite.hash_length))
    if path is not None:
        decrypted = decrypt_update_path(
            tree,
            committer,
            path,
            private_keys,
            encode(staged.provisional),
            exclude=added_leaves,
        )
        private_keys = decrypted.private_keys
        commit_secret = decrypted.commit_secret
    if external:
        assert applied.external_init is not None
        external_priv = group.epoch_secrets.external_key_pair().private_key
        init_secret = external_init_receiver(suite, external_priv, applied.external_init.kem_output)
    else:
        init_secret = group.epoch_secrets.init_secret
    psk = resolve_psks(group, applied.psk_ids, psks)
    try:
        new_group, _, _ = advance(
            group,
            applied=applied,
            new_tree=tree,
            provisional=staged.provisional,
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
    except InvalidMac:
        if path is not None:
            _explain_confirmation_tag(
                group, auth, staged.provisional, tree, committer, init_secret, commit_secret, psk
            )
        raise
    updated = [u for u in applied.updated if u not in removed_leaves]
    if external:
        # An external joiner is a new member of the roster (I3: shown as an addition).
        added = (*added, member_at(tree, committer))
    elif path is not None:
        updated.append(committer)
    return StagedCommit(
        new_group,
        sender,
        credential,
        tuple(p for p, _ in listed),
        added,
        tuple(applied.removed),
        tuple(member_at(tree, u) for u in updated if tree.leaf_node(u) is not None),
        False,
        applied.reinit,
        auth.content.authenticated_data,
    )


def _explain_confirmation_tag(
    group: Group,
    auth: AuthenticatedContent,
    provisional: GroupContext,
    tree: RatchetTree,
    committer: LeafIndex,
    init_secret: InitSecret,
    commit_secret: CommitSecret,
    psk: PskSecret,
) -> None:
    """Raise `CommitSecretPastFilteredPath` if a commit whose confirmation tag did not match
    was made with ``commit_secret`` derived up to a root off the committer's filtered direct
    path (§7.4, §12.4.2); return otherwise (the caller re-raises its `InvalidMac`)."""
    to_root = commit_secret_to_root(tree, committer, commit_secret)
    tag = auth.auth.confirmation_tag
    if to_root is None or tag is None:
        return
    context, epoch = commit_key_schedule(
        group,
        provisional=provisional,
        wire_format=auth.wire_format,
        framed=auth.content,
        signature=auth.auth.signature,
        init_secret=init_secret,
        commit_secret=to_root,
        psk=psk,
    )
    if constant_time_equal(epoch.secrets.confirmation_tag(context.confirmed_transcript_hash), tag):
        raise CommitSecretPastFilteredPath(
            "confirmation tag does not match (RFC9420 6.1): the committer derived commit_secret "
            "up to the root, which is not on its filtered direct path; RFC9420 7.4 and 12.4.2 "
            "derive it from the last node of that path"
        )
