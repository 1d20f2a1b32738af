"""The ratchet tree (RFC 9420 §4, §7): resolution, tree and parent hashes, edits, validation.

`RatchetTree` is the public state of a group's tree as an array of optional nodes (Appendix C).
It is mutable, but only ever mutated on a fresh `copy()`: the group state machine copies the
tree when it stages a commit and applies proposals to the copy, so a merged state's tree is
never changed. ``copy()`` shares the node and hash arrays copy-on-write (`CowList`): O(N / 256).

Tree hashes (§7.8) are cached per node and invalidated along the direct path of every node
that changes, so after a commit only O(log n) hashes are recomputed.

Every validation rule raises `ValidationError` whose ``rule`` names the RFC section.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Collection, Iterator, Sequence
from itertools import compress, count, islice, repeat
from operator import is_
from typing import Self

from doorless.codec import Writer, encode
from doorless.crypto import CipherSuite
from doorless.errors import CryptoError, StateError, ValidationError
from doorless.mls.cow_list import CowList
from doorless.mls.extensions import (
    DEFAULT_EXTENSION_TYPES,
    Extension,
    RequiredCapabilities,
)
from doorless.mls.leaf_node import LeafNode, LeafNodeSource, check_leaf_node_capabilities
from doorless.mls.nodes import (
    Node,
    NodeType,
    ParentNode,
    decode_ratchet_tree,
    encode_ratchet_tree,
    push_ratchet_tree,
)
from doorless.mls.tree_math import (
    LeafIndex,
    NodeIndex,
    direct_path,
    is_in_subtree,
    left,
    level,
    right,
    root,
)

# RFC 9420 §12.1: the default proposal types, which capabilities never list.
DEFAULT_PROPOSAL_TYPES = frozenset(range(1, 8))


_LEAF_TAG = bytes((NodeType.leaf,))
_PARENT_TAG = bytes((NodeType.parent,))


def _opaque(data: bytes) -> bytes:
    if len(data) < 0x40:  # hashes and keys: a one-octet length
        return bytes((len(data),)) + data
    w = Writer()
    w.push_opaque(data)
    return w.getvalue()


class _TreeIndex:
    """Counts over a tree's nodes, kept current by `RatchetTree.set_node`, so that the key
    uniqueness (§7.3) and credential rules cost O(1) per changed node instead of a scan of the
    whole tree.

    A tree and its copies share an index until one of them changes; the one that changes then
    gets an overlay (`child`) holding only its differences, so a commit does not copy the key
    tables of a 10,000-member tree (touching every key costs milliseconds in a large heap). A
    shared index is never changed. Chains are flattened after `MAX_DEPTH` overlays.
    """

    MAX_DEPTH = 8

    __slots__ = (
        "base",
        "credential_support",
        "credential_use",
        "depth",
        "duplicates",
        "encryption_keys",
        "members",
        "shared",
        "signature_keys",
    )

    base: _TreeIndex | None
    depth: int
    encryption_keys: dict[bytes, int]
    signature_keys: dict[bytes, int]
    duplicates: int
    members: int
    credential_use: dict[int, int]
    credential_support: dict[int, int]
    shared: bool

    def __init__(self, base: _TreeIndex | None = None) -> None:
        self.base = base
        self.depth = 0 if base is None else base.depth + 1
        # key -> number of nodes (leaves) holding it; relative to `base` when there is one.
        self.encryption_keys = {}
        self.signature_keys = {}
        self.duplicates = 0 if base is None else base.duplicates  # keys held more than once
        self.members = 0 if base is None else base.members
        # credential type -> leaves using it / listing it in their capabilities (a few types)
        self.credential_use = {} if base is None else base.credential_use.copy()
        self.credential_support = {} if base is None else base.credential_support.copy()
        self.shared = False

    def child(self) -> _TreeIndex:
        """An overlay on this (shared, now frozen) index, or a flat copy past `MAX_DEPTH`."""
        if self.depth < self.MAX_DEPTH:
            return _TreeIndex(self)
        flat = _TreeIndex()
        flat.encryption_keys = self._flatten("encryption_keys")
        flat.signature_keys = self._flatten("signature_keys")
        flat.duplicates = self.duplicates
        flat.members = self.members
        flat.credential_use = self.credential_use.copy()
        flat.credential_support = self.credential_support.copy()
        return flat

    def _flatten(self, name: str) -> dict[bytes, int]:
        chain: list[_TreeIndex] = []
        index: _TreeIndex | None = self
        while index is not None:
            chain.append(index)
            index = index.base
        total: dict[bytes, int] = {}
        for layer in reversed(chain):
            for key, n in getattr(layer, name).items():
                total[key] = total.get(key, 0) + n
        return {key: n for key, n in total.items() if n}

    def count(self, name: str, key: bytes) -> int:
        """How many nodes (``encryption_keys``) or leaves (``signature_keys``) hold ``key``."""
        n = 0
        index: _TreeIndex | None = self
        if name == "encryption_keys":
            while index is not None:
                n += index.encryption_keys.get(key, 0)
                index = index.base
        else:
            while index is not None:
                n += index.signature_keys.get(key, 0)
                index = index.base
        return n

    def _count(self, name: str, key: bytes, delta: int) -> None:
        before = self.count(name, key)
        after = before + delta
        table = self.encryption_keys if name == "encryption_keys" else self.signature_keys
        table[key] = table.get(key, 0) + delta
        if before < 2 <= after:
            self.duplicates += 1
        elif after < 2 <= before:
            self.duplicates -= 1

    def update(self, x: int, node: Node | None, delta: int) -> None:
        """Count ``node`` at position ``x`` in (delta 1) or out (delta -1)."""
        if node is None:
            return
        self._count("encryption_keys", node.encryption_key, delta)
        if x & 1 == 0:
            assert isinstance(node, LeafNode)
            self.members += delta
            self._count("signature_keys", node.signature_key, delta)
            for table, types in (
                (self.credential_use, (int(node.credential.credential_type),)),
                (self.credential_support, set(node.capabilities.credentials)),
            ):
                for t in types:
                    n = table.get(t, 0) + delta
                    if n:
                        table[t] = n
                    else:
                        del table[t]


class RatchetTree:
    """An array-based ratchet tree for one cipher suite (RFC 9420 §7, Appendix C)."""

    __slots__ = ("_filled", "_hashes", "_index", "_nodes", "suite")

    suite: CipherSuite
    # Shared copy-on-write with copies: a commit's staged tree costs O(N / BLOCK), not O(N).
    _nodes: CowList[Node | None]
    _hashes: CowList[bytes | None]
    # Every leaf with index < _filled is non-blank: where the search for a blank leaf starts.
    _filled: int
    # Built on first use (an O(n) scan, as the checks it replaces were), then kept current.
    _index: _TreeIndex | None

    def __init__(
        self,
        suite: CipherSuite,
        nodes: list[Node | None] | CowList[Node | None],
        hashes: CowList[bytes | None] | None = None,
    ) -> None:
        # Trusted constructor: ``nodes`` has a full width (2^(d+1) - 1) and leaves at even
        # positions. Use `from_nodes` or `decode` for anything from outside.
        self.suite = suite
        self._nodes = nodes if isinstance(nodes, CowList) else CowList(nodes)
        self._hashes = hashes if hashes is not None else CowList([None] * len(nodes))
        self._filled = 0
        self._index = None

    # --- construction and encoding ----------------------------------------------------------

    @classmethod
    def create(cls, suite: CipherSuite, leaf_node: LeafNode) -> Self:
        """The one-member tree of a new group (RFC 9420 §11)."""
        return cls(suite, [leaf_node])

    @classmethod
    def from_nodes(cls, suite: CipherSuite, nodes: Sequence[Node | None]) -> Self:
        """A tree from ``nodes`` in array order; checked like a decoded ``ratchet_tree``."""
        w = Writer()
        push_ratchet_tree(w, nodes)
        return cls.decode(suite, w.getvalue())

    @classmethod
    def decode(cls, suite: CipherSuite, data: bytes) -> Self:
        """Decode a ``ratchet_tree`` extension value (RFC 9420 §12.4.3.3); `DecodeError`."""
        return cls(suite, decode_ratchet_tree(data))

    def encode(self) -> bytes:
        """The ``ratchet_tree`` extension value (trailing blank nodes omitted)."""
        return encode_ratchet_tree(list(self._nodes))

    def copy(self) -> RatchetTree:
        tree = RatchetTree(self.suite, self._nodes.copy(), self._hashes.copy())
        tree._filled = self._filled
        if self._index is not None:
            self._index.shared = True
            tree._index = self._index
        return tree

    def _read_index(self) -> _TreeIndex:
        index = self._index
        if index is None:
            index = _TreeIndex()
            for x, node in enumerate(self._nodes):
                index.update(x, node, 1)
            self._index = index
        return index

    def _write_index(self) -> _TreeIndex | None:
        index = self._index
        if index is not None and index.shared:
            index = self._index = index.child()
        return index

    # --- shape and access ---------------------------------------------------------------------

    @property
    def width(self) -> int:
        """Number of nodes (``2 * n_leaves - 1``)."""
        return len(self._nodes)

    @property
    def n_leaves(self) -> int:
        return (len(self._nodes) + 1) // 2

    @property
    def root(self) -> NodeIndex:
        return root(self.n_leaves)

    @property
    def nodes(self) -> Sequence[Node | None]:
        """Read-only view of the node array (do not mutate)."""
        return tuple(self._nodes)

    def node(self, x: int) -> Node | None:
        return self._nodes[x]

    def leaf_node(self, leaf: int) -> LeafNode | None:
        """The leaf at ``leaf`` (a leaf index), or None if blank or beyond the tree."""
        if not 0 <= leaf < self.n_leaves:
            return None
        node = self._nodes[2 * leaf]
        assert node is None or isinstance(node, LeafNode)
        return node

    def parent_node(self, x: int) -> ParentNode | None:
        node = self._nodes[x]
        assert node is None or isinstance(node, ParentNode)
        return node

    def members(self) -> Iterator[tuple[LeafIndex, LeafNode]]:
        """The non-blank leaves, in leaf-index order."""
        for i, node in enumerate(islice(self._nodes, 0, None, 2)):
            if node is not None:
                assert isinstance(node, LeafNode)
                yield LeafIndex(i), node

    def member_count(self) -> int:
        return self._read_index().members

    def encryption_key_in_use(self, key: bytes) -> bool:
        """Whether some node holds ``key`` (§7.3 uniqueness of encryption keys)."""
        return self._read_index().count("encryption_keys", key) > 0

    def signature_key_users(self, key: bytes) -> int:
        """How many leaves hold the signature key ``key``."""
        return self._read_index().count("signature_keys", key)

    def credential_types_in_use(self) -> frozenset[int]:
        """The credential types of the members' credentials."""
        return frozenset(self._read_index().credential_use)

    def credential_supported_by_all(self, credential_type: int) -> bool:
        """Whether every member lists ``credential_type`` in its capabilities (§7.3)."""
        index = self._read_index()
        return index.credential_support.get(credential_type, 0) == index.members

    def find_leaf(self, leaf_node: LeafNode) -> LeafIndex | None:
        """The index of the leaf equal to ``leaf_node`` (e.g. one's own leaf), if any."""
        for i, node in self.members():
            if node == leaf_node:
                return i
        return None

    def encryption_key(self, x: int) -> bytes:
        node = self._nodes[x]
        if node is None:
            raise StateError(f"node {x} is blank")
        return node.encryption_key

    # --- resolution and filtered direct path (RFC 9420 §4.1) -------------------------------------

    def resolution(self, x: int, exclude: Collection[int] = ()) -> list[NodeIndex]:
        """Resolution of node ``x`` (§4.1.1), omitting the leaves in ``exclude`` (leaf indices;
        used to leave out members added by the commit being built, §7.6)."""
        out: list[NodeIndex] = []
        self._resolve(x, out, exclude)
        return out

    def _resolve(self, x: int, out: list[NodeIndex], exclude: Collection[int]) -> None:
        node = self._nodes[x]
        if node is None:
            if x & 1:
                # A blank subtree (e.g. the unused right edge of a tree of 10,000 leaves, padded
                # to 16,384) resolves to nothing: one C-speed scan instead of a recursion.
                if self._resolution_empty(x):
                    return
                self._resolve(left(x), out, exclude)
                self._resolve(right(x), out, exclude)
            return
        if x & 1 == 0:
            if (x >> 1) not in exclude:
                out.append(NodeIndex(x))
            return
        out.append(NodeIndex(x))
        assert isinstance(node, ParentNode)
        out.extend(NodeIndex(2 * u) for u in node.unmerged_leaves if u not in exclude)

    def _resolution_empty(self, x: int) -> bool:
        # Empty iff every node of the subtree is blank; nodes are always truthy, so `any` over
        # the subtree's span (x - (2^k - 1) .. x + (2^k - 1)) answers at C speed.
        nodes = self._nodes
        if nodes[x] is not None:
            return False
        half = (1 << level(x)) - 1
        return not nodes.any(x - half, x + half + 1)

    def filtered_direct_path(self, leaf: int) -> list[NodeIndex]:
        """Direct path of ``leaf`` without the nodes whose copath child has an empty
        resolution (§4.1.2), leaf to root."""
        out: list[NodeIndex] = []
        x = 2 * leaf
        for p in direct_path(x, self.n_leaves):
            s = right(p) if x < p else left(p)
            if not self._resolution_empty(s):
                out.append(p)
            x = p
        return out

    def copath_child(self, p: int, leaf: int) -> NodeIndex:
        """The child of ``p`` that is not an ancestor of (or equal to) ``leaf``'s node."""
        return right(p) if 2 * leaf < p else left(p)

    # --- tree hash (RFC 9420 §7.8) -----------------------------------------------------------

    def tree_hash(self) -> bytes:
        """The root tree hash (the GroupContext ``tree_hash``)."""
        return self.node_tree_hash(self.root)

    def node_tree_hash(self, x: int) -> bytes:
        h = self._hashes[x]
        if h is None:
            if x & 1 == 0:
                h = self._leaf_hash(x, self._nodes[x])
            else:
                h = self._parent_hash_input_hash(
                    self._nodes[x], self.node_tree_hash(left(x)), self.node_tree_hash(right(x))
                )
            self._hashes[x] = h
        return h

    def tree_hashes(self) -> list[bytes]:
        """Tree hash of every node, by node index."""
        self.tree_hash()
        return [self.node_tree_hash(x) for x in range(len(self._nodes))]

    def _leaf_hash(self, x: int, node: Node | None) -> bytes:
        # TreeHashInput{ leaf, LeafNodeHashInput{ uint32 leaf_index; optional<LeafNode> } },
        # concatenated directly: a joiner hashes every leaf (nodes memoize their encoding).
        head = _LEAF_TAG + (x >> 1).to_bytes(4, "big")
        if node is None:
            return self.suite.hash(head + b"\x00")
        return self.suite.hash(head + b"\x01" + encode(node))

    def _parent_hash_input_hash(
        self, node: Node | None, left_hash: bytes, right_hash: bytes
    ) -> bytes:
        # TreeHashInput{ parent, ParentNodeHashInput{ optional<ParentNode>; left; right } }
        body = b"\x00" if node is None else b"\x01" + encode(node)
        return self.suite.hash(_PARENT_TAG + body + _opaque(left_hash) + _opaque(right_hash))

    def _original_tree_hash(self, x: int, excluded: frozenset[int]) -> bytes:
        """Tree hash of ``x`` with the leaves in ``excluded`` blanked and dropped from every
        ``unmerged_leaves`` list (the "original sibling tree hash" of §7.9)."""
        k = level(x)
        first = (x - ((1 << k) - 1)) >> 1
        if not any(first <= u < first + (1 << k) for u in excluded):
            return self.node_tree_hash(x)
        if k == 0:
            return self._leaf_hash(x, None)
        node = self._nodes[x]
        if node is not None:
            assert isinstance(node, ParentNode)
            node = ParentNode(
                node.encryption_key,
                node.parent_hash,
                tuple(u for u in node.unmerged_leaves if u not in excluded),
            )
        return self._parent_hash_input_hash(
            node,
            self._original_tree_hash(left(x), excluded),
            self._original_tree_hash(right(x), excluded),
        )

    # --- parent hash (RFC 9420 §7.9) ---------------------------------------------------------

    def parent_hash(self, p: int, s: int) -> bytes:
        """Parent hash of the parent node ``p`` with copath child ``s``, in this tree:
        ``Hash(ParentHashInput{encryption_key, parent_hash, original_sibling_tree_hash})``."""
        node = self._nodes[p]
        if node is None:
            raise StateError(f"parent hash of blank node {p}")
        assert isinstance(node, ParentNode)
        unmerged = node.unmerged_leaves
        sibling_hash = (
            self._original_tree_hash(s, frozenset(unmerged)) if unmerged else self.node_tree_hash(s)
        )
        return self.suite.hash(
            _opaque(node.encryption_key) + _opaque(node.parent_hash) + _opaque(sibling_hash)
        )

    def verify_parent_hashes(self) -> None:
        """Every non-blank parent node is parent-hash valid (§7.9.2, checked top down: each has
        exactly one descendant whose ``parent_hash`` links to it)."""
        nodes = self._nodes
        for p in range(1, len(nodes), 2):
            node = nodes[p]
            if node is None:
                continue
            assert isinstance(node, ParentNode)
            unmerged = {2 * u for u in node.unmerged_leaves}
            links = 0
            for c, s in ((left(p), right(p)), (right(p), left(p))):
                resolution_c = self.resolution(c)
                if not resolution_c:
                    continue  # nothing under C can link to P: skip computing its hash
                ph = self.parent_hash(p, s)
                # P's unmerged leaves under C, as node indices.
                expected = {u for u in unmerged if is_in_subtree(u, c)} if unmerged else set()
                for d in resolution_c:
                    d_node = nodes[d]
                    assert d_node is not None
                    if d_node.parent_hash != ph:
                        continue
                    if set(resolution_c) - {d} == expected:
                        links += 1
            if links != 1:
                raise ValidationError(
                    f"parent node {p} is not parent-hash valid ({links} linked descendants)",
                    rule="RFC9420 7.9.2",
                )

    # --- edits (RFC 9420 §7.7, §12.1); call on a copy ---------------------------------------

    def set_node(self, x: int, node: Node | None) -> None:
        """Replace node ``x`` and invalidate the cached hashes of it and its ancestors."""
        index = self._write_index()
        if index is not None:
            index.update(x, self._nodes[x], -1)
            index.update(x, node, 1)
        self._nodes[x] = node
        if node is None and x & 1 == 0:
            self._filled = min(self._filled, x >> 1)
        self._invalidate(x)

    def _invalidate(self, x: int) -> None:
        # Invariant: a cached hash implies cached hashes below it (`node_tree_hash` caches
        # children first). So an uncached ancestor has only uncached ancestors: stop there.
        hashes = self._hashes
        hashes[x] = None
        r = len(self._nodes)
        k = level(x)
        while True:
            b = (x >> (k + 1)) & 1
            x = (x | (1 << k)) ^ (b << (k + 1))
            k += 1
            if x >= r or hashes[x] is None:
                break
            hashes[x] = None

    def _set_leaf(self, leaf: int, leaf_node: LeafNode | None) -> None:
        self.set_node(2 * leaf, leaf_node)

    def blank_direct_path(self, leaf: int) -> None:
        """Blank every node on the direct path of ``leaf`` (§12.1.2, §12.1.3, §7.5)."""
        for p in direct_path(2 * leaf, self.n_leaves):
            if self._nodes[p] is not None:
                self.set_node(p, None)

    def _extend(self) -> None:
        # §7.7: a new blank root whose left subtree is the old tree; append N+1 blanks.
        n = len(self._nodes)
        self._nodes.extend([None] * (n + 1))
        # The old root's hash stays valid: it is the new root's left subtree.
        self._hashes.extend([None] * (n + 1))

    def truncate(self) -> None:
        """Drop the right half while it holds no member (§12.1.3)."""
        nodes = self._nodes
        while len(nodes) > 1:
            half = (len(nodes) - 1) // 2
            if any(nodes[x] is not None for x in range(half + 1, len(nodes), 2)):
                break
            index = self._write_index()
            if index is not None:
                for x in range(half, len(nodes)):
                    index.update(x, nodes[x], -1)
            del nodes[half:]
            del self._hashes[half:]

    def add_leaf(self, leaf_node: LeafNode) -> LeafIndex:
        """Add a member at the leftmost blank leaf, extending if full (§12.1.1); the new leaf
        becomes unmerged at every non-blank node of its direct path."""
        nodes = self._nodes
        # An identity scan built from C iterators (list.index(None) would call LeafNode.__eq__
        # on every leaf), starting after the leaves known to be filled.
        start = self._filled
        blank = next(compress(count(start), map(is_, nodes[2 * start :: 2], repeat(None))), None)
        if blank is None:
            x = len(nodes) + 1
            self._extend()
        else:
            x = 2 * blank
        leaf = x >> 1
        self._filled = leaf + 1
        for p in direct_path(x, self.n_leaves):
            node = nodes[p]
            if node is not None:
                assert isinstance(node, ParentNode)
                unmerged = list(node.unmerged_leaves)
                bisect.insort(unmerged, leaf)
                nodes[p] = ParentNode(node.encryption_key, node.parent_hash, tuple(unmerged))
        self._set_leaf(leaf, leaf_node)
        return LeafIndex(leaf)

    def update_leaf(self, leaf: int, leaf_node: LeafNode) -> None:
        """Apply an Update proposal: replace the leaf and blank its direct path (§12.1.2)."""
        if self.leaf_node(leaf) is None:
            raise StateError(f"leaf {leaf} is blank")
        self._set_leaf(leaf, leaf_node)
        self.blank_direct_path(leaf)

    def remove_leaf(self, leaf: int) -> None:
        """Apply a Remove proposal: blank the leaf and its direct path, then truncate
        (§12.1.3)."""
        if self.leaf_node(leaf) is None:
            raise StateError(f"leaf {leaf} is blank")
        self._set_leaf(leaf, None)
        self.blank_direct_path(leaf)
        self.truncate()

    def merge_path(
        self,
        leaf: int,
        leaf_node: LeafNode,
        path_keys: Sequence[bytes],
    ) -> bytes:
        """Merge an update path of ``leaf`` (§7.5): blank the direct path, set the filtered
        direct path's keys (``path_keys``, leaf to root) with fresh parent hashes and empty
        unmerged lists, then set the leaf.

        Returns the parent hash the leaf must carry; the caller checks or signs it. The leaf
        node is stored as given.
        """
        fdp = self.filtered_direct_path(leaf)
        if len(path_keys) != len(fdp):
            raise ValidationError(
                f"update path has {len(path_keys)} nodes, filtered direct path has {len(fdp)}",
                rule="RFC9420 7.6",
            )
        self.blank_direct_path(leaf)
        parent_hash = b""
        for p, key in zip(reversed(fdp), reversed(path_keys), strict=True):
            self.set_node(p, ParentNode(key, parent_hash, ()))
            # Fresh nodes have no unmerged leaves, so the original sibling tree hash is the
            # sibling's current tree hash (§7.9).
            s = self.copath_child(p, leaf)
            parent_hash = self.suite.hash(
                _opaque(key) + _opaque(parent_hash) + _opaque(self.node_tree_hash(s))
            )
        self._set_leaf(leaf, leaf_node)
        return parent_hash

    # --- validation (RFC 9420 §7.3, §7.9.2, §12.4.3.1) ---------------------------------------

    def verify_leaf_signatures(self, group_id: bytes) -> None:
        """Every leaf's signature verifies, with ``group_id`` and its index as context."""
        for i, leaf in self.members():
            try:
                leaf.verify(self.suite, group_id, i)
            except CryptoError:
                raise ValidationError(
                    f"leaf {i} has an invalid signature", rule="RFC9420 7.3"
                ) from None

    def verify_unmerged_leaves(self) -> None:
        """§7.1 and §12.4.3.1: each ``unmerged_leaves`` is sorted, names non-blank leaves
        under its node, and every non-blank node between such a leaf and the node lists it."""
        nodes = self._nodes
        n_leaves = self.n_leaves
        for p in range(1, len(nodes), 2):
            node = nodes[p]
            if node is None:
                continue
            assert isinstance(node, ParentNode)
            unmerged = node.unmerged_leaves
            if any(a >= b for a, b in itertools.pairwise(unmerged)):
                raise ValidationError(
                    f"unmerged_leaves of node {p} are not sorted and unique", rule="RFC9420 7.1"
                )
            for u in unmerged:
                x = 2 * u
                if u >= n_leaves or not is_in_subtree(x, p) or nodes[x] is None:
                    raise ValidationError(
                        f"node {p} lists leaf {u} as unmerged, which is blank or not under it",
                        rule="RFC9420 12.4.3.1",
                    )
                for q in direct_path(x, n_leaves):
                    if q == p:
                        break
                    between = nodes[q]
                    if between is not None:
                        assert isinstance(between, ParentNode)
                        if u not in between.unmerged_leaves:
                            raise ValidationError(
                                f"node {q} between unmerged leaf {u} and node {p} lacks it",
                                rule="RFC9420 12.4.3.1",
                            )

    def verify_unique_keys(self) -> None:
        """Encryption keys are unique across all nodes and signature keys across leaves
        (§7.3, §12.4.3.1)."""
        if self._read_index().duplicates == 0:
            return
        # Some key is held twice: find which, for the message.
        seen: dict[bytes, int] = {}
        for x, node in enumerate(self._nodes):
            if node is None:
                continue
            other = seen.setdefault(node.encryption_key, x)
            if other != x:
                raise ValidationError(
                    f"nodes {other} and {x} share an encryption key", rule="RFC9420 12.4.3.1"
                )
        signature_keys: dict[bytes, int] = {}
        for i, leaf in self.members():
            other = signature_keys.setdefault(leaf.signature_key, i)
            if other != i:
                raise ValidationError(
                    f"leaves {other} and {i} share a signature key", rule="RFC9420 7.3"
                )
        raise AssertionError("the tree's key index counts a duplicate the scan did not find")

    def verify_capabilities(
        self,
        required_capabilities: RequiredCapabilities | None = None,
        context_extensions: Sequence[Extension] = (),
    ) -> None:
        """The capability rules of §7.2/§7.3 for every leaf: credential type and extensions
        listed in its own capabilities, every credential type in use supported by everyone,
        the group's required capabilities and GroupContext extensions supported (§11.1, §13.4).
        """
        members = list(self.members())
        in_use = {int(leaf.credential.credential_type) for _, leaf in members}
        required_extensions = [
            int(e.extension_type)
            for e in context_extensions
            if e.extension_type not in DEFAULT_EXTENSION_TYPES
        ]
        required_proposals: list[int] = []
        required_credentials: list[int] = []
        if required_capabilities is not None:
            required_extensions += [
                t for t in required_capabilities.extension_types if t not in DEFAULT_EXTENSION_TYPES
            ]
            required_proposals = [
                t for t in required_capabilities.proposal_types if t not in DEFAULT_PROPOSAL_TYPES
            ]
            required_credentials = list(required_capabilities.credential_types)
        for i, leaf in members:
            check_leaf_node_capabilities(leaf)
            caps = leaf.capabilities
            if not in_use.issubset(caps.credentials):
                raise ValidationError(
                    f"leaf {i} does not support every credential type in use", rule="RFC9420 7.3"
                )
            if not (
                set(required_extensions).issubset(caps.extensions)
                and set(required_proposals).issubset(caps.proposals)
                and set(required_credentials).issubset(caps.credentials)
            ):
                raise ValidationError(
                    f"leaf {i} lacks a capability the group requires", rule="RFC9420 11.1"
                )

    def verify_lifetimes(self, now: int) -> None:
        """Key-package leaves are within their lifetime at ``now`` (§7.3, RECOMMENDED)."""
        for i, leaf in self.members():
            if leaf.leaf_node_source == LeafNodeSource.key_package:
                assert leaf.lifetime is not None
                if not leaf.lifetime.contains(now):
                    raise ValidationError(f"leaf {i} is outside its lifetime", rule="RFC9420 7.3")

    def validate(
        self,
        group_id: bytes,
        *,
        tree_hash: bytes | None = None,
        required_capabilities: RequiredCapabilities | None = None,
        context_extensions: Sequence[Extension] = (),
        now: int | None = None,
    ) -> None:
        """The checks a joiner runs on a received tree (RFC 9420 §12.4.3.1).

        ``tree_hash`` is the GroupInfo's; ``now`` (seconds) enables the lifetime check.
        Credential validation against the Authentication Service is the caller's job.
        """
        if self.member_count() == 0:
            raise ValidationError("tree has no members", rule="RFC9420 12.4.3.1")
        if tree_hash is not None and self.tree_hash() != tree_hash:
            raise ValidationError("tree hash does not match", rule="RFC9420 12.4.3.1")
        self.verify_unmerged_leaves()
        self.verify_parent_hashes()
        self.verify_unique_keys()
        self.verify_capabilities(required_capabilities, context_extensions)
        if now is not None:
            self.verify_lifetimes(now)
        self.verify_leaf_signatures(group_id)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RatchetTree):
            return NotImplemented
        return self.suite == other.suite and self._nodes == other._nodes

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"RatchetTree({self.suite!r}, leaves={self.n_leaves}, members={self.member_count()})"
