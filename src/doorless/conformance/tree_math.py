"""Checker for ``tree-math.json`` (RFC 9420 Appendix C): root, left, right, parent, sibling."""

from __future__ import annotations

from collections.abc import Callable

from doorless.conformance import Case, expect
from doorless.errors import ConfigurationError
from doorless.mls import tree_math


def _or_none(f: Callable[[int, int], int], x: int, n: int) -> int | None:
    # The vector has null where the relation is undefined (a leaf's children, the root's parent).
    try:
        return f(x, n)
    except ConfigurationError:
        return None


_RELATIONS: dict[str, Callable[[int, int], int]] = {
    "left": lambda x, n: tree_math.left(x),
    "right": lambda x, n: tree_math.right(x),
    "parent": tree_math.parent,
    "sibling": tree_math.sibling,
}


def check(case: Case) -> None:
    n = case["n_leaves"]
    expect("n_nodes", tree_math.node_width(n), case["n_nodes"])
    expect("root", tree_math.root(n), case["root"])
    for name, f in _RELATIONS.items():
        want = case[name]
        expect(f"len({name})", len(want), case["n_nodes"])
        for x in range(case["n_nodes"]):
            expect(f"{name}[{x}]", _or_none(f, x, n), want[x])
