"""Delivery endpoints: KeyPackages (upload, status, claims), sending, fetching and
acknowledging queued messages, group epochs, abuse reports and the account's block list."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

from doorless.client.errors import BadResponse, ServerError
from doorless.client.transport.http import HttpBase
from doorless.client.transport.parsing import (
    Fields,
    check_path_value,
    parse_claimed,
    parse_inbound,
    parse_key_package_status,
)
from doorless.client.transport.types import (
    ClaimedKeyPackage,
    KeyPackageStatus,
    MessagePage,
    ReportResult,
    SendResult,
    UserKeyPackages,
)
from doorless.wire import protocol


def _suite(cipher_suite: int | None) -> dict[str, int]:
    return {} if cipher_suite is None else {"cipher_suite": cipher_suite}


class DeliveryEndpoints(HttpBase):
    """KeyPackages, messages, reports and blocks over HTTP."""

    async def upload_key_packages(
        self, key_packages: Sequence[bytes], last_resort: bytes | None = None
    ) -> KeyPackageStatus:
        """Upload encoded MLSMessage(mls_key_package)s; optionally replace the last resort."""
        body: dict[str, Any] = {"key_packages": [protocol.b64encode(k) for k in key_packages]}
        if last_resort is not None:
            body["last_resort"] = protocol.b64encode(last_resort)
        return parse_key_package_status(
            await self._json("POST", "/v1/keypackages", "key packages", json=body)
        )

    async def key_package_status(self, cipher_suite: int | None = None) -> KeyPackageStatus:
        """This device's one-time KeyPackages left on the server, of ``cipher_suite``
        (``None``: the RFC 9420 suites)."""
        return parse_key_package_status(
            await self._json(
                "GET",
                "/v1/keypackages/count",
                "key packages",
                retry_unanswered=True,
                params=_suite(cipher_suite),
            )
        )

    async def claim_key_package(
        self, device_id: str, cipher_suite: int | None = None
    ) -> ClaimedKeyPackage:
        check_path_value(protocol.is_device_id(device_id), "device id")
        return parse_claimed(
            await self._json(
                "POST",
                f"/v1/devices/{device_id}/keypackages/claim",
                "claim",
                params=_suite(cipher_suite),
            )
        )

    async def claim_key_packages(
        self, username: str, cipher_suite: int | None = None
    ) -> UserKeyPackages:
        """One KeyPackage of ``cipher_suite`` per live device of ``username`` (not this
        device); a device without one is in ``missing``."""
        check_path_value(protocol.is_username(username), "username")
        f = await self._json(
            "POST",
            f"/v1/users/{username}/keypackages/claim",
            "claim",
            params=_suite(cipher_suite),
        )
        return UserKeyPackages(
            username=f.text("username"),
            key_packages=[parse_claimed(Fields(k, "claim")) for k in f.items("key_packages")],
            missing=[str(m) for m in f.items("missing")],
        )

    async def send(
        self,
        data: bytes,
        recipients: Sequence[str],
        *,
        message_id: str | None = None,
        welcome: bytes | None = None,
        welcome_recipients: Sequence[str] = (),
        group_info: bytes | None = None,
    ) -> SendResult:
        """Send an MLSMessage to these devices (and a commit's Welcome, atomically).

        Retried with the same ``message_id`` when no answer came, so a message is enqueued
        once. Raises `EpochConflict` when another commit won the epoch. ``group_info``: a
        commit's GroupInfo of the new epoch (the server validates commits against it).
        """
        body: dict[str, Any] = {
            "message_id": message_id or secrets.token_urlsafe(16),
            "data": protocol.b64encode(data),
            "recipients": list(recipients),
        }
        if welcome is not None:
            body["welcome"] = {
                "data": protocol.b64encode(welcome),
                "recipients": list(welcome_recipients),
            }
        if group_info is not None:
            body["group_info"] = protocol.b64encode(group_info)
        f = await self._json("POST", "/v1/messages", "send", json=body, retry_unanswered=True)
        return SendResult(f.text("message_id"), f.opt_integer("group_epoch"), f.flag("duplicate"))

    async def register_group(self, group_info: bytes, ratchet_tree: bytes) -> int:
        """Register a new group (its GroupInfo signed by this device and its ratchet tree): the
        server validates its handshakes from now on. Returns the group's epoch."""
        body = {
            "group_info": protocol.b64encode(group_info),
            "ratchet_tree": protocol.b64encode(ratchet_tree),
        }
        f = await self._json("POST", "/v1/groups", "group", json=body, retry_unanswered=True)
        return f.integer("epoch")

    async def group_info(self, group_id: bytes) -> tuple[int, bytes, bytes]:
        """``(epoch, GroupInfo, ratchet tree)`` of a registered group this device is in."""
        check_path_value(0 < len(group_id) <= 255, "group id")
        f = await self._json(
            "GET", f"/v1/groups/{group_id.hex()}/info", "group info", retry_unanswered=True
        )
        return f.integer("epoch"), f.blob("group_info"), f.blob("ratchet_tree")

    async def fetch(self, after: int = 0, limit: int = 100) -> MessagePage:
        """Queued messages with ``seq > after``, oldest first (for devices that were offline)."""
        f = await self._json(
            "GET",
            "/v1/messages",
            "messages",
            params={"after": after, "limit": limit},
            retry_unanswered=True,
        )
        return MessagePage(
            [parse_inbound(Fields(m, "message")) for m in f.items("messages")], f.flag("more")
        )

    async def ack(self, seqs: Sequence[int]) -> int:
        """Delete processed messages from this device's queue; returns how many existed."""
        if not seqs:
            return 0
        f = await self._json(
            "POST", "/v1/messages/ack", "ack", json={"seqs": list(seqs)}, retry_unanswered=True
        )
        return f.integer("acknowledged")

    async def group_epoch(self, group_id: bytes) -> int | None:
        """The epoch the server expects this group's next commit for (None: never seen)."""
        check_path_value(0 < len(group_id) <= 255, "group id")
        try:
            f = await self._json(
                "GET", f"/v1/groups/{group_id.hex()}/epoch", "epoch", retry_unanswered=True
            )
        except ServerError as exc:
            if exc.status == 404:
                return None
            raise
        return f.integer("epoch")

    async def report(self, report: bytes) -> ReportResult:
        """File an encoded `doorless.franking.AbuseReport` (one message). Raises
        `InvalidRequest` with code ``report_expired`` or ``invalid_report`` if it does not
        verify."""
        f = await self._json(
            "POST", "/v1/reports", "report", json={"report": protocol.b64encode(report)}
        )
        verdicts = f.items("attachments")
        if not all(isinstance(v, str) for v in verdicts):
            raise BadResponse("report: attachments must be strings")
        return ReportResult(f.integer("report_id"), f.text("sender"), [str(v) for v in verdicts])

    async def list_blocks(self) -> list[str]:
        """The users this account blocks (the same list on every device of the account)."""
        f = await self._json("GET", "/v1/blocks", "blocks", retry_unanswered=True)
        blocked = f.items("blocked")
        if not all(isinstance(u, str) for u in blocked):
            raise BadResponse("blocks: usernames must be strings")
        return [str(u) for u in blocked]

    async def block(self, username: str) -> None:
        """The server stops queueing ``username``'s messages for this account's devices."""
        check_path_value(protocol.is_username(username), "username")
        await self._call("PUT", f"/v1/blocks/{username}", retry_unanswered=True)

    async def unblock(self, username: str) -> None:
        check_path_value(protocol.is_username(username), "username")
        await self._call("DELETE", f"/v1/blocks/{username}", retry_unanswered=True)


__all__ = ["DeliveryEndpoints"]
