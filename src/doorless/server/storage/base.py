"""The one storage interface of the server.

Every method is one transaction: it either applies completely or raises and changes nothing
(I4). Implementations: `doorless.server.storage.sqlite.SQLiteStorage` (embedded default);
PostgreSQL comes later and implements the same methods with the same SQL shapes.

Rejections of a well-formed request by the current state (name taken, epoch already committed,
...) are `Rejected` subclasses; the routes map each to one HTTP error.

What is stored is only what routing needs: device keys (public), opaque KeyPackages, opaque
MLSMessages in per-device queues, per-group the current epoch, opaque attachment blobs. Secrets
the server mints (challenge nonces, tokens, invite codes) are stored as SHA-256 hashes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from doorless.errors import RemoteError

# --- records -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """A device of an account. ``approved_by`` is None for the account's first device, whose
    ``approval_signature`` is then its own registration signature."""

    device_id: str
    username: str
    device_key: bytes
    approved_by: str | None
    approval_signature: bytes
    created_at: int
    revoked_at: int | None = None


@dataclass(frozen=True, slots=True)
class LinkRecord:
    """A new device waiting for an existing device of ``username`` to approve it."""

    code: str
    username: str
    device_id: str
    device_key: bytes
    created_at: int
    expires_at: int
    approved_at: int | None = None


@dataclass(frozen=True, slots=True)
class ClaimedKeyPackage:
    device_id: str
    key_package: bytes
    last_resort: bool


@dataclass(frozen=True, slots=True)
class KeyPackageCount:
    count: int  # one-time packages left
    last_resort: bool  # whether a last-resort package is on file


@dataclass(frozen=True, slots=True)
class Delivery:
    """One MLSMessage and the devices whose queues receive it."""

    data: bytes
    recipients: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class EpochGate:
    """The group and epoch of a handshake or application message (from its cleartext header).

    A commit is accepted only for ``epoch == current_epoch`` and advances the group to
    ``epoch + 1``; any other group message must be for the current epoch.
    """

    group_id: bytes
    epoch: int
    is_commit: bool


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    message_id: str
    group_epoch: int | None  # the group's current epoch after this send
    duplicate: bool  # the same message id and content was already accepted


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    seq: int
    data: bytes
    received_at: int


@dataclass(frozen=True, slots=True)
class AttachmentRecord:
    attachment_id: str
    size: int
    created_at: int
    expires_at: int


# --- rejections ----------------------------------------------------------------------------


class Rejected(RemoteError):
    """The request is well-formed but the current state does not allow it."""


class UsernameTaken(Rejected):
    pass


class DeviceExists(Rejected):
    pass


class UnknownAccount(Rejected):
    pass


class InviteInvalid(Rejected):
    pass


class UnknownDevice(Rejected):
    def __init__(self, device_ids: Sequence[str]) -> None:
        super().__init__(f"{len(device_ids)} unknown or revoked device(s)")
        self.device_ids = tuple(device_ids)


class LinkGone(Rejected):
    """No such pending link (unknown code, expired, or already approved)."""


class EpochConflict(Rejected):
    """Another commit already took this epoch, or the message is for another epoch."""

    def __init__(self, current_epoch: int, message: str) -> None:
        super().__init__(message)
        self.current_epoch = current_epoch


class IdempotencyConflict(Rejected):
    """The message id was already used by this device for different content."""


class TooManyKeyPackages(Rejected):
    pass


# --- the interface -------------------------------------------------------------------------


class Storage(ABC):
    """Async, transactional storage. Times are integer seconds given by the caller."""

    @abstractmethod
    async def open(self) -> None:
        """Connect and apply pending schema migrations."""

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def server_id(self) -> str:
        """A random id minted when the database was created; signatures are bound to it."""

    # invites
    @abstractmethod
    async def create_invite(self, code_hash: bytes, now: int, expires_at: int) -> None: ...

    # accounts and devices
    @abstractmethod
    async def create_account(
        self, device: DeviceRecord, invite_code_hash: bytes | None, now: int
    ) -> None:
        """Create ``device.username`` with its first device; consume the invite if given.

        Raises `UsernameTaken`, `DeviceExists`, `InviteInvalid`.
        """

    @abstractmethod
    async def get_device(self, device_id: str) -> DeviceRecord | None: ...

    @abstractmethod
    async def list_devices(self, username: str) -> list[DeviceRecord] | None:
        """All devices (revoked ones included), or None if there is no such account."""

    @abstractmethod
    async def revoke_device(self, device_id: str, now: int) -> None:
        """Mark revoked; drop its tokens, queue and key packages."""

    # authentication
    @abstractmethod
    async def put_challenge(self, nonce_hash: bytes, expires_at: int) -> None: ...

    @abstractmethod
    async def take_challenge(self, nonce_hash: bytes, now: int) -> bool:
        """Consume a challenge: True once if it exists and has not expired."""

    @abstractmethod
    async def put_token(self, token_hash: bytes, device_id: str, expires_at: int) -> None: ...

    @abstractmethod
    async def token_device(self, token_hash: bytes, now: int) -> tuple[str, int] | None:
        """``(device_id, expires_at)`` of a live token of a non-revoked device, else None."""

    # device linking
    @abstractmethod
    async def create_link(self, link: LinkRecord) -> bool:
        """Store a pending link; False if ``link.code`` is already in use (pick another).

        Raises `UnknownAccount`, or `DeviceExists` if the key is already a device's key.
        """

    @abstractmethod
    async def get_link(self, code: str, now: int) -> LinkRecord | None:
        """The link while it has not expired (approved or not)."""

    @abstractmethod
    async def approve_link(self, code: str, device: DeviceRecord, now: int) -> None:
        """Mark the link approved and add ``device``. Raises `LinkGone`, `DeviceExists`."""

    # key packages
    @abstractmethod
    async def add_key_packages(
        self, device_id: str, key_packages: Sequence[bytes], last_resort: bytes | None, limit: int
    ) -> KeyPackageCount:
        """Store one-time packages (and replace the last-resort one if given).

        Raises `TooManyKeyPackages` if the device would hold more than ``limit``.
        """

    @abstractmethod
    async def claim_key_package(self, device_id: str) -> ClaimedKeyPackage | None:
        """Remove and return one one-time package; else the last-resort one (kept)."""

    @abstractmethod
    async def key_package_count(self, device_id: str) -> KeyPackageCount: ...

    # delivery
    @abstractmethod
    async def deliver(
        self,
        sender_device_id: str,
        message_id: str,
        digest: bytes,
        parts: Sequence[Delivery],
        gate: EpochGate | None,
        now: int,
    ) -> DeliveryResult:
        """Enqueue every part to every recipient queue, in one durable transaction.

        ``(sender_device_id, message_id)`` is an idempotency key: a repeat with the same
        ``digest`` returns the first result (``duplicate=True``) and enqueues nothing; with a
        different digest it raises `IdempotencyConflict`. Then ``gate`` is checked (raises
        `EpochConflict`) and all recipients must be live devices (raises `UnknownDevice`).
        """

    @abstractmethod
    async def fetch(self, device_id: str, after: int, limit: int) -> list[QueuedMessage]:
        """Queued messages with ``seq > after``, oldest first."""

    @abstractmethod
    async def ack(self, device_id: str, seqs: Sequence[int]) -> int:
        """Delete these queue entries of this device; returns how many existed."""

    @abstractmethod
    async def group_epoch(self, group_id: bytes) -> int | None: ...

    # attachments
    @abstractmethod
    async def add_attachment(self, record: AttachmentRecord) -> None: ...

    @abstractmethod
    async def get_attachment(self, attachment_id: str, now: int) -> AttachmentRecord | None:
        """The attachment if it has not expired."""

    @abstractmethod
    async def attachment_ids(self) -> set[str]:
        """Every attachment id on record (to find blob files that have no row)."""

    @abstractmethod
    async def take_expired_attachments(self, now: int) -> list[str]:
        """Delete the rows of expired attachments and return their ids (blobs go next)."""

    # housekeeping
    @abstractmethod
    async def purge_expired(self, now: int, idempotency_cutoff: int) -> None:
        """Drop expired challenges, tokens, links and invites, and the idempotency records of
        sends older than ``idempotency_cutoff``."""
