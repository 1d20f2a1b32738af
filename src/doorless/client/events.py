"""What the client library tells the application: typed, immutable events and views.

`doorless.client.Client.events` yields one of the `Event` classes below, in the order the
client processed the underlying messages (the server's order for incoming ones). Each event is
emitted only after the state change it reports was committed to the local store, so an event
is never about something a crash could undo.

::

    Event
     ├── MessageReceived      a text or file from another device (yours included)
     ├── MessageSent          the server accepted a message this device sent
     ├── MessageChanged       a message was edited, deleted for everyone, reacted to or not
     ├── ReadUpTo             a member read a conversation up to a message (read receipt)
     ├── Typing               a member started or stopped typing (never stored)
     ├── ConversationJoined   this device was added to a conversation (Welcome)
     ├── ConversationUpdated  the conversation's name changed
     ├── MembershipChanged    devices (and so users) were added or removed
     ├── DeviceChanged        one device of a user was added, removed, linked or revoked
     │                        (linked/revoked at a peer: a roster notice, `notice` set)
     ├── DeviceSkipped        a peer device (or its KeyPackage) failed its checks and was
     │                        left out: a visible warning, reported once (`notice` set)
     ├── TransparencyAlarm    key transparency proved misbehaviour: a device of this account
     │                        nobody approved, a log that contradicts itself or went back, a
     │                        directory key that is not the logged one (show it loudly)
     ├── DeliveryFailed       an incoming message could not be processed, or an outgoing one
     │                        was refused for good; ``reason`` says why
     ├── CallSignalReceived   a member's call signal (ring, accept, ...; docs/calls.md)
     └── CallUpdated          a call's state, participants, privacy code or stats changed

Roster notices (``DeviceChanged`` of a peer's account, ``DeviceSkipped``) and alarms are also
kept in the profile (`doorless.client.alarms`) so that a command that does not show events
(``send``) loses none: `Client.pending_notices` returns them until `Client.mark_notices_shown`,
and alarms stay listed until `Client.ack_alarms`.

Views (`Conversation`, `MessageInfo`, `FileInfo`, `DeviceRef`) are snapshots: call the client
again for fresh ones. Times are Unix milliseconds. Message bodies and file keys never appear in
a ``repr``.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from enum import StrEnum

from doorless.client.calls.stats import ParticipantStats
from doorless.client.store import MessageState
from doorless.franking import AttachmentDescriptor
from doorless.wire.call_signal import CallSignal


@dataclass(frozen=True, slots=True, order=True)
class DeviceRef:
    """One device of one user: the identity an MLS leaf credential names."""

    user: str
    device_id: str

    def __str__(self) -> str:
        return f"{self.user}/{self.device_id[:8]}"


class ConversationKind(StrEnum):
    DIRECT = "direct"  # two users (all their devices); no name
    GROUP = "group"


class ConversationStatus(StrEnum):
    ACTIVE = "active"
    REMOVED = "removed"  # this device was removed; history stays readable


@dataclass(frozen=True, slots=True)
class Conversation:
    """A conversation (one MLS group) as this device sees it now."""

    id: str  # the MLS group id, hex
    kind: ConversationKind
    name: str
    members: tuple[str, ...]  # usernames, sorted; this user included
    devices: tuple[DeviceRef, ...]  # every leaf of the group, sorted
    epoch: int
    status: ConversationStatus
    created_at: int
    updated_at: int
    # A message request: added by this user, whom the user has not accepted. Until it is
    # accepted an application sends no read receipts or typing notices to it and downloads
    # none of its attachments by itself (doorless.client.safety).
    request_from: str | None = None
    disappearing_seconds: int | None = None  # the agreed timer of disappearing messages
    # The group's MLS cipher suite by name (e.g. MLS_128_MLKEM768X25519_AES128GCM_SHA256_Ed25519),
    # and whether its KEM is post-quantum (harvest-now-decrypt-later resistant).
    cipher_suite: str = ""
    post_quantum: bool = False
    # An upgrade to another suite (doorless.client.upgrade): the id of the conversation that
    # replaced this one (whose history stays here), and of the one this one replaced.
    upgraded_to: str | None = None
    upgraded_from: str | None = None

    @property
    def is_request(self) -> bool:
        return self.request_from is not None


@dataclass(frozen=True, slots=True)
class FileInfo:
    """A file attached to a message. ``descriptor`` holds its decryption key."""

    name: str
    media_type: str
    size: int
    sha256: str  # hex SHA-256 of the plaintext; `Client.download` checks it
    attachment_id: str
    descriptor: AttachmentDescriptor = field(repr=False, compare=False)


class MessageKind(StrEnum):
    TEXT = "text"
    FILE = "file"


@dataclass(frozen=True, slots=True)
class MessageInfo:
    """One message of a conversation, incoming or outgoing."""

    conversation_id: str
    message_id: str  # hex of the payload's random 16-byte id (the same on every device)
    local_id: int  # this profile's order of messages
    sender: DeviceRef
    outgoing: bool  # sent by this device (messages from your other devices are not)
    kind: MessageKind
    text: str | None = field(repr=False)
    file: FileInfo | None
    sent_at: int  # the sender's clock
    received_at: int | None  # this device's clock; None for outgoing
    state: MessageState
    transferred: bool = False  # history handed over by another device of this account
    # Rich messages (MIMI content, docs/content.md); defaults for messages of older versions.
    reply_to: str | None = None  # the id of the message this one answers (if stored here)
    reply_text: str | None = field(default=None, repr=False)  # its text (None if deleted)
    edited: bool = False  # its sender replaced the text (`Client.edit_history` has the old)
    deleted: bool = False  # its sender deleted it for everyone: the text is gone
    mentions: tuple[str, ...] = ()  # users mentioned (@user)
    mentions_me: bool = False
    reactions: tuple[ReactionInfo, ...] = ()  # oldest first


@dataclass(frozen=True, slots=True)
class ReactionInfo:
    user: str
    emoji: str


class ChangeKind(StrEnum):
    EDITED = "edited"
    DELETED = "deleted"
    REACTED = "reacted"
    UNREACTED = "unreacted"


@dataclass(frozen=True, slots=True)
class MessageChanged:
    """A stored message was edited, deleted for everyone, reacted to or un-reacted to by
    ``by``; ``message`` is its new state; ``emoji`` for a reaction change."""

    message: MessageInfo
    change: ChangeKind
    by: DeviceRef
    emoji: str | None = None


@dataclass(frozen=True, slots=True)
class ReadUpTo:
    """``reader`` has read the conversation up to message ``message_id`` (a read receipt
    never says more than "read up to")."""

    conversation_id: str
    reader: DeviceRef
    message_id: str


@dataclass(frozen=True, slots=True)
class Typing:
    """``user`` started (``active``) or stopped typing in a conversation (not stored)."""

    conversation_id: str
    user: DeviceRef
    active: bool


@dataclass(frozen=True, slots=True)
class MessageReceived:
    message: MessageInfo

    @property
    def conversation_id(self) -> str:
        return self.message.conversation_id

    @property
    def sender(self) -> DeviceRef:
        return self.message.sender

    @property
    def text(self) -> str | None:
        return self.message.text

    @property
    def file(self) -> FileInfo | None:
        return self.message.file


@dataclass(frozen=True, slots=True)
class MessageSent:
    message: MessageInfo


@dataclass(frozen=True, slots=True)
class ConversationJoined:
    conversation: Conversation
    by: DeviceRef | None  # the device whose commit added us


@dataclass(frozen=True, slots=True)
class ConversationUpdated:
    conversation: Conversation
    by: DeviceRef | None


@dataclass(frozen=True, slots=True)
class MembershipChanged:
    """The roster changed by one commit. ``added_users``/``removed_users`` are the users that
    joined (first device) or left (last device); ``added``/``removed`` list every device."""

    conversation: Conversation
    added: tuple[DeviceRef, ...]
    removed: tuple[DeviceRef, ...]
    by: DeviceRef | None
    added_users: tuple[str, ...]
    removed_users: tuple[str, ...]


class DeviceChange(StrEnum):
    ADDED = "added"  # a further device of a member joined a conversation
    REMOVED = "removed"  # a device of a member that stays left a conversation
    LINKED = "linked"  # a new device appeared on an account (yours: check it was you)
    REVOKED = "revoked"


@dataclass(frozen=True, slots=True)
class DeviceChanged:
    device: DeviceRef
    change: DeviceChange
    conversation_id: str | None = None
    by: DeviceRef | None = None
    notice: str | None = None  # the id of the stored roster notice (a peer's account change)


@dataclass(frozen=True, slots=True)
class DeviceSkipped:
    """A device of a peer was left out because it failed its checks (not in the
    transparency log with this key, a bad approval, an unusable KeyPackage). ``detail`` says
    why; the message still went to the peer's devices that passed."""

    device: DeviceRef
    detail: str
    notice: str | None = None


class FailureReason(StrEnum):
    MALFORMED = "malformed"  # not an MLS message
    UNKNOWN_CONVERSATION = "unknown_conversation"  # for a group this device is not in
    UNDECRYPTABLE = "undecryptable"  # MLS refused it (signature, keys, replay, ...)
    MISSED_COMMITS = "missed_commits"  # for a later epoch: the conversation must be rejoined
    INVALID_PAYLOAD = "invalid_payload"  # decrypted, but not a Doorless payload
    UNSUPPORTED = "unsupported"  # a kind of message this version does not know
    INVALID_MEMBER = "invalid_member"  # a device not registered and approved for its user (I3)
    WELCOME_UNUSABLE = "welcome_unusable"  # no KeyPackage of ours, or an invalid Welcome
    REJECTED = "rejected"  # outgoing: the server refused it for good
    NOT_A_MEMBER = "not_a_member"  # outgoing: this device is no longer in the conversation
    INVALID_FRANK = "invalid_frank"  # franking check failed (docs/franking.md): hidden, counted
    NOT_AUTHOR = "not_author"  # an edit or delete of another user's message: refused, counted
    UNKNOWN_TARGET = "unknown_target"  # a reaction, edit or delete of a message not stored here


@dataclass(frozen=True, slots=True)
class DeliveryFailed:
    reason: FailureReason
    detail: str  # a human-readable explanation (never message content)
    conversation_id: str | None = None
    message_id: str | None = None
    sender: DeviceRef | None = None
    outgoing: bool = False


class AlarmKind(StrEnum):
    UNAPPROVED_DEVICE = "unapproved_device"  # on this account, approved by none of its devices
    LOG_VIOLATION = "log_violation"  # the server's transparency log contradicts itself
    FORK = "fork"  # the log showed two different versions of the same history
    ROLLBACK = "rollback"  # the log (or a device list in it) went back
    KEY_MISMATCH = "key_mismatch"  # a directory key that is not the one in the log


ALARM_ADVICE: dict[AlarmKind, str] = {
    AlarmKind.UNAPPROVED_DEVICE: (
        "If you did not link this device, your account is being accessed: revoke it with "
        "'doorless device revoke', tell your contacts, and do not trust this server."
    ),
    AlarmKind.LOG_VIOLATION: (
        "The server's transparency log is inconsistent: stop sending secrets through this "
        "server and compare safety numbers with your contacts in person."
    ),
    AlarmKind.FORK: (
        "The server shows you a different log than before (a split view): stop sending "
        "secrets and compare safety numbers with your contacts in person."
    ),
    AlarmKind.ROLLBACK: (
        "The server went back to an older log: do not trust devices it shows now, keep this "
        "profile (it holds the proof), and compare safety numbers with your contacts."
    ),
    AlarmKind.KEY_MISMATCH: (
        "The server offered a key for this device that the log does not have (a key swap): "
        "nothing was sent to it; compare safety numbers with this contact in person."
    ),
}


@dataclass(frozen=True, slots=True)
class TransparencyAlarm:
    """Key transparency (`doorless.client.kt`) caught what a covert access would look like.
    ``device``: the device concerned, if one is; ``detail``: what was seen; ``id``: the
    stored alarm (`doorless.client.alarms`), empty until stored; ``advice``: one sentence of
    what to do."""

    kind: AlarmKind
    detail: str
    device: DeviceRef | None = None
    id: str = ""
    raised_at: int = 0

    @property
    def advice(self) -> str:
        return ALARM_ADVICE[self.kind]


@dataclass(frozen=True, slots=True)
class CallSignalReceived:
    """A call signal (ring, accept, decline, join, leave, end) from a member's device;
    `Client.calls` acts on it and reports `CallUpdated` (docs/calls.md)."""

    conversation_id: str
    sender: DeviceRef
    signal: CallSignal


class CallState(StrEnum):
    RINGING = "ringing"  # an incoming call not answered yet
    CALLING = "calling"  # our call, nobody answered yet
    ACTIVE = "active"  # media flows (or may)
    ENDED = "ended"


@dataclass(frozen=True, slots=True)
class CallUpdated:
    """A call changed: its state, its participants (devices in the call), the privacy code
    of its current epoch (None before keys exist), and ``stats`` per participant while it
    runs and at its end."""

    call_id: str
    conversation_id: str
    state: CallState
    participants: tuple[DeviceRef, ...]
    privacy_code: str | None
    reason: str = ""
    stats: tuple[ParticipantStats, ...] = ()


Event = (
    MessageReceived
    | MessageSent
    | ConversationJoined
    | ConversationUpdated
    | MembershipChanged
    | DeviceChanged
    | DeviceSkipped
    | DeliveryFailed
    | TransparencyAlarm
    | CallSignalReceived
    | CallUpdated
    | MessageChanged
    | ReadUpTo
    | Typing
)

# --- delivery to the application ---------------------------------------------------------


class EventHub:
    """Fan events out to every `Client.events` iterator; keep them while nobody listens."""

    def __init__(self, backlog: int = 10_000) -> None:
        self._subscribers: list[asyncio.Queue[Event | None]] = []
        self._backlog: collections.deque[Event] = collections.deque(maxlen=backlog)
        self._closed = False
        self._taps: list[Callable[[Event], None]] = []

    def tap(self, fn: Callable[[Event], None]) -> Callable[[], None]:
        """Call ``fn`` with every event from now on (the library's own listeners, e.g. the
        call engine; they take nothing from the applications' streams). Returns the
        function that removes the tap."""
        self._taps.append(fn)
        return lambda: self._taps.remove(fn)

    def emit(self, event: Event) -> None:
        for fn in tuple(self._taps):
            fn(event)
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


__all__ = [
    "ALARM_ADVICE",
    "AlarmKind",
    "CallSignalReceived",
    "CallState",
    "CallUpdated",
    "ChangeKind",
    "Conversation",
    "ConversationJoined",
    "ConversationKind",
    "ConversationStatus",
    "ConversationUpdated",
    "DeliveryFailed",
    "DeviceChange",
    "DeviceChanged",
    "DeviceRef",
    "DeviceSkipped",
    "Event",
    "EventHub",
    "FailureReason",
    "FileInfo",
    "MembershipChanged",
    "MessageChanged",
    "MessageInfo",
    "MessageKind",
    "MessageReceived",
    "MessageSent",
    "ReactionInfo",
    "ReadUpTo",
    "TransparencyAlarm",
    "Typing",
]
