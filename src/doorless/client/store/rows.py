"""The records the store holds, as immutable values (secrets and bodies never in a ``repr``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from doorless.secret import PrivateKeyBytes


class DeviceStatus(StrEnum):
    APPROVED = "approved"
    PENDING = "pending"
    REVOKED = "revoked"


class GroupStatus(StrEnum):
    ACTIVE = "active"
    LEFT = "left"
    REMOVED = "removed"


class MessageState(StrEnum):
    PENDING = "pending"  # outgoing, not yet accepted by the server
    SENT = "sent"  # outgoing, accepted by the server
    DELIVERED = "delivered"
    FAILED = "failed"
    RECEIVED = "received"  # incoming
    READ = "read"


@dataclass(frozen=True, slots=True, kw_only=True)
class Account:
    """This profile's identity on its server (one row)."""

    username: str
    server_url: str
    device_id: str
    cipher_suite: int
    signature_private_key: PrivateKeyBytes
    signature_public_key: bytes
    credential: bytes
    created_at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class OwnDevice:
    """A device registered under this account (including this one)."""

    device_id: str
    signature_public_key: bytes
    name: str
    status: DeviceStatus
    first_seen_at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Contact:
    username: str
    display_name: str | None = None
    verified: bool = False  # identity checked out of band (safety number)
    blocked: bool = False
    accepted: bool = False  # message request accepted
    created_at: int
    updated_at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ContactDevice:
    """One entry of a contact's last verified device list (checked against the KT log)."""

    username: str
    device_id: str
    signature_public_key: bytes
    verified_at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Group:
    group_id: bytes
    name: str
    mls_state: bytes = field(repr=False)  # serialised MLS group state: holds epoch secrets
    epoch: int
    disappearing_timer_ms: int | None = None
    status: GroupStatus = GroupStatus.ACTIVE
    created_at: int
    updated_at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """A message of a group. ``local_id`` is None until `Transaction.insert_message`."""

    group_id: bytes
    sender_user: str
    sender_device: str
    outgoing: bool
    content_type: str
    body: bytes = field(repr=False)
    sent_at: int
    received_at: int | None = None
    expires_at: int | None = None
    state: MessageState
    server_id: str | None = None
    franking: bytes | None = field(default=None, repr=False)  # opening material for reports
    local_id: int | None = None
    transferred: bool = False  # handed over by another device of the account


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxItem:
    """A ciphertext waiting to be sent (retried until the server accepts it)."""

    group_id: bytes | None
    kind: str
    payload: bytes = field(repr=False)
    message_local_id: int | None = None
    created_at: int
    next_attempt_at: int
    attempts: int = 0
    last_error: str | None = None
    outbox_id: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredKeyPackage:
    """The private half of a KeyPackage uploaded to the server, by KeyPackageRef."""

    ref: bytes
    key_package: bytes
    init_private_key: PrivateKeyBytes
    encryption_private_key: PrivateKeyBytes
    created_at: int
    last_resort: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageRequest:
    """A conversation that ``inviter``, whom this user has not accepted, added them to."""

    group_id: bytes
    inviter: str
    created_at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class KtCheckpoint:
    """The last key-transparency tree head this client verified."""

    tree_size: int
    root_hash: bytes
    signed_tree_head: bytes
    verified_at: int


__all__ = [
    "Account",
    "Contact",
    "ContactDevice",
    "DeviceStatus",
    "Group",
    "GroupStatus",
    "KtCheckpoint",
    "Message",
    "MessageRequest",
    "MessageState",
    "OutboxItem",
    "OwnDevice",
    "StoredKeyPackage",
]
