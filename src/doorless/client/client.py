"""`Client`: the async API applications embed (CLI, JSON-RPC daemon and chat app use only this).

A `Client` is one device of one account, with its encrypted profile store open and locked::

    client = await Client.create_account(profile, passphrase, server_url=url, username="alice")
    # later: client = await Client.open(profile, passphrase)
    async with client:
        await client.start()                          # receive in the background
        chat = await client.start_direct("bob")       # or create_group(name, members)
        await client.send_text(chat.id, "hello")
        async for event in client.events():
            ...

Design (details in ``docs/client.md``):

* **Conversations are MLS groups** (`doorless.mls.group`) with a random 32-byte group id. Every
  device of every member is a leaf, this user's other devices included, so what one device
  sends appears on the others. Adding a user claims one KeyPackage per device of theirs; the
  conversation's kind and name are an encrypted GroupContext extension
  (`doorless.client.conversations`).
* **One writer, one order.** All state changes of a client run under one asyncio lock, and
  each one is a single store transaction holding the new MLS state together with what it
  produced (the stored message, the processed mark, the outbox item). Incoming messages are
  processed in the server's order and acknowledged only after their transaction committed
  (I5); a message seen twice (same server seq, or same payload message id) is dropped.
* **Commits** go to the server with their Welcome; the new epoch is adopted only when the
  server accepted the commit. The pending state is kept in the outbox first, so a crash or a
  lost answer is resolved by sending the same commit again (idempotent) before the group is
  used further. On ``409 epoch_conflict`` the pending commit is dropped, the queue is
  processed and the operation is planned again on the new epoch (bounded retries).
* **Sending** encrypts, stores the message and the ciphertext in the outbox, then sends. If the
  server cannot be reached the message stays ``pending`` and is sent later (on `sync`, or by
  the background task); if the group moved to a new epoch meanwhile it is encrypted again.
* **Identity**: the device's Ed25519 key signs both the server protocol statements and MLS;
  every leaf's credential is checked to bind to its key, and every device a commit or Welcome
  brings in must be on the server's approval chain of its user (I3), else the commit is
  refused with `FailureReason.INVALID_MEMBER`.
* **Receiving** runs in the background after `start`: a WebSocket push session (with
  reconnects) and, whenever it fails, HTTP fetches with backoff. `sync` does one fetch round
  by hand (tests, one-shot CLI commands).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import functools
import logging
import mimetypes
import os
import secrets
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx

from doorless.client import kt_profile
from doorless.client.conversations import (
    CONVERSATION_INFO_EXTENSION,
    ConversationInfo,
    RosterEntry,
    check_binding,
    conversation_info,
    device_ref_of,
    make_credential,
    roster,
    safe_roster,
    with_info,
)
from doorless.client.errors import (
    BadResponse,
    Conflict,
    EpochConflict,
    InvalidRequest,
    NotFound,
    RateLimited,
    ServerError,
    ServerFailure,
    ServerUnreachable,
    Unauthorized,
)
from doorless.client.events import (
    Conversation,
    ConversationJoined,
    ConversationKind,
    ConversationStatus,
    ConversationUpdated,
    DeliveryFailed,
    DeviceChange,
    DeviceChanged,
    DeviceRef,
    Event,
    FailureReason,
    FileInfo,
    MembershipChanged,
    MessageInfo,
    MessageKind,
    MessageReceived,
    MessageSent,
    TransparencyAlarm,
)
from doorless.client.keys import DEFAULT_ARGON2, Argon2Params, KeySource
from doorless.client.kt import KeyNotInTransparencyLog, KtConfig, KtUnavailable, KtViolation
from doorless.client.records import (
    KIND_APPLICATION,
    KIND_COMMIT,
    OutgoingCommit,
    OutgoingMessage,
)
from doorless.client.safety import (
    DISAPPEARING_EXTENSION,
    DisappearingTimer,
    FrankRejected,
    ReportReceipt,
    count_hidden,
    disappearing_seconds,
    expires_at,
    hidden_counts,
    open_franked,
    report_reason,
    with_disappearing,
)
from doorless.client.store import (
    Account,
    Contact,
    DeviceStatus,
    GroupStatus,
    Message,
    MessageRequest,
    MessageState,
    OutboxItem,
    OwnDevice,
    ProfileStore,
    StoredKeyPackage,
    Transaction,
)
from doorless.client.store import Group as StoredGroup
from doorless.client.transport import (
    ClaimedKeyPackage,
    DeviceIdentity,
    DeviceInfo,
    PendingLink,
    ProgressCallback,
    Transport,
)
from doorless.codec import decode, encode
from doorless.crypto import CipherSuiteId, cipher_suite
from doorless.errors import (
    ConfigurationError,
    DecodeError,
    DoorlessError,
    RemoteError,
    StateError,
    ValidationError,
)
from doorless.franking import (
    SALT_LENGTH,
    AttachmentDescriptor,
    ReceivedFrank,
    ReportReason,
    SenderIdentity,
    open_attachment,
    seal_attachment,
)
from doorless.mls.credential import BasicCredential, CredentialType
from doorless.mls.framing import MLSMessage, PrivateMessage, PublicMessage
from doorless.mls.group import (
    DEFAULT_LIFETIME_SECONDS,
    ApplicationMessage,
    Group,
    KeyPackageBundle,
    ProposalMessage,
    StagedCommit,
    generate_key_package,
    open_welcome,
)
from doorless.mls.group_context import ProtocolVersion
from doorless.mls.key_package import KeyPackage, make_key_package_ref
from doorless.mls.leaf_node import Capabilities
from doorless.mls.proposals import Add, GroupContextExtensions, Proposal, Remove
from doorless.mls.tree_math import LeafIndex
from doorless.mls.welcome import Welcome
from doorless.secret import PrivateKeyBytes
from doorless.wire import protocol
from doorless.wire.messages import QueuedMessage
from doorless.wire.payload import (
    FileBody,
    Payload,
    PayloadKind,
    check_file_name,
    file_of,
    file_payload,
    frank_payload,
    text_of,
    text_payload,
)

log = logging.getLogger("doorless.client")

T = TypeVar("T")

# Cipher suites whose signature scheme is Ed25519, the device key's (suite 1 is the default).
ED25519_SUITES = frozenset(
    {
        CipherSuiteId.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519,
        CipherSuiteId.MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519,
    }
)
COMMIT_ATTEMPTS = 6
_RECLAIMS = 3
_KEY_PACKAGE_LIFETIME_MS = DEFAULT_LIFETIME_SECONDS * 1000
_PROCESSED_RETENTION_MS = 30 * 24 * 3600 * 1000
SEND_ATTEMPTS = 6
_FETCH_PAGE = 100
_MAX_BACKOFF = 60.0

# Settings keys of the profile store.
_SETTING_SERVER_ID = "server_id"
_SETTING_SETUP = "setup"
_SETUP_REGISTER = "register"
_SETUP_LINK = "link"
_SETUP_DONE = "done"
_SETTING_FRANKING_KEY = "franking_public_key"  # the server's, pinned (hex)
_BLOCKS_INTERVAL = 300.0  # seconds between reads of the account's block list
_APP_SETTING_PREFIX = "app:"  # settings of the application (get_app_setting)

# Server answers that say "try again later" rather than "no": an outbox item stays.
_TRANSIENT: tuple[type[RemoteError], ...] = (ServerUnreachable, RateLimited, ServerFailure)
# Failures of the network path (never a verdict on the message being processed).
_NETWORK: tuple[type[RemoteError], ...] = (
    ServerUnreachable,
    ServerError,
    BadResponse,
    KtUnavailable,  # the log's head is not witnessed yet: check again later
)


# --- errors ---------------------------------------------------------------------------------


class UnknownConversation(StateError):
    """No conversation with this id in this profile."""


class NotAMember(StateError):
    """This device was removed from the conversation."""


class SetupIncomplete(StateError):
    """The profile's account creation or device linking did not finish."""


class UserUnavailable(RemoteError):
    """A user has no device that can be added now (no KeyPackage on the server)."""


class CommitFailed(RemoteError):
    """A change could not be committed: other members kept winning the epoch."""


class SendFailed(RemoteError):
    """A message could not be sent after several attempts (it stays in the outbox)."""


# A send that meets these while sending older messages queues behind them (never overtakes).
_QUEUE_BEHIND: tuple[type[RemoteError], ...] = (*_TRANSIENT, SendFailed)


# --- options --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """How a client connects and behaves. The defaults suit an interactive application.

    ``push``: receive over the WebSocket (else poll every ``poll_interval`` seconds).
    ``retry_interval``: how often the background task retries pending sends.
    ``key_package_target``: how many one-time KeyPackages to keep on the server.
    ``http_transport``: replaces the network (tests: ``httpx.ASGITransport``).
    ``argon2``: Argon2id cost of a new profile's passphrase key.
    """

    push: bool = True
    poll_interval: float = 2.0
    retry_interval: float = 5.0
    key_package_target: int = 20
    cipher_suite: int = CipherSuiteId.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
    ssl_context: ssl.SSLContext | None = None
    http_transport: httpx.AsyncBaseTransport | None = None
    timeout: float = 30.0
    retries: int = 2
    backoff: float = 0.2
    argon2: Argon2Params = DEFAULT_ARGON2
    lock_timeout: float = 0.0
    clock: Callable[[], float] = time.time
    # Key transparency (doorless.client.kt): the witnesses whose cosignatures every log head
    # needs (quorum 0 is allowed, with a loud warning), and how often the background task
    # re-checks this account's own device list.
    kt: KtConfig = dataclasses.field(default_factory=KtConfig)
    kt_monitor_interval: float = 3600.0

    def __post_init__(self) -> None:
        if self.cipher_suite not in ED25519_SUITES:
            raise ConfigurationError("the cipher suite must sign with Ed25519 (suite 1 or 3)")
        if self.key_package_target < 1:
            raise ConfigurationError("key_package_target must be positive")


PassphraseArg = str | KeySource | None


# --- internal state -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Conv:
    """A conversation as held in memory: the MLS state and the store row's other fields."""

    group_id: bytes
    mls: Group
    status: GroupStatus
    created_at: int
    updated_at: int

    @classmethod
    def from_row(cls, row: StoredGroup) -> _Conv:
        mls = Group.from_bytes(row.mls_state)
        return cls(row.group_id, mls, row.status, row.created_at, row.updated_at)

    def evolve(self, **changes: Any) -> _Conv:
        return dataclasses.replace(self, **changes)

    def stored(self) -> StoredGroup:
        return StoredGroup(
            group_id=self.group_id,
            name=conversation_info(self.mls).name,
            mls_state=self.mls.to_bytes(),
            epoch=self.mls.epoch,
            status=self.status,
            created_at=self.created_at,
            updated_at=self.updated_at,
        )


@dataclass(frozen=True, slots=True)
class _Plan:
    """What one commit should contain."""

    proposals: tuple[Proposal, ...]


# A plan builder sees the current state and the devices the server called unknown.
_Builder = Callable[[_Conv, frozenset[str]], Awaitable[_Plan | None]]
_Claimed = dict[str, tuple[DeviceRef, KeyPackage]]


class _Conflict:
    """Verdict: another commit took the epoch."""


_CONFLICT = _Conflict()


class _Unsupported(RemoteError):
    """A payload kind this version does not know (a newer sender)."""

    def __init__(self, kind: int) -> None:
        super().__init__(f"message kind {kind} is not supported by this version")


class _EventHub:
    """Fan events out to every `Client.events` iterator; keep them while nobody listens."""

    def __init__(self, backlog: int = 10_000) -> None:
        self._subscribers: list[asyncio.Queue[Event | None]] = []
        self._backlog: collections.deque[Event] = collections.deque(maxlen=backlog)
        self._closed = False

    def emit(self, event: Event) -> None:
        if not self._subscribers:
            self._backlog.append(event)
        for queue in self._subscribers:
            queue.put_nowait(event)

    async def stream(self) -> AsyncIterator[Event]:
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        while self._backlog:
            queue.put_nowait(self._backlog.popleft())
        if self._closed:
            queue.put_nowait(None)
        self._subscribers.append(queue)
        try:
            while (event := await queue.get()) is not None:
                yield event
        finally:
            self._subscribers.remove(queue)

    def close(self) -> None:
        self._closed = True
        for queue in self._subscribers:
            queue.put_nowait(None)


# --- helpers --------------------------------------------------------------------------------


def _group_id(conversation_id: str) -> bytes:
    try:
        gid = bytes.fromhex(conversation_id)
    except ValueError:
        raise UnknownConversation("a conversation id is a hex string") from None
    if not 0 < len(gid) <= 255:
        raise UnknownConversation("a conversation id is 1..255 bytes of hex")
    return gid


def _users(usernames: Iterable[str]) -> list[str]:
    users = sorted(set(usernames))
    for user in users:
        if not protocol.is_username(user):
            raise ConfigurationError(f"invalid username {user!r}")
    return users


def _new_send_id() -> str:
    return secrets.token_urlsafe(16)


def _file_info(body: FileBody) -> FileInfo:
    a = body.attachment
    return FileInfo(
        name=body.name,
        media_type=a.media_type.decode("utf-8", "replace"),
        size=a.size,
        sha256=a.plaintext_sha256.hex(),
        attachment_id=a.locator.decode("ascii", "replace"),
        descriptor=a,
    )


def _message_info(m: Message) -> MessageInfo:
    kind = MessageKind(m.content_type)
    text = m.body.decode("utf-8", "replace") if kind is MessageKind.TEXT else None
    file = _file_info(decode(FileBody, m.body)) if kind is MessageKind.FILE else None
    return MessageInfo(
        conversation_id=m.group_id.hex(),
        message_id=m.server_id or "",
        local_id=m.local_id or 0,
        sender=DeviceRef(m.sender_user, m.sender_device),
        outgoing=m.outgoing,
        kind=kind,
        text=text,
        file=file,
        sent_at=m.sent_at,
        received_at=m.received_at,
        state=m.state,
    )


_PAYLOAD_KIND = {MessageKind.TEXT: PayloadKind.text, MessageKind.FILE: PayloadKind.file}
_MESSAGE_KIND: dict[int, MessageKind] = {int(v): k for k, v in _PAYLOAD_KIND.items()}


def _content_kind(payload: Payload) -> MessageKind:
    """The kind of a received payload, after checking its body; `DecodeError` if malformed."""
    kind = _MESSAGE_KIND.get(int(payload.kind))
    if kind is None:
        raise _Unsupported(int(payload.kind))
    if kind is MessageKind.TEXT:
        text_of(payload)
    else:
        file_of(payload)
    return kind


def _group_of(body: PrivateMessage | PublicMessage) -> tuple[bytes, int]:
    if isinstance(body, PrivateMessage):
        return body.group_id, body.epoch
    return body.content.group_id, body.content.epoch


async def _open_store(
    profile_dir: str | os.PathLike[str], passphrase: PassphraseArg, options: ClientOptions
) -> ProfileStore:
    # Argon2id takes a noticeable time: keep it off the event loop.
    return await asyncio.to_thread(
        ProfileStore.open,
        profile_dir,
        passphrase,
        argon2=options.argon2,
        lock_timeout=options.lock_timeout,
    )


def _make_transport(
    server_url: str, identity: DeviceIdentity, server_id: str | None, options: ClientOptions
) -> Transport:
    return Transport(
        server_url,
        identity,
        server_id=server_id,
        ssl_context=options.ssl_context,
        timeout=options.timeout,
        retries=options.retries,
        backoff=options.backoff,
        http_transport=options.http_transport,
    )


async def _already_registered(transport: Transport) -> bool:
    """True if the server knows this device (an earlier, interrupted setup got that far)."""
    try:
        await transport.authenticate()
    except Unauthorized:
        return False
    return True


def _message_by_id(tx: Transaction, message_id: str) -> Message | None:
    return tx.get_message_by_server_id(message_id.lower())


def _set_contact(
    tx: Transaction,
    username: str,
    now: int,
    *,
    blocked: bool | None = None,
    accepted: bool | None = None,
) -> None:
    contact = tx.get_contact(username) or Contact(username=username, created_at=now, updated_at=now)
    tx.put_contact(
        dataclasses.replace(
            contact,
            updated_at=now,
            blocked=contact.blocked if blocked is None else blocked,
            accepted=contact.accepted if accepted is None else accepted,
        )
    )


def _drop_welcome(tx: Transaction, key: str, ref: bytes | None, now: int) -> None:
    tx.mark_processed(key, now)
    if ref is not None:
        tx.delete_key_package(ref)


def _sender_identity(ref: DeviceRef) -> SenderIdentity:
    """How franked content names a device (the encoding of its MLS credential)."""
    return SenderIdentity(ref.user.encode("ascii"), ref.device_id.encode("ascii"))


def _forget_key_package(tx: Transaction, ref: bytes) -> None:
    if tx.get_key_package(ref) is not None:
        tx.delete_key_package(ref)


def _read_setup(tx: Transaction) -> tuple[Account | None, str | None, str | None]:
    return tx.get_account(), tx.get_setting(_SETTING_SETUP), tx.get_setting(_SETTING_SERVER_ID)


async def _begin_setup(
    store: ProfileStore,
    mode: str,
    server_url: str,
    username: str,
    options: ClientOptions,
) -> tuple[Account, Transport]:
    """Create (or resume) the account row of a profile being set up, and its transport."""
    if not protocol.is_username(username):
        raise ConfigurationError(f"invalid username {username!r}")
    account, setup, server_id = await store.run_transaction(_read_setup)
    if account is not None:
        if setup == _SETUP_DONE:
            raise StateError("this profile already has an account; use Client.open")
        if setup != mode or account.username != username or account.server_url != server_url:
            raise StateError("this profile is being set up for another account")
        identity = DeviceIdentity.from_private_key(account.signature_private_key.value)
    else:
        identity = DeviceIdentity.generate()
    transport = _make_transport(server_url, identity, server_id, options)
    try:
        pinned = await transport.server_id()
        if account is None:
            credential = make_credential(username, identity.device_id)
            new = Account(
                username=username,
                server_url=server_url,
                device_id=identity.device_id,
                cipher_suite=options.cipher_suite,
                signature_private_key=identity.private_key,
                signature_public_key=identity.public_key,
                credential=encode(credential),
                created_at=int(options.clock() * 1000),
            )

            def write(tx: Transaction) -> None:
                tx.put_account(new)
                tx.set_setting(_SETTING_SERVER_ID, pinned)
                tx.set_setting(_SETTING_SETUP, mode)

            await store.run_transaction(write)
            account = new
    except BaseException:
        await transport.aclose()
        raise
    return account, transport


# --- device linking -------------------------------------------------------------------------


class DeviceLink:
    """A new device waiting to be approved by an existing device of the account.

    Show `code` and `fingerprint` to the user; they enter the code on a device they already
    have, compare the fingerprint, and approve (`Client.approve_link`). Then `complete`
    returns the new device's `Client`. If this process stops before that, call
    `Client.begin_link` again with the same profile: it resumes with the same device key.
    """

    def __init__(
        self,
        store: ProfileStore,
        transport: Transport,
        account: Account,
        options: ClientOptions,
        code: str,
        expires_at: int,
        device_name: str,
    ) -> None:
        self._store = store
        self._transport = transport
        self._account = account
        self._options = options
        self.code = code
        self.expires_at = expires_at
        self.device_id = account.device_id
        self._device_name = device_name
        self._done = False

    def fingerprint(self) -> str:
        """The device id in groups of four (the existing device shows the same)."""
        return " ".join(self.device_id[i : i + 4] for i in range(0, len(self.device_id), 4))

    async def complete(self, *, timeout: float | None = None, poll_interval: float = 1.0) -> Client:
        """Wait for the approval (`TimeoutError` after ``timeout`` seconds; call again to keep
        waiting), then finish the setup and return the client."""
        if self._done:
            raise StateError("this link was already completed")
        if not await _already_registered(self._transport):
            try:
                await self._transport.wait_for_link_approval(
                    self.code, poll_interval=poll_interval, timeout=timeout
                )
            except NotFound:
                # The request expired or is gone: fine if it was approved in the meantime.
                if not await _already_registered(self._transport):
                    raise
        client = Client(self._store, self._transport, self._account, self._options)
        await client._finish_setup(self._device_name)
        self._done = True
        return client

    async def cancel(self) -> None:
        """Stop waiting: close the profile (it can be resumed with `Client.begin_link`)."""
        if not self._done:
            self._done = True
            await self._transport.aclose()
            await self._store.aclose()


# --- the client -----------------------------------------------------------------------------


class Client:
    """One device of one account. Create with `create_account`, `begin_link` or `open`."""

    def __init__(
        self,
        store: ProfileStore,
        transport: Transport,
        account: Account,
        options: ClientOptions | None = None,
    ) -> None:
        self._store = store
        self._transport = transport
        self._account = account
        self._options = options or ClientOptions()
        if account.cipher_suite not in ED25519_SUITES:
            raise ConfigurationError("this profile's cipher suite is not supported")
        self._suite = cipher_suite(account.cipher_suite)
        self._signature_key: PrivateKeyBytes = account.signature_private_key
        self._credential = decode(BasicCredential, account.credential)
        self._capabilities = Capabilities(
            versions=(ProtocolVersion.mls10,),
            cipher_suites=(int(self._suite.id),),
            extensions=(CONVERSATION_INFO_EXTENSION, DISAPPEARING_EXTENSION),
            proposals=(),
            credentials=(int(CredentialType.basic),),
        )
        self.me = DeviceRef(account.username, account.device_id)
        self._lock = asyncio.Lock()
        self._cache: dict[bytes, _Conv] = {}
        self._pending_commits: set[bytes] | None = None  # groups with a commit in the outbox
        self._devices: dict[str, dict[str, DeviceInfo]] = {}  # verified device lists
        self._hub = _EventHub()
        self._tasks: set[asyncio.Task[None]] = set()
        self._check_key_packages = asyncio.Event()
        self._check_key_packages.set()
        self._closed = False
        self._requests: dict[bytes, str] | None = None  # message requests: group -> inviter
        self._franking_public_key: bytes | None = None
        # Key transparency: every peer key is checked against its user's verified device
        # list, and this account's own list is monitored (doorless.client.kt, kt_profile).
        self._kt = kt_profile.make_verifier(
            store, transport, self._options.kt, self._options.clock, account.cipher_suite
        )
        self._kt_checked: dict[str, int] = {}  # user -> device-list version compared

    # --- construction ----------------------------------------------------------------------

    @classmethod
    async def create_account(
        cls,
        profile_dir: str | os.PathLike[str],
        passphrase: PassphraseArg,
        *,
        server_url: str,
        username: str,
        invite_code: str | None = None,
        device_name: str = "",
        options: ClientOptions | None = None,
    ) -> Client:
        """Register ``username`` on the server with a new profile as its first device.

        ``passphrase``: a string (Argon2id), a key source (`doorless.client.keys`), or None
        (``DOORLESS_PASSPHRASE`` or the OS keyring). Re-running it on a profile whose creation
        was interrupted resumes with the same device key.
        """
        opts = options or ClientOptions()
        store = await _open_store(profile_dir, passphrase, opts)
        transport: Transport | None = None
        try:
            account, transport = await _begin_setup(
                store, _SETUP_REGISTER, server_url, username, opts
            )
            try:
                await transport.register(username, invite_code)
            except Conflict:
                if not await _already_registered(transport):
                    raise
            await transport.authenticate()
            client = cls(store, transport, account, opts)
            await client._finish_setup(device_name)
            return client
        except BaseException:
            if transport is not None:
                await transport.aclose()
            await store.aclose()
            raise

    @classmethod
    async def begin_link(
        cls,
        profile_dir: str | os.PathLike[str],
        passphrase: PassphraseArg,
        *,
        server_url: str,
        username: str,
        device_name: str = "",
        options: ClientOptions | None = None,
    ) -> DeviceLink:
        """Start adding a new profile as another device of ``username`` (see `DeviceLink`)."""
        opts = options or ClientOptions()
        store = await _open_store(profile_dir, passphrase, opts)
        transport: Transport | None = None
        try:
            account, transport = await _begin_setup(store, _SETUP_LINK, server_url, username, opts)
            ticket = await transport.request_link(username)
            return DeviceLink(
                store, transport, account, opts, ticket.code, ticket.expires_at, device_name
            )
        except BaseException:
            if transport is not None:
                await transport.aclose()
            await store.aclose()
            raise

    @classmethod
    async def open(
        cls,
        profile_dir: str | os.PathLike[str],
        passphrase: PassphraseArg = None,
        *,
        options: ClientOptions | None = None,
    ) -> Client:
        """Open an existing profile: everything is restored from its store (no network)."""
        opts = options or ClientOptions()
        store = await _open_store(profile_dir, passphrase, opts)
        try:
            account, setup, server_id = await store.run_transaction(_read_setup)
            if account is None:
                raise ConfigurationError(f"no Doorless account in {profile_dir}")
            if setup != _SETUP_DONE:
                raise SetupIncomplete(
                    "this profile's setup did not finish: run the account creation or the "
                    "device link again"
                )
            identity = DeviceIdentity.from_private_key(account.signature_private_key.value)
            transport = _make_transport(account.server_url, identity, server_id, opts)
            return cls(store, transport, account, opts)
        except BaseException:
            await store.aclose()
            raise

    async def _finish_setup(self, device_name: str) -> None:
        await self._top_up_key_packages()
        devices = await self._transport.list_devices(self.me.user)
        await self._record_own_devices(devices, {self.me.device_id: device_name})
        await self._franking_key()  # pinned from the server we registered with
        await self._kt.load()  # persists the device list this device signed at registration
        await self._tx(lambda tx: tx.set_setting(_SETTING_SETUP, _SETUP_DONE))

    # --- identity and lifecycle ------------------------------------------------------------

    @property
    def username(self) -> str:
        return self.me.user

    @property
    def device_id(self) -> str:
        return self.me.device_id

    @property
    def server_url(self) -> str:
        return self._account.server_url

    @property
    def profile_dir(self) -> Path:
        return self._store.profile

    async def start(self) -> None:
        """Receive, retry pending sends and top up KeyPackages in the background."""
        if self._closed:
            raise StateError("the client is closed")
        if not self._tasks:
            for job in (self._receive_loop(), self._maintenance_loop()):
                task = asyncio.create_task(job)
                self._tasks.add(task)

    async def close(self) -> None:
        """Stop the background tasks, close the connection and the profile (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        async with self._lock:  # let a running operation finish its transaction
            self._hub.close()
            await self._transport.aclose()
            await self._store.aclose()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def events(self) -> AsyncIterator[Event]:
        """Every event from now on (and those emitted while no iterator was listening)."""
        return self._hub.stream()

    async def messages(self) -> AsyncIterator[MessageReceived]:
        """Only the `MessageReceived` events (other events reach other iterators only)."""
        async for event in self.events():
            if isinstance(event, MessageReceived):
                yield event

    # --- conversations ---------------------------------------------------------------------

    async def conversations(self) -> list[Conversation]:
        await self._load_requests()
        rows = await self._tx(lambda tx: tx.list_groups())
        return [self._view(self._cache.get(r.group_id) or _Conv.from_row(r)) for r in rows]

    async def conversation(self, conversation_id: str) -> Conversation:
        gid = _group_id(conversation_id)
        await self._load_requests()
        cached = self._cache.get(gid)
        if cached is not None:
            return self._view(cached)
        row = await self._tx(lambda tx: tx.get_group(gid))
        if row is None:
            raise UnknownConversation(f"no conversation {conversation_id}")
        return self._view(_Conv.from_row(row))

    async def start_direct(self, username: str) -> Conversation:
        """The 1:1 conversation with ``username`` (all devices of both), created if needed."""
        (user,) = _users([username])
        if user == self.me.user:
            raise ConfigurationError("a direct conversation is with another user")
        for conv in await self.conversations():
            if (
                conv.kind is ConversationKind.DIRECT
                and conv.status is ConversationStatus.ACTIVE
                and set(conv.members) == {self.me.user, user}
            ):
                return conv
        return await self._create(ConversationInfo(ConversationKind.DIRECT, ""), [user])

    async def create_group(self, name: str, members: Sequence[str] = ()) -> Conversation:
        """A new group conversation with these users (all their devices) and this user."""
        return await self._create(ConversationInfo(ConversationKind.GROUP, name), members)

    async def add_members(self, conversation_id: str, usernames: Sequence[str]) -> Conversation:
        """Add users (every device of theirs that has a KeyPackage) to a group conversation."""
        gid = _group_id(conversation_id)
        users = [u for u in _users(usernames) if u != self.me.user]
        view = await self.conversation(conversation_id)
        if view.kind is ConversationKind.DIRECT:
            raise ConfigurationError("a direct conversation has two users; create a group")
        claimed = await self._claim_users(users)
        async with self._lock:
            conv = await self._commit_locked(gid, self._adds(claimed))
        return self._view(conv)

    async def remove_members(self, conversation_id: str, usernames: Sequence[str]) -> Conversation:
        """Remove users (all their devices) from a group conversation."""
        gid = _group_id(conversation_id)
        users = set(_users(usernames))
        if self.me.user in users:
            raise ConfigurationError("you cannot remove yourself from a conversation")

        async def build(conv: _Conv, excluded: frozenset[str]) -> _Plan | None:
            if conversation_info(conv.mls).kind is ConversationKind.DIRECT:
                raise ConfigurationError("a direct conversation has two users")
            removes = tuple(
                Remove(e.leaf) for ref, e in safe_roster(conv.mls).items() if ref.user in users
            )
            return _Plan(removes) if removes else None

        async with self._lock:
            conv = await self._commit_locked(gid, build)
        return self._view(conv)

    async def rename(self, conversation_id: str, name: str) -> Conversation:
        """Change a group conversation's name (a commit: every member sees it)."""
        gid = _group_id(conversation_id)

        async def build(conv: _Conv, excluded: frozenset[str]) -> _Plan | None:
            info = conversation_info(conv.mls)
            if info.kind is ConversationKind.DIRECT:
                raise ConfigurationError("a direct conversation has no name")
            if info.name == name:
                return None
            new = dataclasses.replace(info, name=name)
            return _Plan((GroupContextExtensions(with_info(conv.mls.extensions, new)),))

        async with self._lock:
            conv = await self._commit_locked(gid, build)
        return self._view(conv)

    # --- messages --------------------------------------------------------------------------

    async def send_text(self, conversation_id: str, text: str) -> MessageInfo:
        """Send a text to every other device of the conversation.

        The returned message is ``sent`` once the server accepted it, or ``pending`` if the
        server could not be reached (it is sent later; `MessageSent` tells when).
        """
        gid = _group_id(conversation_id)
        return await self._send_payload(gid, text_payload(text, self._now_ms()))

    async def send_file(
        self,
        conversation_id: str,
        source: bytes | str | os.PathLike[str],
        *,
        name: str | None = None,
        media_type: str | None = None,
        progress: ProgressCallback | None = None,
    ) -> MessageInfo:
        """Encrypt a file (fresh AES-256-GCM key), upload it, and send its descriptor."""
        gid = _group_id(conversation_id)
        if isinstance(source, bytes):
            data, name = source, name or "file"
        else:
            path = Path(source)
            data = await asyncio.to_thread(path.read_bytes)
            name = name or path.name
        check_file_name(name)
        media_type = media_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
        view = await self.conversation(conversation_id)  # fail before uploading
        if view.status is not ConversationStatus.ACTIVE:
            raise NotAMember("this device is no longer in the conversation")
        descriptor, ciphertext = await asyncio.to_thread(
            seal_attachment,
            data,
            key=os.urandom(32),
            nonce=os.urandom(12),
            media_type=media_type.encode("utf-8"),
        )
        uploaded = await self._transport.upload_attachment(ciphertext, progress=progress)
        descriptor = dataclasses.replace(descriptor, locator=uploaded.attachment_id.encode())
        payload = file_payload(FileBody(name, descriptor), self._now_ms())
        return await self._send_payload(gid, payload)

    async def history(
        self,
        conversation_id: str,
        *,
        limit: int | None = 100,
        before: int | None = None,
        after: int | None = None,
    ) -> list[MessageInfo]:
        """Messages of a conversation, oldest first (``before``/``after``: local ids)."""
        gid = _group_id(conversation_id)
        rows = await self._tx(
            lambda tx: tx.list_messages(gid, after=after, before=before, limit=limit)
        )
        return [_message_info(m) for m in rows]

    async def download(
        self, file: FileInfo | MessageInfo, *, progress: ProgressCallback | None = None
    ) -> bytes:
        """Download and decrypt a file; its size and SHA-256 are checked (FRANK-8)."""
        info = file.file if isinstance(file, MessageInfo) else file
        if info is None:
            raise ConfigurationError("this message has no file")
        ciphertext = await self._transport.download_attachment(
            info.attachment_id, progress=progress
        )
        descriptor: AttachmentDescriptor = info.descriptor
        return await asyncio.to_thread(open_attachment, descriptor, ciphertext)

    async def download_to(
        self,
        file: FileInfo | MessageInfo,
        path: str | os.PathLike[str],
        *,
        progress: ProgressCallback | None = None,
    ) -> Path:
        """`download` into ``path`` (written under a temporary name, then renamed)."""
        data = await self.download(file, progress=progress)
        target = Path(path)
        tmp = target.with_name(target.name + ".part")

        def write() -> None:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, target)

        await asyncio.to_thread(write)
        return target

    # --- devices ---------------------------------------------------------------------------

    async def devices(self) -> list[DeviceInfo]:
        """This account's devices on the server (revoked ones too), approval chain checked."""
        devices = await self._transport.list_devices(self.me.user)
        await self._record_own_devices(devices)
        return devices

    async def get_link(self, code: str) -> PendingLink:
        """The pending request of a new device (show its fingerprint before approving)."""
        return await self._transport.get_link(code)

    async def approve_link(
        self, link: PendingLink, *, key_package_timeout: float = 30.0
    ) -> DeviceRef:
        """Admit a new device to this account and add it to every conversation.

        Waits up to ``key_package_timeout`` seconds for the new device's KeyPackages; if they
        do not come, the device is added later by `sync_devices` (run by `start`).
        """
        info = await self._transport.approve_link(link)
        ref = DeviceRef(self.me.user, info.device_id)
        self._devices.pop(self.me.user, None)
        now = self._now_ms()
        await self._tx(
            lambda tx: tx.put_device(
                OwnDevice(
                    device_id=info.device_id,
                    signature_public_key=info.device_key,
                    name="",
                    status=DeviceStatus.APPROVED,
                    first_seen_at=now,
                )
            )
        )
        self._hub.emit(DeviceChanged(ref, DeviceChange.LINKED, by=self.me))
        await self._add_own_device(info.device_id, wait=key_package_timeout)
        return ref

    async def revoke_device(self, device_id: str) -> None:
        """Revoke another device of this account and remove it from every conversation."""
        if device_id == self.me.device_id:
            raise ConfigurationError("a device cannot revoke itself; use another device")
        await self._transport.revoke_device(device_id)
        self._devices.pop(self.me.user, None)
        await self.devices()
        await self._remove_devices_everywhere({device_id})

    async def sync_devices(self) -> list[DeviceInfo]:
        """Reconcile this account's devices with the conversations: add our devices that are
        missing (if they have KeyPackages), remove revoked ones, and report devices this
        device has not seen before (`DeviceChange.LINKED`: check it was you, I3). Checks the
        account's device list in the transparency log first (`check_transparency`)."""
        await self.check_transparency()
        devices = await self.devices()
        live = {d.device_id for d in devices if d.revoked_at is None}
        revoked = {d.device_id for d in devices if d.revoked_at is not None}
        for device_id in sorted(live - {self.me.device_id}):
            await self._add_own_device(device_id, wait=0.0)
        await self._remove_devices_everywhere(revoked)
        return devices

    # --- key transparency ------------------------------------------------------------------

    async def check_transparency(self) -> list[TransparencyAlarm]:
        """Check this account's own device list in the transparency log against the
        server's directory: every device nobody of this account approved, and a log that
        contradicts itself, is emitted as a `TransparencyAlarm` (and returned)."""
        directory = await self._transport.list_devices(self.me.user, verify=False)
        try:
            alarms = await kt_profile.monitor(self._kt, self.me, directory)
        except (KtViolation, KeyNotInTransparencyLog) as e:
            # No list at all is proven absence in a witnessed log: an account registered
            # without one, whose devices no peer will accept. Loud either way.
            alarms = [kt_profile.violation(str(e))]
        for alarm in alarms:
            log.warning("KEY TRANSPARENCY ALARM: %s", alarm.detail)
            self._hub.emit(alarm)
        return alarms

    async def safety_number(self, username: str) -> kt_profile.Verification:
        """The safety number with ``username`` (from both users' verified device lists) and
        whether it is the one confirmed with `confirm_safety_number`."""
        return await kt_profile.verification(self._store, self._kt, self.me.user, username)

    async def confirm_safety_number(self, username: str) -> kt_profile.Verification:
        """Record that the safety number with ``username`` was compared (in person, or by
        scanning their QR code); a later change raises a `TransparencyAlarm`."""
        self._kt_checked.pop(username, None)
        return await kt_profile.confirm(self._store, self._kt, self.me.user, username)

    async def _check_confirmed(self, username: str) -> None:
        """Once per version of a user's device list: warn if a confirmed safety number
        changed."""
        verified = self._kt.cached(username)
        if username == self.me.user or verified is None:
            return
        if self._kt_checked.get(username) == verified.version:
            return
        self._kt_checked[username] = verified.version
        status = await self.safety_number(username)
        if status.status is kt_profile.SafetyStatus.CHANGED:
            alarm = kt_profile.changed_alarm(status)
            log.warning("KEY TRANSPARENCY ALARM: %s", alarm.detail)
            self._hub.emit(alarm)

    # --- receiving -------------------------------------------------------------------------

    async def sync(self) -> int:
        """Process everything queued on the server for this device and retry pending sends.
        Returns how many queued messages were handled."""
        await self.sync_blocks()
        async with self._lock:
            count = await self._sync_locked()
            await self._flush_locked()
        await self.purge_expired()
        return count

    # --- safety: reports, message requests, blocks, disappearing messages ------------------
    # (doorless.client.safety, docs/franking.md)

    async def report(
        self,
        message_ids: str | Sequence[str],
        reason: str | ReportReason,
        note: str = "",
    ) -> list[ReportReceipt]:
        """Report received messages (by ``message_id``) to the server's moderators.

        Each report holds that one message's franked content and the server's frank, nothing
        else; the server checks it was really sent so. Raises `ConfigurationError` for an id
        that is not a message this device received, and the server's `InvalidRequest` with
        code ``report_expired`` once its franking key is gone (``invalid_report``: forged).
        """
        ids = [message_ids] if isinstance(message_ids, str) else list(message_ids)
        why = report_reason(reason)
        reports: list[tuple[str, bytes]] = []
        for message_id in ids:
            row = await self._tx(functools.partial(_message_by_id, message_id=message_id))
            if row is None or row.franking is None:
                raise ConfigurationError(f"no received message {message_id} to report")
            report = decode(ReceivedFrank, row.franking).report(why, note)
            reports.append((message_id, encode(report)))
        receipts = []
        for message_id, data in reports:
            filed = await self._transport.report(data)
            receipts.append(
                ReportReceipt(message_id, filed.report_id, filed.sender, tuple(filed.attachments))
            )
        return receipts

    async def requests(self) -> list[Conversation]:
        """Message requests: conversations someone not accepted added this user to."""
        return [c for c in await self.conversations() if c.is_request]

    async def accept_request(self, conversation_id: str) -> Conversation:
        """Accept a message request: its inviter becomes an accepted contact. (Sending in
        the conversation accepts it too, on every device of this user.)"""
        gid = _group_id(conversation_id)
        now = self._now_ms()

        def write(tx: Transaction) -> None:
            request = tx.get_request(gid)
            if request is None:
                raise ConfigurationError(f"conversation {conversation_id} is not a request")
            tx.delete_request(gid)
            if request.inviter:
                _set_contact(tx, request.inviter, now, accepted=True, blocked=False)

        await self._tx(write)
        self._forget_request(gid)
        return await self.conversation(conversation_id)

    async def block_request(self, conversation_id: str) -> str:
        """Decline a message request: block its inviter (every device of this user) and
        delete the conversation here. Returns the blocked user."""
        gid = _group_id(conversation_id)
        request = await self._tx(lambda tx: tx.get_request(gid))
        if request is None:
            raise ConfigurationError(f"conversation {conversation_id} is not a request")
        if not request.inviter:  # an invitation whose sender is not in the roster
            async with self._lock:
                self._cache.pop(gid, None)
                await self._tx(lambda tx: tx.delete_group(gid))
                self._forget_request(gid)
            return ""
        await self.block(request.inviter)
        return request.inviter

    async def report_request(
        self, conversation_id: str, reason: str | ReportReason, note: str = ""
    ) -> list[ReportReceipt]:
        """Report the inviter's messages in a message request, then `block_request` it."""
        gid = _group_id(conversation_id)
        request = await self._tx(lambda tx: tx.get_request(gid))
        if request is None:
            raise ConfigurationError(f"conversation {conversation_id} is not a request")
        rows = await self._tx(lambda tx: tx.list_messages(gid))
        ids = [
            m.server_id
            for m in rows
            if m.server_id and m.franking is not None and m.sender_user == request.inviter
        ]
        receipts = await self.report(ids, reason, note) if ids else []
        await self.block_request(conversation_id)
        return receipts

    async def block(self, username: str) -> None:
        """Block a user for every device of this account: the server stops delivering their
        messages and invitations, and this client drops those still on the way. Message
        requests from them are deleted. They are not told."""
        (user,) = _users([username])
        if user == self.me.user:
            raise ConfigurationError("you cannot block yourself")
        await self._transport.block(user)
        await self._apply_blocks({user}, adding=True)

    async def unblock(self, username: str) -> None:
        (user,) = _users([username])
        await self._transport.unblock(user)
        now = self._now_ms()
        await self._tx(lambda tx: _set_contact(tx, user, now, blocked=False))

    async def blocked_users(self) -> list[str]:
        """The users this account blocks, as this device last learnt them."""
        contacts = await self._tx(lambda tx: tx.list_contacts())
        return [c.username for c in contacts if c.blocked]

    async def sync_blocks(self) -> list[str]:
        """Take the account's block list from the server (another device may have changed
        it); returns it."""
        blocked = set(await self._transport.list_blocks())
        await self._apply_blocks(blocked, adding=False)
        return sorted(blocked)

    async def set_disappearing(self, conversation_id: str, seconds: int | None) -> Conversation:
        """Set (or, with None, turn off) the conversation's disappearing-message timer. It is
        agreed group state (a commit): every member's devices apply the same value to the
        messages that follow."""
        gid = _group_id(conversation_id)
        if seconds is not None:
            DisappearingTimer(seconds)  # ConfigurationError if out of range

        async def build(conv: _Conv, excluded: frozenset[str]) -> _Plan | None:
            if disappearing_seconds(conv.mls) == seconds:
                return None
            extensions = with_disappearing(conv.mls.extensions, seconds)
            return _Plan((GroupContextExtensions(extensions),))

        async with self._lock:
            conv = await self._commit_locked(gid, build)
        return self._view(conv)

    async def purge_expired(self, *, vacuum: bool = False) -> int:
        """Delete disappearing messages whose time has come (``secure_delete`` overwrites
        them, a WAL checkpoint drops the old page images; ``vacuum`` also rebuilds the file).
        Runs in the background and on `sync`; returns how many were deleted."""
        deleted = await self._store.run(self._store.delete_expired, self._now_ms())
        if vacuum:
            await self._store.run(self._store.vacuum)
        elif deleted:
            await self._store.run(self._store.checkpoint)
        return deleted

    async def hidden_messages(self) -> dict[str, int]:
        """How many received messages were hidden because a franking check failed, by check
        (``FrankingTagMismatch``, ``InvalidFrankSignature``, ``DecodeError``, ...)."""
        return await self._tx(hidden_counts)

    async def _apply_blocks(self, blocked: set[str], *, adding: bool) -> None:
        """Record ``blocked`` locally (``adding``: these users too; else exactly these) and
        delete the message requests they sent."""
        now = self._now_ms()

        def write(tx: Transaction) -> list[bytes]:
            for known in tx.list_contacts():
                if known.blocked and not adding and known.username not in blocked:
                    _set_contact(tx, known.username, now, blocked=False)
            for user in blocked:
                contact = tx.get_contact(user)
                if contact is None or not contact.blocked:
                    _set_contact(tx, user, now, blocked=True, accepted=False)
            dropped = [r.group_id for r in tx.list_requests() if r.inviter in blocked]
            for gid in dropped:
                tx.delete_group(gid)  # with its messages and the request row
            return dropped

        async with self._lock:
            for gid in await self._tx(write):
                self._cache.pop(gid, None)
                self._forget_request(gid)

    # --- application settings --------------------------------------------------------------
    # Small values a program built on the client keeps in the encrypted profile (the CLI's
    # `doorless receive` cursor). Namespaced, so they never collide with the client's own.

    async def get_app_setting(self, key: str) -> str | None:
        """A value stored with `set_app_setting`, or None."""
        name = _APP_SETTING_PREFIX + key
        return await self._tx(lambda tx: tx.get_setting(name))

    async def set_app_setting(self, key: str, value: str) -> None:
        """Store a small string in the profile (one transaction)."""
        name = _APP_SETTING_PREFIX + key
        await self._tx(lambda tx: tx.set_setting(name, value))

    # ======================================================================================
    # internals
    # ======================================================================================

    def _now_ms(self) -> int:
        return int(self._options.clock() * 1000)

    def _now_s(self) -> int:
        return int(self._options.clock())

    async def _tx(self, fn: Callable[[Transaction], T]) -> T:
        return await self._store.run_transaction(fn)

    async def _save(self, new: _Conv, fn: Callable[[Transaction], T]) -> T:
        """Run ``fn`` (which writes ``new``) in one transaction and then cache ``new``.

        The cached state is dropped first: if this task is cancelled while the transaction
        runs, the next use reloads from the store, which then has exactly one of the two
        states (the store queue is FIFO), never a state whose keys were already used.
        """
        self._cache.pop(new.group_id, None)
        result = await self._tx(fn)
        self._cache[new.group_id] = new
        return result

    async def _load(self, gid: bytes) -> _Conv | None:
        conv = self._cache.get(gid)
        if conv is None:
            row = await self._tx(lambda tx: tx.get_group(gid))
            if row is None:
                return None
            conv = _Conv.from_row(row)
            self._cache[gid] = conv
        return conv

    async def _require_active(self, gid: bytes) -> _Conv:
        conv = await self._load(gid)
        if conv is None:
            raise UnknownConversation(f"no conversation {gid.hex()}")
        if conv.status is not GroupStatus.ACTIVE:
            raise NotAMember("this device is no longer in the conversation")
        return conv

    def _view(self, conv: _Conv) -> Conversation:
        info = conversation_info(conv.mls)
        devices = tuple(sorted(safe_roster(conv.mls)))
        active = conv.status is GroupStatus.ACTIVE
        return Conversation(
            id=conv.group_id.hex(),
            kind=info.kind,
            name=info.name,
            members=tuple(sorted({d.user for d in devices})),
            devices=devices,
            epoch=conv.mls.epoch,
            status=ConversationStatus.ACTIVE if active else ConversationStatus.REMOVED,
            created_at=conv.created_at,
            updated_at=conv.updated_at,
            request_from=(self._requests or {}).get(conv.group_id),
            disappearing_seconds=disappearing_seconds(conv.mls),
        )

    async def _load_requests(self) -> dict[bytes, str]:
        if self._requests is None:
            rows = await self._tx(lambda tx: tx.list_requests())
            self._requests = {r.group_id: r.inviter for r in rows}
        return self._requests

    def _forget_request(self, gid: bytes) -> None:
        if self._requests is not None:
            self._requests.pop(gid, None)

    async def _is_blocked(self, ref: DeviceRef | None) -> bool:
        if ref is None or ref.user == self.me.user:
            return False
        contact = await self._tx(lambda tx: tx.get_contact(ref.user))
        return contact is not None and contact.blocked

    async def _request_of(
        self, gid: bytes, by: DeviceRef | None, now: int
    ) -> MessageRequest | None:
        """The message request a Welcome from ``by`` makes, if ``by`` is not accepted: this
        user, a contact accepted explicitly, or a member of a conversation that is not a
        request."""
        if by is not None and by.user == self.me.user:
            return None
        if by is not None:
            contact = await self._tx(lambda tx: tx.get_contact(by.user))
            if contact is not None and contact.accepted:
                return None
            for conv in await self.conversations():
                if not conv.is_request and by.user in conv.members and conv.id != gid.hex():
                    return None
        return MessageRequest(group_id=gid, inviter=by.user if by else "", created_at=now)

    async def _franking_key(self) -> bytes:
        """The server's franking signature key, pinned in the profile on first use."""
        if self._franking_public_key is None:
            stored = await self._tx(lambda tx: tx.get_setting(_SETTING_FRANKING_KEY))
            if stored is None:
                info = await self._transport.server_info()
                if info.franking_public_key is None:
                    raise BadResponse("the server publishes no franking key")
                pinned = info.franking_public_key.hex()
                await self._tx(lambda tx: tx.set_setting(_SETTING_FRANKING_KEY, pinned))
                stored = pinned
            self._franking_public_key = bytes.fromhex(stored)
        return self._franking_public_key

    def _encrypt_payload(self, conv: _Conv, payload: Payload) -> tuple[Group, bytes]:
        """Frank ``payload`` (docs/franking.md) and encrypt it as an application message."""
        franked = frank_payload(
            payload,
            sender=_sender_identity(self.me),
            group_id=conv.group_id,
            salt=os.urandom(SALT_LENGTH),
        )
        return conv.mls.encrypt(
            franked.application_data, authenticated_data=franked.authenticated_data
        )

    def _recipients(self, conv: _Conv) -> tuple[str, ...]:
        return tuple(r.device_id for r in sorted(safe_roster(conv.mls)) if r != self.me)

    def _fail(
        self,
        reason: FailureReason,
        detail: str,
        *,
        conversation: bytes | None = None,
        message_id: str | None = None,
        sender: DeviceRef | None = None,
        outgoing: bool = False,
    ) -> None:
        log.info("delivery failed: %s (%s)", reason.value, detail)
        self._hub.emit(
            DeliveryFailed(
                reason,
                detail,
                conversation.hex() if conversation is not None else None,
                message_id,
                sender,
                outgoing,
            )
        )

    # --- key packages and devices ----------------------------------------------------------

    def _new_key_package(self) -> KeyPackageBundle:
        return generate_key_package(
            self._suite,
            self._credential,
            self._signature_key,
            now=self._now_s(),
            capabilities=self._capabilities,
        )

    async def _top_up_key_packages(self) -> None:
        """Keep ``key_package_target`` one-time KeyPackages and a last-resort one uploaded.

        The private keys are stored before the upload, so a crash can only leave keys that
        were never published (harmless), never a published package we cannot open.
        """
        status = await self._transport.key_package_status()
        now = self._now_ms()
        local = await self._tx(lambda tx: tx.list_key_packages())
        if status.count and any(
            not k.last_resort and now - k.created_at > _KEY_PACKAGE_LIFETIME_MS // 2 for k in local
        ):
            await self._drain_stale_key_packages(status.count)
            status = await self._transport.key_package_status()
            local = await self._tx(lambda tx: tx.list_key_packages())
        newest_last = max((k.created_at for k in local if k.last_resort), default=None)
        # The last-resort package is replaced long before it expires (it is never consumed).
        rotate = (
            not status.last_resort
            or newest_last is None
            or now - newest_last > _KEY_PACKAGE_LIFETIME_MS // 2
        )
        target = max(self._options.key_package_target, status.low_watermark)
        count = target - status.count if status.count < status.low_watermark else 0
        if count <= 0 and not rotate:
            return
        bundles = await asyncio.to_thread(lambda: [self._new_key_package() for _ in range(count)])
        last = await asyncio.to_thread(self._new_key_package) if rotate else None

        def stored(bundle: KeyPackageBundle, last_resort: bool) -> StoredKeyPackage:
            return StoredKeyPackage(
                ref=bundle.ref,
                key_package=encode(bundle.key_package),
                init_private_key=bundle.init_private_key,
                encryption_private_key=bundle.encryption_private_key,
                created_at=now,
                last_resort=last_resort,
            )

        def write(tx: Transaction) -> None:
            for bundle in bundles:
                tx.insert_key_package(stored(bundle, False))
            if last is not None:
                tx.insert_key_package(stored(last, True))

        await self._tx(write)
        await self._transport.upload_key_packages(
            [encode(MLSMessage(b.key_package)) for b in bundles],
            last_resort=encode(MLSMessage(last.key_package)) if last is not None else None,
        )

    async def _drain_stale_key_packages(self, limit: int) -> None:
        """Take our own old one-time KeyPackages back from the directory (it hands out the
        oldest first and cannot tell that they will expire), so that peers get fresh ones."""
        half = _KEY_PACKAGE_LIFETIME_MS // 2000
        for _ in range(limit):
            try:
                claimed = await self._transport.claim_key_package(self.me.device_id)
            except NotFound:
                return
            if claimed.last_resort:
                return
            body = decode(MLSMessage, claimed.key_package).body
            if not isinstance(body, KeyPackage):
                raise BadResponse("the directory returned something else than a KeyPackage")
            ref = make_key_package_ref(self._suite, body)
            await self._tx(functools.partial(_forget_key_package, ref=ref))
            lifetime = body.leaf_node.lifetime
            if lifetime is None or lifetime.not_after - self._now_s() > half:
                return  # a fresh one (now used up too): the stale ones are gone

    async def _prune(self) -> None:
        """Forget what can no longer be needed: KeyPackages past their lifetime (claimed
        packages whose Welcome never came, replaced last-resort packages) and dedupe marks of
        queue entries acknowledged long ago (the server deleted them on the ack)."""
        now = self._now_ms()

        def write(tx: Transaction) -> None:
            tx.prune_processed(now - _PROCESSED_RETENTION_MS)
            packages = tx.list_key_packages()
            newest_last = max((k.created_at for k in packages if k.last_resort), default=None)
            for k in packages:
                if k.created_at < now - _KEY_PACKAGE_LIFETIME_MS and k.created_at != newest_last:
                    tx.delete_key_package(k.ref)

        await self._tx(write)

    async def _record_own_devices(
        self, devices: Sequence[DeviceInfo], names: dict[str, str] | None = None
    ) -> None:
        """Store the account's device list; report devices not seen before (I3)."""
        self._devices[self.me.user] = {d.device_id: d for d in devices}
        now = self._now_ms()
        names = names or {}

        def write(tx: Transaction) -> list[DeviceChanged]:
            events: list[DeviceChanged] = []
            first = not tx.list_devices()
            for d in devices:
                known = tx.get_device(d.device_id)
                status = DeviceStatus.REVOKED if d.revoked_at is not None else DeviceStatus.APPROVED
                if known is not None and known.status is status:
                    continue
                tx.put_device(
                    OwnDevice(
                        device_id=d.device_id,
                        signature_public_key=d.device_key,
                        name=names.get(d.device_id, known.name if known else ""),
                        status=status,
                        first_seen_at=known.first_seen_at if known else now,
                    )
                )
                if first or d.device_id == self.me.device_id:
                    continue
                ref = DeviceRef(self.me.user, d.device_id)
                if d.revoked_at is not None:
                    events.append(DeviceChanged(ref, DeviceChange.REVOKED))
                else:
                    by = DeviceRef(self.me.user, d.approved_by) if d.approved_by else None
                    events.append(DeviceChanged(ref, DeviceChange.LINKED, by=by))
            return events

        for event in await self._tx(write):
            self._hub.emit(event)

    async def _device_info(self, ref: DeviceRef) -> DeviceInfo | None:
        """The server's record of a device (None if the user has no such device). The key
        itself is vouched for by the transparency log (`_check_devices` asks it first), so
        the directory's approval chain is not required here: a server that slipped in one
        bad entry must not make all of a user's genuine devices unusable."""
        known = self._devices.get(ref.user)
        if known is None or ref.device_id not in known:
            try:
                devices = await self._transport.list_devices(ref.user, verify=False)
            except NotFound:
                return None
            known = {d.device_id: d for d in devices}
            self._devices[ref.user] = known
        return known.get(ref.device_id)

    async def _check_devices(self, entries: Iterable[RosterEntry]) -> None:
        """Every device must be in its user's device list in the key-transparency log with
        exactly this key (`KeyNotInTransparencyLog`), and registered for its user on the
        server, admitted by the approval chain (I3, `ValidationError`). Network errors (and
        a log head not witnessed yet) propagate."""
        for entry in entries:
            try:
                await self._kt.check_device(
                    entry.device.user, entry.device.device_id, entry.signature_key
                )
            except KtViolation as e:
                self._hub.emit(kt_profile.violation(str(e)))
                raise
            await self._check_confirmed(entry.device.user)
            info = await self._device_info(entry.device)
            if info is None or info.device_key != entry.signature_key:
                raise ValidationError(
                    f"device {entry.device} is not a registered, approved device of "
                    f"{entry.device.user}"
                )

    async def _check_claimed(self, user: str, claimed: ClaimedKeyPackage) -> KeyPackage | None:
        """A claimed KeyPackage usable for ``user``'s device, or None (logged) if it is not."""
        try:
            body = decode(MLSMessage, claimed.key_package).body
            if not isinstance(body, KeyPackage):
                raise ValidationError("not a KeyPackage")
            ref = check_binding(body.leaf_node)
            if ref != DeviceRef(user, claimed.device_id):
                raise ValidationError("KeyPackage names another device")
            if body.cipher_suite != self._suite.id:
                raise ValidationError("KeyPackage of another cipher suite")
            if CONVERSATION_INFO_EXTENSION not in body.leaf_node.capabilities.extensions:
                raise ValidationError("KeyPackage lacks the conversation info capability")
            lifetime = body.leaf_node.lifetime
            if lifetime is None or not lifetime.contains(self._now_s()):
                raise ValidationError("KeyPackage is outside its lifetime")
            await self._check_devices(
                [RosterEntry(LeafIndex(0), ref, body.leaf_node.signature_key)]
            )
        except _NETWORK:
            raise
        except DoorlessError as e:
            log.warning("skipping a KeyPackage of %s: %s", user, e)
            return None
        return body

    async def _claim_users(self, users: Sequence[str]) -> _Claimed:
        """One KeyPackage for every device of each user (this device excepted)."""
        claimed: _Claimed = {}
        for user in users:
            result = await self._transport.claim_key_packages(user)
            usable = 0
            for c in result.key_packages:
                kp = await self._check_claimed(user, c)
                # An unusable one-time package (e.g. expired on an idle device): claim again,
                # which also drains it from the directory.
                for _ in range(_RECLAIMS):
                    if kp is not None or c.last_resort:
                        break
                    try:
                        c = await self._transport.claim_key_package(c.device_id)
                    except NotFound:
                        break
                    kp = await self._check_claimed(user, c)
                if kp is not None:
                    claimed[c.device_id] = (DeviceRef(user, c.device_id), kp)
                    usable += 1
            if usable == 0 and user != self.me.user:
                raise UserUnavailable(f"{user} has no device that can be added now")
        return claimed

    async def _claim_device(self, ref: DeviceRef, wait: float) -> KeyPackage | None:
        """Claim one KeyPackage of one device, waiting up to ``wait`` seconds for one."""
        deadline = asyncio.get_running_loop().time() + wait
        delay = 0.1
        while True:
            try:
                claimed = await self._transport.claim_key_package(ref.device_id)
            except NotFound:
                if asyncio.get_running_loop().time() >= deadline:
                    return None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            return await self._check_claimed(ref.user, claimed)

    def _adds(self, claimed: _Claimed) -> _Builder:
        """A plan adding the claimed devices that are not members yet."""

        async def build(conv: _Conv, excluded: frozenset[str]) -> _Plan | None:
            present = {r.device_id for r in safe_roster(conv.mls)}
            adds = tuple(
                Add(kp)
                for device_id, (_, kp) in sorted(claimed.items())
                if device_id not in present and device_id not in excluded
            )
            return _Plan(adds) if adds else None

        return build

    async def _active_groups(self) -> list[_Conv]:
        rows = await self._tx(lambda tx: tx.list_groups())
        return [
            self._cache.get(r.group_id) or _Conv.from_row(r)
            for r in rows
            if r.status is GroupStatus.ACTIVE
        ]

    async def _add_own_device(self, device_id: str, *, wait: float) -> None:
        """Add one of this account's devices to every active conversation that lacks it."""
        ref = DeviceRef(self.me.user, device_id)
        for conv in await self._active_groups():
            if ref in safe_roster(conv.mls):
                continue
            kp = await self._claim_device(ref, wait)
            if kp is None:
                log.info("device %s has no KeyPackage yet; it will be added later", ref)
                return
            async with self._lock:
                await self._commit_locked(conv.group_id, self._adds({device_id: (ref, kp)}))

    async def _remove_devices_everywhere(self, device_ids: set[str]) -> None:
        if not device_ids:
            return

        async def build(conv: _Conv, excluded: frozenset[str]) -> _Plan | None:
            removes = tuple(
                Remove(e.leaf)
                for ref, e in safe_roster(conv.mls).items()
                if ref.user == self.me.user and ref.device_id in device_ids
            )
            return _Plan(removes) if removes else None

        for conv in await self._active_groups():
            if any(
                r.device_id in device_ids for r in safe_roster(conv.mls) if r.user == self.me.user
            ):
                async with self._lock:
                    await self._commit_locked(conv.group_id, build)

    # --- creating conversations ------------------------------------------------------------

    async def _create(self, info: ConversationInfo, members: Sequence[str]) -> Conversation:
        users = [u for u in _users(members) if u != self.me.user]
        claimed = await self._claim_users(users)
        claimed.update(await self._claim_users([self.me.user]))  # our other devices
        bundle = await asyncio.to_thread(self._new_key_package)
        gid = os.urandom(32)
        group = Group.create(
            self._suite,
            gid,
            bundle.key_package.leaf_node,
            bundle.encryption_private_key,
            self._signature_key,
            extensions=[info.extension()],
        )
        now = self._now_ms()
        conv = _Conv(gid, group, GroupStatus.ACTIVE, now, now)
        async with self._lock:
            await self._save(conv, lambda tx: tx.insert_group(conv.stored()))
            try:
                conv = await self._commit_locked(gid, self._adds(claimed))
            except _TRANSIENT:
                raise  # the commit's fate is unknown: keep the group, the outbox settles it
            except BaseException:
                self._cache.pop(gid, None)
                await self._tx(lambda tx: tx.delete_group(gid))
                raise
        return self._view(conv)

    # --- commits ---------------------------------------------------------------------------

    async def _pending_commit_groups(self) -> set[bytes]:
        if self._pending_commits is None:
            items = await self._tx(lambda tx: tx.list_outbox())
            self._pending_commits = {
                i.group_id for i in items if i.kind == KIND_COMMIT and i.group_id is not None
            }
        return self._pending_commits

    async def _commit_locked(self, gid: bytes, build: _Builder, *, force: bool = False) -> _Conv:
        """Plan, commit and send until the server accepts (or there is nothing to do)."""
        excluded: set[str] = set()
        for _ in range(COMMIT_ATTEMPTS):
            await self._resolve_commits_locked(gid)
            conv = await self._require_active(gid)
            plan = await build(conv, frozenset(excluded))
            if plan is None and not force and not conv.mls.proposals:
                return conv
            proposals = plan.proposals if plan is not None else ()
            out = conv.mls.commit(proposals, now=self._now_s())
            record = OutgoingCommit(
                message_id=_new_send_id(),
                commit=out.commit,
                welcome=out.welcome,
                recipients=tuple(d for d in self._recipients(conv) if d not in excluded),
                welcome_recipients=tuple(
                    device_ref_of(p.key_package.leaf_node.credential).device_id
                    for p in proposals
                    if isinstance(p, Add)
                ),
                pending_state=out.pending.group.to_bytes(),
            )
            now = self._now_ms()
            item = await self._tx(
                functools.partial(
                    Transaction.enqueue,
                    item=OutboxItem(
                        group_id=gid,
                        kind=KIND_COMMIT,
                        payload=encode(record),
                        created_at=now,
                        next_attempt_at=now,
                    ),
                )
            )
            (await self._pending_commit_groups()).add(gid)
            verdict = await self._deliver_commit_locked(conv, item, record, out.pending.group)
            if isinstance(verdict, _Conv):
                return verdict
            if isinstance(verdict, _Conflict):
                await self._sync_locked()
            else:
                excluded |= verdict
        raise CommitFailed(f"the change could not be committed in {COMMIT_ATTEMPTS} attempts")

    async def _deliver_commit_locked(
        self, conv: _Conv, item: OutboxItem, record: OutgoingCommit, pending: Group | None
    ) -> _Conv | _Conflict | frozenset[str]:
        """Send a commit; adopt its epoch only if the server accepted it."""
        assert item.outbox_id is not None
        outbox_id = item.outbox_id

        async def drop() -> None:
            await self._tx(lambda tx: tx.dequeue(outbox_id))
            (await self._pending_commit_groups()).discard(conv.group_id)

        try:
            await self._transport.send(
                record.commit,
                record.recipients,
                message_id=record.message_id,
                welcome=record.welcome,
                welcome_recipients=record.welcome_recipients,
            )
        except EpochConflict:
            await drop()
            return _CONFLICT
        except _TRANSIENT:
            raise  # no verdict: the commit stays in the outbox and is sent again
        except InvalidRequest as e:
            await drop()
            if e.unknown_devices:  # revoked meanwhile: plan again without them
                return frozenset(e.unknown_devices)
            raise
        except ServerError:
            await drop()
            raise
        new_group = pending if pending is not None else Group.from_bytes(record.pending_state)
        if new_group.group_id != conv.group_id or new_group.epoch != conv.mls.epoch + 1:
            raise StateError("the pending commit does not follow the stored group state")
        new = conv.evolve(mls=new_group, updated_at=self._now_ms())

        def write(tx: Transaction) -> None:
            tx.dequeue(outbox_id)
            tx.update_group(new.stored())

        await self._save(new, write)
        (await self._pending_commit_groups()).discard(conv.group_id)
        self._membership_events(conv, new, self.me)
        return new

    async def _resolve_commits_locked(self, gid: bytes | None = None) -> None:
        """Settle commits left in the outbox (by a crash or a lost answer) before the group
        is used: the same commit is sent again; accepted -> merged, conflict -> dropped."""
        pending = await self._pending_commit_groups()
        if not pending or (gid is not None and gid not in pending):
            return
        items = await self._tx(lambda tx: tx.list_outbox())
        for item in items:
            if item.kind != KIND_COMMIT or item.group_id is None:
                continue
            if gid is not None and item.group_id != gid:
                continue
            conv = await self._load(item.group_id)
            assert item.outbox_id is not None
            outbox_id = item.outbox_id
            if conv is None:
                await self._tx(functools.partial(Transaction.dequeue, outbox_id=outbox_id))
                pending.discard(item.group_id)
                continue
            await self._deliver_commit_locked(
                conv, item, decode(OutgoingCommit, item.payload), None
            )

    def _membership_events(
        self,
        old: _Conv,
        new: _Conv,
        by: DeviceRef | None,
        after: set[DeviceRef] | None = None,
    ) -> None:
        """Report the roster change from ``old`` to ``new`` (``after``: the new roster, when
        ``new`` cannot tell it, i.e. after our own removal)."""
        old_roster = set(safe_roster(old.mls))
        new_roster = set(safe_roster(new.mls)) if after is None else after
        added = tuple(sorted(r for r in new_roster if r not in old_roster))
        removed = tuple(sorted(r for r in old_roster if r not in new_roster))
        view = self._view(new)
        if added or removed:
            old_users = {r.user for r in old_roster}
            new_users = {r.user for r in new_roster}
            self._hub.emit(
                MembershipChanged(
                    view,
                    added,
                    removed,
                    by,
                    tuple(sorted(new_users - old_users)),
                    tuple(sorted(old_users - new_users)),
                )
            )
            for ref in added:
                if ref.user in old_users:
                    self._hub.emit(DeviceChanged(ref, DeviceChange.ADDED, view.id, by))
            for ref in removed:
                if ref.user in new_users:
                    self._hub.emit(DeviceChanged(ref, DeviceChange.REMOVED, view.id, by))
        if conversation_info(old.mls) != conversation_info(new.mls) or disappearing_seconds(
            old.mls
        ) != disappearing_seconds(new.mls):
            self._hub.emit(ConversationUpdated(view, by))

    # --- sending application messages ------------------------------------------------------

    async def _send_payload(self, gid: bytes, payload: Payload) -> MessageInfo:
        async with self._lock:
            # Older messages still in the outbox go first, so that receivers see this
            # device's messages in the order they were written.
            try:
                await self._flush_locked()
                offline = False
            except _QUEUE_BEHIND:
                offline = True
            conv = await self._require_active(gid)
            if conv.mls.proposals:  # §12.4: proposals must be committed before sending data
                conv = await self._commit_locked(gid, self._no_plan, force=True)
            kind = _MESSAGE_KIND[int(payload.kind)]
            now = self._now_ms()
            message = Message(
                group_id=gid,
                sender_user=self.me.user,
                sender_device=self.me.device_id,
                outgoing=True,
                content_type=kind.value,
                body=payload.body,
                sent_at=payload.sent_at_ms,
                expires_at=expires_at(conv.mls, now),
                state=MessageState.PENDING,
                server_id=payload.message_id.hex(),
            )
            new_group, data = self._encrypt_payload(conv, payload)
            record = OutgoingMessage(payload.message_id.hex(), data, self._recipients(conv))
            new = conv.evolve(mls=new_group, updated_at=now)

            def write(tx: Transaction) -> tuple[Message, OutboxItem]:
                tx.update_group(new.stored())
                tx.delete_request(gid)  # writing in a message request accepts it
                stored = tx.insert_message(message)
                item = tx.enqueue(
                    OutboxItem(
                        group_id=gid,
                        kind=KIND_APPLICATION,
                        payload=encode(record),
                        message_local_id=stored.local_id,
                        created_at=now,
                        next_attempt_at=now,
                    )
                )
                return stored, item

            stored, item = await self._save(new, write)
            self._forget_request(gid)
            if offline:
                return _message_info(stored)  # queued behind the older ones
            try:
                return await self._deliver_application_locked(item)
            except _TRANSIENT as e:
                log.info("message queued, the server is not reachable: %s", type(e).__name__)
                return _message_info(stored)

    @staticmethod
    async def _no_plan(conv: _Conv, excluded: frozenset[str]) -> _Plan | None:
        return None

    async def _deliver_application_locked(self, item: OutboxItem) -> MessageInfo:
        """Send an outbox message until the server accepts it or refuses it for good."""
        assert item.outbox_id is not None and item.group_id is not None
        record = decode(OutgoingMessage, item.payload)
        for _ in range(SEND_ATTEMPTS):
            try:
                await self._transport.send(
                    record.data, record.recipients, message_id=record.message_id
                )
            except EpochConflict:
                # The group moved to a new epoch we have not processed: catch up, encrypt again.
                await self._sync_locked()
                replaced = await self._reencrypt_locked(item)
                if isinstance(replaced, MessageInfo):
                    return replaced
                item, record = replaced
                continue
            except _TRANSIENT as e:
                delay = min(_MAX_BACKOFF, 2.0 ** min(item.attempts, 6))
                await self._tx(
                    functools.partial(
                        Transaction.record_attempt,
                        outbox_id=item.outbox_id or 0,
                        next_attempt_at=self._now_ms() + int(1000 * delay),
                        error=type(e).__name__,
                    )
                )
                raise
            except InvalidRequest as e:
                if not e.unknown_devices:
                    return await self._fail_outgoing(item, FailureReason.REJECTED, str(e))
                gone = set(e.unknown_devices)  # revoked devices: send to the others
                record = dataclasses.replace(
                    record, recipients=tuple(r for r in record.recipients if r not in gone)
                )
                item = await self._replace_outbox(item, record)
                continue
            except ServerError as e:
                return await self._fail_outgoing(item, FailureReason.REJECTED, str(e))
            return await self._sent(item)
        raise SendFailed(f"the message could not be sent in {SEND_ATTEMPTS} attempts")

    async def _sent(self, item: OutboxItem) -> MessageInfo:
        outbox_id, local_id = item.outbox_id, item.message_local_id
        assert outbox_id is not None

        def write(tx: Transaction) -> Message | None:
            tx.dequeue(outbox_id)
            if local_id is None:
                return None
            tx.update_message_state(local_id, MessageState.SENT)
            return tx.get_message(local_id)

        message = await self._tx(write)
        if message is None:
            raise StateError("the sent message is no longer in the store")
        info = _message_info(message)
        self._hub.emit(MessageSent(info))
        return info

    async def _fail_outgoing(
        self, item: OutboxItem, reason: FailureReason, detail: str
    ) -> MessageInfo:
        outbox_id, local_id = item.outbox_id, item.message_local_id
        assert outbox_id is not None

        def write(tx: Transaction) -> Message | None:
            tx.dequeue(outbox_id)
            if local_id is None:
                return None
            tx.update_message_state(local_id, MessageState.FAILED)
            return tx.get_message(local_id)

        message = await self._tx(write)
        if message is None:
            raise StateError("the failed message is no longer in the store")
        info = _message_info(message)
        self._fail(
            reason,
            detail,
            conversation=item.group_id,
            message_id=info.message_id,
            sender=self.me,
            outgoing=True,
        )
        return info

    async def _replace_outbox(self, item: OutboxItem, record: OutgoingMessage) -> OutboxItem:
        old_id = item.outbox_id
        assert old_id is not None
        new_item = dataclasses.replace(item, payload=encode(record), outbox_id=None)

        def write(tx: Transaction) -> OutboxItem:
            tx.dequeue(old_id)
            return tx.enqueue(new_item)

        return await self._tx(write)

    async def _reencrypt_locked(
        self, item: OutboxItem
    ) -> tuple[OutboxItem, OutgoingMessage] | MessageInfo:
        """Encrypt an outbox message again in the group's current epoch (same message id)."""
        assert item.group_id is not None
        gid, local_id = item.group_id, item.message_local_id
        message = (
            await self._tx(lambda tx: tx.get_message(local_id)) if local_id is not None else None
        )
        if message is None or message.server_id is None:
            raise StateError("an outbox message without its stored message")
        conv = await self._load(gid)
        if conv is None or conv.status is not GroupStatus.ACTIVE:
            return await self._fail_outgoing(
                item, FailureReason.NOT_A_MEMBER, "no longer a member of the conversation"
            )
        if conv.mls.proposals:
            conv = await self._commit_locked(gid, self._no_plan, force=True)
        payload = Payload(
            bytes.fromhex(message.server_id),
            message.sent_at,
            _PAYLOAD_KIND[MessageKind(message.content_type)],
            message.body,
        )
        new_group, data = self._encrypt_payload(conv, payload)
        record = OutgoingMessage(message.server_id, data, self._recipients(conv))
        new = conv.evolve(mls=new_group, updated_at=self._now_ms())
        old_id = item.outbox_id
        assert old_id is not None
        new_item = dataclasses.replace(item, payload=encode(record), outbox_id=None)

        def write(tx: Transaction) -> OutboxItem:
            tx.update_group(new.stored())
            tx.dequeue(old_id)
            return tx.enqueue(new_item)

        return await self._save(new, write), record

    async def _flush_locked(self, *, due_only: bool = False) -> None:
        """Send what the outbox holds: commits first, then messages in creation order."""
        await self._resolve_commits_locked()
        now = self._now_ms()
        items = await self._tx(lambda tx: tx.list_outbox(due_at=now if due_only else None))
        messages = sorted(
            (i for i in items if i.kind == KIND_APPLICATION),
            key=lambda i: (i.message_local_id or 0, i.outbox_id or 0),
        )
        for item in messages:
            await self._deliver_application_locked(item)

    # --- receiving -------------------------------------------------------------------------

    async def _sync_locked(self) -> int:
        await self._resolve_commits_locked()
        count, after = 0, 0
        while True:
            page = await self._transport.fetch(after=after, limit=_FETCH_PAGE)
            done: list[int] = []
            for message in page.messages:
                await self._handle_inbound_locked(message)
                done.append(message.seq)
                after = message.seq
            count += len(done)
            await self._transport.ack(done)
            if not page.more:
                return count

    async def _handle_inbound_locked(self, inbound: QueuedMessage) -> None:
        """Process one queued message; afterwards it may be acknowledged (I5)."""
        key = str(inbound.seq)
        if await self._tx(lambda tx: tx.is_processed(key)):
            return  # a repeat delivery (e.g. the ack was lost)
        try:
            message = decode(MLSMessage, inbound.data)
        except DecodeError as e:
            await self._mark(key)
            self._fail(FailureReason.MALFORMED, str(e))
            return
        body = message.body
        if isinstance(body, Welcome):
            await self._on_welcome(key, message, body)
        elif isinstance(body, PrivateMessage | PublicMessage):
            await self._on_group_message(key, message, body, inbound.frank)
        else:
            await self._mark(key)
            self._fail(FailureReason.MALFORMED, f"a {message.wire_format.name} is not for devices")

    async def _mark(self, key: str) -> None:
        now = self._now_ms()
        await self._tx(lambda tx: tx.mark_processed(key, now))

    async def _on_group_message(
        self,
        key: str,
        message: MLSMessage,
        body: PrivateMessage | PublicMessage,
        frank: bytes | None = None,
    ) -> None:
        gid, epoch = _group_of(body)
        await self._resolve_commits_locked(gid)
        conv = await self._load(gid)
        if conv is None:
            await self._mark(key)
            self._fail(
                FailureReason.UNKNOWN_CONVERSATION,
                "a message for a conversation this device is not in",
                conversation=gid,
            )
            return
        if conv.status is not GroupStatus.ACTIVE:
            await self._mark(key)  # sent before our removal reached its senders
            return
        try:
            result = conv.mls.process(message, now=self._now_s())
        except DoorlessError as e:
            await self._mark(key)
            reason = (
                FailureReason.MISSED_COMMITS
                if epoch > conv.mls.epoch
                else FailureReason.UNDECRYPTABLE
            )
            self._fail(reason, str(e), conversation=gid)
            return
        if isinstance(result, ApplicationMessage):
            await self._on_application(key, conv, result, frank)
        elif isinstance(result, StagedCommit):
            await self._on_commit(key, conv, result)
        else:
            await self._on_proposal(key, conv, result)

    async def _on_application(
        self, key: str, conv: _Conv, result: ApplicationMessage, frank: bytes | None
    ) -> None:
        now = self._now_ms()
        gid = conv.group_id
        new = conv.evolve(mls=result.group, updated_at=now)
        sender: DeviceRef | None = None
        failure: tuple[FailureReason, str] | None = None
        message: Message | None = None
        payload: Payload | None = None
        hidden: str | None = None  # the franking check that failed (counted)
        server_key = await self._franking_key()
        try:
            sender = device_ref_of(result.credential)
            opened = open_franked(
                result.data,
                result.authenticated_data,
                frank,
                server_public_key=server_key,
                sender=_sender_identity(sender),
                group_id=gid,
            )
            payload = opened.payload
            kind = _content_kind(payload)
            message = Message(
                group_id=gid,
                sender_user=sender.user,
                sender_device=sender.device_id,
                outgoing=False,
                content_type=kind.value,
                body=payload.body,
                sent_at=payload.sent_at_ms,
                received_at=now,
                expires_at=expires_at(result.group, now),
                state=MessageState.RECEIVED,
                server_id=payload.message_id.hex(),
                franking=opened.franking,
            )
        except FrankRejected as e:
            # Not shown, counted (I7: no message is displayed that could not be reported).
            hidden = type(e.error).__name__
            failure = (FailureReason.INVALID_FRANK, str(e))
        except _Unsupported as e:
            failure = (FailureReason.UNSUPPORTED, str(e))
        except (DecodeError, ValidationError) as e:
            failure = (FailureReason.INVALID_PAYLOAD, str(e))
        me = self.me.user

        def write(tx: Transaction) -> Message | None:
            if not tx.mark_processed(key, now):
                raise StateError("a queued message was processed twice")
            tx.update_group(new.stored())  # the ratchet moved on, whatever the payload
            if sender is not None and sender.user != me:
                contact = tx.get_contact(sender.user)
                if contact is not None and contact.blocked:
                    return None  # blocked: dropped, whatever it is
            if hidden is not None:
                count_hidden(tx, hidden)
            if message is None or tx.get_message_by_server_id(message.server_id or "") is not None:
                return None  # unusable, or a duplicate of a message already shown
            if message.sender_user == me:
                tx.delete_request(gid)  # we wrote in it (another device): accepted
            return tx.insert_message(message)

        stored = await self._save(new, write)
        if stored is not None and stored.sender_user == self.me.user:
            self._forget_request(gid)
        if stored is not None:
            self._hub.emit(MessageReceived(_message_info(stored)))
        elif failure is not None and not await self._is_blocked(sender):
            self._fail(
                failure[0],
                failure[1],
                conversation=gid,
                message_id=payload.message_id.hex() if payload is not None else None,
                sender=sender,
            )

    async def _on_proposal(self, key: str, conv: _Conv, result: ProposalMessage) -> None:
        # Cached in the new state; the next commit (anyone's) applies it.
        now = self._now_ms()
        new = conv.evolve(mls=result.group, updated_at=now)

        def write(tx: Transaction) -> None:
            tx.mark_processed(key, now)
            tx.update_group(new.stored())

        await self._save(new, write)

    async def _on_commit(self, key: str, conv: _Conv, staged: StagedCommit) -> None:
        gid = conv.group_id
        by: DeviceRef | None = None
        after: set[DeviceRef] | None = None
        try:
            by = device_ref_of(staged.credential)
            if staged.self_removed:
                # We cannot follow the group further (RFC 9420 §12.4.2): keep the last state
                # for the history and record the removal.
                new_group = conv.mls
                after = set(safe_roster(conv.mls))
                after -= {device_ref_of(m.credential) for m in staged.removed}
                after |= {device_ref_of(m.credential) for m in staged.added}
            else:
                new_group = conv.mls.merge_staged_commit(staged)
                before = safe_roster(conv.mls)
                members = roster(new_group)
                await self._check_devices(e for ref, e in members.items() if ref not in before)
        except _NETWORK:
            raise  # cannot check now: the message stays queued and is processed again
        except DoorlessError as e:
            # Refusing the commit leaves this device behind the group, visibly; merging it
            # would accept a device nobody approved (I3).
            await self._mark(key)
            self._fail(FailureReason.INVALID_MEMBER, str(e), conversation=gid, sender=by)
            return
        now = self._now_ms()
        status = GroupStatus.REMOVED if staged.self_removed else GroupStatus.ACTIVE
        new = conv.evolve(mls=new_group, status=status, updated_at=now)

        def write(tx: Transaction) -> None:
            tx.mark_processed(key, now)
            tx.update_group(new.stored())

        await self._save(new, write)
        self._membership_events(conv, new, by, after)

    async def _on_welcome(self, key: str, message: MLSMessage, welcome: Welcome) -> None:
        packages = await self._tx(lambda tx: tx.list_key_packages())
        match = next((kp for kp in packages if welcome.secrets_for(kp.ref) is not None), None)
        if match is None:
            await self._mark(key)
            self._fail(FailureReason.WELCOME_UNUSABLE, "addressed to no KeyPackage of ours")
            return
        try:
            bundle = KeyPackageBundle(
                decode(KeyPackage, match.key_package),
                match.init_private_key,
                match.encryption_private_key,
                self._signature_key,
            )
            signer = open_welcome(message, bundle.ref, bundle.init_private_key).group_info.signer
            # Lifetimes of the members' leaves are not checked here: a member who has not
            # committed for months still has its KeyPackage leaf (RFC 9420 §7.3 RECOMMENDED).
            group = Group.join_from_welcome(message, bundle)
            members = roster(group)
            if members.get(self.me) is None or members[self.me].leaf != group.own_leaf:
                raise ValidationError("the Welcome puts us in another leaf")
            await self._check_devices(e for ref, e in members.items() if ref != self.me)
            by = next((ref for ref, e in members.items() if e.leaf == signer), None)
        except _NETWORK:
            raise
        except DoorlessError as e:
            await self._mark(key)
            self._fail(FailureReason.WELCOME_UNUSABLE, str(e))
            return
        gid = group.group_id
        existing = await self._load(gid)
        if existing is not None and existing.status is GroupStatus.ACTIVE:
            await self._mark(key)  # already in it (a second Welcome): keep what we have
            return
        now = self._now_ms()
        new = _Conv(gid, group, GroupStatus.ACTIVE, existing.created_at if existing else now, now)
        ref_to_delete = None if match.last_resort else match.ref
        if await self._is_blocked(by):  # a blocked user's invitation is dropped, unseen
            await self._tx(functools.partial(_drop_welcome, key=key, ref=ref_to_delete, now=now))
            return
        request = await self._request_of(gid, by, now)

        def write(tx: Transaction) -> None:
            tx.mark_processed(key, now)
            if ref_to_delete is not None:
                tx.delete_key_package(ref_to_delete)  # I6: a used key is deleted
            if existing is None:
                tx.insert_group(new.stored())
            else:
                tx.update_group(new.stored())
            if request is not None:
                tx.put_request(request)

        await self._save(new, write)
        if request is not None:
            (await self._load_requests())[gid] = request.inviter
        self._check_key_packages.set()
        self._hub.emit(ConversationJoined(self._view(new), by))

    # --- background ------------------------------------------------------------------------

    async def _receive_loop(self) -> None:
        delay = self._options.backoff
        while True:
            try:
                async with self._lock:
                    await self._sync_locked()
                    await self._flush_locked()
                if self._options.push:
                    await self._push_session()
                else:
                    await asyncio.sleep(self._options.poll_interval)
                delay = self._options.backoff
            except asyncio.CancelledError:
                raise
            except DoorlessError as e:
                log.info("receiving paused (%s); retrying in %.1fs", type(e).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(_MAX_BACKOFF, max(delay, 0.1) * 2)
            except Exception:
                log.exception("unexpected error while receiving; retrying")
                await asyncio.sleep(delay)
                delay = min(_MAX_BACKOFF, max(delay, 0.1) * 2)

    async def _push_session(self) -> None:
        stream = self._transport.push(after=0, max_reconnects=2)
        try:
            async for event in stream:
                if isinstance(event, QueuedMessage):
                    async with self._lock:
                        await self._handle_inbound_locked(event)
                    await stream.ack([event.seq])
                else:
                    self._check_key_packages.set()
        finally:
            await stream.aclose()

    async def _maintenance_loop(self) -> None:
        devices_checked = False
        blocks_read_at = -_BLOCKS_INTERVAL
        loop = asyncio.get_running_loop()
        kt_checked_at = loop.time()
        while True:
            try:
                if not devices_checked:
                    await self._prune()
                    await self.sync_devices()  # checks the transparency log first
                    devices_checked = True
                    kt_checked_at = loop.time()
                if loop.time() - kt_checked_at >= self._options.kt_monitor_interval:
                    kt_checked_at = loop.time()
                    await self.check_transparency()
                if loop.time() - blocks_read_at >= _BLOCKS_INTERVAL:
                    await self.sync_blocks()
                    blocks_read_at = loop.time()
                await self.purge_expired()
                if self._check_key_packages.is_set():
                    self._check_key_packages.clear()
                    await self._top_up_key_packages()
                async with self._lock:
                    await self._flush_locked(due_only=True)
            except asyncio.CancelledError:
                raise
            except DoorlessError as e:
                log.info("maintenance paused (%s)", type(e).__name__)
            except Exception:
                log.exception("unexpected error in the client's maintenance task")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._check_key_packages.wait(), self._options.retry_interval
                )

    def __repr__(self) -> str:
        return f"Client({self.me}, {self._account.server_url!r})"


__all__ = [
    "ED25519_SUITES",
    "Client",
    "ClientOptions",
    "CommitFailed",
    "DeviceLink",
    "NotAMember",
    "SendFailed",
    "SetupIncomplete",
    "UnknownConversation",
    "UserUnavailable",
]
