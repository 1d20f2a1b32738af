"""The one storage interface of the server.

Every method is one transaction: it either applies completely or raises and changes nothing
(I4). Implementations: `doorless.server.storage.sqlite.SQLiteStorage` (embedded default) and
`doorless.server.storage.postgres.PostgresStorage`, both `doorless.server.storage.sql.SqlStorage`
(one SQL layer; only what truly differs is per dialect).

Rejections of a well-formed request by the current state (name taken, epoch already committed,
...) are `Rejected` subclasses; the routes map each to one HTTP error.

What is stored is only what routing needs: device keys (public), opaque KeyPackages, opaque
MLSMessages in per-device queues, per-group the current epoch, opaque attachment blobs. Secrets
the server mints (challenge nonces, tokens, invite codes) are stored as SHA-256 hashes.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from doorless.errors import DoorlessError, RemoteError
from doorless.wire.messages import QueuedMessage

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
    """One MLSMessage and the devices whose queues receive it.

    ``stamp`` (application messages only, which always have an `EpochGate`): called inside
    the delivery transaction with the group's next server sequence number; it returns the
    encoded `doorless.franking.ServerFrank`, stored with the payload and returned with it by
    `Storage.fetch`. It is pure (no I/O) and is not called for a part without recipients.
    """

    data: bytes
    recipients: tuple[str, ...]
    stamp: Callable[[int], bytes] | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class GroupState:
    """What the server keeps of a registered group (`doorless.server.groups`): its public MLS
    state (``PublicGroup.to_bytes``, no secret) and the latest GroupInfo, both of ``epoch``."""

    group_id: bytes
    epoch: int
    state: bytes
    group_info: bytes


@dataclass(frozen=True, slots=True)
class GroupAccess:
    """What every message to a registered group is checked against, read without its state:
    the group's epoch and whether the sending device is in its member set."""

    epoch: int
    member: bool


@dataclass(frozen=True, slots=True)
class GroupUpdate:
    """A validated commit's effect on a registered group: the state of the next epoch and the
    devices that join or leave its member set."""

    state: GroupState
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class EpochGate:
    """The group and epoch of a handshake or application message (from its cleartext header).

    A commit is accepted only for ``epoch == current_epoch`` and advances the group to
    ``epoch + 1``; any other group message must be for the current epoch. ``update`` (commits
    to registered groups): the new state, written in the same transaction.
    """

    group_id: bytes
    epoch: int
    is_commit: bool
    update: GroupUpdate | None = None
    # The group's next franking number as last read (`SendContext.next_seq`): a hint only. A
    # store may stamp with it before its transaction and stamp again if it moved.
    next_seq: int | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class SendContext:
    """What a send is judged against before its transaction, read at once (`Storage.
    send_context`): the device holding the bearer token, the registered group's access (None:
    not registered, or no group), the group's next franking number (None: no message of the
    group yet), and which of the ``checked`` recipients belong to users who block the sender.
    Reads only: the transaction re-checks everything a concurrent change could break."""

    device: DeviceRecord
    token_expires_at: int
    group_id: bytes | None
    access: GroupAccess | None
    next_seq: int | None
    checked: frozenset[str]
    blocked: frozenset[str]


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """``queued``: what this send put in each recipient's queue, as `Storage.fetch` would
    return it (seq order; empty for a duplicate). The push sockets of this process are handed
    it with their wake-up, so a push needs no read of the queue (`doorless.server.fanout`)."""

    message_id: str
    group_epoch: int | None  # the group's current epoch after this send
    duplicate: bool  # the same message id and content was already accepted
    queued: Mapping[str, tuple[QueuedMessage, ...]] = field(default_factory=dict)


def queued_per_device(
    entries: Iterable[tuple[str, QueuedMessage]],
) -> dict[str, tuple[QueuedMessage, ...]]:
    """`DeliveryResult.queued` from ``(device, entry)`` pairs, each device's in seq order."""
    out: dict[str, list[QueuedMessage]] = {}
    for device_id, entry in entries:
        out.setdefault(device_id, []).append(entry)
    return {device_id: tuple(found) for device_id, found in out.items()}


@dataclass(frozen=True, slots=True)
class AttachmentRecord:
    attachment_id: str
    size: int
    created_at: int
    expires_at: int


@dataclass(frozen=True, slots=True)
class KtVersion:
    """One version of a key-transparency label (`doorless.server.kt_service`).

    ``value`` is the encoded `DeviceList`, ``opening`` the commitment's random opening,
    ``search_key`` and ``commitment`` what the prefix tree holds. ``log_index`` is the log
    entry that added it, None while it waits to be logged. Never updated once logged, never
    deleted: the log only grows. (A pending first version goes with its account when the
    registration is undone: `Storage.undo_registration`.)
    """

    label: bytes
    version: int
    value: bytes
    opening: bytes
    search_key: bytes
    commitment: bytes
    log_index: int | None = None


@dataclass(frozen=True, slots=True)
class KtLogEntry:
    """One entry of the KT log: its `LogEntry` fields, the prefix-tree leaves it added
    (sorted by search key) and the log-signed checkpoint of the log ending with it."""

    index: int
    timestamp: int  # milliseconds
    prefix_root: bytes
    checkpoint: bytes  # signed note (log signature only) of size index + 1
    added: tuple[tuple[bytes, bytes], ...]  # (search_key, commitment)


@dataclass(frozen=True, slots=True, repr=False)
class FrankingKeyRecord:
    """One server franking HMAC key (`doorless.franking.FrankingKey`). Times in ms."""

    key_id: int
    key: bytes
    created_at_ms: int
    retired_at_ms: int | None = None

    def __repr__(self) -> str:
        return f"FrankingKeyRecord({self.key_id}, retired_at_ms={self.retired_at_ms})"


@dataclass(frozen=True, slots=True, repr=False)
class FrankingKeys:
    """The franking signature private key (Ed25519, raw) and the HMAC keys by ``key_id``.
    They sign and authenticate; they decrypt nothing (I1)."""

    signing_key: bytes
    keys: tuple[FrankingKeyRecord, ...]

    def __repr__(self) -> str:
        return f"FrankingKeys(keys={[k.key_id for k in self.keys]})"


@dataclass(frozen=True, slots=True, repr=False)
class ReportRecord:
    """A verified abuse report (`doorless.server.franking`). ``report`` is the encoded
    `doorless.franking.AbuseReport` as filed: it holds the reported message's plaintext,
    which a recipient chose to reveal to the operator. ``attachments``: one verdict per
    attachment (``ok``, ``mismatch``, ``gone``). ``report_id`` is None until stored."""

    reporter_username: str
    reporter_device_id: str
    sender_username: str
    sender_device_id: str
    group_id: bytes
    server_seq: int
    reason: str
    report: bytes
    attachments: tuple[str, ...]
    created_at: int
    report_id: int | None = None

    def __repr__(self) -> str:
        return (
            f"ReportRecord({self.report_id}, reason={self.reason}, "
            f"sender={self.sender_username}, reporter={self.reporter_username})"
        )


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


class GroupExists(Rejected):
    """A group with this id is already known to the server (registered or used)."""


class IdempotencyConflict(Rejected):
    """The message id was already used by this device for different content."""


class TooManyKeyPackages(Rejected):
    pass


class KtConflict(Rejected):
    """A KT label version or log index is already taken (a concurrent update: re-read,
    re-sign, retry), or a version to log is no longer pending."""


class StorageUnavailable(DoorlessError):
    """The database cannot be reached now (refused, dropped or timed-out connection): the
    request changed nothing it reported, and the same request may be retried later. The API
    answers 503 with ``Retry-After`` (`doorless.server.errors`)."""


class StorageDamaged(DoorlessError):
    """The database fails its integrity check (`Storage.check`)."""


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
        self,
        device: DeviceRecord,
        invite_code_hash: bytes | None,
        now: int,
        kt: KtVersion | None = None,
    ) -> int | None:
        """Create ``device.username`` with its first device; consume the invite if given.
        With ``kt``, store that label version (pending) in the same transaction.

        Raises `UsernameTaken`, `DeviceExists`, `InviteInvalid`, `KtConflict`. Returns the
        consumed invite's expiry (for `undo_registration`), else None.
        """

    @abstractmethod
    async def get_device(self, device_id: str) -> DeviceRecord | None: ...

    @abstractmethod
    async def list_devices(self, username: str) -> list[DeviceRecord] | None:
        """All devices (revoked ones included), or None if there is no such account."""

    @abstractmethod
    async def revoke_device(self, device_id: str, now: int, kt: KtVersion | None = None) -> None:
        """Mark revoked; drop its tokens, queue and key packages; store ``kt`` (pending) in
        the same transaction. Raises `KtConflict`."""

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

    @abstractmethod
    async def token_holder(self, token_hash: bytes, now: int) -> tuple[DeviceRecord, int] | None:
        """The device holding a live token (revoked or not) and the token's ``expires_at``, in
        one query (authentication of every request), else None."""

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
    async def approve_link(
        self, code: str, device: DeviceRecord, now: int, kt: KtVersion | None = None
    ) -> None:
        """Mark the link approved and add ``device``; store ``kt`` (pending) in the same
        transaction. Raises `LinkGone`, `DeviceExists`, `KtConflict`."""

    # key packages
    @abstractmethod
    async def add_key_packages(
        self,
        device_id: str,
        key_packages: Sequence[bytes],
        last_resort: bytes | None,
        limit: int,
        cipher_suite: int = 1,
    ) -> KeyPackageCount:
        """Store one-time packages of ``cipher_suite`` (and replace that suite's last-resort
        one if given); returns that suite's count.

        Raises `TooManyKeyPackages` if the device would hold more than ``limit`` (all suites).
        """

    @abstractmethod
    async def claim_key_package(
        self, device_id: str, cipher_suite: int | None = None
    ) -> ClaimedKeyPackage | None:
        """Remove and return one one-time package of ``cipher_suite``; else that suite's
        last-resort one (kept). ``None``: any RFC 9420 suite (`CLASSIC_SUITES_SQL`), what a
        client that names no suite can use."""

    @abstractmethod
    async def key_package_count(
        self, device_id: str, cipher_suite: int | None = None
    ) -> KeyPackageCount: ...

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
        The result's ``queued`` holds the entries this call committed.
        """

    @abstractmethod
    async def send_context(
        self, token_hash: bytes, now: int, group_id: bytes | None, recipients: Sequence[str]
    ) -> SendContext | None:
        """`token_holder`, `group_access`, the group's next franking number and
        `blocking_devices` for one send, in one read (None: unknown or expired token)."""

    @abstractmethod
    async def fetch(self, device_id: str, after: int, limit: int) -> list[QueuedMessage]:
        """Queued messages with ``seq > after``, oldest first."""

    @abstractmethod
    async def ack(self, device_id: str, seqs: Sequence[int]) -> int:
        """Delete these queue entries of this device; returns how many existed."""

    @abstractmethod
    async def group_epoch(self, group_id: bytes) -> int | None: ...

    # validated groups (doorless.server.groups)
    @abstractmethod
    async def register_group(self, state: GroupState, members: Sequence[str]) -> None:
        """Start keeping a new group's state and member devices; `GroupExists` if any message
        of the group was accepted or it is registered already."""

    @abstractmethod
    async def group_state(self, group_id: bytes) -> GroupState | None:
        """The stored state of a registered group (None: not registered)."""

    @abstractmethod
    async def is_group_member(self, group_id: bytes, device_id: str) -> bool:
        """Whether the device is in the member set of the registered group."""

    @abstractmethod
    async def group_access(self, group_id: bytes, device_id: str) -> GroupAccess | None:
        """The epoch of a registered group and whether the device is a member of it, in one
        read that does not load the group's state (None: not registered)."""

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

    # message franking, abuse reports, blocks (doorless.server.franking)
    @abstractmethod
    async def franking_keys(self, initial: FrankingKeys) -> FrankingKeys:
        """The stored franking keys; the first call on a new database stores ``initial``
        (if another process got there first, its keys are returned)."""

    @abstractmethod
    async def rotate_franking_key(self, current_key_id: int, new_key: FrankingKeyRecord) -> bool:
        """Retire ``current_key_id`` at ``new_key.created_at_ms`` and add ``new_key`` (whose id
        is ``current_key_id + 1``), if ``current_key_id`` is still the current key; False if
        another process rotated first (nothing changes)."""

    @abstractmethod
    async def delete_franking_keys(self, key_ids: Sequence[int]) -> int:
        """Delete these retired keys (the current key is never deleted); returns how many."""

    @abstractmethod
    async def add_report(self, report: ReportRecord) -> int:
        """File a verified report; returns its id."""

    @abstractmethod
    async def list_reports(self, after_id: int, limit: int) -> list[ReportRecord]:
        """Reports with ``report_id > after_id``, oldest first."""

    @abstractmethod
    async def delete_reports(self, report_ids: Sequence[int]) -> int:
        """Delete handled reports (and the plaintext they hold); returns how many."""

    @abstractmethod
    async def set_block(self, blocker: str, blocked: str, block: bool, now: int) -> None:
        """User ``blocker`` blocks (``block``) or unblocks ``blocked`` (idempotent)."""

    @abstractmethod
    async def list_blocks(self, blocker: str) -> list[str]:
        """The users ``blocker`` blocks, sorted."""

    @abstractmethod
    async def blocking_devices(self, sender: str, device_ids: Sequence[str]) -> set[str]:
        """Those of ``device_ids`` whose user blocks user ``sender``."""

    # key transparency (doorless.server.kt_service)
    @abstractmethod
    async def kt_signing_seed(self) -> bytes:
        """The 32-byte Ed25519 seed of the log's checkpoint key, minted with the database
        (like `server_id`). It signs; it decrypts nothing (I1)."""

    @abstractmethod
    async def kt_latest_version(self, label: bytes) -> KtVersion | None:
        """The greatest version of ``label``, pending or logged."""

    @abstractmethod
    async def kt_versions(self, label: bytes, start: int) -> list[KtVersion]:
        """The versions ``>= start`` of ``label`` (pending ones included), ascending."""

    @abstractmethod
    async def kt_pending(self) -> list[KtVersion]:
        """Every version not logged yet, ordered by search key."""

    @contextlib.asynccontextmanager
    async def kt_lock(self) -> AsyncIterator[None]:
        """Hold the log's append lock, across every process over this database, for the body
        (`KtService.publish`: catch up, read the pending versions, append). The default holds
        nothing: a store whose writes are serialized anyway (SQLite's single writer) detects a
        lost race in `kt_append` (`KtConflict`) and the publisher retries."""
        yield

    async def check(self, full: bool = True) -> list[str]:
        """The database's own integrity check: the problems found (empty if none).
        ``full=False`` is the quicker check run at every start."""
        return []

    @abstractmethod
    async def undo_registration(
        self, username: str, device_id: str, label: bytes, invite: tuple[bytes, int] | None
    ) -> bool:
        """Remove an account created by `create_account` whose first KT version is still
        pending (its publish failed), with its device's tokens and KeyPackages, and restore
        the invite ``(code_hash, expires_at)`` it consumed; one transaction. Returns False
        (and changes nothing) if the version was logged meanwhile (the account stands)."""

    @abstractmethod
    async def kt_append(self, entry: KtLogEntry) -> None:
        """Record log entry ``entry.index`` and mark the versions it added (by search key) as
        logged, in one transaction. Raises `KtConflict` if the index is taken, is not the next
        one, or an added key is not a pending version."""

    @abstractmethod
    async def kt_entries(self, start: int, limit: int) -> list[KtLogEntry]:
        """Log entries ``start ..`` (at most ``limit``), ascending."""

    @abstractmethod
    async def kt_add_cosignature(
        self, size: int, witness: str, signature_line: str, now: int
    ) -> None:
        """Keep witness ``witness``'s cosignature line for the checkpoint of ``size``
        (replacing an earlier one by the same witness for that size)."""

    @abstractmethod
    async def kt_cosignatures(self, size: int) -> list[str]:
        """The cosignature lines kept for the checkpoint of ``size``."""
