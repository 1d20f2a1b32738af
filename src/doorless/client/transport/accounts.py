"""Account endpoints: registration, the account's devices (listed with their approval chain
checked, revoked), and linking a new device."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from doorless.client.errors import BadResponse
from doorless.client.kt import first_list, with_device, without_device
from doorless.client.transport.parsing import (
    Fields,
    check_device_approvals,
    check_path_value,
    parse_device_info,
)
from doorless.client.transport.transparency import TransparencyEndpoints
from doorless.client.transport.types import DeviceInfo, LinkTicket, PendingLink
from doorless.errors import StateError
from doorless.kt.device_list import DeviceList
from doorless.wire import kt as kt_wire
from doorless.wire import protocol


class AccountEndpoints(TransparencyEndpoints):
    """Registering, listing and revoking devices, linking a new one."""

    async def register(
        self,
        username: str,
        invite_code: str | None = None,
        *,
        device_list: DeviceList | None = None,
    ) -> str:
        """Create ``username`` with this device as its first device; returns the device id.

        The account's key-transparency device list (version 0, this device, signed by it) is
        built here unless ``device_list`` is given."""
        check_path_value(protocol.is_username(username), "username")
        device = self._identity()
        server_id = await self.server_id()
        signature = device.sign(protocol.register_content(server_id, username, device.public_key))
        if device_list is None:
            device_list = first_list(
                username,
                device.device_id,
                device.public_key,
                device.private_key.value,
                int(time.time() * 1000),
                self.kt_cipher_suite,
            )
        await self.kt_verifier().note_published(device_list)
        body: dict[str, Any] = {
            "username": username,
            "device_key": protocol.b64encode(device.public_key),
            "signature": protocol.b64encode(signature),
            "device_list": kt_wire.encode_device_list(device_list),
        }
        if invite_code is not None:
            body["invite_code"] = invite_code
        f = await self._json("POST", "/v1/accounts", "register", auth=False, json=body)
        if f.text("device_id") != device.device_id:
            raise BadResponse("server registered another device id than ours")
        self.username = username
        return device.device_id

    async def list_devices(self, username: str, *, verify: bool = True) -> list[DeviceInfo]:
        """Every device of ``username`` (revoked ones too). With ``verify`` (the default), the
        approval chain is checked here (`check_device_approvals`), not taken on trust."""
        check_path_value(protocol.is_username(username), "username")
        f = await self._json(
            "GET", f"/v1/users/{username}/devices", "devices", retry_unanswered=True
        )
        devices = [parse_device_info(Fields(d, "device")) for d in f.items("devices")]
        if verify:
            check_device_approvals(await self.server_id(), username, devices)
        return devices

    async def revoke_device(self, device_id: str, *, device_list: DeviceList | None = None) -> None:
        """Revoke a device of this account; the account's next key-transparency device list
        (without it, signed by this device) is built from the verified current one unless
        ``device_list`` is given."""
        check_path_value(protocol.is_device_id(device_id), "device id")
        if device_list is None:
            device_list = await self._next_own_list(without_device(device_id))
        body: dict[str, Any] = {}
        if device_list is not None:
            await self.kt_verifier().note_published(device_list)
            body["device_list"] = kt_wire.encode_device_list(device_list)
        await self._call(
            "DELETE", f"/v1/devices/{device_id}", json=body or None, retry_unanswered=True
        )

    async def request_link(self, username: str) -> LinkTicket:
        """On the new device: ask to join ``username``. Show the code (and this device's
        fingerprint) to the owner, who approves on an existing device."""
        check_path_value(protocol.is_username(username), "username")
        device = self._identity()
        server_id = await self.server_id()
        signature = device.sign(
            protocol.link_request_content(server_id, username, device.public_key)
        )
        f = await self._json(
            "POST",
            "/v1/links",
            "link",
            auth=False,
            json={
                "username": username,
                "device_key": protocol.b64encode(device.public_key),
                "signature": protocol.b64encode(signature),
            },
        )
        if f.text("device_id") != device.device_id:
            raise BadResponse("server recorded another device id than ours")
        return LinkTicket(f.text("code"), f.text("device_id"), f.integer("expires_at"))

    async def link_status(self, code: str) -> str:
        """``"pending"`` or ``"approved"`` (`NotFound` once expired)."""
        check_path_value(0 < len(code) <= 16 and code.replace("-", "").isalnum(), "link code")
        f = await self._json(
            "GET", f"/v1/links/{code}/status", "link status", auth=False, retry_unanswered=True
        )
        return f.text("state")

    async def wait_for_link_approval(
        self, code: str, *, poll_interval: float = 1.0, timeout: float | None = None
    ) -> None:
        """On the new device: poll until approved, then log in (raises TimeoutError)."""
        async with asyncio.timeout(timeout):
            while await self.link_status(code) != "approved":
                await asyncio.sleep(poll_interval)
        await self.authenticate()

    async def get_link(self, code: str) -> PendingLink:
        """On an existing device: the pending request behind a code the owner typed."""
        check_path_value(0 < len(code) <= 16 and code.replace("-", "").isalnum(), "link code")
        f = await self._json("GET", f"/v1/links/{code}", "link", retry_unanswered=True)
        link = PendingLink(
            code=f.text("code"),
            username=f.text("username"),
            device_id=f.text("device_id"),
            device_key=f.blob("device_key"),
            created_at=f.integer("created_at"),
            expires_at=f.integer("expires_at"),
            approved=f.flag("approved"),
        )
        if protocol.device_id_of(link.device_key) != link.device_id:
            raise BadResponse("pending link: device id does not match its key")
        return link

    async def approve_link(
        self, link: PendingLink, *, device_list: DeviceList | None = None
    ) -> DeviceInfo:
        """On an existing device: sign the admission of ``link``'s device to this account.

        Call it only after the owner compared ``link.fingerprint()`` with the new device.
        """
        device = self._identity()
        await self._ensure_token()
        if self.username is None or link.username != self.username:
            raise StateError("a device can only approve devices for its own account")
        content = protocol.device_approval_content(
            await self.server_id(), self.username, link.device_id, link.device_key
        )
        if device_list is None:
            device_list = await self._next_own_list(
                with_device(
                    kt_wire.device_entry(
                        self.username, link.device_id, link.device_key, self.kt_cipher_suite
                    )
                )
            )
        body: dict[str, Any] = {
            "device_id": link.device_id,
            "device_key": protocol.b64encode(link.device_key),
            "signature": protocol.b64encode(device.sign(content)),
        }
        if device_list is not None:
            await self.kt_verifier().note_published(device_list)
            body["device_list"] = kt_wire.encode_device_list(device_list)
        f = await self._json("POST", f"/v1/links/{link.code}/approve", "approval", json=body)
        return parse_device_info(f)


__all__ = ["AccountEndpoints"]
