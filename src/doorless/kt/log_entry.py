"""The log-tree leaf of the combined tree (draft-ietf-keytrans-protocol §"Log Tree")::

    struct {
      uint64 timestamp;              // milliseconds since the Unix epoch
      opaque prefix_tree[Hash.Nh];   // prefix-tree root after this entry's insertions
    } LogEntry;

KT-lite keeps the draft's leaf contents but hashes the log with RFC 9162 (the RFC 9162 leaf is
``SHA-256(0x00 || LogEntry)``; see `doorless.kt.merkle`), so a log of these entries is a plain
transparency-dev style log that C2SP checkpoints and witnesses understand.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from doorless.codec import Reader, Writer, encode
from doorless.errors import ConfigurationError
from doorless.kt.merkle import leaf_hash

HASH_SIZE = 32


@dataclass(frozen=True, slots=True)
class LogEntry:
    timestamp: int
    prefix_tree: bytes

    def __post_init__(self) -> None:
        if not 0 <= self.timestamp < 1 << 64:
            raise ConfigurationError("timestamps are uint64 milliseconds")
        if len(self.prefix_tree) != HASH_SIZE:
            raise ConfigurationError("prefix tree roots have 32 bytes")

    def push(self, w: Writer) -> None:
        w.push_uint64(self.timestamp)
        w.push_bytes(self.prefix_tree)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        return cls(r.pull_uint64(), r.pull_bytes(HASH_SIZE))

    def leaf_hash(self) -> bytes:
        """The RFC 9162 leaf hash of this entry."""
        return leaf_hash(encode(self))


__all__ = ["LogEntry"]
