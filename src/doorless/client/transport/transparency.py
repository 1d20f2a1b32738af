"""Key-transparency endpoints (`doorless.client.kt` verifies what they return) and the
next device list of this account, signed for a device change."""

from __future__ import annotations

import time
from typing import Any

from doorless.client.errors import BadResponse
from doorless.client.kt import KeyNotInTransparencyLog, KtVerifier
from doorless.client.transport.http import HttpBase
from doorless.errors import DecodeError, StateError
from doorless.kt.device_list import DeviceList
from doorless.wire import kt as kt_wire


class TransparencyEndpoints(HttpBase):
    """The transparency log: info, heads, searches, audits, cosignatures."""

    def kt_verifier(self) -> KtVerifier:
        """The verifier of this server's transparency log (`kt`, made on first use)."""
        if self.kt is None:
            self.kt = KtVerifier(self)
        return self.kt

    async def _next_own_list(self, change: Any) -> DeviceList | None:
        """This account's next device list from its verified current one; None for an
        account registered without one (the server then takes the change without)."""
        device = self._identity()
        await self._ensure_token()
        if self.username is None:
            raise StateError("not logged in")
        try:
            return await self.kt_verifier().next_list(
                self.username,
                device.device_id,
                device.private_key.value,
                change,
                int(time.time() * 1000),
            )
        except KeyNotInTransparencyLog:
            return None

    async def _kt_json(self, path: str, what: str, params: dict[str, Any], auth: bool) -> Any:
        f = await self._json("GET", path, what, params=params, auth=auth, retry_unanswered=True)
        return f.raw()

    async def kt_info(self) -> kt_wire.KtInfo:
        data = await self._kt_json("/v1/kt/info", "kt info", {}, auth=False)
        try:
            return kt_wire.KtInfo.from_json(data)
        except DecodeError as exc:
            raise BadResponse(str(exc)) from None

    async def kt_head(self, since: int) -> kt_wire.KtHead:
        data = await self._kt_json("/v1/kt/head", "kt head", {"since": since}, auth=False)
        try:
            return kt_wire.KtHead.from_json(data)
        except DecodeError as exc:
            raise BadResponse(str(exc)) from None

    async def kt_search(self, label: bytes, since: int, from_version: int) -> kt_wire.KtSearch:
        params = {"label": label.hex(), "since": since, "from_version": from_version}
        data = await self._kt_json("/v1/kt/search", "kt search", params, auth=True)
        try:
            return kt_wire.KtSearch.from_json(data)
        except DecodeError as exc:
            raise BadResponse(str(exc)) from None

    async def kt_audit(self, start: int, limit: int = 100) -> kt_wire.KtAudit:
        params = {"start": start, "limit": limit}
        data = await self._kt_json("/v1/kt/audit", "kt audit", params, auth=False)
        try:
            return kt_wire.KtAudit.from_json(data)
        except DecodeError as exc:
            raise BadResponse(str(exc)) from None

    async def kt_cosign(self, checkpoint: bytes) -> int:
        """Hand a witness cosignature (in a signed checkpoint note) to the log."""
        f = await self._json(
            "POST",
            "/v1/kt/cosignatures",
            "kt cosign",
            json={"checkpoint": checkpoint.decode("utf-8")},
            auth=False,
        )
        return f.integer("accepted")


__all__ = ["TransparencyEndpoints"]
