"""Serialization of a member's group state (for the client's encrypted store).

Owns: the byte format of `Group.to_bytes` / `Group.from_bytes`: public state (GroupContext
§8.1, ratchet tree §12.4.3.3, transcript hashes §8.2, cached proposals §12.1) and secrets
(tree private keys §7.4, epoch secrets §8, secret tree §9, resumption PSKs §8.6, past epochs
§14, pending Update keys §12.1.2). Version 1 is the format of a group still in use; version 2
adds a trailing flag for a group that knows it was removed, so version-1 states read unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from doorless.codec import Reader, Writer
from doorless.crypto import CipherSuite, cipher_suite
from doorless.errors import DecodeError
from doorless.mls.credential import Credential, pull_credential
from doorless.mls.group_context import GroupContext
from doorless.mls.proposals import ReInit
from doorless.mls.ratchet_tree import RatchetTree
from doorless.mls.schedule import EpochSecrets, ResumptionPsk, SenderDataSecret
from doorless.mls.secret_tree import SecretTree
from doorless.mls.treekem import TreePrivateKeys
from doorless.mls.types import CachedProposal, GroupConfig, PastEpoch
from doorless.secret import PrivateKeyBytes

if TYPE_CHECKING:
    from doorless.mls.group import Group

STATE_VERSION = 1
STATE_VERSION_REMOVED = 2


def group_to_bytes(group: Group) -> bytes:
    """`Group.to_bytes`. Contains secrets."""
    w = Writer()
    w.push_uint8(STATE_VERSION_REMOVED if group.removed else STATE_VERSION)
    w.push_uint16(group.suite.id)
    group.group_context.push(w)
    w.push_opaque(group.tree.encode())
    w.push_uint32(group.own_leaf)
    keys = group.private_keys

    def push_private_key(w2: Writer, x: int) -> None:
        public = keys.public_key(x)
        private = keys.private_key(x)
        assert public is not None and private is not None
        w2.push_uint32(x)
        w2.push_opaque(public)
        w2.push_opaque(private.value)

    w.push_vector(keys.nodes(), push_private_key)
    w.push_opaque(group._signature_private_key.value)
    w.push_opaque(group.epoch_secrets.to_bytes())
    w.push_opaque(group.secret_tree.to_bytes())
    w.push_opaque(group.interim_transcript_hash)
    w.push_opaque(group.confirmation_tag)
    w.push_vector(group.proposals, lambda w2, c: c.push(w2))
    w.push_vector(group.resumption_psks, _push_resumption_psk)
    w.push_vector(group.past_epochs, _push_past_epoch)
    w.push_optional(group.reinit, lambda w2, r: r.push(w2))
    w.push_vector(group.update_keys, _push_key_pair)
    if group.removed:
        w.push_uint8(1)
    return w.getvalue()


def group_from_bytes(cls: type[Group], data: bytes, config: GroupConfig | None) -> Group:
    """`Group.from_bytes`; `DecodeError` if ``data`` is not a state it wrote."""
    cfg = config or GroupConfig()
    r = Reader(data)
    version = r.pull_uint8()
    if version not in (STATE_VERSION, STATE_VERSION_REMOVED):
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
    update_keys = tuple((pub, PrivateKeyBytes(priv)) for pub, priv in r.pull_vector(_pull_key_pair))
    removed = False
    if version == STATE_VERSION_REMOVED:
        if r.pull_uint8() != 1:
            raise DecodeError("malformed removed flag")
        removed = True
    r.expect_end()
    group = cls(
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
    return group._evolve(removed=True) if removed else group


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
