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
    )
    from doorless.client.keys import (
        Argon2Params,
        KeyringKey,
        KeyUnavailable,
        Passphrase,
        ProfileCorrupt,
        RawKey,
    )
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
    "KeyUnavailable",
    "KeyringKey",
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
    "SendFailed",
    "ServerError",
    "ServerFailure",
    "ServerUnreachable",
    "SetupIncomplete",
    "StoreError",
    "Unauthorized",
    "UnknownConversation",
    "UserUnavailable",
    "WrongPassphrase",
]
