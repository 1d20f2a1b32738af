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

Layout: `Client` is the facade; each part of the work is one module over a shared
`doorless.client.core.Session` (store, transport, lock, options, caches, event hub):
`setup` (account creation, device linking, opening), `membership` (conversations, commits,
Welcomes), `outbox` (sending, retries), `inbox` (receiving, processing, history), `devices`
(devices, KeyPackages, key-transparency checks), `contact_safety` (reports, requests, blocks,
disappearing messages), `maintenance` (the background tasks), `search`, `export` and
`contacts` (the local history: full-text search, exports, local nicknames) and `events` (the
event hub).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import TypeVar

from doorless.client import (
    alarms,
    backup,
    contact_safety,
    contacts,
    devices,
    export,
    handoff,
    inbox,
    kt_profile,
    maintenance,
    membership,
    outbox,
    rich,
    search,
    setup,
    upgrade,
)
from doorless.client.alarms import Notice
from doorless.client.calls.manager import Calls
from doorless.client.contacts import ContactInfo
from doorless.client.core import (
    CommitFailed,
    Conv,
    NotAMember,
    SendFailed,
    Session,
    SetupIncomplete,
    UnknownConversation,
    UserUnavailable,
    conversation_gid,
)
from doorless.client.events import (
    Conversation,
    DeviceRef,
    Event,
    EventHub,
    FileInfo,
    MessageInfo,
    MessageReceived,
    TransparencyAlarm,
)
from doorless.client.export import ConversationExport
from doorless.client.kt import GossipResult, LogView
from doorless.client.options import ED25519_SUITES, ClientOptions, PassphraseArg
from doorless.client.safety import ReportReceipt
from doorless.client.search import SearchResult
from doorless.client.setup import DeviceLink
from doorless.client.store import Account, EditVersion, ProfileStore, Transaction
from doorless.client.transport import DeviceInfo, PendingLink, ProgressCallback, Transport
from doorless.crypto import CipherSuite
from doorless.franking import ReportReason
from doorless.mls.group import Group
from doorless.mls.leaf_node import Capabilities
from doorless.wire.payload import Payload

T = TypeVar("T")

_APP_SETTING_PREFIX = "app:"  # settings of the application (get_app_setting)


class Client:
    """One device of one account. Create with `create_account`, `begin_link` or `open`."""

    def __init__(
        self,
        store: ProfileStore,
        transport: Transport,
        account: Account,
        options: ClientOptions | None = None,
    ) -> None:
        self._core = Session(store, transport, account, options)
        self.calls = Calls(self._core)  # calls in its conversations (docs/calls.md)

    @classmethod
    def _wrap(cls, session: Session) -> Client:
        client = cls.__new__(cls)
        client._core = session
        client.calls = Calls(session)
        return client

    # --- construction (doorless.client.setup) -------------------------------------------------

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
        session = await setup.create_account(
            profile_dir,
            passphrase,
            server_url=server_url,
            username=username,
            invite_code=invite_code,
            device_name=device_name,
            options=options,
        )
        return cls._wrap(session)

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
        return await setup.begin_link(
            profile_dir,
            passphrase,
            server_url=server_url,
            username=username,
            device_name=device_name,
            options=options,
            wrap=cls._wrap,
        )

    @classmethod
    async def open(
        cls,
        profile_dir: str | os.PathLike[str],
        passphrase: PassphraseArg = None,
        *,
        options: ClientOptions | None = None,
    ) -> Client:
        """Open an existing profile: everything is restored from its store (no network)."""
        return cls._wrap(await setup.open_profile(profile_dir, passphrase, options=options))

    # --- identity and lifecycle (doorless.client.maintenance) ---------------------------------

    @property
    def me(self) -> DeviceRef:
        """This device (its user and device id)."""
        return self._core.me

    @property
    def username(self) -> str:
        return self._core.me.user

    @property
    def device_id(self) -> str:
        return self._core.me.device_id

    @property
    def server_url(self) -> str:
        return self._core.account.server_url

    @property
    def profile_dir(self) -> Path:
        return self._core.store.profile

    async def start(self) -> None:
        """Receive, retry pending sends and top up KeyPackages in the background."""
        await maintenance.start(self._core)

    async def close(self) -> None:
        """Stop the background tasks, close the connection and the profile (idempotent)."""
        await maintenance.close(self._core)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def events(self) -> AsyncIterator[Event]:
        """Every event from now on (and those emitted while no iterator was listening)."""
        return self._core.hub.stream()

    async def messages(self) -> AsyncIterator[MessageReceived]:
        """Only the `MessageReceived` events (other events reach other iterators only)."""
        async for event in self.events():
            if isinstance(event, MessageReceived):
                yield event

    # --- conversations (doorless.client.membership) -------------------------------------------

    async def conversations(self) -> list[Conversation]:
        """Every conversation, but the message requests of users this account blocks."""
        hidden = await contact_safety.hidden_requests(self._core)
        return [c for c in await membership.conversations(self._core) if c.id not in hidden]

    async def conversation(self, conversation_id: str) -> Conversation:
        return await membership.conversation(self._core, conversation_id)

    async def start_direct(self, username: str) -> Conversation:
        """The 1:1 conversation with ``username`` (all devices of both), created if needed."""
        return await membership.start_direct(self._core, username)

    async def create_group(self, name: str, members: Sequence[str] = ()) -> Conversation:
        """A new group conversation with these users (all their devices) and this user."""
        return await membership.create_group(self._core, name, members)

    async def upgrade_conversation(self, conversation_id: str) -> Conversation:
        """Move a conversation to the post-quantum suite: a new conversation with the same
        members, name and timer; the old one keeps its history and names it
        (`Conversation.upgraded_to`). `CannotUpgrade` names members who cannot do it."""
        return await upgrade.upgrade_conversation(self._core, conversation_id)

    async def add_members(self, conversation_id: str, usernames: Sequence[str]) -> Conversation:
        """Add users (every device of theirs that has a KeyPackage) to a group conversation."""
        return await membership.add_members(self._core, conversation_id, usernames)

    async def remove_members(self, conversation_id: str, usernames: Sequence[str]) -> Conversation:
        """Remove users (all their devices) from a group conversation."""
        return await membership.remove_members(self._core, conversation_id, usernames)

    async def rename(self, conversation_id: str, name: str) -> Conversation:
        """Change a group conversation's name (a commit: every member sees it)."""
        return await membership.rename(self._core, conversation_id, name)

    async def rejoin(self, conversation_id: str) -> Conversation:
        """Rejoin a conversation by external commit from the GroupInfo the server keeps (when
        this device's state is lost or behind; done automatically when a message shows that
        the group moved past this device's epoch)."""
        gid = conversation_gid(conversation_id)
        async with self._core.lock:
            conv = await membership.rejoin_locked(self._core, gid)
        return self._core.view(conv)

    # --- sending (doorless.client.outbox) -----------------------------------------------------

    async def send_text(
        self, conversation_id: str, text: str, *, reply_to: str | None = None
    ) -> MessageInfo:
        """Send a text to every other device of the conversation (``reply_to``: the id of
        the message it answers; ``@member`` mentions a member).

        The returned message is ``sent`` once the server accepted it, or ``pending`` if the
        server could not be reached (it is sent later; `MessageSent` tells when).
        """
        return await outbox.send_text(self._core, conversation_id, text, reply_to=reply_to)

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
        return await outbox.send_file(
            self._core, conversation_id, source, name=name, media_type=media_type, progress=progress
        )

    # --- rich messages (doorless.client.rich) ----------------------------------------------

    async def reply(self, message_id: str, text: str) -> MessageInfo:
        """Answer a stored message in its conversation."""
        return await outbox.send_reply(self._core, message_id, text)

    async def react(self, message_id: str, emoji: str, *, remove: bool = False) -> None:
        """React to a message with ``emoji``, or take that reaction back (``remove``)."""
        if remove:
            await rich.unreact(self._core, message_id, emoji)
        else:
            await rich.react(self._core, message_id, emoji)

    async def edit(self, message_id: str, text: str) -> None:
        """Replace the text of one of this user's messages, for everyone."""
        await rich.edit(self._core, message_id, text)

    async def delete(self, message_id: str) -> None:
        """Delete one of this user's messages for everyone (its text leaves every store)."""
        await rich.delete(self._core, message_id)

    async def edit_history(self, message_id: str) -> list[EditVersion]:
        """The replaced texts of an edited message, oldest first."""
        return await rich.edit_history(self._core, message_id)

    async def mark_read(self, message_id: str) -> bool:
        """Send a "read up to ``message_id``" receipt (unless receipts are switched off)."""
        return await rich.mark_read(self._core, message_id)

    async def typing(self, conversation_id: str, active: bool = True) -> bool:
        """Send a typing notice (unless typing notices are switched off)."""
        return await rich.typing(self._core, conversation_id, active)

    async def read_up_to(self, conversation_id: str) -> dict[str, str]:
        """user -> the id of the newest message they said they read (read receipts)."""
        return await rich.read_marks(self._core, conversation_id)

    # --- history and files (doorless.client.inbox) --------------------------------------------

    async def history(
        self,
        conversation_id: str,
        *,
        limit: int | None = 100,
        before: int | None = None,
        after: int | None = None,
    ) -> list[MessageInfo]:
        """Messages of a conversation, oldest first (``before``/``after``: local ids)."""
        return await inbox.history(
            self._core, conversation_id, limit=limit, before=before, after=after
        )

    async def download(
        self, file: FileInfo | MessageInfo, *, progress: ProgressCallback | None = None
    ) -> bytes:
        """Download and decrypt a file; its size and SHA-256 are checked (FRANK-8)."""
        return await inbox.download(self._core, file, progress=progress)

    async def download_to(
        self,
        file: FileInfo | MessageInfo,
        path: str | os.PathLike[str],
        *,
        progress: ProgressCallback | None = None,
    ) -> Path:
        """`download` into ``path`` (written under a temporary name, then renamed)."""
        return await inbox.download_to(self._core, file, path, progress=progress)

    # --- devices and key transparency (doorless.client.devices) -------------------------------

    async def devices(self) -> list[DeviceInfo]:
        """This account's devices on the server (revoked ones too), approval chain checked."""
        return await devices.list_devices(self._core)

    async def device_names(self) -> dict[str, str]:
        """The names this profile knows for the account's devices (device id -> name; a name
        is given when a device is set up and kept on that device, so others are often "")."""
        return await self._core.tx(lambda tx: {d.device_id: d.name for d in tx.list_devices()})

    async def get_link(self, code: str) -> PendingLink:
        """The pending request of a new device (show its fingerprint before approving)."""
        return await devices.get_link(self._core, code)

    async def approve_link(
        self, link: PendingLink, *, key_package_timeout: float = 30.0
    ) -> DeviceRef:
        """Admit a new device to this account and add it to every conversation.

        Waits up to ``key_package_timeout`` seconds for the new device's KeyPackages; if they
        do not come, the device is added later by `sync_devices` (run by `start`).
        """
        return await devices.approve_link(self._core, link, key_package_timeout=key_package_timeout)

    async def send_history(
        self,
        device_id: str,
        history: str | handoff.HistoryChoice,
        *,
        key_package_timeout: float = 30.0,
    ) -> handoff.HistorySent:
        """Hand the conversation history over to another (newly approved) device of this
        account, encrypted to it alone: ``history`` is ``none``, ``days:N`` or ``all``. The
        device stores it marked as transferred (`MessageInfo.transferred`), exactly once."""
        choice = history if isinstance(history, handoff.HistoryChoice) else None
        choice = choice or handoff.HistoryChoice.parse(str(history))
        return await handoff.send_history(
            self._core, device_id, choice, key_package_timeout=key_package_timeout
        )

    async def revoke_device(self, device_id: str) -> None:
        """Revoke another device of this account and remove it from every conversation."""
        await devices.revoke_device(self._core, device_id)

    async def sync_devices(self) -> list[DeviceInfo]:
        """Reconcile this account's devices with the conversations: add our devices that are
        missing (if they have KeyPackages), remove revoked ones, and report devices this
        device has not seen before (`DeviceChange.LINKED`: check it was you, I3). Checks the
        account's device list in the transparency log first (`check_transparency`)."""
        return await devices.sync_devices(self._core)

    async def check_transparency(self) -> list[TransparencyAlarm]:
        """Check this account's own device list in the transparency log against the
        server's directory: every device nobody of this account approved, and a log that
        contradicts itself, is emitted as a `TransparencyAlarm` (and returned)."""
        return await devices.check_transparency(self._core)

    async def alarms(self, *, acknowledged: bool = False) -> list[TransparencyAlarm]:
        """The stored alarms not acknowledged yet (``acknowledged``: all), oldest first. An
        alarm is stored once per finding (`doorless.client.alarms`)."""
        return await alarms.list_alarms(self._core, acknowledged=acknowledged)

    async def ack_alarms(self, ids: Sequence[str] | None) -> list[str]:
        """Acknowledge the alarms ``ids`` (None: all); returns the ids acknowledged. An
        unknown id is a `ConfigurationError` and nothing changes."""
        return await alarms.ack_alarms(self._core, ids)

    async def pending_notices(self) -> list[TransparencyAlarm | Notice]:
        """Alarms and roster notices (`DeviceChanged` of a peer, `DeviceSkipped`) that no
        program has shown yet, e.g. emitted while ``send`` ran; see `mark_notices_shown`."""
        return await alarms.pending(self._core)

    async def mark_notices_shown(self, ids: Sequence[str]) -> None:
        """These alarms / notices (their ``id`` / ``notice``) were shown to the user."""
        await alarms.mark_shown(self._core, ids)

    async def safety_number(self, username: str) -> kt_profile.Verification:
        """The safety number with ``username`` (from both users' verified device lists) and
        whether it is the one confirmed with `confirm_safety_number`."""
        return await devices.safety_number(self._core, username)

    async def confirm_safety_number(self, username: str) -> kt_profile.Verification:
        """Record that the safety number with ``username`` was compared (in person, or by
        scanning their QR code); after a later change `safety_number` says CHANGED."""
        return await devices.confirm_safety_number(self._core, username)

    async def log_view(self) -> LogView:
        """This device's view of the key-transparency log (the pinned log key and its
        fingerprint, the latest verified checkpoint), to compare with a contact's."""
        return await self._core.kt.view()

    async def compare_checkpoint(self, checkpoint: bytes) -> GossipResult:
        """Compare a contact's log checkpoint (their `log_view().checkpoint`) with this
        device's view; `KtFork` when the server showed the two different logs."""
        return await self._core.kt.check_gossip(checkpoint)

    # --- receiving (doorless.client.inbox) ----------------------------------------------------

    async def sync(self) -> int:
        """Process everything queued on the server for this device and retry pending sends.
        Returns how many queued messages were handled."""
        return await inbox.sync(self._core)

    # --- contact safety (doorless.client.contact_safety) --------------------------------------

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
        return await contact_safety.report(self._core, message_ids, reason, note)

    async def requests(self) -> list[Conversation]:
        """Message requests: conversations someone not accepted added this user to."""
        return await contact_safety.requests(self._core)

    async def accept_request(self, conversation_id: str) -> Conversation:
        """Accept a message request: its inviter becomes an accepted contact. (Sending in
        the conversation accepts it too, on every device of this user.)"""
        return await contact_safety.accept_request(self._core, conversation_id)

    async def block_request(self, conversation_id: str) -> str:
        """Decline a message request: block its inviter (every device of this user) and
        delete the conversation here. Returns the blocked user."""
        return await contact_safety.block_request(self._core, conversation_id)

    async def report_request(
        self, conversation_id: str, reason: str | ReportReason, note: str = ""
    ) -> list[ReportReceipt]:
        """Report the inviter's messages in a message request, then `block_request` it."""
        return await contact_safety.report_request(self._core, conversation_id, reason, note)

    async def block(self, username: str) -> None:
        """Block a user for every device of this account: the server stops delivering their
        messages and invitations, and this client drops those still on the way. Message
        requests from them are deleted. They are not told."""
        await contact_safety.block(self._core, username)

    async def unblock(self, username: str) -> None:
        await contact_safety.unblock(self._core, username)

    async def blocked_users(self) -> list[str]:
        """The users this account blocks, as this device last learnt them."""
        return await contact_safety.blocked_users(self._core)

    async def sync_blocks(self) -> list[str]:
        """Take the account's block list from the server (another device may have changed
        it); returns it."""
        return await contact_safety.sync_blocks(self._core)

    async def set_disappearing(self, conversation_id: str, seconds: int | None) -> Conversation:
        """Set (or, with None, turn off) the conversation's disappearing-message timer. It is
        agreed group state (a commit): every member's devices apply the same value to the
        messages that follow."""
        return await contact_safety.set_disappearing(self._core, conversation_id, seconds)

    async def purge_expired(self, *, vacuum: bool = False) -> int:
        """Delete disappearing messages whose time has come (``secure_delete`` overwrites
        them, a WAL checkpoint drops the old page images; ``vacuum`` also rebuilds the file).
        Runs in the background and on `sync`; returns how many were deleted."""
        return await maintenance.purge_expired(self._core, vacuum=vacuum)

    async def hidden_messages(self) -> dict[str, int]:
        """How many received messages were hidden because a franking check failed, by check
        (``FrankingTagMismatch``, ``InvalidFrankSignature``, ``DecodeError``, ...)."""
        return await contact_safety.hidden_messages(self._core)

    # --- local history (doorless.client.search, .export, .contacts) -------------------------

    async def search(
        self,
        text: str,
        *,
        conversation_id: str | None = None,
        limit: int = 20,
        literal: bool = False,
    ) -> list[SearchResult]:
        """This profile's text messages that match ``text``, best first (BM25, then newest),
        each with a snippet around the matches. ``text`` is an FTS5 query (words,
        ``"phrases"``, ``prefix*``, ``AND``/``OR``/``NOT``); ``literal`` matches its words as
        written instead. `InvalidSearchQuery` for a query that is not valid. Searched in the
        encrypted store only: nothing is sent anywhere."""
        return await search.search(
            self._core, text, conversation_id=conversation_id, limit=limit, literal=literal
        )

    async def export(self, conversation_id: str) -> ConversationExport:
        """Everything this profile stores of a conversation (all its messages, oldest first,
        and its members' local nicknames), for an export; no network."""
        return await export.export(self._core, conversation_id)

    async def contacts(self) -> list[ContactInfo]:
        """Every user of this profile's conversations and contact list, with the local
        nickname given to them, by username."""
        return await contacts.contacts(self._core)

    async def contact(self, username: str) -> ContactInfo:
        """One contact (`ConfigurationError` for a user this profile does not know)."""
        return await contacts.contact(self._core, username)

    async def nicknames(self) -> dict[str, str]:
        """The local nicknames: username -> nickname."""
        return await contacts.nicknames(self._core)

    async def set_nickname(self, username: str, nickname: str | None) -> ContactInfo:
        """Give a user a nickname (None: remove it). It is kept in this profile only and
        never sent; programs show it marked as a nickname next to the username."""
        return await contacts.set_nickname(self._core, username, nickname)

    # --- application settings --------------------------------------------------------------
    # Small values a program built on the client keeps in the encrypted profile (the CLI's
    # `doorless receive` cursor). Namespaced, so they never collide with the client's own.

    async def get_app_setting(self, key: str) -> str | None:
        """A value stored with `set_app_setting`, or None."""
        name = _APP_SETTING_PREFIX + key
        return await self._core.tx(lambda tx: tx.get_setting(name))

    async def set_app_setting(self, key: str, value: str) -> None:
        """Store a small string in the profile (one transaction)."""
        name = _APP_SETTING_PREFIX + key
        await self._core.tx(lambda tx: tx.set_setting(name, value))

    # --- backups (doorless.client.backup) -------------------------------------------------

    async def create_backup(
        self,
        path: str | os.PathLike[str],
        *,
        passphrase: str | None = None,
        attachments: bool = False,
        profile_files: Sequence[str] = (),
        progress: ProgressCallback | None = None,
    ) -> backup.BackupSummary:
        """Write an encrypted backup of this profile to ``path``: under a new recovery key
        (returned once in the summary), or under ``passphrase`` (Argon2id; `WeakPassphrase`
        if it is easy to guess). ``attachments``: include the files of messages;
        ``profile_files``: names of files of the profile folder to include."""
        key = await asyncio.to_thread(backup.new_backup_key, passphrase, self._core.options.argon2)
        return await backup.create_backup(
            self._core,
            path,
            key,
            attachments=attachments,
            profile_files=profile_files,
            progress=progress,
        )

    @staticmethod
    async def restore_backup(
        profile_dir: str | os.PathLike[str],
        backup_file: str | os.PathLike[str],
        key: str,
        passphrase: PassphraseArg,
        *,
        force: bool = False,
        options: ClientOptions | None = None,
        progress: ProgressCallback | None = None,
    ) -> backup.RestoreReport:
        """Restore a backup (``key``: its recovery key or passphrase) into ``profile_dir``
        (its store under ``passphrase``) and rejoin its conversations; refuses a folder that
        holds a profile unless ``force``, and a bad backup before writing anything."""
        return await backup.restore_backup(
            profile_dir,
            backup_file,
            key,
            passphrase,
            force=force,
            options=options,
            progress=progress,
        )

    # --- internals reached by tests and tools (owned by the session) ------------------------

    @property
    def _store(self) -> ProfileStore:
        return self._core.store

    @property
    def _transport(self) -> Transport:
        return self._core.transport

    @property
    def _account(self) -> Account:
        return self._core.account

    @property
    def _options(self) -> ClientOptions:
        return self._core.options

    @_options.setter
    def _options(self, options: ClientOptions) -> None:
        self._core.options = options

    @property
    def _lock(self) -> asyncio.Lock:
        return self._core.lock

    @property
    def _hub(self) -> EventHub:
        return self._core.hub

    @property
    def _suite(self) -> CipherSuite:
        return self._core.suite

    @property
    def _capabilities(self) -> Capabilities:
        return self._core.capabilities

    async def _tx(self, fn: Callable[[Transaction], T]) -> T:
        return await self._core.tx(fn)

    async def _load(self, gid: bytes) -> Conv | None:
        return await self._core.load(gid)

    async def _save(self, new: Conv, fn: Callable[[Transaction], T]) -> T:
        return await self._core.save(new, fn)

    def _recipients(self, conv: Conv) -> tuple[str, ...]:
        return self._core.recipients(conv)

    def _encrypt_payload(self, conv: Conv, payload: Payload) -> tuple[Group, bytes]:
        return self._core.encrypt_payload(conv, payload)

    async def _send_payload(self, gid: bytes, payload: Payload) -> MessageInfo:
        info = await outbox.send_payload(self._core, gid, payload)
        assert info is not None  # a payload of kind text or file is stored as a message
        return info

    def __repr__(self) -> str:
        return f"Client({self._core.me}, {self._core.account.server_url!r})"


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
