"""TreeKEM: creating, merging and decrypting update paths (RFC 9420 §7.4-§7.6).

The GroupContext a path is encrypted under contains the tree hash *after* the path is merged,
so both sides work in two steps:

* committer: `prepare_commit_path` (new keys, parent hashes, signed leaf, new tree), then the
  caller builds the provisional GroupContext from ``prepared.tree.tree_hash()`` and calls
  ``prepared.encrypt(group_context_bytes, exclude=new_members)`` for the `UpdatePath`;
* receiver: `merge_update_path` (public: checks the shape and the leaf's parent hash, returns
  the new tree), then `decrypt_update_path` with the GroupContext bytes.

Path secrets follow §7.4: ``path_secret[0] = DeriveSecret(leaf_secret, "path")`` (the figure
in §7.4), ``path_secret[n] = DeriveSecret(path_secret[n-1], "path")``,
``node_secret = DeriveSecret(path_secret, "node")``, ``(priv, pub) = DeriveKeyPair(node_secret)``,
and ``commit_secret = DeriveSecret(path_secret[last], "path")`` (§12.4.2). The committer's leaf
key pair is ``DeriveKeyPair(DeriveSecret(leaf_secret, "node"))``; ``leaf_secret`` is the
caller's fresh randomness (``Nh`` random bytes).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from doorless.crypto import CipherSuite, KeyPair
from doorless.errors import InvalidMac, StateError, ValidationError
from doorless.mls.leaf_node import LeafNode, LeafNodeSource
from doorless.mls.nodes import HPKECiphertext, UpdatePath, UpdatePathNode
from doorless.mls.ratchet_tree import RatchetTree
from doorless.mls.tree_math import LeafIndex, NodeIndex, common_ancestor, is_in_subtree
from doorless.secret import CommitSecret, PathSecret, PrivateKeyBytes

UPDATE_PATH_NODE_LABEL = b"UpdatePathNode"


class CommitSecretPastFilteredPath(InvalidMac):
    """A commit's confirmation tag is wrong, and it would be right had the committer derived
    ``commit_secret`` up to the root of the tree instead of from the last node of its filtered
    direct path.

    That happens when the root is not on the committer's filtered direct path (the other half
    of the tree is blank, e.g. after every leaf left of the committer was removed). RFC 9420
    §7.4 generates path secrets "of the same length as the filtered direct path" and §12.4.2
    defines ``commit_secret`` as ``path_secret[n+1]`` "derived from the last path secret value
    (``path_secret[n]``) derived for the UpdatePath", so no secret is assigned to a blank root;
    deriving one more step to it is the reading of the drafts before that text (mls-protocol
    issue 690). Raised instead of a bare `InvalidMac` so the cause is clear; the commit is
    refused all the same."""


def commit_secret_to_root(
    tree: RatchetTree, sender: int, commit_secret: CommitSecret
) -> CommitSecret | None:
    """The ``commit_secret`` a committer that derives up to the root would use, one step past
    ours, when the root is not on ``sender``'s filtered direct path in ``tree`` (the tree after
    the commit); None when it is (then both readings agree). Only for diagnosing a wrong
    confirmation tag (`CommitSecretPastFilteredPath`)."""
    fdp = tree.filtered_direct_path(sender)
    if not fdp or fdp[-1] == tree.root:
        return None
    return CommitSecret(tree.suite.derive_secret(commit_secret.value, b"path"))


# --- key derivation (§7.4) ------------------------------------------------------------------


def next_path_secret(suite: CipherSuite, path_secret: PathSecret) -> PathSecret:
    """``DeriveSecret(path_secret, "path")``."""
    return PathSecret(suite.derive_secret(path_secret.value, b"path"))


def node_key_pair(suite: CipherSuite, path_secret: PathSecret) -> KeyPair:
    """``DeriveKeyPair(DeriveSecret(path_secret, "node"))``."""
    return suite.derive_key_pair(suite.derive_secret(path_secret.value, b"node"))


# --- private keys of one member --------------------------------------------------------------


class TreePrivateKeys:
    """The HPKE private keys one member holds: its leaf and nodes of its direct path.

    Each key is stored with the public key it belongs to, so `prune` can drop keys whose node
    was blanked or replaced. Immutable: every change returns a new object.
    """

    __slots__ = ("_keys", "leaf_index")

    leaf_index: LeafIndex
    _keys: dict[int, tuple[bytes, PrivateKeyBytes]]

    def __init__(
        self, leaf_index: int, keys: Mapping[int, tuple[bytes, PrivateKeyBytes]] | None = None
    ) -> None:
        self.leaf_index = LeafIndex(leaf_index)
        self._keys = dict(keys) if keys is not None else {}

    @classmethod
    def for_leaf(
        cls, suite: CipherSuite, leaf_index: int, encryption_private_key: PrivateKeyBytes
    ) -> TreePrivateKeys:
        """A member's private state holding just its leaf key."""
        public = suite.hpke_public_key(encryption_private_key.value)
        return cls(leaf_index, {2 * leaf_index: (public, encryption_private_key)})

    def __repr__(self) -> str:
        return f"TreePrivateKeys(leaf_index={self.leaf_index}, nodes={sorted(self._keys)})"

    def nodes(self) -> list[NodeIndex]:
        return [NodeIndex(x) for x in sorted(self._keys)]

    def private_key(self, x: int) -> PrivateKeyBytes | None:
        entry = self._keys.get(x)
        return None if entry is None else entry[1]

    def public_key(self, x: int) -> bytes | None:
        entry = self._keys.get(x)
        return None if entry is None else entry[0]

    def with_keys(
        self,
        updates: Mapping[int, tuple[bytes, PrivateKeyBytes]],
        drop: Iterable[int] = (),
    ) -> TreePrivateKeys:
        keys = dict(self._keys)
        for x in drop:
            keys.pop(x, None)
        keys.update(updates)
        return TreePrivateKeys(self.leaf_index, keys)

    def with_path_secret(
        self, suite: CipherSuite, x: int, path_secret: PathSecret
    ) -> TreePrivateKeys:
        """Set node ``x``'s key from its path secret (§7.4)."""
        kp = node_key_pair(suite, path_secret)
        return self.with_keys({x: (kp.public_key, PrivateKeyBytes(kp.private_key))})

    def prune(self, tree: RatchetTree) -> TreePrivateKeys:
        """Drop keys of nodes that are now blank, gone, or hold another public key (§7.5:
        outdated key material is deleted)."""
        width = tree.width
        keep = {
            x: entry
            for x, entry in self._keys.items()
            if x < width and (node := tree.node(x)) is not None and node.encryption_key == entry[0]
        }
        return TreePrivateKeys(self.leaf_index, keep)

    def check_consistent(self, tree: RatchetTree) -> None:
        """Every key's node is non-blank, holds the matching public key, and is our leaf or
        on its direct path (RFC 9420 tree invariant, §4.1; treekem vector checks)."""
        suite = tree.suite
        leaf_x = 2 * self.leaf_index
        for x, (public, private) in self._keys.items():
            node = tree.node(x) if x < tree.width else None
            if node is None:
                raise ValidationError(f"private key for blank node {x}", rule="RFC9420 4.1")
            if not is_in_subtree(leaf_x, x):
                raise ValidationError(
                    f"private key for node {x}, which is not above our leaf", rule="RFC9420 4.1"
                )
            if node.encryption_key != public or suite.hpke_public_key(private.value) != public:
                raise ValidationError(
                    f"private key for node {x} does not match its public key", rule="RFC9420 7.5"
                )


def join_private_keys(
    tree: RatchetTree,
    leaf_index: int,
    encryption_private_key: PrivateKeyBytes,
    sender: int | None = None,
    path_secret: PathSecret | None = None,
) -> TreePrivateKeys:
    """A joiner's private state (RFC 9420 §12.4.3.1): its leaf key and, when the Welcome
    carries a ``path_secret``, keys for the lowest common ancestor with the committer
    (``sender``) and the rest of the committer's filtered direct path above it. Every derived
    key must match the tree (`ValidationError`)."""
    suite = tree.suite
    keys = TreePrivateKeys.for_leaf(suite, leaf_index, encryption_private_key)
    if path_secret is not None:
        if sender is None:
            raise StateError("a path secret needs the committer's leaf index")
        lca = common_ancestor(2 * leaf_index, 2 * sender)
        fdp = tree.filtered_direct_path(sender)
        if lca not in fdp:
            raise ValidationError(
                "the common ancestor with the committer is not on its filtered direct path",
                rule="RFC9420 12.4.3.1",
            )
        updates: dict[int, tuple[bytes, PrivateKeyBytes]] = {}
        secret = path_secret
        for x in fdp[fdp.index(lca) :]:
            kp = node_key_pair(suite, secret)
            updates[x] = (kp.public_key, PrivateKeyBytes(kp.private_key))
            secret = next_path_secret(suite, secret)
        keys = keys.with_keys(updates)
    keys.check_consistent(tree)
    return keys


# --- committer side (§7.5, §7.6) -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PreparedCommitPath:
    """A committer's new path, merged into ``tree``, before encryption.

    ``tree`` is the tree after the commit (do not mutate it); ``path_secrets`` align with
    ``filtered_direct_path``; ``private_keys`` is the committer's new private state.
    """

    tree: RatchetTree
    sender: LeafIndex
    leaf_node: LeafNode
    filtered_direct_path: tuple[NodeIndex, ...]
    path_secrets: tuple[PathSecret, ...]
    commit_secret: CommitSecret
    private_keys: TreePrivateKeys

    def path_secret_for(self, leaf: int) -> PathSecret | None:
        """The path secret of the lowest node of the filtered direct path above ``leaf`` (for
        a new member's GroupSecrets, §12.4.3.1), or None if no such node."""
        x = 2 * leaf
        for p, secret in zip(self.filtered_direct_path, self.path_secrets, strict=True):
            if is_in_subtree(x, p):
                return secret
        return None

    def encrypt(self, group_context: bytes, exclude: Collection[int] = ()) -> UpdatePath:
        """The `UpdatePath`: each path secret encrypted to the resolution of its copath child,
        leaving out the leaves in ``exclude`` (members added by this commit, §7.6).
        ``group_context`` is the encoded provisional GroupContext."""
        tree = self.tree
        suite = tree.suite
        nodes: list[UpdatePathNode] = []
        for p, secret in zip(self.filtered_direct_path, self.path_secrets, strict=True):
            ciphertexts = []
            for r in tree.resolution(tree.copath_child(p, self.sender), exclude):
                kem_output, ciphertext = suite.encrypt_with_label(
                    tree.encryption_key(r), UPDATE_PATH_NODE_LABEL, group_context, secret.value
                )
                ciphertexts.append(HPKECiphertext(kem_output, ciphertext))
            nodes.append(UpdatePathNode(tree.encryption_key(p), tuple(ciphertexts)))
        return UpdatePath(self.leaf_node, tuple(nodes))


def prepare_commit_path(
    tree: RatchetTree,
    sender: int,
    leaf_secret: bytes,
    signature_private_key: PrivateKeyBytes | bytes,
    group_id: bytes,
    leaf_node: LeafNode | None = None,
) -> PreparedCommitPath:
    """Generate a new path for ``sender`` (§7.4, §7.5) on a copy of ``tree`` (the tree after
    the commit's proposals). ``leaf_node`` is the template for the new leaf (default: the
    current one; its credential, capabilities and extensions are kept); the result's leaf has
    the new encryption key, source ``commit``, the parent hash, and is signed with
    ``signature_private_key`` over ``group_id`` and ``sender``."""
    suite = tree.suite
    template = leaf_node if leaf_node is not None else tree.leaf_node(sender)
    if template is None:
        raise StateError(f"leaf {sender} is blank and no leaf node was given")
    if len(leaf_secret) != suite.hash_length:
        raise StateError("leaf_secret must be Nh fresh random bytes")
    new_tree = tree.copy()
    fdp = new_tree.filtered_direct_path(sender)

    leaf_kp = suite.derive_key_pair(suite.derive_secret(leaf_secret, b"node"))
    secret = PathSecret(suite.derive_secret(leaf_secret, b"path"))
    secrets: list[PathSecret] = []
    key_pairs: list[KeyPair] = []
    for _ in fdp:
        secrets.append(secret)
        key_pairs.append(node_key_pair(suite, secret))
        secret = next_path_secret(suite, secret)
    commit_secret = CommitSecret(secret.value)

    unsigned = _leaf_for_commit(template, leaf_kp.public_key, b"")
    parent_hash = new_tree.merge_path(sender, unsigned, [kp.public_key for kp in key_pairs])
    signed = _leaf_for_commit(template, leaf_kp.public_key, parent_hash).signed(
        suite, signature_private_key, group_id, sender
    )
    new_tree.set_node(2 * sender, signed)

    keys: dict[int, tuple[bytes, PrivateKeyBytes]] = {
        2 * sender: (leaf_kp.public_key, PrivateKeyBytes(leaf_kp.private_key))
    }
    for p, kp in zip(fdp, key_pairs, strict=True):
        keys[p] = (kp.public_key, PrivateKeyBytes(kp.private_key))
    return PreparedCommitPath(
        tree=new_tree,
        sender=LeafIndex(sender),
        leaf_node=signed,
        filtered_direct_path=tuple(fdp),
        path_secrets=tuple(secrets),
        commit_secret=commit_secret,
        private_keys=TreePrivateKeys(sender, keys),
    )


def _leaf_for_commit(template: LeafNode, encryption_key: bytes, parent_hash: bytes) -> LeafNode:
    return LeafNode(
        encryption_key=encryption_key,
        signature_key=template.signature_key,
        credential=template.credential,
        capabilities=template.capabilities,
        leaf_node_source=LeafNodeSource.commit,
        lifetime=None,
        parent_hash=parent_hash,
        extensions=template.extensions,
        signature=b"",
    )


# --- receiver side (§7.5) --------------------------------------------------------------------


def merge_update_path(tree: RatchetTree, sender: int, path: UpdatePath) -> RatchetTree:
    """The tree after merging ``sender``'s ``path`` into a copy of ``tree`` (§7.5).

    Checks: the leaf's source is ``commit``, there is one node per filtered-direct-path node,
    every encryption key is a valid HPKE public key, and the leaf's ``parent_hash`` is the
    recomputed one (§7.9.2). Leaf-node validation (signature, capabilities, key uniqueness,
    §7.3) is the caller's, who knows the group.
    """
    suite = tree.suite
    leaf = path.leaf_node
    if leaf.leaf_node_source != LeafNodeSource.commit:
        raise ValidationError("UpdatePath leaf_node_source is not commit", rule="RFC9420 7.3")
    if tree.leaf_node(sender) is None:
        raise ValidationError(f"committer leaf {sender} is blank", rule="RFC9420 12.4.2")
    for key in (leaf.encryption_key, *(n.encryption_key for n in path.nodes)):
        suite.validate_hpke_public_key(key)
    new_tree = tree.copy()
    parent_hash = new_tree.merge_path(sender, leaf, [n.encryption_key for n in path.nodes])
    if leaf.parent_hash != parent_hash:
        raise ValidationError(
            "UpdatePath leaf parent_hash does not match the new path", rule="RFC9420 7.9.2"
        )
    return new_tree


@dataclass(frozen=True, slots=True)
class DecryptedPath:
    """What a receiver learns from an UpdatePath."""

    private_keys: TreePrivateKeys
    commit_secret: CommitSecret
    path_secret: PathSecret  # the one decrypted (at the lowest common ancestor)
    node: NodeIndex  # where it was decrypted


def decrypt_update_path(
    tree: RatchetTree,
    sender: int,
    path: UpdatePath,
    private_keys: TreePrivateKeys,
    group_context: bytes,
    exclude: Collection[int] = (),
) -> DecryptedPath:
    """Decrypt ``sender``'s ``path`` as the member holding ``private_keys`` (§7.5).

    ``tree`` is the tree *after* `merge_update_path`; ``exclude`` the leaves added by this
    commit; ``group_context`` the encoded provisional GroupContext. Raises `DecryptError` if
    the ciphertext does not open and `ValidationError` if a derived public key differs from
    the path's.
    """
    suite = tree.suite
    me = private_keys.leaf_index
    if me == sender:
        raise StateError("a committer does not decrypt its own path")
    fdp = tree.filtered_direct_path(sender)
    if len(fdp) != len(path.nodes):
        raise ValidationError(
            "UpdatePath length differs from the filtered direct path", "RFC9420 7.6"
        )
    lca = common_ancestor(2 * me, 2 * sender)
    if lca not in fdp:
        raise StateError(f"leaf {me} is not covered by leaf {sender}'s path")
    i = fdp.index(lca)
    resolution = tree.resolution(tree.copath_child(lca, sender), exclude)
    ciphertexts = path.nodes[i].encrypted_path_secret
    if len(ciphertexts) != len(resolution):
        raise ValidationError(
            f"UpdatePath node {i} has {len(ciphertexts)} ciphertexts for a resolution of "
            f"{len(resolution)}",
            rule="RFC9420 7.6",
        )
    # Our keys that still match the tree (the merge replaced the sender's direct path).
    current = private_keys.prune(tree)
    j = next((k for k, r in enumerate(resolution) if current.private_key(r) is not None), None)
    if j is None:
        raise StateError(f"leaf {me} holds no private key in the resolution of node {lca}")
    private = current.private_key(resolution[j])
    assert private is not None
    ct = ciphertexts[j]
    secret = PathSecret(
        suite.decrypt_with_label(
            private.value, UPDATE_PATH_NODE_LABEL, group_context, ct.kem_output, ct.ciphertext
        )
    )
    decrypted = secret
    updates: dict[int, tuple[bytes, PrivateKeyBytes]] = {}
    for k in range(i, len(fdp)):
        kp = node_key_pair(suite, secret)
        if kp.public_key != path.nodes[k].encryption_key:
            raise ValidationError(
                f"derived public key of node {fdp[k]} differs from the UpdatePath",
                rule="RFC9420 7.5",
            )
        updates[fdp[k]] = (kp.public_key, PrivateKeyBytes(kp.private_key))
        secret = next_path_secret(suite, secret)
    return DecryptedPath(
        private_keys=current.with_keys(updates),
        commit_secret=CommitSecret(secret.value),
        path_secret=decrypted,
        node=lca,
    )
