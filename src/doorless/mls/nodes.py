"""Tree nodes and update paths on the wire (RFC 9420 §7.1, §7.6, §12.4.3.3).

::

    struct {
        HPKEPublicKey encryption_key;
        opaque parent_hash<V>;
        uint32 unmerged_leaves<V>;
    } ParentNode;

    enum { reserved(0), leaf(1), parent(2), (255) } NodeType;

    struct {
        NodeType node_type;
        select (Node.node_type) {
            case leaf:   LeafNode leaf_node;
            case parent: ParentNode parent_node;
        };
    } Node;

    optional<Node> ratchet_tree<V>;

    struct {
        opaque kem_output<V>;
        opaque ciphertext<V>;
    } HPKECiphertext;

    struct {
        HPKEPublicKey encryption_key;
        HPKECiphertext encrypted_path_secret<V>;
    } UpdatePathNode;

    struct {
        LeafNode leaf_node;
        UpdatePathNode nodes<V>;
    } UpdatePath;

``Node`` is the union ``LeafNode | ParentNode``; `pull_node`/`push_node` add the tag.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Self, overload

from doorless.codec import (
    Reader,
    Writer,
    decode,
    pull_uint32_item,
    push_struct,
    push_uint32_item,
)
from doorless.errors import DecodeError
from doorless.mls.leaf_node import LeafNode


class NodeType(IntEnum):
    """RFC 9420 §7.8."""

    leaf = 1
    parent = 2


@dataclass(frozen=True, slots=True)
class ParentNode:
    """RFC 9420 §7.1 ``ParentNode``; ``unmerged_leaves`` are leaf indices, sorted ascending."""

    encryption_key: bytes
    parent_hash: bytes
    unmerged_leaves: tuple[int, ...]
    # The encoding, memoized (tree hashes and the ratchet_tree extension encode every node).
    _encoding: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def push(self, w: Writer) -> None:
        encoding = self._encoding
        if encoding is None:
            inner = Writer()
            inner.push_opaque(self.encryption_key)
            inner.push_opaque(self.parent_hash)
            inner.push_vector(self.unmerged_leaves, push_uint32_item)
            encoding = inner.getvalue()
            object.__setattr__(self, "_encoding", encoding)
        w.push_bytes(encoding)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        return cls(r.pull_opaque(), r.pull_opaque(), tuple(r.pull_vector(pull_uint32_item)))

    @classmethod
    def pull_received(cls, r: Reader) -> Self:
        """`pull`, keeping the bytes as received as the encoding (see `pull_ratchet_tree`)."""
        start = r.position
        node = cls.pull(r)
        object.__setattr__(node, "_encoding", r.read_since(start))
        return node


Node = LeafNode | ParentNode

_PULL_NODE: dict[int, Callable[[Reader], Node]] = {
    NodeType.leaf: LeafNode.pull,
    NodeType.parent: ParentNode.pull,
}
_NODE_TYPE: dict[type, NodeType] = {LeafNode: NodeType.leaf, ParentNode: NodeType.parent}
_PULL_NODE_RECEIVED: dict[int, Callable[[Reader], Node]] = {
    NodeType.leaf: LeafNode.pull_received,
    NodeType.parent: ParentNode.pull_received,
}


def pull_node(r: Reader) -> Node:
    node_type = r.pull_uint8()
    pull = _PULL_NODE.get(node_type)
    if pull is None:
        raise DecodeError(f"invalid node_type {node_type}")
    return pull(r)


def push_node(w: Writer, node: Node) -> None:
    w.push_uint8(_NODE_TYPE[type(node)])
    node.push(w)


def _pull_node_received(r: Reader) -> Node:
    node_type = r.pull_uint8()
    pull = _PULL_NODE_RECEIVED.get(node_type)
    if pull is None:
        raise DecodeError(f"invalid node_type {node_type}")
    return pull(r)


def _pull_optional_node(r: Reader) -> Node | None:
    return r.pull_optional(_pull_node_received)


def _push_optional_node(w: Writer, node: Node | None) -> None:
    if node is None:
        w.push_uint8(0)
    else:
        w.push_uint8(1)
        push_node(w, node)


def pull_ratchet_tree(r: Reader) -> list[Node | None]:
    """``optional<Node> ratchet_tree<V>`` exactly as on the wire (no structural checks).

    Each node keeps the bytes it was received as its encoding: a joiner hashes all n of them
    (tree hash) and verifies every leaf's signature over them, and need not encode them again.
    """
    return r.pull_vector(_pull_optional_node)


def push_ratchet_tree(w: Writer, nodes: Sequence[Node | None]) -> None:
    """Write ``nodes`` as given; callers drop trailing blanks first (`encode_ratchet_tree`)."""
    w.push_vector(nodes, _push_optional_node)


def decode_ratchet_tree(data: bytes) -> list[Node | None]:
    """Decode a ``ratchet_tree`` value and check its shape (RFC 9420 §12.4.3.3).

    The result is padded with blanks to ``2^(d+1) - 1`` entries. `DecodeError` if the vector is
    empty, ends in a blank node, or has a leaf at an odd (parent) position or a parent at an
    even (leaf) position.
    """
    r = Reader(data)
    nodes = pull_ratchet_tree(r)
    r.expect_end()
    if not nodes:
        raise DecodeError("ratchet_tree is empty")
    if nodes[-1] is None:
        raise DecodeError("ratchet_tree ends in a blank node [RFC9420 12.4.3.3]")
    for i, node in enumerate(nodes):
        if node is not None and isinstance(node, LeafNode) != (i % 2 == 0):
            raise DecodeError(f"ratchet_tree node {i} has the wrong node type for its position")
    width = 1
    while width < len(nodes):
        width = 2 * width + 1
    nodes.extend([None] * (width - len(nodes)))
    return nodes


def encode_ratchet_tree(nodes: Sequence[Node | None]) -> bytes:
    """Encode a tree as ``ratchet_tree``, without the trailing blank nodes (§12.4.3.3)."""
    end = len(nodes)
    while end > 0 and nodes[end - 1] is None:
        end -= 1
    w = Writer()
    push_ratchet_tree(w, nodes[:end])
    return w.getvalue()


@dataclass(frozen=True, slots=True)
class HPKECiphertext:
    """RFC 9420 §7.6 ``HPKECiphertext``."""

    kem_output: bytes
    ciphertext: bytes

    def push(self, w: Writer) -> None:
        w.push_opaque(self.kem_output)
        w.push_opaque(self.ciphertext)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        return cls(r.pull_opaque(), r.pull_opaque())


class ReceivedCiphertexts(Sequence[HPKECiphertext]):
    """``HPKECiphertext encrypted_path_secret<V>`` as received, decoded on access.

    A receiver opens one ciphertext of one UpdatePathNode (§7.5); a commit to a group whose
    parent nodes are blank carries N-1 of them. The vector is checked whole when it is
    received (any malformed item is a `DecodeError` then, as with eager decoding), but its
    items become objects only when read.

    The check is done at C speed when every item has the same layout, as an honest
    committer's do (same suite, same sizes): the first item is decoded, and then the length
    prefixes at every stride are compared at once (``data[k::size]``); by induction the
    sequential parse then meets exactly those items. Otherwise the items are walked.
    """

    __slots__ = ("_data", "_offsets", "_size")

    _data: bytes
    _size: int  # the stride of a uniform vector, or 0
    _offsets: list[int]  # item starts (and the end) of a non-uniform vector

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._size = 0
        self._offsets = []
        if not data:
            return
        r = Reader(data)
        r.pull_opaque()
        kem_end = r.position
        r.pull_opaque()
        size = r.position
        # The length prefixes of the first item: kem_output's, then ciphertext's.
        prefixes = list(range(_prefix_len(data, 0)))
        prefixes += range(kem_end, kem_end + _prefix_len(data, kem_end))
        n, rest = divmod(len(data), size)
        if rest == 0 and all(data[k::size] == data[k : k + 1] * n for k in prefixes):
            self._size = size
            return
        offsets = [0, size]
        while not r.eof():
            r.pull_opaque()
            r.pull_opaque()
            offsets.append(r.position)
        self._offsets = offsets

    def __len__(self) -> int:
        if self._size:
            return len(self._data) // self._size
        return max(len(self._offsets) - 1, 0)

    @overload
    def __getitem__(self, i: int) -> HPKECiphertext: ...

    @overload
    def __getitem__(self, i: slice) -> Sequence[HPKECiphertext]: ...

    def __getitem__(self, i: int | slice) -> HPKECiphertext | Sequence[HPKECiphertext]:
        if isinstance(i, slice):
            return tuple(self)[i]
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("ciphertext index out of range")
        if self._size:
            start, end = i * self._size, (i + 1) * self._size
        else:
            start, end = self._offsets[i], self._offsets[i + 1]
        return decode(HPKECiphertext, self._data[start:end])

    def __iter__(self) -> Iterator[HPKECiphertext]:
        return (self[i] for i in range(len(self)))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ReceivedCiphertexts):
            return self._data == other._data
        if isinstance(other, tuple | list):
            return tuple(self) == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return f"ReceivedCiphertexts({len(self)} items)"

    @property
    def encoded(self) -> bytes:
        """The items as received (the vector's content, without its length)."""
        return self._data


def _prefix_len(data: bytes, pos: int) -> int:
    """Octets of the (already validated) varint length at ``pos`` (§2.1.2)."""
    return 1 << (data[pos] >> 6)


@dataclass(frozen=True, slots=True)
class UpdatePathNode:
    """RFC 9420 §7.6 ``UpdatePathNode``. A decoded one holds `ReceivedCiphertexts`."""

    encryption_key: bytes
    encrypted_path_secret: Sequence[HPKECiphertext]

    def push(self, w: Writer) -> None:
        w.push_opaque(self.encryption_key)
        ciphertexts = self.encrypted_path_secret
        if isinstance(ciphertexts, ReceivedCiphertexts):
            w.push_opaque(ciphertexts.encoded)
        else:
            w.push_vector(ciphertexts, push_struct)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        return cls(r.pull_opaque(), ReceivedCiphertexts(r.pull_opaque()))


@dataclass(frozen=True, slots=True)
class UpdatePath:
    """RFC 9420 §7.6 ``UpdatePath``."""

    leaf_node: LeafNode
    nodes: tuple[UpdatePathNode, ...]

    def push(self, w: Writer) -> None:
        self.leaf_node.push(w)
        w.push_vector(self.nodes, push_struct)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        return cls(LeafNode.pull(r), tuple(r.pull_vector(UpdatePathNode.pull)))
