"""Checkers for the official MLS interoperability vectors (mlswg/mls-implementations), the
SFrame vectors (RFC 9605, sframe-wg/sframe) and the post-quantum KEM vectors (X-Wing, HPKE-PQ,
concrete hybrid KEMs).

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

from doorless.errors import ConfigurationError, DoorlessError

Case = dict[str, Any]

# SFrame vector files are an object of arrays (header, aes_ctr_hmac, sframe, ...), not one array;
# `load_cases` flattens them and names each case's array under this key.
SFRAME_SECTION = "sframe_section"


class VectorMismatch(DoorlessError, AssertionError):
    """A computed value differs from the vector's."""

    def __init__(self, field: str, detail: str = "") -> None:
        super().__init__(f"{field}: {detail}" if detail else field)
        self.field = field


class VectorSkip(DoorlessError):
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
    # RFC 9605 SFrame (sframe-wg/sframe test-vectors/*.json); see `load_cases`.
    "sframe": "sframe",
    # Post-quantum KEMs for the MLS PQ suites, under their upstream file names.
    "draft-connolly-cfrg-xwing-kem-test-vectors": "pq_kems",
    "draft-ietf-hpke-pq-test-vectors": "pq_kems",
    "draft-irtf-cfrg-concrete-hybrid-kems-test-vectors": "pq_kems",
}


# Keys that only a case of that kind has (README-upstream.md formats), for files whose name does
# not say their kind. A case is of kind K when it has every key of KIND_KEYS[K].
KIND_KEYS: dict[str, frozenset[str]] = {
    "tree-math": frozenset({"n_leaves", "n_nodes", "root", "left", "right", "parent", "sibling"}),
    "crypto-basics": frozenset({"ref_hash", "expand_with_label", "derive_tree_secret"}),
    "secret-tree": frozenset({"encryption_secret", "sender_data", "leaves"}),
    "message-protection": frozenset({"membership_key", "sender_data_secret", "application_priv"}),
    "key-schedule": frozenset({"initial_init_secret", "epochs"}),
    "psk_secret": frozenset({"psks", "psk_secret"}),
    "transcript-hashes": frozenset({"authenticated_content", "interim_transcript_hash_before"}),
    "deserialization": frozenset({"vlbytes_header", "length"}),
    "messages": frozenset({"mls_welcome", "mls_group_info", "mls_key_package", "commit"}),
    "tree-validation": frozenset({"tree", "resolutions", "tree_hashes"}),
    "tree-operations": frozenset({"tree_before", "proposal", "tree_after"}),
    "treekem": frozenset({"leaves_private", "update_paths"}),
    "welcome": frozenset({"init_priv", "key_package", "signer_pub", "welcome"}),
    # The three passive-client files share one format and one checker.
    "passive-client-welcome": frozenset(
        {"key_package", "welcome", "initial_epoch_authenticator", "epochs"}
    ),
    "sframe": frozenset({SFRAME_SECTION}),
    "draft-connolly-cfrg-xwing-kem-test-vectors": frozenset({"seed", "eseed", "sk", "pk", "ss"}),
    "draft-ietf-hpke-pq-test-vectors": frozenset({"kem_id", "ikmR", "pkRm", "encryptions"}),
}


class UnknownKind(ConfigurationError, KeyError):
    """A file whose kind is neither in its name nor recognisable from its keys."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "unknown vector kind"


def kind_of(path: Path) -> str:
    """The vector kind named by a file (``.../tree-math.json`` -> ``tree-math``)."""
    stem = path.name.removesuffix(".json")
    if stem not in KINDS:
        raise UnknownKind(f"unknown vector kind {stem!r}; known: {', '.join(sorted(KINDS))}")
    return stem


def sniff_kind(case: object) -> str | None:
    """The kind whose distinctive keys ``case`` has, or None when no single kind fits."""
    if not isinstance(case, dict):
        return None
    keys = case.keys()
    found = {KINDS[k]: k for k, need in KIND_KEYS.items() if need <= keys}
    return next(iter(found.values())) if len(found) == 1 else None


def detect_kind(path: Path, cases: list[Case] | None = None) -> str:
    """The kind named by ``path``, else the one recognised from the first case's keys.

    Raises `UnknownKind` with a one-line message when neither works.
    """
    try:
        return kind_of(path)
    except UnknownKind:
        if cases is None:
            cases = load_cases(path)
        kind = sniff_kind(cases[0]) if cases else None
        if kind is None:
            raise UnknownKind(
                f"unknown vector kind: the name {path.name!r} is none of "
                f"{', '.join(sorted(KINDS))}, and the keys of its first case fit no kind"
            ) from None
        return kind


def checker(kind: str) -> Callable[[Case], None]:
    module = importlib.import_module(f"doorless.conformance.{KINDS[kind]}")
    check: Callable[[Case], None] = module.check
    return check


def load_cases(path: Path) -> list[Case]:
    with path.open("rb") as f:
        data = json.load(f)
    if (
        isinstance(data, dict)
        and data
        and all(isinstance(v, list) and all(isinstance(c, dict) for c in v) for v in data.values())
    ):
        # The SFrame layout: {"header": [...], "sframe": [...], ...}.
        data = [{**case, SFRAME_SECTION: name} for name, cases in data.items() for case in cases]
    if not isinstance(data, list) or not all(isinstance(c, dict) for c in data):
        raise ValueError(
            f"{path}: expected a JSON array of objects (one per case), "
            "or an object of such arrays (SFrame)"
        )
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


def run_file(path: Path, kind: str | None = None) -> Iterator[tuple[int, str, str]]:
    """Yield (index, outcome, detail) per case; outcome is 'passed', 'failed' or 'skipped'.

    ``kind`` defaults to the one named by the file (`kind_of`).
    """
    return run_cases(kind or kind_of(path), load_cases(path))


def run_cases(kind: str, cases: list[Case]) -> Iterator[tuple[int, str, str]]:
    """Like `run_file` on cases already loaded. Importing the checker happens on the first
    ``next()``, so a missing checker raises `ImportError` there."""
    check = checker(kind)
    for i, case in enumerate(cases):
        try:
            check(case)
        except VectorSkip as exc:
            yield i, "skipped", str(exc)
        except VectorMismatch as exc:
            yield i, "failed", str(exc)
        except Exception as exc:  # noqa: BLE001 - a crash on a case is a failed case, reported
            yield i, "failed", f"{type(exc).__name__}: {exc}"
        else:
            yield i, "passed", ""
