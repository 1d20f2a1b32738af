"""The group context (RFC 9420 §8.1) and the protocol version (§6).

`ProtocolVersion` lives here rather than in `framing` because `GroupContext`, `KeyPackage` and
`ReInit` all carry one, and `framing` imports those modules (it is re-exported from `framing`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Self

from doorless.codec import Reader, Writer
from doorless.crypto import CipherSuiteId
from doorless.errors import DecodeError
from doorless.mls.extensions import Extension, pull_extensions, push_extensions


class ProtocolVersion(IntEnum):
    """``enum { reserved(0), mls10(1), (65535) } ProtocolVersion;`` (RFC 9420 §6)."""

    mls10 = 1


def pull_protocol_version(r: Reader) -> ProtocolVersion:
    """A ``ProtocolVersion`` that must be mls10: this implementation speaks no other version."""
    v = r.pull_uint16()
    if v != ProtocolVersion.mls10:
        raise DecodeError(f"unsupported protocol version {v}")
    return ProtocolVersion.mls10


def pull_cipher_suite(r: Reader) -> CipherSuiteId | int:
    """``uint16 CipherSuite`` (RFC 9420 §17.1): an IANA registry, so unknown values stay ints."""
    v = r.pull_uint16()
    try:
        return CipherSuiteId(v)
    except ValueError:
        return v


@dataclass(frozen=True, slots=True)
class GroupContext:
    """RFC 9420 §8.1::

    struct {
        ProtocolVersion version = mls10;
        CipherSuite cipher_suite;
        opaque group_id<V>;
        uint64 epoch;
        opaque tree_hash<V>;
        opaque confirmed_transcript_hash<V>;
        Extension extensions<V>;
    } GroupContext;
    """

    cipher_suite: CipherSuiteId | int
    group_id: bytes
    epoch: int
    tree_hash: bytes
    confirmed_transcript_hash: bytes
    extensions: tuple[Extension, ...] = ()

    @property
    def version(self) -> ProtocolVersion:
        return ProtocolVersion.mls10

    def push(self, w: Writer) -> None:
        w.push_uint16(ProtocolVersion.mls10)
        w.push_uint16(self.cipher_suite)
        w.push_opaque(self.group_id)
        w.push_uint64(self.epoch)
        w.push_opaque(self.tree_hash)
        w.push_opaque(self.confirmed_transcript_hash)
        push_extensions(w, self.extensions)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        pull_protocol_version(r)
        return cls(
            cipher_suite=pull_cipher_suite(r),
            group_id=r.pull_opaque(),
            epoch=r.pull_uint64(),
            tree_hash=r.pull_opaque(),
            confirmed_transcript_hash=r.pull_opaque(),
            extensions=pull_extensions(r),
        )


__all__ = ["GroupContext", "ProtocolVersion", "pull_cipher_suite", "pull_protocol_version"]
