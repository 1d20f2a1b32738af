"""The KT-lite combined tree: an RFC 9162 log whose entries name successive prefix trees
(draft-ietf-keytrans-protocol §"Combined Tree"; design notes §1.3).

Each log entry records a batch of insertions: the prefix tree after the batch and the batch's
timestamp become a `LogEntry`, whose RFC 9162 leaf is appended to the log. The same code serves
the server (`CombinedTree.append`) and a witness replaying the published batches
(`AuditEntry`, `CombinedTree.replay`), which checks what the design notes ask of a witness:
timestamps never decrease, every added search key was absent before, and the recomputed
prefix root equals the one the log committed to.

Pure: timestamps are parameters; storage is the caller's (rebuild with `replay`).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Self

from doorless.codec import Reader, Writer
from doorless.errors import StateError, ValidationError
from doorless.kt._wire import pull_counted, push_counted
from doorless.kt.errors import InvalidProof
from doorless.kt.log_entry import LogEntry
from doorless.kt.merkle import MerkleLog, verify_inclusion
from doorless.kt.prefix_tree import PrefixLeaf, PrefixTree

_RULE = "KT-lite witness"


def _push_leaf(w: Writer, leaf: PrefixLeaf) -> None:
    leaf.push(w)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """What one log entry added, as published to witnesses (``GET /kt/audit``)::

    struct {
      uint64 timestamp;
      PrefixLeaf added<0..2^32-1>;   // sorted by vrf_output (search key), no duplicates
    } AuditEntry;
    """

    timestamp: int
    added: tuple[PrefixLeaf, ...]

    def push(self, w: Writer) -> None:
        w.push_uint64(self.timestamp)
        push_counted(w, self.added, 4, _push_leaf)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        timestamp = r.pull_uint64()
        return cls(timestamp, tuple(pull_counted(r, 4, PrefixLeaf.pull)))


class CombinedTree:
    """The log and the prefix tree of every log entry (persistent trees share structure).

    Mutable, like `MerkleLog`: the server's (or a witness's) in-memory state. Entry ``i``'s
    prefix tree stays answerable after later appends.
    """

    __slots__ = ("_entries", "_log", "_trees")

    def __init__(self) -> None:
        self._log = MerkleLog()
        self._trees: list[PrefixTree] = []
        self._entries: list[LogEntry] = []

    @property
    def log(self) -> MerkleLog:
        return self._log

    @property
    def size(self) -> int:
        return self._log.size

    def latest_tree(self) -> PrefixTree:
        return self._trees[-1] if self._trees else PrefixTree()

    def tree(self, index: int) -> PrefixTree:
        """The prefix tree after log entry ``index``."""
        return self._trees[index]

    def entry(self, index: int) -> LogEntry:
        return self._entries[index]

    def last_timestamp(self) -> int:
        return self._entries[-1].timestamp if self._entries else 0

    def append(self, timestamp: int, added: Iterable[tuple[bytes, bytes]]) -> LogEntry:
        """Insert a batch of (search_key, commitment), log the new root; return the entry.

        Raises `StateError` (and changes nothing) if ``timestamp`` is earlier than the last
        entry's or a search key is already present.
        """
        if timestamp < self.last_timestamp():
            raise StateError("log timestamps never decrease")
        tree = self.latest_tree().insert_many(added)
        entry = LogEntry(timestamp, tree.root)
        self._log.append_leaf_hash(entry.leaf_hash())
        self._trees.append(tree)
        self._entries.append(entry)
        return entry

    def replay(self, audit: AuditEntry, claimed: LogEntry | None = None) -> LogEntry:
        """Witness side: apply a published batch, checking it against the log's entry.

        Raises `ValidationError` (and changes nothing) if the batch is unsorted, re-adds a
        key, goes back in time, or does not produce the ``claimed`` entry.
        """
        keys = [leaf.vrf_output for leaf in audit.added]
        if any(a >= b for a, b in itertools.pairwise(keys)):
            raise ValidationError("added keys are sorted and distinct", rule=_RULE)
        if audit.timestamp < self.last_timestamp():
            raise ValidationError("log timestamps never decrease", rule=_RULE)
        try:
            tree = self.latest_tree().insert_many(
                (leaf.vrf_output, leaf.commitment) for leaf in audit.added
            )
        except StateError:
            raise ValidationError("a batch re-adds an existing search key", rule=_RULE) from None
        entry = LogEntry(audit.timestamp, tree.root)
        if claimed is not None and claimed != entry:
            raise ValidationError("the log entry does not match the published batch", rule=_RULE)
        self._log.append_leaf_hash(entry.leaf_hash())
        self._trees.append(tree)
        self._entries.append(entry)
        return entry


def verify_log_entry(
    tree_size: int, root: bytes, index: int, entry: LogEntry, proof: list[bytes]
) -> None:
    """Check that ``entry`` is log entry ``index`` of the (verified) checkpoint (size, root)."""
    if not 0 <= index < tree_size:
        raise InvalidProof(f"entry {index} is outside a log of size {tree_size}")
    verify_inclusion(entry.leaf_hash(), index, tree_size, proof, root)


def verify_latest_entry(tree_size: int, root: bytes, entry: LogEntry, proof: list[bytes]) -> None:
    """KT-lite answers searches against the prefix tree of the checkpoint's last entry."""
    if tree_size == 0:
        raise InvalidProof("an empty log has no entry")
    verify_log_entry(tree_size, root, tree_size - 1, entry, proof)


__all__ = ["AuditEntry", "CombinedTree", "verify_latest_entry", "verify_log_entry"]
