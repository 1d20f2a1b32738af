"""What the transport works with: the device identity that signs for a device, and the
typed answers of the server (`DeviceInfo`, `MessagePage`, ...)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from doorless.secret import PrivateKeyBytes
from doorless.wire import protocol
from doorless.wire.messages import QueuedMessage

ProgressCallback = Callable[[int, int | None], None]
"""``progress(bytes_done, total_or_None)``, called after each chunk."""


@dataclass(frozen=True, slots=True, eq=False)
class DeviceIdentity:
    """A device's Ed25519 key pair; the id is derived from the public key."""

    private_key: PrivateKeyBytes
    public_key: bytes

    @classmethod
    def generate(cls) -> DeviceIdentity:
        sk, pk = protocol.generate_device_key()
        return cls(PrivateKeyBytes(sk), pk)

    @classmethod
    def from_private_key(cls, private_key: bytes) -> DeviceIdentity:
        return cls(PrivateKeyBytes(private_key), protocol.public_key_of(private_key))

    @property
    def device_id(self) -> str:
        return protocol.device_id_of(self.public_key)

    def sign(self, content: bytes) -> bytes:
        return protocol.sign(self.private_key.value, content)


@dataclass(frozen=True, slots=True)
class ServerInfo:
    server_id: str
    version: str
    registration: str
    limits: dict[str, int]
    franking_public_key: bytes | None = None  # signs franks (doorless.franking); pin it


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    device_id: str
    device_key: bytes
    approved_by: str | None
    approval_signature: bytes
    created_at: int
    revoked_at: int | None


@dataclass(frozen=True, slots=True)
class LinkTicket:
    """What a new device shows its owner: the code to enter on an existing device."""

    code: str
    device_id: str
    expires_at: int


@dataclass(frozen=True, slots=True)
class PendingLink:
    code: str
    username: str
    device_id: str
    device_key: bytes
    created_at: int
    expires_at: int
    approved: bool

    def fingerprint(self) -> str:
        """The new device's id in groups of four, to compare with the new device's screen."""
        return " ".join(self.device_id[i : i + 4] for i in range(0, len(self.device_id), 4))


@dataclass(frozen=True, slots=True)
class KeyPackageStatus:
    count: int
    last_resort: bool
    low_watermark: int

    @property
    def needs_top_up(self) -> bool:
        return self.count < self.low_watermark


@dataclass(frozen=True, slots=True)
class ClaimedKeyPackage:
    device_id: str
    key_package: bytes  # an encoded MLSMessage(mls_key_package)
    last_resort: bool


@dataclass(frozen=True, slots=True)
class UserKeyPackages:
    username: str
    key_packages: list[ClaimedKeyPackage]
    missing: list[str]


@dataclass(frozen=True, slots=True)
class SendResult:
    message_id: str
    group_epoch: int | None
    duplicate: bool


@dataclass(frozen=True, slots=True)
class ReportResult:
    report_id: int
    sender: str  # the username the server stamped the reported message with
    attachments: list[str]  # per attachment: ok, mismatch or gone


@dataclass(frozen=True, slots=True)
class MessagePage:
    messages: list[QueuedMessage]
    more: bool


@dataclass(frozen=True, slots=True)
class KeyPackagesLow:
    """Pushed when claims left this device with fewer one-time KeyPackages than it should."""

    count: int
    low_watermark: int


PushEvent = QueuedMessage | KeyPackagesLow


@dataclass(frozen=True, slots=True)
class AttachmentInfo:
    attachment_id: str
    size: int
    expires_at: int


__all__ = [
    "AttachmentInfo",
    "ClaimedKeyPackage",
    "DeviceIdentity",
    "DeviceInfo",
    "KeyPackageStatus",
    "KeyPackagesLow",
    "LinkTicket",
    "MessagePage",
    "PendingLink",
    "ProgressCallback",
    "PushEvent",
    "ReportResult",
    "SendResult",
    "ServerInfo",
    "UserKeyPackages",
]
