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
else of the client package. They are loaded on first use, so that importing one submodule
(e.g. the transport, which the server's tests use) does not pull in the encrypted store.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
        AlarmKind,
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
    from doorless.client.keys import (
        Argon2Params,
        KeyringKey,
        KeyUnavailable,
        Passphrase,
        ProfileCorrupt,
        RawKey,
    )
    from doorless.client.kt import (
        KeyNotInTransparencyLog,
        KtConfig,
        KtError,
        KtFork,
        KtRollback,
        KtUnavailable,
        KtViolation,
    )
    from doorless.client.kt_profile import SafetyStatus, Verification
    from doorless.client.safety import REPORT_REASONS, ReportReceipt
    from doorless.client.safety_number import SafetyNumber
    from doorless.client.store import (
        MessageState,
        ProfileLocked,
        StoreError,
        WrongPassphrase,
    )
    from doorless.client.transport import DeviceInfo, PendingLink

_MODULE_OF = {
    **dict.fromkeys(
        [
            "Client",
            "ClientOptions",
            "CommitFailed",
            "DeviceLink",
            "NotAMember",
            "SendFailed",
            "SetupIncomplete",
            "UnknownConversation",
            "UserUnavailable",
        ],
        "doorless.client.client",
    ),
    **dict.fromkeys(
        [
            "BadResponse",
            "Conflict",
            "EpochConflict",
            "Forbidden",
            "InvalidRequest",
            "NotFound",
            "PayloadTooLarge",
            "RateLimited",
            "ServerError",
            "ServerFailure",
            "ServerUnreachable",
            "Unauthorized",
        ],
        "doorless.client.errors",
    ),
    **dict.fromkeys(
        [
            "Conversation",
            "ConversationJoined",
            "ConversationKind",
            "ConversationStatus",
            "ConversationUpdated",
            "DeliveryFailed",
            "DeviceChange",
            "DeviceChanged",
            "DeviceRef",
            "Event",
            "FailureReason",
            "FileInfo",
            "MembershipChanged",
            "MessageInfo",
            "MessageKind",
            "MessageReceived",
            "MessageSent",
        ],
        "doorless.client.events",
    ),
    **dict.fromkeys(
        ["Argon2Params", "KeyUnavailable", "KeyringKey", "Passphrase", "ProfileCorrupt", "RawKey"],
        "doorless.client.keys",
    ),
    **dict.fromkeys(
        ["MessageState", "ProfileLocked", "StoreError", "WrongPassphrase"],
        "doorless.client.store",
    ),
    **dict.fromkeys(["DeviceInfo", "PendingLink"], "doorless.client.transport"),
    **dict.fromkeys(["AlarmKind", "TransparencyAlarm"], "doorless.client.events"),
    **dict.fromkeys(
        [
            "KeyNotInTransparencyLog",
            "KtConfig",
            "KtError",
            "KtFork",
            "KtRollback",
            "KtUnavailable",
            "KtViolation",
        ],
        "doorless.client.kt",
    ),
    **dict.fromkeys(["SafetyStatus", "Verification"], "doorless.client.kt_profile"),
    **dict.fromkeys(["SafetyNumber"], "doorless.client.safety_number"),
    **dict.fromkeys(["REPORT_REASONS", "ReportReceipt"], "doorless.client.safety"),
}


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'doorless.client' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_MODULE_OF))


__all__ = [
    "REPORT_REASONS",
    "AlarmKind",
    "Argon2Params",
    "BadResponse",
    "Client",
    "ClientOptions",
    "CommitFailed",
    "Conflict",
    "Conversation",
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
    "EpochConflict",
    "Event",
    "FailureReason",
    "FileInfo",
    "Forbidden",
    "InvalidRequest",
    "KeyNotInTransparencyLog",
    "KeyUnavailable",
    "KeyringKey",
    "KtConfig",
    "KtError",
    "KtFork",
    "KtRollback",
    "KtUnavailable",
    "KtViolation",
    "MembershipChanged",
    "MessageInfo",
    "MessageKind",
    "MessageReceived",
    "MessageSent",
    "MessageState",
    "NotAMember",
    "NotFound",
    "Passphrase",
    "PayloadTooLarge",
    "PendingLink",
    "ProfileCorrupt",
    "ProfileLocked",
    "RateLimited",
    "RawKey",
    "ReportReceipt",
    "SafetyNumber",
    "SafetyStatus",
    "SendFailed",
    "ServerError",
    "ServerFailure",
    "ServerUnreachable",
    "SetupIncomplete",
    "StoreError",
    "TransparencyAlarm",
    "Unauthorized",
    "UnknownConversation",
    "UserUnavailable",
    "Verification",
    "WrongPassphrase",
]
