"""The upgrade notice: what travels inside an MLS application message of ``kind = upgrade``.

A conversation is upgraded to another cipher suite (the post-quantum hybrid one) by creating
a new MLS group in that suite with the same members, name and disappearing timer, rather than
by an MLS ReInit (RFC 9420 §11.2), which every member would have to carry out in lock-step.
The member who upgrades then sends this notice in the OLD conversation (payload kind 6,
`doorless.wire.payload`), so that every other member's client links the two: the old one is
shown as "upgraded to" the new one, which is its successor. The notice is authenticated by the
old group (only one of its members can send it); the new group's members are the ones the
creator added::

    struct {
        uint8 version = 1;
        opaque new_group_id<V>;     // the successor's MLS group id (32 bytes)
        uint16 cipher_suite;        // the successor's MLS cipher suite (RFC 9420 §17.1 id)
    } UpgradeNotice;
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from doorless.codec import Reader, Writer
from doorless.errors import ConfigurationError, DecodeError

UPGRADE_NOTICE_VERSION = 1
GROUP_ID_LENGTH = 32


@dataclass(frozen=True, slots=True)
class UpgradeNotice:
    """See the module docstring."""

    new_group_id: bytes
    cipher_suite: int

    def __post_init__(self) -> None:
        if len(self.new_group_id) != GROUP_ID_LENGTH:
            raise ConfigurationError(f"a group id is {GROUP_ID_LENGTH} bytes")
        if not 0 <= self.cipher_suite <= 0xFFFF:
            raise ConfigurationError("cipher suite is out of range")

    def push(self, w: Writer) -> None:
        w.push_uint8(UPGRADE_NOTICE_VERSION)
        w.push_opaque(self.new_group_id)
        w.push_uint16(self.cipher_suite)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        version = r.pull_uint8()
        if version != UPGRADE_NOTICE_VERSION:
            raise DecodeError(f"unknown upgrade notice version {version}")
        group_id = r.pull_opaque()
        suite = r.pull_uint16()
        try:
            return cls(group_id, suite)
        except ConfigurationError as e:
            raise DecodeError(f"invalid upgrade notice: {e}") from None


__all__ = ["GROUP_ID_LENGTH", "UPGRADE_NOTICE_VERSION", "UpgradeNotice"]
