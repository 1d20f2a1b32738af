"""Async client of the Doorless HTTP/WebSocket API (``docs/protocol-http.md``).

`Transport` moves bytes: it signs the protocol's authentication statements with the device key
(`DeviceIdentity`), keeps a bearer token fresh, and maps every failure to the typed errors of
`doorless.client.errors`. It knows nothing of MLS beyond "these bytes are an MLSMessage": the
client library above it builds and processes the messages.

::

    async with Transport("https://chat.example", device) as t:
        await t.register("alice")                      # or request_link + approval
        await t.upload_key_packages(kps, last_resort=kp)
        await t.send(commit, recipients, welcome=welcome, welcome_recipients=new_devices)
        async for event in t.push():                   # reconnects by itself
            ...
            await t.ack([event.seq])

Modules: `types` (identity, typed answers), `parsing` (reading answers), `http` (connection,
errors, login), `transparency`, `accounts`, `delivery`, `attachments` (endpoints per area),
`push` (the WebSocket stream), `api` (`Transport`, all of them).
"""

from __future__ import annotations

from doorless.client.transport.api import Transport
from doorless.client.transport.parsing import check_device_approvals, device_approval_problems
from doorless.client.transport.push import PushStream
from doorless.client.transport.types import (
    AttachmentInfo,
    ClaimedKeyPackage,
    DeviceIdentity,
    DeviceInfo,
    KeyPackagesLow,
    KeyPackageStatus,
    LinkTicket,
    MessagePage,
    PendingLink,
    ProgressCallback,
    PushEvent,
    ReportResult,
    SendResult,
    ServerInfo,
    UserKeyPackages,
)

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
    "PushStream",
    "ReportResult",
    "SendResult",
    "ServerInfo",
    "Transport",
    "UserKeyPackages",
    "check_device_approvals",
    "device_approval_problems",
]
