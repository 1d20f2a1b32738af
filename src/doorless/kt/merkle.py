"""The RFC 9162 Merkle tree (RFC 9162 §2.1): hashing, proofs, and an append-only log.

* `leaf_hash` / `node_hash`: ``HASH(0x00 || d)`` and ``HASH(0x01 || left || right)`` with
  SHA-256 (§2.1.1); the empty tree hashes to ``HASH()``.
* `verify_inclusion` (§2.1.3.2) and `verify_consistency` (§2.1.4.2) raise `InvalidProof`.
  Edge cases follow transparency-dev/merkle, whose vectors we pass: a consistency proof between
  equal sizes must be empty and the roots equal; one from size 0 to a larger size is rejected
  (it proves nothing: a client without a previous checkpoint has nothing to check).
* `MerkleLog` is the server-side tree: append leaves, answer roots, inclusion proofs and
  consistency proofs for *every* size it has had, and rebuild from stored leaves.

Pure: no I/O, no clock, no randomness.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from doorless.errors import ConfigurationError
from doorless.kt.errors import InvalidProof

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

_sha256 = hashlib.sha256


def leaf_hash(entry: bytes) -> bytes:
    """MTH({d}) = HASH(0x00 || d) (RFC 9162 §2.1.1)."""
    return _sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """HASH(0x01 || left || right) (RFC 9162 §2.1.1)."""
    return _sha256(b"\x01" + left + right).digest()


def _split_point(n: int) -> int:
    """The largest power of two smaller than ``n`` (k < n <= 2k), for n > 1."""
    return 1 << ((n - 1).bit_length() - 1)


def root_from_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """MTH of a list whose leaf hashes are given, by the stack algorithm of RFC 9162 §2.1.2."""
    if not hashes:
        return EMPTY_ROOT
    stack: list[bytes] = []
    for i, h in enumerate(hashes):
        stack.append(h)
        # merge_count = number of trailing 1 bits of i
        while i & 1:
            right = stack.pop()
            stack.append(node_hash(stack.pop(), right))
            i >>= 1
    while len(stack) > 1:
        right = stack.pop()
        stack.append(node_hash(stack.pop(), right))
    return stack[0]


def merkle_tree_hash(entries: Sequence[bytes]) -> bytes:
    """MTH(D_n) of the entries themselves (RFC 9162 §2.1.1)."""
    return root_from_leaf_hashes([leaf_hash(e) for e in entries])


# --- verification --------------------------------------------------------------------------


def _check_hash(value: bytes, what: str) -> None:
    if len(value) != HASH_SIZE:
        raise InvalidProof(f"{what} has {len(value)} bytes, want {HASH_SIZE}")


def root_from_inclusion_proof(
    leaf: bytes, leaf_index: int, tree_size: int, proof: Sequence[bytes]
) -> bytes:
    """The root that ``proof`` leads to from leaf hash ``leaf`` (RFC 9162 §2.1.3.2 steps 1-4)."""
    if leaf_index < 0 or leaf_index >= tree_size:
        raise InvalidProof(f"leaf index {leaf_index} is outside a tree of size {tree_size}")
    _check_hash(leaf, "leaf hash")
    fn, sn = leaf_index, tree_size - 1
    r = leaf
    for p in proof:
        _check_hash(p, "inclusion proof element")
        if sn == 0:
            raise InvalidProof("inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise InvalidProof("inclusion proof is too short")
    return r


def verify_inclusion(
    leaf: bytes, leaf_index: int, tree_size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that leaf hash ``leaf`` is entry ``leaf_index`` of the tree with ``root``.

    RFC 9162 §2.1.3.2. Raises `InvalidProof`.
    """
    if root_from_inclusion_proof(leaf, leaf_index, tree_size, proof) != root:
        raise InvalidProof("inclusion proof does not lead to the root")


def verify_consistency(
    size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree (size2, root2) extends the tree (size1, root1).

    RFC 9162 §2.1.4.2 for 0 < size1 < size2; for size1 == size2 the proof must be empty and the
    roots equal. Raises `InvalidProof`.
    """
    if size1 < 0 or size2 < size1:
        raise InvalidProof(f"size2 ({size2}) is smaller than size1 ({size1})")
    if size1 == 0 and root1 != EMPTY_ROOT:
        raise InvalidProof("the root of the empty tree is HASH() (RFC 9162 §2.1.1)")
    if size1 == size2:
        if proof:
            raise InvalidProof("consistency proof between equal sizes must be empty")
        if root1 != root2:
            raise InvalidProof("equal sizes but different roots")
        return
    if size1 == 0:
        # Anything is consistent with the empty tree; a proof here means the caller is confused.
        raise InvalidProof("consistency from the empty tree proves nothing")
    if not proof:
        raise InvalidProof("empty consistency proof")  # step 1
    for p in proof:
        _check_hash(p, "consistency proof element")
    path = list(proof)
    if size1 & (size1 - 1) == 0:
        path.insert(0, root1)  # step 2: size1 is a power of two, its root is a node of tree 2
    fn, sn = size1 - 1, size2 - 1  # step 3
    while fn & 1:  # step 4
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]  # step 5
    for c in path[1:]:  # step 6
        if sn == 0:
            raise InvalidProof("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    # step 7
    if sn != 0:
        raise InvalidProof("consistency proof is too short")
    if fr != root1:
        raise InvalidProof("consistency proof does not lead to the first root")
    if sr != root2:
        raise InvalidProof("consistency proof does not lead to the second root")


# --- the log -------------------------------------------------------------------------------


class MerkleLog:
    """An append-only RFC 9162 tree that can answer for every size it has had.

    ``_levels[k]`` holds, back to back, the 32-byte hashes of the complete subtrees of 2^k
    leaves, left to right; appending a leaf completes at most one subtree per level (amortised
    two hashes per leaf). Any MTH(D[a:b]) that the RFC's recursions need is a complete subtree
    or splits into one plus a smaller such range, so roots and proofs for any past size cost
    O(log^2 n) lookups and hashes.

    The object is mutable (it is the server's log); rebuild it with `from_entries` or
    `from_leaf_hashes` from stored leaves.
    """

    __slots__ = ("_levels", "_size")

    def __init__(self) -> None:
        self._levels: list[bytearray] = [bytearray()]
        self._size = 0

    @classmethod
    def from_entries(cls, entries: Iterable[bytes]) -> MerkleLog:
        return cls.from_leaf_hashes(leaf_hash(e) for e in entries)

    @classmethod
    def from_leaf_hashes(cls, hashes: Iterable[bytes]) -> MerkleLog:
        """Bulk build, level by level (much faster than appending one at a time)."""
        log = cls()
        level = bytearray()
        for h in hashes:
            if len(h) != HASH_SIZE:
                raise ConfigurationError("leaf hashes must have 32 bytes")
            level += h
        log._size = len(level) // HASH_SIZE
        log._levels = [level]
        count = log._size
        while count >= 2:
            prev = bytes(level)
            level = bytearray(
                b"".join(
                    node_hash(prev[i : i + HASH_SIZE], prev[i + HASH_SIZE : i + 2 * HASH_SIZE])
                    for i in range(0, (count // 2) * 2 * HASH_SIZE, 2 * HASH_SIZE)
                )
            )
            log._levels.append(level)
            count //= 2
        return log

    @property
    def size(self) -> int:
        return self._size

    def __len__(self) -> int:
        return self._size

    def append(self, entry: bytes) -> int:
        """Append an entry (hashed as a leaf); return its index."""
        return self.append_leaf_hash(leaf_hash(entry))

    def append_leaf_hash(self, h: bytes) -> int:
        if len(h) != HASH_SIZE:
            raise ConfigurationError("leaf hashes must have 32 bytes")
        index = self._size
        self._size += 1
        levels = self._levels
        levels[0] += h
        k, count = 0, self._size
        while count & 1 == 0:  # level k just got an even count: its last two nodes pair up
            lvl = levels[k]
            parent = node_hash(bytes(lvl[-2 * HASH_SIZE : -HASH_SIZE]), bytes(lvl[-HASH_SIZE:]))
            if len(levels) == k + 1:
                levels.append(bytearray())
            levels[k + 1] += parent
            k += 1
            count >>= 1
        return index

    def leaf_hash(self, index: int) -> bytes:
        if not 0 <= index < self._size:
            raise ConfigurationError(f"no leaf {index} in a log of size {self._size}")
        return bytes(self._levels[0][index * HASH_SIZE : (index + 1) * HASH_SIZE])

    def _check_size(self, size: int | None) -> int:
        if size is None:
            return self._size
        if not 0 <= size <= self._size:
            raise ConfigurationError(f"size {size} is outside 0..{self._size}")
        return size

    def _subtree(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]) for a range the RFC recursion produces (start aligned)."""
        n = end - start
        if n & (n - 1) == 0 and start % n == 0:
            k = n.bit_length() - 1
            return bytes(self._levels[k][(start >> k) * HASH_SIZE : ((start >> k) + 1) * HASH_SIZE])
        split = _split_point(n)
        return node_hash(self._subtree(start, start + split), self._subtree(start + split, end))

    def root(self, size: int | None = None) -> bytes:
        """MTH(D[0:size]) for the current size or any earlier one."""
        n = self._check_size(size)
        return EMPTY_ROOT if n == 0 else self._subtree(0, n)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """PATH(index, D[0:size]) (RFC 9162 §2.1.3.1)."""
        n = self._check_size(size)
        if not 0 <= index < n:
            raise ConfigurationError(f"no leaf {index} in a tree of size {n}")
        path: list[bytes] = []
        start, end = 0, n
        # Walk down from the root; the RFC appends the sibling after the recursive part,
        # so collect top-down and reverse.
        while end - start > 1:
            split = start + _split_point(end - start)
            if index < split:
                path.append(self._subtree(split, end))
                end = split
            else:
                path.append(self._subtree(start, split))
                start = split
        path.reverse()
        return path

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        """PROOF(size1, D[0:size2]) (RFC 9162 §2.1.4.1); empty when size1 == size2."""
        n = self._check_size(size2)
        if not 0 < size1 <= n:
            raise ConfigurationError(f"no consistency proof from size {size1} to size {n}")
        proof: list[bytes] = []
        start, end, m, complete = 0, n, size1, True
        while m != end - start:
            k = _split_point(end - start)
            if m <= k:
                proof.append(self._subtree(start + k, end))
                end = start + k
            else:
                proof.append(self._subtree(start, start + k))
                start += k
                m -= k
                complete = False
        if not complete:
            proof.append(self._subtree(start, end))
        proof.reverse()
        return proof


__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MerkleLog",
    "leaf_hash",
    "merkle_tree_hash",
    "node_hash",
    "root_from_inclusion_proof",
    "root_from_leaf_hashes",
    "verify_consistency",
    "verify_inclusion",
]
