"""Array-based ratchet tree arithmetic (RFC 9420 §4.2, §7, Appendix C).

Leaves sit at even node indices (leaf ``i`` is node ``2*i``), parent nodes at odd ones. A tree
with ``n`` leaves (``n`` a power of two, RFC 9420 §7.7 keeps the tree full) has
``node_width(n) = 2n - 1`` nodes. ``LeafIndex`` and ``NodeIndex`` are distinct types so mypy
catches one used for the other. Every function is pure integer arithmetic: these are hot.
"""

from __future__ import annotations

from typing import NewType

from doorless.errors import ConfigurationError

LeafIndex = NewType("LeafIndex", int)
NodeIndex = NewType("NodeIndex", int)


def log2(x: int) -> int:
    """The exponent of the largest power of 2 not greater than ``x`` (0 for 0)."""
    return x.bit_length() - 1 if x > 0 else 0


def level(x: int) -> int:
    """Level of node ``x``: leaves are 0, their parents 1, ... (number of trailing one bits)."""
    # Trailing ones of x are the trailing zeros of x+1.
    y = x + 1
    return (y & -y).bit_length() - 1


def node_width(n_leaves: int) -> int:
    """Number of nodes in a tree with ``n_leaves`` leaves."""
    return 0 if n_leaves == 0 else 2 * (n_leaves - 1) + 1


def root(n_leaves: int) -> NodeIndex:
    return NodeIndex((1 << log2(node_width(n_leaves))) - 1)


def is_leaf(x: int) -> bool:
    return x & 1 == 0


def leaf_to_node(leaf: int) -> NodeIndex:
    return NodeIndex(2 * leaf)


def node_to_leaf(x: int) -> LeafIndex:
    if x & 1:
        raise ConfigurationError(f"node {x} is not a leaf")
    return LeafIndex(x >> 1)


def left(x: int) -> NodeIndex:
    k = level(x)
    if k == 0:
        raise ConfigurationError("leaf node has no children")
    return NodeIndex(x ^ (1 << (k - 1)))


def right(x: int) -> NodeIndex:
    k = level(x)
    if k == 0:
        raise ConfigurationError("leaf node has no children")
    return NodeIndex(x ^ (3 << (k - 1)))


def _parent(x: int) -> int:
    # In an infinite (unbounded) tree; callers check against the root.
    k = level(x)
    b = (x >> (k + 1)) & 1
    return (x | (1 << k)) ^ (b << (k + 1))


def parent(x: int, n_leaves: int) -> NodeIndex:
    if x == root(n_leaves):
        raise ConfigurationError("root node has no parent")
    return NodeIndex(_parent(x))


def sibling(x: int, n_leaves: int) -> NodeIndex:
    p = parent(x, n_leaves)
    return right(p) if x < p else left(p)


def direct_path(x: int, n_leaves: int) -> list[NodeIndex]:
    """Ancestors of ``x``, ordered from its parent up to the root (empty for the root)."""
    r = root(n_leaves)
    d: list[NodeIndex] = []
    while x != r:
        x = _parent(x)
        d.append(NodeIndex(x))
    return d


def copath(x: int, n_leaves: int) -> list[NodeIndex]:
    """Siblings of ``x`` and of each node of its direct path except the root, leaf to root."""
    r = root(n_leaves)
    out: list[NodeIndex] = []
    while x != r:
        p = _parent(x)
        k = level(p)
        out.append(NodeIndex(p ^ (3 << (k - 1)) if x < p else p ^ (1 << (k - 1))))
        x = p
    return out


def common_ancestor(x: int, y: int) -> NodeIndex:
    """The lowest node that is ``x`` or ``y`` or in both their direct paths (Appendix C)."""
    lx, ly = level(x) + 1, level(y) + 1
    if lx <= ly and x >> ly == y >> ly:
        return NodeIndex(y)
    if ly <= lx and x >> lx == y >> lx:
        return NodeIndex(x)
    xn, yn, k = x, y, 0
    while xn != yn:
        xn, yn = xn >> 1, yn >> 1
        k += 1
    return NodeIndex((xn << k) + (1 << (k - 1)) - 1)


def is_in_subtree(x: int, top: int) -> bool:
    """Whether node ``x`` is ``top`` or one of its descendants."""
    k = level(top)
    # The subtree under a level-k node spans node indices top - (2^k - 1) .. top + (2^k - 1).
    return abs(x - top) < (1 << k)


def subtree_leaves(top: int) -> range:
    """Leaf indices under node ``top`` (in an unbounded tree; clip to the tree size)."""
    k = level(top)
    first = (top - ((1 << k) - 1)) >> 1
    return range(first, first + (1 << k))
