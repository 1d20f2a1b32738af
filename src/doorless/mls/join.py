"""Joining a group (RFC 9420 §12.4.3): from a Welcome (§12.4.3.1) or by external commit
(§12.4.3.2).

Owns: opening a Welcome (decrypting GroupSecrets with the KeyPackage's init key, PSKs §8.4,
decrypting the GroupInfo), finding which of our KeyPackages a Welcome is for (§12.4.3.1
``new_member``), verifying the GroupInfo and tree (through `PublicGroup.from_verified_parts`),
deriving the joiner's keys (§7.4, §8) and building an external commit (ExternalInit §12.1.6,
§8.3).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from doorless.codec import decode, encode
from doorless.crypto import cipher_suite
from doorless.errors import StateError
from doorless.mls.extensions import ExternalPub, parse_extension
from doorless.mls.framing import (
    AuthenticatedContent,
    FramedContent,
    FramedContentAuthData,
    MLSMessage,
    PublicMessage,
    Sender,
    SenderNewMemberCommit,
    WireFormat,
)
from doorless.mls.group_context import GroupContext
from doorless.mls.key_packages import KeyPackageBundle
from doorless.mls.leaf_node import LeafNode
from doorless.mls.message_protection import sign_framed_content
from doorless.mls.proposal_application import apply_proposals
from doorless.mls.proposals import (
    Commit,
    ExternalInit,
    ExternalPSK,
    PreSharedKey,
    PreSharedKeyID,
    Proposal,
    Remove,
    ResumptionPSK,
    ResumptionPSKUsage,
)
from doorless.mls.public_group import PublicGroup, tree_for
from doorless.mls.schedule import (
    external_init_sender,
    interim_transcript_hash,
    key_schedule,
    key_schedule_from_joiner,
    psk_secret,
    transcript_hashes,
    welcome_key_nonce,
    welcome_secret,
)
from doorless.mls.secret_tree import SecretTree
from doorless.mls.treekem import join_private_keys, prepare_commit_path
from doorless.mls.types import (
    NO_PSKS,
    WELCOME_LABEL,
    GroupConfig,
    OpenedWelcome,
    PskStore,
    Rng,
    rule,
)
from doorless.mls.welcome import GroupInfo, GroupSecrets, Welcome
from doorless.secret import JoinerSecret, PathSecret, PrivateKeyBytes

if TYPE_CHECKING:
    from doorless.mls.group import Group


def _welcome_body(welcome: bytes | MLSMessage) -> Welcome:
    msg = decode(MLSMessage, welcome) if isinstance(welcome, bytes) else welcome
    body = msg.body
    if not isinstance(body, Welcome):
        raise rule("not a Welcome message", "12.4.3.1")
    return body


def welcome_key_package_refs(welcome: bytes | MLSMessage) -> tuple[bytes, ...]:
    """The KeyPackageRefs (§5.2) a Welcome has an entry for (``new_member``, §12.4.3.1)."""
    return tuple(e.new_member for e in _welcome_body(welcome).secrets)


def find_key_package_bundle(
    welcome: bytes | MLSMessage, bundles: Iterable[KeyPackageBundle]
) -> KeyPackageBundle | None:
    """Which of our stored ``bundles`` a Welcome is for, or None (§12.4.3.1)."""
    refs = set(welcome_key_package_refs(welcome))
    return next((b for b in bundles if b.ref in refs), None)


def open_welcome(
    welcome: bytes | MLSMessage,
    key_package_ref: bytes,
    init_private_key: PrivateKeyBytes,
    psks: PskStore = NO_PSKS,
) -> OpenedWelcome:
    """Decrypt our GroupSecrets and the GroupInfo of a Welcome (§12.4.3.1)."""
    body = _welcome_body(welcome)
    suite = cipher_suite(body.cipher_suite)
    entry = body.secrets_for(key_package_ref)
    if entry is None:
        raise rule("Welcome has no entry for this KeyPackage", "12.4.3.1")
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
        raise rule("several reinit/branch resumption PSKs", "12.4.3.1")
    psk_values: list[tuple[bytes, bytes]] = []
    for psk_id in group_secrets.psks:
        if isinstance(psk_id.psk, ExternalPSK):
            value = psks.external.get(psk_id.psk.psk_id)
        else:
            value = psks.resumption.get((psk_id.psk.psk_group_id, psk_id.psk.psk_epoch))
        if value is None:
            raise rule("a PSK named in the Welcome is not available", "12.4.3.1")
        psk_values.append((encode(psk_id), value))
    psk = psk_secret(suite, psk_values)
    joiner = JoinerSecret(group_secrets.joiner_secret)
    key, nonce = welcome_key_nonce(suite, welcome_secret(suite, joiner, psk))
    group_info = decode(
        GroupInfo, suite.aead_open(key.value, nonce.value, b"", body.encrypted_group_info)
    )
    return OpenedWelcome(suite, group_secrets, group_info, joiner, psk, bool(special))


def join_from_welcome(
    cls: type[Group],
    welcome: bytes | MLSMessage,
    bundle: KeyPackageBundle,
    *,
    ratchet_tree: bytes | None,
    psks: PskStore,
    now: int | None,
    config: GroupConfig | None,
) -> Group:
    """`Group.join_from_welcome` (§12.4.3.1)."""
    opened = open_welcome(welcome, bundle.ref, bundle.init_private_key, psks)
    suite, group_secrets, group_info = opened.suite, opened.group_secrets, opened.group_info
    if suite.id != bundle.key_package.cipher_suite:
        raise rule("Welcome cipher suite differs from the KeyPackage's", "12.4.3.1")
    joiner, psk, special = opened.joiner_secret, opened.psk_secret, opened.special_psk
    gc = group_info.group_context
    if gc.cipher_suite != suite.id:
        raise rule("GroupInfo cipher suite differs from the Welcome's", "12.4.3.1")
    tree = tree_for(suite, group_info, ratchet_tree)
    public = PublicGroup.from_verified_parts(suite, group_info, tree, now, "12.4.3.1")
    my_leaf = tree.find_leaf(bundle.key_package.leaf_node)
    if my_leaf is None:
        raise rule("our KeyPackage's leaf is not in the tree", "12.4.3.1")
    path_secret = (
        PathSecret(group_secrets.path_secret.path_secret)
        if group_secrets.path_secret is not None
        else None
    )
    private_keys = join_private_keys(
        tree, my_leaf, bundle.encryption_private_key, group_info.signer, path_secret
    )
    epoch = key_schedule_from_joiner(suite, joiner, psk, encode(gc))
    epoch.secrets.verify_confirmation_tag(gc.confirmed_transcript_hash, group_info.confirmation_tag)
    if special and gc.epoch != 1:
        raise rule("a reinit/branch Welcome must start at epoch 1", "12.4.3.1")
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
        interim_transcript_hash=public.interim_transcript_hash,
        confirmation_tag=group_info.confirmation_tag,
        resumption_psks=((gc.epoch, epoch.secrets.resumption_psk),),
        config=cfg,
    )


def join_external(
    cls: type[Group],
    group_info: bytes | MLSMessage,
    leaf_node: LeafNode,
    signature_private_key: PrivateKeyBytes,
    *,
    ratchet_tree: bytes | None,
    resync_leaf: int | None,
    psk_ids: Sequence[PreSharedKeyID],
    psks: PskStore,
    authenticated_data: bytes,
    rng: Rng,
    now: int | None,
    config: GroupConfig | None,
) -> tuple[Group, bytes]:
    """`Group.join_external` (§12.4.3.2)."""
    msg = decode(MLSMessage, group_info) if isinstance(group_info, bytes) else group_info
    gi = msg.body
    if not isinstance(gi, GroupInfo):
        raise rule("not a GroupInfo message", "12.4.3.2")
    gc = gi.group_context
    suite = cipher_suite(gc.cipher_suite)
    tree = tree_for(suite, gi, ratchet_tree)
    public = PublicGroup.from_verified_parts(suite, gi, tree, now, "12.4.3.2")
    external_pub = parse_extension(gi.extensions, ExternalPub)
    if external_pub is None:
        raise rule("GroupInfo has no external_pub extension", "12.4.3.2")
    kem_output, init_secret = external_init_sender(suite, external_pub.external_pub)
    proposals: list[Proposal] = [ExternalInit(kem_output)]
    if resync_leaf is not None:
        proposals.append(Remove(resync_leaf))
    proposals += [PreSharedKey(p) for p in psk_ids]
    sender: Sender = SenderNewMemberCommit()
    applied = apply_proposals(tree, gc.extensions, [(p, sender) for p in proposals])
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
    provisional_auth = AuthenticatedContent(
        WireFormat.mls_public_message, framed, FramedContentAuthData(signature, b"\x00")
    )
    confirmed, _ = transcript_hashes(suite, public.interim_transcript_hash, provisional_auth)
    new_context = replace(provisional, confirmed_transcript_hash=confirmed)
    epoch = key_schedule(
        suite,
        init_secret,
        prepared.commit_secret,
        psk_secret(suite, values),
        encode(new_context),
    )
    tag = epoch.secrets.confirmation_tag(confirmed)
    message = encode(MLSMessage(PublicMessage(framed, FramedContentAuthData(signature, tag), None)))
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
