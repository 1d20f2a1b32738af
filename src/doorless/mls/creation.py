"""Creating a group (RFC 9420 §11).

Owns: the one-member group of epoch 0 (tree §7.1, GroupContext §8.1, a random epoch secret
§8, the confirmation tag and interim transcript hash of epoch 0 §8.2), from a leaf node and
its private keys, or from just a credential and signature key (no throw-away KeyPackage).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from doorless.crypto import CipherSuite
from doorless.errors import StateError
from doorless.mls.extensions import Extension, RequiredCapabilities, parse_extension
from doorless.mls.group_context import GroupContext
from doorless.mls.leaf_node import LeafNode
from doorless.mls.ratchet_tree import RatchetTree
from doorless.mls.schedule import derive_epoch_keys, interim_transcript_hash
from doorless.mls.secret_tree import SecretTree
from doorless.mls.treekem import TreePrivateKeys
from doorless.mls.types import GroupConfig, Rng
from doorless.secret import EpochSecret, PrivateKeyBytes

if TYPE_CHECKING:
    from doorless.mls.group import Group


def create_group(
    cls: type[Group],
    suite: CipherSuite,
    group_id: bytes,
    leaf_node: LeafNode,
    encryption_private_key: PrivateKeyBytes,
    signature_private_key: PrivateKeyBytes,
    *,
    extensions: Sequence[Extension],
    rng: Rng,
    config: GroupConfig | None,
) -> Group:
    """`Group.create` (§11)."""
    if suite.hpke_public_key(encryption_private_key.value) != leaf_node.encryption_key:
        raise StateError("encryption private key does not match the leaf node")
    if suite.signature_public_key(signature_private_key.value) != leaf_node.signature_key:
        raise StateError("signature private key does not match the leaf node")
    tree = RatchetTree.create(suite, leaf_node)
    tree.verify_capabilities(parse_extension(extensions, RequiredCapabilities), tuple(extensions))
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
