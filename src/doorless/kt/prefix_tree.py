"""The KEYTRANS prefix tree over 32-byte search keys (draft-ietf-keytrans-protocol §"Prefix
Tree" in "Tree Construction", "Cryptographic Computations" and "Tree Proofs").

Structure: a binary trie on the bits of the search key (most significant bit first, left = 0).
A leaf sits at the shallowest depth where its key is alone in its subtree; a parent exists for
every shared prefix, so a parent may have a single child (the other is *empty*). The root is at
depth 0; a one-entry tree is a single leaf; the empty tree is a single empty node.

Hashes (SHA-256)::

    leaf.value   = Hash(0x02 || vrf_output || commitment)
    parent.value = Hash(0x03 || left.value || right.value)   // empty child: 32 zero bytes

so the root of the empty tree is 32 zero bytes (the draft leaves it implicit; the katie
implementation by the draft's author hashes empty nodes the same way).

`PrefixTree` is persistent: `insert`/`insert_many` return a new tree that shares every
untouched node with the old one, so the tree of each log entry stays answerable at the cost
of O(depth) new nodes per insertion. Entries are never removed or overwritten (KT-lite: the
map only grows); inserting an existing search key is a `StateError`.

Proofs batch several lookups in one tree (``PrefixProof``): one result per search key, in the
requested order, and the copath values in left-to-right order (a missing node is 32 zero
bytes). `verify_prefix_proof` recomputes the root from the results and the caller's expected
commitments.

Pure: no I/O, no clock, no randomness.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Self

from doorless.codec import Reader, Writer
from doorless.errors import ConfigurationError, DecodeError, StateError
from doorless.kt._wire import pull_counted, push_counted
from doorless.kt.errors import InvalidProof

KEY_SIZE = 32
HASH_SIZE = 32
KEY_BITS = 8 * KEY_SIZE
ZERO_HASH = bytes(HASH_SIZE)
# The wire depth is a uint8; two keys that first differ in their last bit would put leaves at
# depth 256, which no proof can express, so inserting such a pair is refused (`StateError`).
# With hash or VRF keys this has probability 2^-255.
MAX_PROOF_DEPTH = 255

_sha256 = hashlib.sha256


def prefix_leaf_hash(search_key: bytes, commitment: bytes) -> bytes:
    """leaf.value = Hash(0x02 || vrf_output || commitment)."""
    return _sha256(b"\x02" + search_key + commitment).digest()


def prefix_parent_hash(left: bytes, right: bytes) -> bytes:
    """parent.value = Hash(0x03 || left.value || right.value)."""
    return _sha256(b"\x03" + left + right).digest()


def _bit(key: bytes, depth: int) -> int:
    return (key[depth >> 3] >> (7 - (depth & 7))) & 1


def _common_prefix_bits(a: bytes, b: bytes) -> int:
    return KEY_BITS - (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).bit_length()


# --- wire structures -----------------------------------------------------------------------


class PrefixSearchResultType(IntEnum):
    """``enum { reserved(0), inclusion(1), nonInclusionLeaf(2), nonInclusionParent(3) }``."""

    INCLUSION = 1
    NON_INCLUSION_LEAF = 2
    NON_INCLUSION_PARENT = 3


@dataclass(frozen=True, slots=True)
class PrefixLeaf:
    """``struct { opaque vrf_output[VRF.Nh]; opaque commitment[Hash.Nh]; } PrefixLeaf;``"""

    vrf_output: bytes
    commitment: bytes

    def push(self, w: Writer) -> None:
        w.push_bytes(self.vrf_output)
        w.push_bytes(self.commitment)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        return cls(r.pull_bytes(KEY_SIZE), r.pull_bytes(HASH_SIZE))


@dataclass(frozen=True, slots=True)
class Inclusion:
    """The search ended at the leaf of the requested key."""

    depth: int


@dataclass(frozen=True, slots=True)
class NonInclusionLeaf:
    """The search ended at a leaf for another key (given, since it cannot be inferred)."""

    leaf: PrefixLeaf
    depth: int


@dataclass(frozen=True, slots=True)
class NonInclusionParent:
    """The search ended at the empty child of a parent; ``depth`` is that of the empty child."""

    depth: int


PrefixSearchResult = Inclusion | NonInclusionLeaf | NonInclusionParent
"""::

    struct {
      PrefixSearchResultType result_type;
      select (PrefixSearchResult.result_type) {
        case nonInclusionLeaf: PrefixLeaf leaf;
      };
      uint8 depth;
    } PrefixSearchResult;
"""


def _pull_inclusion(r: Reader) -> PrefixSearchResult:
    return Inclusion(r.pull_uint8())


def _pull_non_inclusion_leaf(r: Reader) -> PrefixSearchResult:
    leaf = PrefixLeaf.pull(r)
    return NonInclusionLeaf(leaf, r.pull_uint8())


def _pull_non_inclusion_parent(r: Reader) -> PrefixSearchResult:
    return NonInclusionParent(r.pull_uint8())


_PULL_RESULT: dict[int, Callable[[Reader], PrefixSearchResult]] = {
    PrefixSearchResultType.INCLUSION: _pull_inclusion,
    PrefixSearchResultType.NON_INCLUSION_LEAF: _pull_non_inclusion_leaf,
    PrefixSearchResultType.NON_INCLUSION_PARENT: _pull_non_inclusion_parent,
}
_RESULT_TYPE: dict[type, PrefixSearchResultType] = {
    Inclusion: PrefixSearchResultType.INCLUSION,
    NonInclusionLeaf: PrefixSearchResultType.NON_INCLUSION_LEAF,
    NonInclusionParent: PrefixSearchResultType.NON_INCLUSION_PARENT,
}


def pull_prefix_search_result(r: Reader) -> PrefixSearchResult:
    result_type = r.pull_uint8()
    pull = _PULL_RESULT.get(result_type)
    if pull is None:
        raise DecodeError(f"unknown PrefixSearchResultType {result_type}")
    return pull(r)


def push_prefix_search_result(w: Writer, result: PrefixSearchResult) -> None:
    if not 0 <= result.depth <= MAX_PROOF_DEPTH:
        raise ConfigurationError(f"depth {result.depth} does not fit a uint8")
    w.push_uint8(_RESULT_TYPE[type(result)])
    if isinstance(result, NonInclusionLeaf):
        result.leaf.push(w)
    w.push_uint8(result.depth)


def _push_hash(w: Writer, value: bytes) -> None:
    if len(value) != HASH_SIZE:
        raise ConfigurationError("hash values have 32 bytes")
    w.push_bytes(value)


def _pull_hash(r: Reader) -> bytes:
    return r.pull_bytes(HASH_SIZE)


@dataclass(frozen=True, slots=True)
class PrefixProof:
    """::

    struct {
      PrefixSearchResult results<0..2^8-1>;
      HashValue elements<0..2^16-1>;
    } PrefixProof;

    (KEYTRANS vectors count elements: a uint8 count of results, a uint16 count of hashes.)
    """

    results: tuple[PrefixSearchResult, ...]
    elements: tuple[bytes, ...]

    def push(self, w: Writer) -> None:
        push_counted(w, self.results, 1, push_prefix_search_result)
        push_counted(w, self.elements, 2, _push_hash)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        results = tuple(pull_counted(r, 1, pull_prefix_search_result))
        elements = tuple(pull_counted(r, 2, _pull_hash))
        return cls(results, elements)


@dataclass(frozen=True, slots=True)
class PrefixLookup:
    """One lookup to verify: a search key and the commitment expected there (None: absent)."""

    search_key: bytes
    commitment: bytes | None


# --- verification --------------------------------------------------------------------------


class _Evaluator:
    """Rebuilds the root from sorted (key, result, commitment) items and queued elements."""

    __slots__ = ("_elements", "_next")

    def __init__(self, elements: Sequence[bytes]) -> None:
        self._elements = elements
        self._next = 0

    def pop(self) -> bytes:
        if self._next >= len(self._elements):
            raise InvalidProof("prefix proof has too few elements")
        value = self._elements[self._next]
        self._next += 1
        if len(value) != HASH_SIZE:
            raise InvalidProof("prefix proof element is not 32 bytes")
        return value

    def done(self) -> None:
        if self._next != len(self._elements):
            raise InvalidProof("prefix proof has unused elements")

    def evaluate(
        self, items: Sequence[tuple[bytes, PrefixSearchResult, bytes | None]], depth: int
    ) -> bytes:
        if not items:
            return self.pop()
        ending = sum(1 for _, result, _ in items if result.depth == depth)
        if ending:
            if ending != len(items):
                raise InvalidProof("searches that share a node end at different depths")
            values = {_terminal_value(key, result, c, depth) for key, result, c in items}
            if len(values) != 1:
                raise InvalidProof("searches that end at the same node disagree about it")
            return values.pop()
        if depth >= KEY_BITS:
            raise InvalidProof("prefix search runs past the end of the key")
        split = bisect.bisect_left(items, 1, key=lambda item: _bit(item[0], depth))
        left = self.evaluate(items[:split], depth + 1)
        right = self.evaluate(items[split:], depth + 1)
        return prefix_parent_hash(left, right)


def _terminal_value(
    key: bytes, result: PrefixSearchResult, commitment: bytes | None, depth: int
) -> bytes:
    if isinstance(result, Inclusion):
        if commitment is None:
            raise InvalidProof("prefix proof shows a key present that should be absent")
        return prefix_leaf_hash(key, commitment)
    if commitment is not None:
        raise InvalidProof("prefix proof shows a key absent that should be present")
    if isinstance(result, NonInclusionParent):
        return ZERO_HASH
    other = result.leaf.vrf_output
    if other == key:
        raise InvalidProof("non-inclusion leaf is the searched key itself")
    if _common_prefix_bits(other, key) < depth:
        raise InvalidProof("non-inclusion leaf is not on the search path")
    return prefix_leaf_hash(other, result.leaf.commitment)


def prefix_root_from_proof(lookups: Sequence[PrefixLookup], proof: PrefixProof) -> bytes:
    """The prefix-tree root that ``proof`` leads to for these lookups (`InvalidProof` if none)."""
    if len(lookups) != len(proof.results):
        raise InvalidProof(f"{len(proof.results)} results for {len(lookups)} lookups")
    for lookup in lookups:
        if len(lookup.search_key) != KEY_SIZE:
            raise InvalidProof("search keys have 32 bytes")
        if lookup.commitment is not None and len(lookup.commitment) != HASH_SIZE:
            raise InvalidProof("commitments have 32 bytes")
    items = sorted(
        (
            (lk.search_key, res, lk.commitment)
            for lk, res in zip(lookups, proof.results, strict=True)
        ),
        key=lambda item: item[0],
    )
    evaluator = _Evaluator(proof.elements)
    root = evaluator.evaluate(items, 0)
    evaluator.done()
    return root


def verify_prefix_proof(root: bytes, lookups: Sequence[PrefixLookup], proof: PrefixProof) -> None:
    """Check every lookup (present with that commitment, or absent) against ``root``."""
    if prefix_root_from_proof(lookups, proof) != root:
        raise InvalidProof("prefix proof does not lead to the root")


# --- the tree ------------------------------------------------------------------------------


class _Leaf:
    __slots__ = ("commitment", "hash", "search_key")

    search_key: bytes
    commitment: bytes
    hash: bytes

    def __init__(self, search_key: bytes, commitment: bytes) -> None:
        self.search_key = search_key
        self.commitment = commitment
        self.hash = prefix_leaf_hash(search_key, commitment)


class _Parent:
    __slots__ = ("hash", "left", "right")

    left: _Node | None
    right: _Node | None
    hash: bytes

    def __init__(self, left: _Node | None, right: _Node | None) -> None:
        self.left = left
        self.right = right
        self.hash = prefix_parent_hash(
            ZERO_HASH if left is None else left.hash, ZERO_HASH if right is None else right.hash
        )


_Node = _Leaf | _Parent


def _too_deep() -> StateError:
    return StateError("two search keys differ only in their last bit; a proof cannot reach them")


def _join(a: _Leaf, b: _Leaf, depth: int) -> _Parent:
    """The subtree at ``depth`` holding two leaves whose keys agree on the first depth bits."""
    d = _common_prefix_bits(a.search_key, b.search_key)
    if d > MAX_PROOF_DEPTH - 1:
        raise _too_deep()
    node = _Parent(a, b) if _bit(a.search_key, d) == 0 else _Parent(b, a)
    for level in range(d - 1, depth - 1, -1):
        node = _Parent(node, None) if _bit(a.search_key, level) == 0 else _Parent(None, node)
    return node


def _insert(node: _Node | None, leaf: _Leaf, depth: int) -> _Node:
    if node is None:
        return leaf
    if isinstance(node, _Leaf):
        if node.search_key == leaf.search_key:
            raise StateError("search key is already in the prefix tree (entries are immutable)")
        return _join(node, leaf, depth)
    if _bit(leaf.search_key, depth):
        return _Parent(node.left, _insert(node.right, leaf, depth + 1))
    return _Parent(_insert(node.left, leaf, depth + 1), node.right)


def _split(leaves: Sequence[_Leaf], lo: int, hi: int, depth: int) -> int:
    """First index in sorted ``leaves[lo:hi]`` (sharing ``depth`` bits) whose next bit is 1."""
    return bisect.bisect_left(leaves, 1, lo, hi, key=lambda leaf: _bit(leaf.search_key, depth))


def _build_fresh(leaves: Sequence[_Leaf], lo: int, hi: int, depth: int) -> _Node | None:
    if hi == lo:
        return None
    if hi - lo == 1:
        return leaves[lo]
    if depth >= MAX_PROOF_DEPTH:
        raise _too_deep()
    split = _split(leaves, lo, hi, depth)
    return _Parent(
        _build_fresh(leaves, lo, split, depth + 1), _build_fresh(leaves, split, hi, depth + 1)
    )


def _merge(node: _Node | None, leaves: list[_Leaf], lo: int, hi: int, depth: int) -> _Node | None:
    if lo == hi:
        return node
    if node is None:
        return _build_fresh(leaves, lo, hi, depth)
    if isinstance(node, _Leaf):
        part = leaves[lo:hi]
        at = bisect.bisect_left(part, node.search_key, key=lambda leaf: leaf.search_key)
        if at < len(part) and part[at].search_key == node.search_key:
            raise StateError("search key is already in the prefix tree (entries are immutable)")
        part.insert(at, node)
        return _build_fresh(part, 0, len(part), depth)
    split = _split(leaves, lo, hi, depth)
    return _Parent(
        _merge(node.left, leaves, lo, split, depth + 1),
        _merge(node.right, leaves, split, hi, depth + 1),
    )


def _check_entry(search_key: bytes, commitment: bytes) -> None:
    if len(search_key) != KEY_SIZE or len(commitment) != HASH_SIZE:
        raise ConfigurationError("search keys and commitments have 32 bytes")


class PrefixTree:
    """An immutable prefix tree; `insert` and `insert_many` return new trees."""

    __slots__ = ("_root", "_size")

    def __init__(self) -> None:
        self._root: _Node | None = None
        self._size = 0

    @classmethod
    def _make(cls, root: _Node | None, size: int) -> PrefixTree:
        tree = cls()
        tree._root = root
        tree._size = size
        return tree

    @classmethod
    def from_entries(cls, entries: Iterable[tuple[bytes, bytes]]) -> PrefixTree:
        """Build (or rebuild from storage) a tree of (search_key, commitment) entries."""
        return cls().insert_many(entries)

    def __len__(self) -> int:
        return self._size

    def __repr__(self) -> str:
        return f"PrefixTree(size={self._size}, root={self.root.hex()})"

    @property
    def root(self) -> bytes:
        """The root value; 32 zero bytes for the empty tree."""
        return ZERO_HASH if self._root is None else self._root.hash

    def get(self, search_key: bytes) -> bytes | None:
        """The commitment stored under ``search_key``, or None."""
        node, depth = self._root, 0
        while isinstance(node, _Parent):
            node = node.right if _bit(search_key, depth) else node.left
            depth += 1
        if node is not None and node.search_key == search_key:
            return node.commitment
        return None

    def __contains__(self, search_key: object) -> bool:
        return isinstance(search_key, bytes) and self.get(search_key) is not None

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """All (search_key, commitment) entries in key order."""
        stack: list[_Node] = [] if self._root is None else [self._root]
        while stack:
            node = stack.pop()
            if isinstance(node, _Leaf):
                yield node.search_key, node.commitment
            else:
                stack.extend(child for child in (node.right, node.left) if child is not None)

    def insert(self, search_key: bytes, commitment: bytes) -> PrefixTree:
        _check_entry(search_key, commitment)
        root = _insert(self._root, _Leaf(bytes(search_key), bytes(commitment)), 0)
        return PrefixTree._make(root, self._size + 1)

    def insert_many(self, entries: Iterable[tuple[bytes, bytes]]) -> PrefixTree:
        """Insert a batch (one log entry's worth, or a whole rebuild) in O(batch · depth)."""
        leaves: list[_Leaf] = []
        for search_key, commitment in entries:
            _check_entry(search_key, commitment)
            leaves.append(_Leaf(bytes(search_key), bytes(commitment)))
        if not leaves:
            return self
        leaves.sort(key=lambda leaf: leaf.search_key)
        for a, b in itertools.pairwise(leaves):
            if a.search_key == b.search_key:
                raise StateError("the batch inserts one search key twice")
        root = _merge(self._root, leaves, 0, len(leaves), 0)
        return PrefixTree._make(root, self._size + len(leaves))

    def prove(self, search_keys: Sequence[bytes]) -> PrefixProof:
        """A batched proof: one result per key, in the order given."""
        if len(search_keys) > 255:
            raise ConfigurationError("a prefix proof holds at most 255 lookups")
        for key in search_keys:
            if len(key) != KEY_SIZE:
                raise ConfigurationError("search keys have 32 bytes")
        order = sorted(range(len(search_keys)), key=lambda i: search_keys[i])
        results: list[PrefixSearchResult | None] = [None] * len(search_keys)
        elements: list[bytes] = []

        def walk(node: _Node | None, group: list[int], depth: int) -> None:
            if not group:
                elements.append(ZERO_HASH if node is None else node.hash)
                return
            if depth > MAX_PROOF_DEPTH:
                raise StateError("a search ends deeper than a proof can express")
            if node is None:
                for i in group:
                    results[i] = NonInclusionParent(depth)
            elif isinstance(node, _Leaf):
                found = PrefixLeaf(node.search_key, node.commitment)
                for i in group:
                    if search_keys[i] == node.search_key:
                        results[i] = Inclusion(depth)
                    else:
                        results[i] = NonInclusionLeaf(found, depth)
            else:
                split = bisect.bisect_left(group, 1, key=lambda i: _bit(search_keys[i], depth))
                walk(node.left, group[:split], depth + 1)
                walk(node.right, group[split:], depth + 1)

        walk(self._root, order, 0)
        done = tuple(r for r in results if r is not None)
        assert len(done) == len(results)  # every search ends somewhere
        return PrefixProof(done, tuple(elements))


__all__ = [
    "HASH_SIZE",
    "KEY_SIZE",
    "ZERO_HASH",
    "Inclusion",
    "NonInclusionLeaf",
    "NonInclusionParent",
    "PrefixLeaf",
    "PrefixLookup",
    "PrefixProof",
    "PrefixSearchResult",
    "PrefixSearchResultType",
    "PrefixTree",
    "prefix_leaf_hash",
    "prefix_parent_hash",
    "prefix_root_from_proof",
    "pull_prefix_search_result",
    "push_prefix_search_result",
    "verify_prefix_proof",
]
