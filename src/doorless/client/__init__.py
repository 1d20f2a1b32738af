"""The Doorless client library: what applications embed (see ``docs/client.md``).

::

    from doorless.client import Client, MessageReceived

    client = await Client.open(profile_dir, passphrase)
    async with client:
        await client.start()
        async for event in client.events():
            if isinstance(event, MessageReceived):
                print(event.sender, event.text)

The names below are the public API; the CLI, the JSON-RPC daemon and the chat app use nothing
else of the client package. Its modules:

* `client` — the `Client` facade; `options` — `ClientOptions`; `core` — the `Session` the
  parts share; `setup`, `membership`, `outbox`, `inbox`, `devices`, `contact_safety`,
  `maintenance`, `search`, `export`, `contacts` — one part of the client's work each; `events` —
  events, views, the event hub;
* `store` — the encrypted profile store (package); `keys` — where its key comes from;
* `transport` — HTTP and WebSocket to the server (package); `errors` — the server's refusals;
* `kt`, `kt_profile` — key transparency; `safety`, `safety_number` — franking, disappearing
  messages, safety numbers; `conversations`, `records` — what groups and the outbox hold.
"""

from __future__ import annotations

from doorless.client.alarms import shown_id
from doorless.client.backup import (
    BackupError,
    BackupSummary,
    KeyKind,
    NotRestored,
    ProfileInUse,
    RestoreReport,
    WeakPassphrase,
    backup_key_kind,
)
from doorless.client.client import (
    Client,
    ClientOptions,
    CommitFailed,
    DeviceLink,
    NotAMember,
    SendFailed,
    SetupIncomplete,
    UnknownConversation,
    UserUnavailable,
)
from doorless.client.contacts import ContactInfo
from doorless.client.errors import (
    BadResponse,
    Conflict,
    EpochConflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ServerError,
    ServerFailure,
    ServerUnreachable,
    Unauthorized,
)
from doorless.client.events import (
    ALARM_ADVICE,
    AlarmKind,
    ChangeKind,
    Conversation,
    ConversationJoined,
    ConversationKind,
    ConversationStatus,
    ConversationUpdated,
    DeliveryFailed,
    DeviceChange,
    DeviceChanged,
    DeviceRef,
    DeviceSkipped,
    Event,
    FailureReason,
    FileInfo,
    MembershipChanged,
    MessageChanged,
    MessageInfo,
    MessageKind,
    MessageReceived,
    MessageSent,
    ReactionInfo,
    ReadUpTo,
    TransparencyAlarm,
    Typing,
)
from doorless.client.export import ConversationExport
from doorless.client.handoff import HistoryChoice, HistorySent
from doorless.client.keys import (
    Argon2Params,
    KeyringKey,
    KeyUnavailable,
    Passphrase,
    ProfileCorrupt,
    RawKey,
)
from doorless.client.kt import (
    GossipResult,
    KeyNotInTransparencyLog,
    KtConfig,
    KtError,
    KtFork,
    KtRollback,
    KtUnavailable,
    KtViolation,
    LogView,
)
from doorless.client.kt_profile import SafetyStatus, Verification
from doorless.client.rich import NotYourMessage
from doorless.client.rich_inbox import NotAuthor, UnknownTarget
from doorless.client.rich_view import UnknownMessage
from doorless.client.safety import REPORT_REASONS, ReportReceipt
from doorless.client.safety_number import SafetyNumber
from doorless.client.search import SearchResult
from doorless.client.store import (
    InvalidSearchQuery,
    MessageState,
    ProfileLocked,
    StoreError,
    WrongPassphrase,
)
from doorless.client.transport import DeviceInfo, PendingLink
from doorless.client.upgrade import CannotUpgrade

__all__ = [
    "ALARM_ADVICE",
    "REPORT_REASONS",
    "AlarmKind",
    "Argon2Params",
    "BackupError",
    "BackupSummary",
    "BadResponse",
    "CannotUpgrade",
    "ChangeKind",
    "Client",
    "ClientOptions",
    "CommitFailed",
    "Conflict",
    "ContactInfo",
    "Conversation",
    "ConversationExport",
    "ConversationJoined",
    "ConversationKind",
    "ConversationStatus",
    "ConversationUpdated",
    "DeliveryFailed",
    "DeviceChange",
    "DeviceChanged",
    "DeviceInfo",
    "DeviceLink",
    "DeviceRef",
    "DeviceSkipped",
    "EpochConflict",
    "Event",
    "FailureReason",
    "FileInfo",
    "Forbidden",
    "GossipResult",
    "HistoryChoice",
    "HistorySent",
    "InvalidRequest",
    "InvalidSearchQuery",
    "KeyKind",
    "KeyNotInTransparencyLog",
    "KeyUnavailable",
    "KeyringKey",
    "KtConfig",
    "KtError",
    "KtFork",
    "KtRollback",
    "KtUnavailable",
    "KtViolation",
    "LogView",
    "MembershipChanged",
    "MessageChanged",
    "MessageInfo",
    "MessageKind",
    "MessageReceived",
    "MessageSent",
    "MessageState",
    "NotAMember",
    "NotAuthor",
    "NotFound",
    "NotRestored",
    "NotYourMessage",
    "Passphrase",
    "PayloadTooLarge",
    "PendingLink",
    "ProfileCorrupt",
    "ProfileInUse",
    "ProfileLocked",
    "RateLimited",
    "RawKey",
    "ReactionInfo",
    "ReadUpTo",
    "ReportReceipt",
    "RestoreReport",
    "SafetyNumber",
    "SafetyStatus",
    "SearchResult",
    "SendFailed",
    "ServerError",
    "ServerFailure",
    "ServerUnreachable",
    "SetupIncomplete",
    "StoreError",
    "TransparencyAlarm",
    "Typing",
    "Unauthorized",
    "UnknownConversation",
    "UnknownMessage",
    "UnknownTarget",
    "UserUnavailable",
    "Verification",
    "WeakPassphrase",
    "WrongPassphrase",
    "backup_key_kind",
    "shown_id",
]
