"""Conversations as MLS groups: identities, rosters and the encrypted conversation info.

Identity
    Every device has one Ed25519 key. It authenticates the device to the server
    (`doorless.wire.protocol`) *and* is the device's MLS signature key (cipher suites with
    Ed25519 signatures: 1 and 3). The MLS credential is a BasicCredential whose ``identity`` is
    ``SenderIdentity(user_id=username, device_id=device_id)`` encoded (`doorless.franking`).
    Since a device id is a hash of the device key (`doorless.wire.protocol.device_id_of`),
    a leaf binds its credential to its signature key locally (`check_binding`), and the
    server's approval chain for the user (`doorless.client.transport.check_device_approvals`)
    then vouches that the key belongs to the user: a device nobody approved cannot be slipped
    into a conversation unnoticed (I3).

Conversation info
    The conversation's kind and name live in the MLS GroupContext as a private-use extension
    (RFC 9420 §13.4; every Doorless KeyPackage lists it in its capabilities)::

        enum { direct(1), group(2), (255) } ConversationKind;

        struct {
            uint8 version = 1;
            ConversationKind kind;
            opaque name<V>;             // UTF-8, at most 256 bytes
        } ConversationInfo;

    It is part of the agreed group state: every member has the same value, a new member gets
    it in the (encrypted) GroupInfo of its Welcome, and a rename is a GroupContextExtensions
    commit. Handshakes are PrivateMessages, so the server never sees it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Self

from doorless.codec import Reader, Writer, decode, encode
from doorless.errors import ConfigurationError, DecodeError, DoorlessError, ValidationError
from doorless.franking import SenderIdentity
from doorless.mls.credential import BasicCredential, Credential
from doorless.mls.extensions import Extension, find_extension
from doorless.mls.group import Group
from doorless.mls.leaf_node import LeafNode
from doorless.mls.public_group import PublicGroup
from doorless.mls.tree_math import LeafIndex
from doorless.wire import protocol

from .events import ConversationKind, DeviceRef

CONVERSATION_INFO_EXTENSION = 0xF0D1  # RFC 9420 §17.3: 0xF000-0xFFFF is for private use
CONVERSATION_INFO_VERSION = 1
MAX_NAME_BYTES = 256


class InfoKind(IntEnum):
    direct = 1
    group = 2


_KIND = {InfoKind.direct: ConversationKind.DIRECT, InfoKind.group: ConversationKind.GROUP}
_INFO_KIND = {v: k for k, v in _KIND.items()}


@dataclass(frozen=True, slots=True)
class ConversationInfo:
    """See the module docstring."""

    kind: ConversationKind
    name: str

    def __post_init__(self) -> None:
        if len(self.name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
            raise ConfigurationError(f"a conversation name is at most {MAX_NAME_BYTES} bytes")

    def push(self, w: Writer) -> None:
        w.push_uint8(CONVERSATION_INFO_VERSION)
        w.push_uint8(_INFO_KIND[self.kind])
        w.push_opaque(self.name.encode("utf-8"))

    @classmethod
    def pull(cls, r: Reader) -> Self:
        version = r.pull_uint8()
        if version != CONVERSATION_INFO_VERSION:
            raise DecodeError(f"unknown conversation info version {version}")
        raw_kind = r.pull_uint8()
        try:
            kind = _KIND[InfoKind(raw_kind)]
        except ValueError:
            raise DecodeError(f"unknown conversation kind {raw_kind}") from None
        try:
            name = r.pull_opaque().decode("utf-8")
            return cls(kind, name)
        except (UnicodeDecodeError, ConfigurationError):
            raise DecodeError("invalid conversation name") from None

    def extension(self) -> Extension:
        return Extension(CONVERSATION_INFO_EXTENSION, encode(self))


def conversation_info(group: Group) -> ConversationInfo:
    """The group's conversation info; a group without one (or with a bad one) is an unnamed
    group conversation."""
    ext = find_extension(group.extensions, CONVERSATION_INFO_EXTENSION)
    if ext is not None:
        try:
            return decode(ConversationInfo, ext.extension_data)
        except DecodeError:
            pass  # another client's data: show the group, unnamed
    return ConversationInfo(ConversationKind.GROUP, "")


def with_info(extensions: tuple[Extension, ...], info: ConversationInfo) -> tuple[Extension, ...]:
    """``extensions`` with the conversation info replaced (for a GroupContextExtensions)."""
    others = tuple(e for e in extensions if e.extension_type != CONVERSATION_INFO_EXTENSION)
    return (*others, info.extension())


# --- identities ----------------------------------------------------------------------------


def make_credential(username: str, device_id: str) -> BasicCredential:
    identity = SenderIdentity(username.encode("ascii"), device_id.encode("ascii"))
    return BasicCredential(identity.credential_identity())


def device_ref_of(credential: Credential) -> DeviceRef:
    """The (user, device) a Doorless credential names; `ValidationError` for anything else."""
    if not isinstance(credential, BasicCredential):
        raise ValidationError("member credential is not a basic credential")
    try:
        identity = SenderIdentity.from_credential_identity(credential.identity)
        user = identity.user_id.decode("ascii")
        device_id = identity.device_id.decode("ascii")
    except (DecodeError, UnicodeDecodeError):
        raise ValidationError("member credential is not a Doorless identity") from None
    if not protocol.is_username(user) or not protocol.is_device_id(device_id):
        raise ValidationError("member credential names an invalid user or device")
    return DeviceRef(user, device_id)


def check_binding(leaf: LeafNode) -> DeviceRef:
    """The leaf's (user, device), checked against its signature key: the device id must be the
    id of that key (`doorless.wire.protocol.device_id_of`)."""
    ref = device_ref_of(leaf.credential)
    if protocol.device_id_of(leaf.signature_key) != ref.device_id:
        raise ValidationError(f"leaf of {ref} is signed with another device's key")
    return ref


@dataclass(frozen=True, slots=True)
class RosterEntry:
    leaf: LeafIndex
    device: DeviceRef
    signature_key: bytes


def roster(group: Group | PublicGroup) -> dict[DeviceRef, RosterEntry]:
    """Every member of ``group`` by (user, device); `ValidationError` if a leaf does not bind
    to its key or one device appears twice."""
    entries: dict[DeviceRef, RosterEntry] = {}
    for leaf, node in group.tree.members():
        ref = check_binding(node)
        if ref in entries:
            raise ValidationError(f"device {ref} appears twice in the group")
        entries[ref] = RosterEntry(leaf, ref, node.signature_key)
    return entries


def safe_roster(group: Group) -> dict[DeviceRef, RosterEntry]:
    """`roster`, or only the valid leaves when some are not (for display, never for checks)."""
    try:
        return roster(group)
    except DoorlessError:
        entries: dict[DeviceRef, RosterEntry] = {}
        for leaf, node in group.tree.members():
            try:
                ref = check_binding(node)
            except DoorlessError:
                continue
            entries.setdefault(ref, RosterEntry(leaf, ref, node.signature_key))
        return entries


__all__ = [
    "CONVERSATION_INFO_EXTENSION",
    "MAX_NAME_BYTES",
    "ConversationInfo",
    "RosterEntry",
    "check_binding",
    "conversation_info",
    "device_ref_of",
    "make_credential",
    "roster",
    "safe_roster",
    "with_info",
]
