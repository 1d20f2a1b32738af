"""The shared context of the client modules: `Session` (one device's store, transport, lock,
options, caches and event hub, with the small operations every module needs), the in-memory
conversation state `Conv`, commit plans, the errors client operations raise, and the helpers
that turn stored rows into the views the application sees."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import secrets
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from doorless.client import kt_profile
from doorless.client.conversations import (
    CONVERSATION_INFO_EXTENSION,
    conversation_info,
    safe_roster,
)
from doorless.client.errors import (
    BadResponse,
    RateLimited,
    ServerError,
    ServerFailure,
    ServerUnreachable,
)
from doorless.client.events import (
    Conversation,
    ConversationStatus,
    DeliveryFailed,
    DeviceRef,
    EventHub,
    FailureReason,
    FileInfo,
    MessageInfo,
    MessageKind,
)
from doorless.client.kt import KtUnavailable
from doorless.client.options import ED25519_SUITES, ClientOptions
from doorless.client.safety import DISAPPEARING_EXTENSION, disappearing_seconds
from doorless.client.store import Account, GroupStatus, Message, ProfileStore, Transaction
from doorless.client.store import Group as StoredGroup
from doorless.client.transport import DeviceInfo, Transport
from doorless.codec import decode
from doorless.crypto import HYBRID_SUITE, CipherSuite, cipher_suite
from doorless.errors import ConfigurationError, RemoteError, StateError
from doorless.franking import SALT_LENGTH, SenderIdentity
from doorless.mls.credential import BasicCredential, CredentialType
from doorless.mls.group import (
    DEFAULT_LIFETIME_SECONDS,
    Group,
    KeyPackageBundle,
    generate_key_package,
)
from doorless.mls.group_context import ProtocolVersion
from doorless.mls.key_package import KeyPackage
from doorless.mls.leaf_node import Capabilities
from doorless.mls.proposals import Proposal
from doorless.mls.types import GroupConfig
from doorless.secret import PrivateKeyBytes
from doorless.wire import protocol
from doorless.wire.payload import FileBody, Payload, PayloadKind, frank_payload

log = logging.getLogger("doorless.client")

T = TypeVar("T")


KEY_PACKAGE_LIFETIME_MS = DEFAULT_LIFETIME_SECONDS * 1000
MAX_BACKOFF = 60.0
_SETTING_FRANKING_KEY = "franking_public_key"  # the server's, pinned (hex)
# Handshakes travel as PublicMessage so the server can validate them (`doorless.server.groups`);
# application messages are PrivateMessages.
# Application messages are padded to size buckets (RFC 9420 §6.3.1), so that a reaction, a
# receipt, a typing notice and a short text are the same kind of ciphertext to the server.
PADDING_BUCKETS = (1024, 4096, 16384, 65536)
MLS_CONFIG = GroupConfig(private_handshakes=False, padding_buckets=PADDING_BUCKETS)


# Server answers that say "try again later" rather than "no": an outbox item stays.
TRANSIENT: tuple[type[RemoteError], ...] = (ServerUnreachable, RateLimited, ServerFailure)

# Failures of the network path (never a verdict on the message being processed).
NETWORK: tuple[type[RemoteError], ...] = (
    ServerUnreachable,
    ServerError,
    BadResponse,
    KtUnavailable,  # the log's head is not witnessed yet: check again later
)


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
QUEUE_BEHIND: tuple[type[RemoteError], ...] = (*TRANSIENT, SendFailed)


@dataclass(frozen=True, slots=True)
class Conv:
    """A conversation as held in memory: the MLS state and the store row's other fields."""

    group_id: bytes
    mls: Group
    status: GroupStatus
    created_at: int
    updated_at: int

    @classmethod
    def from_row(cls, row: StoredGroup) -> Conv:
        """The in-memory state of a stored group row."""
        mls = Group.from_bytes(row.mls_state, MLS_CONFIG)
        return cls(row.group_id, mls, row.status, row.created_at, row.updated_at)

    def evolve(self, **changes: Any) -> Conv:
        """A copy with some fields changed."""
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
class Plan:
    """What one commit should contain."""

    proposals: tuple[Proposal, ...]


# A plan builder sees the current state and the devices the server called unknown.
Builder = Callable[[Conv, frozenset[str]], Awaitable[Plan | None]]


Claimed = dict[str, tuple[DeviceRef, KeyPackage]]


def conversation_gid(conversation_id: str) -> bytes:
    """The group id a conversation id names (`UnknownConversation` if it names none)."""
    try:
        gid = bytes.fromhex(conversation_id)
    except ValueError:
        raise UnknownConversation("a conversation id is a hex string") from None
    if not 0 < len(gid) <= 255:
        raise UnknownConversation("a conversation id is 1..255 bytes of hex")
    return gid


def checked_users(usernames: Iterable[str]) -> list[str]:
    """The distinct usernames, sorted; `ConfigurationError` for an invalid one."""
    users = sorted(set(usernames))
    for user in users:
        if not protocol.is_username(user):
            raise ConfigurationError(f"invalid username {user!r}")
    return users


UPGRADES_SETTING = "conversation_upgrades"  # lines "old-id new-id", hex


def parse_upgrades(raw: str | None) -> dict[bytes, bytes]:
    """The upgrade links stored under `UPGRADES_SETTING` (written by this client only)."""
    links: dict[bytes, bytes] = {}
    for line in (raw or "").splitlines():
        old, new = line.split()
        links[bytes.fromhex(old)] = bytes.fromhex(new)
    return links


def store_upgrade(tx: Transaction, old: bytes, new: bytes) -> bool:
    """Record that conversation ``old`` was upgraded to ``new``; False (nothing written) if
    it already was: the first upgrade a member announced stays its successor."""
    links = parse_upgrades(tx.get_setting(UPGRADES_SETTING))
    if old in links or old == new:
        return False
    links[old] = new
    tx.set_setting(UPGRADES_SETTING, "\n".join(f"{o.hex()} {n.hex()}" for o, n in links.items()))
    return True


def _hex_or_none(value: bytes | None) -> str | None:
    return None if value is None else value.hex()


def new_send_id() -> str:
    """A fresh message id for an outgoing commit."""
    return secrets.token_urlsafe(16)


def file_info(body: FileBody) -> FileInfo:
    """The application's view of a file message's body."""
    a = body.attachment
    return FileInfo(
        name=body.name,
        media_type=a.media_type.decode("utf-8", "replace"),
        size=a.size,
        sha256=a.plaintext_sha256.hex(),
        attachment_id=a.locator.decode("ascii", "replace"),
        descriptor=a,
    )


def message_info(m: Message) -> MessageInfo:
    """The application's view of a stored message."""
    kind = MessageKind(m.content_type)
    text = m.body.decode("utf-8", "replace") if kind is MessageKind.TEXT else None
    file = file_info(decode(FileBody, m.body)) if kind is MessageKind.FILE else None
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
        transferred=m.transferred,
    )


PAYLOAD_KIND = {MessageKind.TEXT: PayloadKind.text, MessageKind.FILE: PayloadKind.file}


MESSAGE_KIND: dict[int, MessageKind] = {int(v): k for k, v in PAYLOAD_KIND.items()}


def sender_identity(ref: DeviceRef) -> SenderIdentity:
    """How franked content names a device (the encoding of its MLS credential)."""
    return SenderIdentity(ref.user.encode("ascii"), ref.device_id.encode("ascii"))


class Session:
    """The state one `Client` shares with its modules; all of its changes run under ``lock``."""

    def __init__(
        self,
        store: ProfileStore,
        transport: Transport,
        account: Account,
        options: ClientOptions | None = None,
    ) -> None:
        self.store = store
        self.transport = transport
        self.account = account
        self.options = options or ClientOptions()
        if account.cipher_suite not in ED25519_SUITES:
            raise ConfigurationError("this profile's cipher suite is not supported")
        self.suite = cipher_suite(account.cipher_suite)
        # PQ by default (docs/architecture.md): KeyPackages for the hybrid suite too, which
        # signs with the same Ed25519 key; new conversations use it when every device can.
        self.pq_suite = cipher_suite(HYBRID_SUITE) if self.options.post_quantum else None
        self.publish_suites = (
            (self.suite,) if self.pq_suite is None else (self.suite, self.pq_suite)
        )
        self.signature_key: PrivateKeyBytes = account.signature_private_key
        self.credential = decode(BasicCredential, account.credential)
        self.capabilities = Capabilities(
            versions=(ProtocolVersion.mls10,),
            cipher_suites=tuple(int(s.id) for s in self.publish_suites),
            extensions=(CONVERSATION_INFO_EXTENSION, DISAPPEARING_EXTENSION),
            proposals=(),
            credentials=(int(CredentialType.basic),),
        )
        self.me = DeviceRef(account.username, account.device_id)
        self.lock = asyncio.Lock()
        self.cache: dict[bytes, Conv] = {}
        self.pending_commits: set[bytes] | None = None  # groups with a commit in the outbox
        self.devices: dict[str, dict[str, DeviceInfo]] = {}  # verified device lists
        self.hub = EventHub()
        self.tasks: set[asyncio.Task[None]] = set()
        self.check_key_packages = asyncio.Event()
        self.check_key_packages.set()
        self.closed = False
        self.requests: dict[bytes, str] | None = None  # message requests: group -> inviter
        self.upgrades: dict[bytes, bytes] | None = None  # upgraded group -> its successor
        self.franking_public_key: bytes | None = None
        # Key transparency: every peer key is checked against its user's verified device
        # list, and this account's own list is monitored (doorless.client.kt, kt_profile).
        self.kt = kt_profile.make_verifier(
            store, transport, self.options.kt, self.options.clock, account.cipher_suite
        )
        self.kt_checked: dict[str, int] = {}  # user -> device-list version compared

    def now_ms(self) -> int:
        """The options' clock, in Unix milliseconds."""
        return int(self.options.clock() * 1000)

    def now_s(self) -> int:
        """The options' clock, in Unix seconds."""
        return int(self.options.clock())

    async def tx(self, fn: Callable[[Transaction], T]) -> T:
        """Run ``fn`` in one store transaction (on the store's worker thread)."""
        return await self.store.run_transaction(fn)

    async def save(self, new: Conv, fn: Callable[[Transaction], T]) -> T:
        """Run ``fn`` (which writes ``new``) in one transaction and then cache ``new``.

        The cached state is dropped first: if this task is cancelled while the transaction
        runs, the next use reloads from the store, which then has exactly one of the two
        states (the store queue is FIFO), never a state whose keys were already used.
        """
        self.cache.pop(new.group_id, None)
        result = await self.tx(fn)
        self.cache[new.group_id] = new
        return result

    async def load(self, gid: bytes) -> Conv | None:
        """A conversation (cached), or None if this profile has no such group."""
        conv = self.cache.get(gid)
        if conv is None:
            row = await self.tx(lambda tx: tx.get_group(gid))
            if row is None:
                return None
            conv = Conv.from_row(row)
            self.cache[gid] = conv
        return conv

    async def require_active(self, gid: bytes) -> Conv:
        """A conversation this device is a member of (else `UnknownConversation`, `NotAMember`)."""
        conv = await self.load(gid)
        if conv is None:
            raise UnknownConversation(f"no conversation {gid.hex()}")
        if conv.status is not GroupStatus.ACTIVE:
            raise NotAMember("this device is no longer in the conversation")
        return conv

    def view(self, conv: Conv) -> Conversation:
        """The application's snapshot of a conversation."""
        info = conversation_info(conv.mls)
        devices = tuple(sorted(safe_roster(conv.mls)))
        active = conv.status is GroupStatus.ACTIVE
        links = self.upgrades or {}
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
            request_from=(self.requests or {}).get(conv.group_id),
            disappearing_seconds=disappearing_seconds(conv.mls),
            cipher_suite=conv.mls.suite.id.name,
            post_quantum=conv.mls.suite.is_post_quantum,
            upgraded_to=_hex_or_none(links.get(conv.group_id)),
            upgraded_from=_hex_or_none(
                next((old for old, new in links.items() if new == conv.group_id), None)
            ),
        )

    async def load_upgrades(self) -> dict[bytes, bytes]:
        """The upgraded conversations (group -> successor), read once and then kept in memory
        (doorless.client.upgrade writes them)."""
        if self.upgrades is None:
            raw = await self.tx(lambda tx: tx.get_setting(UPGRADES_SETTING))
            self.upgrades = parse_upgrades(raw)
        return self.upgrades

    async def load_requests(self) -> dict[bytes, str]:
        """The message requests (group -> inviter), read once and then kept in memory."""
        if self.requests is None:
            rows = await self.tx(lambda tx: tx.list_requests())
            self.requests = {r.group_id: r.inviter for r in rows}
        return self.requests

    def forget_request(self, gid: bytes) -> None:
        """Drop a group's message request from memory (the store already dropped it)."""
        if self.requests is not None:
            self.requests.pop(gid, None)

    async def is_blocked(self, ref: DeviceRef | None) -> bool:
        """Whether ``ref``'s user (never this user) is blocked by this account."""
        if ref is None or ref.user == self.me.user:
            return False
        contact = await self.tx(lambda tx: tx.get_contact(ref.user))
        return contact is not None and contact.blocked

    async def franking_key(self) -> bytes:
        """The server's franking signature key, pinned in the profile on first use."""
        if self.franking_public_key is None:
            stored = await self.tx(lambda tx: tx.get_setting(_SETTING_FRANKING_KEY))
            if stored is None:
                info = await self.transport.server_info()
                if info.franking_public_key is None:
                    raise BadResponse("the server publishes no franking key")
                pinned = info.franking_public_key.hex()
                await self.tx(lambda tx: tx.set_setting(_SETTING_FRANKING_KEY, pinned))
                stored = pinned
            self.franking_public_key = bytes.fromhex(stored)
        return self.franking_public_key

    def encrypt_payload(self, conv: Conv, payload: Payload) -> tuple[Group, bytes]:
        """Frank ``payload`` (docs/franking.md) and encrypt it as an application message.
        The latest log checkpoint this device verified goes inside it (checkpoint gossip,
        docs/key-transparency.md), covered by the franking commitment like the rest."""
        if self.kt.trusted is not None and not payload.checkpoint:
            payload = dataclasses.replace(payload, checkpoint=self.kt.trusted.checkpoint)
        franked = frank_payload(
            payload,
            sender=sender_identity(self.me),
            group_id=conv.group_id,
            salt=os.urandom(SALT_LENGTH),
        )
        return conv.mls.encrypt(
            franked.application_data, authenticated_data=franked.authenticated_data
        )

    def recipients(self, conv: Conv) -> tuple[str, ...]:
        """Every device of the conversation except this one, sorted."""
        return tuple(r.device_id for r in sorted(safe_roster(conv.mls)) if r != self.me)

    def fail(
        self,
        reason: FailureReason,
        detail: str,
        *,
        conversation: bytes | None = None,
        message_id: str | None = None,
        sender: DeviceRef | None = None,
        outgoing: bool = False,
    ) -> None:
        """Log a delivery failure and emit it as `DeliveryFailed`."""
        log.info("delivery failed: %s (%s)", reason.value, detail)
        self.hub.emit(
            DeliveryFailed(
                reason,
                detail,
                conversation.hex() if conversation is not None else None,
                message_id,
                sender,
                outgoing,
            )
        )

    def new_key_package(self, suite: CipherSuite | None = None) -> KeyPackageBundle:
        """A new KeyPackage of this device (of ``suite``, default the profile's classic one),
        with its private keys."""
        return generate_key_package(
            suite or self.suite,
            self.credential,
            self.signature_key,
            now=self.now_s(),
            capabilities=self.capabilities,
        )
