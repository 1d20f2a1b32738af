"""Checkers for the official MLS interoperability vectors (mlswg/mls-implementations).

Each vector kind (the file name, e.g. ``tree-math``) has a module ``doorless.conformance.<kind>``
with ``check(case) -> None``; it raises `VectorMismatch` at the first value that differs, or
`VectorSkip` when the case needs something this implementation does not support (counted and
reported, never silent). The CLI (``doorless vectors``) and the test suite both use them.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Case = dict[str, Any]


class VectorMismatch(AssertionError):
    """A computed value differs from the vector's."""

    def __init__(self, field: str, detail: str = "") -> None:
        super().__init__(f"{field}: {detail}" if detail else field)
        self.field = field


class VectorSkip(Exception):
    """The case uses a feature this implementation does not support."""


# RFC 9420 interop vector kinds (README-upstream.md), file stem -> checker module.
KINDS: dict[str, str] = {
    "tree-math": "tree_math",
    "crypto-basics": "crypto_basics",
    "secret-tree": "secret_tree",
    "message-protection": "message_protection",
    "key-schedule": "key_schedule",
    "psk_secret": "psk_secret",
    "transcript-hashes": "transcript_hashes",
    "deserialization": "deserialization",
    "messages": "messages",
    "tree-validation": "tree_validation",
    "tree-operations": "tree_operations",
    "treekem": "treekem",
    "welcome": "welcome",
    "passive-client-welcome": "passive_client",
    "passive-client-handling-commit": "passive_client",
    "passive-client-random": "passive_client",
}


def kind_of(path: Path) -> str:
    """The vector kind named by a file (``.../tree-math.json`` -> ``tree-math``)."""
    stem = path.name.removesuffix(".json")
    if stem not in KINDS:
        raise KeyError(f"unknown vector kind {stem!r}; known: {', '.join(sorted(KINDS))}")
    return stem


def checker(kind: str) -> Callable[[Case], None]:
    module = importlib.import_module(f"doorless.conformance.{KINDS[kind]}")
    check: Callable[[Case], None] = module.check
    return check


def load_cases(path: Path) -> list[Case]:
    with path.open("rb") as f:
        data = json.load(f)
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON array of cases")
    return data


def h(value: str) -> bytes:
    """Hex field of a vector."""
    return bytes.fromhex(value)


def expect(field: str, got: bytes | int | None, want: bytes | int | None) -> None:
    """Raise `VectorMismatch` naming ``field`` unless ``got == want`` (vector data, not secrets)."""
    if got != want:
        g = got.hex() if isinstance(got, bytes) else repr(got)
        w = want.hex() if isinstance(want, bytes) else repr(want)
        raise VectorMismatch(field, f"got {g[:80]}, want {w[:80]}")


@dataclass
class FileResult:
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    failures: list[str] | None = None


def run_file(path: Path) -> Iterator[tuple[int, str, str]]:
    """Yield (index, outcome, detail) per case; outcome is 'passed', 'failed' or 'skipped'."""
    check = checker(kind_of(path))
    for i, case in enumerate(load_cases(path)):
        try:
            check(case)
        except VectorSkip as exc:
            yield i, "skipped", str(exc)
        except VectorMismatch as exc:
            yield i, "failed", str(exc)
        except Exception as exc:  # a crash on a vector is a failure to report, not to hide
            yield i, "failed", f"{type(exc).__name__}: {exc}"
        else:
            yield i, "passed", ""
