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
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from doorless.client.errors import (
    BadResponse,
    ServerError,
    ServerUnreachable,
    Unauthorized,
    server_error,
)
from doorless.client.kt import (
    KeyNotInTransparencyLog,
    KtVerifier,
    first_list,
    with_device,
    without_device,
)
from doorless.errors import ConfigurationError, DecodeError, StateError, ValidationError
from doorless.kt.device_list import DeviceList
from doorless.secret import PrivateKeyBytes
from doorless.wire import kt as kt_wire
from doorless.wire import protocol
from doorless.wire.messages import QueuedMessage

ProgressCallback = Callable[[int, int | None], None]
"""``progress(bytes_done, total_or_None)``, called after each chunk."""

_CHUNK = 64 * 1024
_TOKEN_MARGIN = 30.0  # refresh a token this many seconds before it expires
_CLOSE_TOKEN_EXPIRED = 4401


# --- identity -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class DeviceIdentity:
    """A device's Ed25519 key pair; the id is derived from the public key."""

    private_key: PrivateKeyBytes
    public_key: bytes

    @classmethod
    def generate(cls) -> DeviceIdentity:
        sk, pk = protocol.generate_device_key()
        return cls(PrivateKeyBytes(sk), pk)

    @classmethod
    def from_private_key(cls, private_key: bytes) -> DeviceIdentity:
        return cls(PrivateKeyBytes(private_key), protocol.public_key_of(private_key))

    @property
    def device_id(self) -> str:
        return protocol.device_id_of(self.public_key)

    def sign(self, content: bytes) -> bytes:
        return protocol.sign(self.private_key.value, content)


# --- what the server returns ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServerInfo:
    server_id: str
    version: str
    registration: str
    limits: dict[str, int]
    franking_public_key: bytes | None = None  # signs franks (doorless.franking); pin it


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    device_id: str
    device_key: bytes
    approved_by: str | None
    approval_signature: bytes
    created_at: int
    revoked_at: int | None


@dataclass(frozen=True, slots=True)
class LinkTicket:
    """What a new device shows its owner: the code to enter on an existing device."""

    code: str
    device_id: str
    expires_at: int


@dataclass(frozen=True, slots=True)
class PendingLink:
    code: str
    username: str
    device_id: str
    device_key: bytes
    created_at: int
    expires_at: int
    approved: bool

    def fingerprint(self) -> str:
        """The new device's id in groups of four, to compare with the new device's screen."""
        return " ".join(self.device_id[i : i + 4] for i in range(0, len(self.device_id), 4))


@dataclass(frozen=True, slots=True)
class KeyPackageStatus:
    count: int
    last_resort: bool
    low_watermark: int

    @property
    def needs_top_up(self) -> bool:
        return self.count < self.low_watermark


@dataclass(frozen=True, slots=True)
class ClaimedKeyPackage:
    device_id: str
    key_package: bytes  # an encoded MLSMessage(mls_key_package)
    last_resort: bool


@dataclass(frozen=True, slots=True)
class UserKeyPackages:
    username: str
    key_packages: list[ClaimedKeyPackage]
    missing: list[str]


@dataclass(frozen=True, slots=True)
class SendResult:
    message_id: str
    group_epoch: int | None
    duplicate: bool


@dataclass(frozen=True, slots=True)
class ReportResult:
    report_id: int
    sender: str  # the username the server stamped the reported message with
    attachments: list[str]  # per attachment: ok, mismatch or gone


@dataclass(frozen=True, slots=True)
class MessagePage:
    messages: list[QueuedMessage]
    more: bool


@dataclass(frozen=True, slots=True)
class KeyPackagesLow:
    """Pushed when claims left this device with fewer one-time KeyPackages than it should."""

    count: int
    low_watermark: int


PushEvent = QueuedMessage | KeyPackagesLow


@dataclass(frozen=True, slots=True)
class AttachmentInfo:
    attachment_id: str
    size: int
    expires_at: int


# --- response parsing (a malformed answer is BadResponse, never a KeyError) ----------------


class _Fields:
    def __init__(self, data: Any, what: str) -> None:
        if not isinstance(data, dict):
            raise BadResponse(f"{what}: expected a JSON object")
        self._d: dict[str, Any] = data
        self._what = what

    def _get(self, key: str, kind: type, optional: bool = False) -> Any:
        value = self._d.get(key)
        if value is None and optional:
            return None
        # JSON true/false are Python bools, which are also ints: keep them apart.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise BadResponse(f"{self._what}: field {key!r} is missing or has the wrong type")
        return value

    def text(self, key: str) -> str:
        return str(self._get(key, str))

    def opt_text(self, key: str) -> str | None:
        value = self._get(key, str, optional=True)
        return None if value is None else str(value)

    def integer(self, key: str) -> int:
        return int(self._get(key, int))

    def opt_integer(self, key: str) -> int | None:
        value = self._get(key, int, optional=True)
        return None if value is None else int(value)

    def flag(self, key: str) -> bool:
        return bool(self._get(key, bool))

    def blob(self, key: str) -> bytes:
        try:
            return protocol.b64decode(self.text(key))
        except DecodeError:
            raise BadResponse(f"{self._what}: field {key!r} is not base64") from None

    def items(self, key: str) -> list[Any]:
        return list(self._get(key, list))

    def obj(self, key: str) -> _Fields:
        return _Fields(self._d.get(key), f"{self._what}.{key}")

    def raw(self) -> dict[str, Any]:
        return self._d


def _device_info(f: _Fields) -> DeviceInfo:
    return DeviceInfo(
        device_id=f.text("device_id"),
        device_key=f.blob("device_key"),
        approved_by=f.opt_text("approved_by"),
        approval_signature=f.blob("approval_signature"),
        created_at=f.integer("created_at"),
        revoked_at=f.opt_integer("revoked_at"),
    )


def _key_package_status(f: _Fields) -> KeyPackageStatus:
    return KeyPackageStatus(f.integer("count"), f.flag("last_resort"), f.integer("low_watermark"))


def _claimed(f: _Fields) -> ClaimedKeyPackage:
    return ClaimedKeyPackage(f.text("device_id"), f.blob("key_package"), f.flag("last_resort"))


def _inbound(f: _Fields) -> QueuedMessage:
    frank = f.blob("frank") if f.opt_text("frank") is not None else None
    return QueuedMessage(f.integer("seq"), f.blob("data"), f.integer("received_at"), frank)


def check_device_approvals(server_id: str, username: str, devices: Sequence[DeviceInfo]) -> None:
    """Re-verify, on the client, that every device of ``username`` was admitted properly.

    The first device proves possession of its key at registration; every later device carries
    the signature of an existing device of the account over its id and key, made before that
    device was revoked. Raises `doorless.errors.InvalidSignature` or `ValidationError`: a device
    the user did not approve (I3).
    """
    by_id = {d.device_id: d for d in devices}
    roots = [d for d in devices if d.approved_by is None]
    if len(roots) != 1:
        raise ValidationError(f"account must have exactly one first device, has {len(roots)}")
    for d in devices:
        if protocol.device_id_of(d.device_key) != d.device_id:
            raise ValidationError("device id does not match its key")
        if d.approved_by is None:
            protocol.verify(
                d.device_key,
                protocol.register_content(server_id, username, d.device_key),
                d.approval_signature,
            )
            continue
        approver = by_id.get(d.approved_by)
        if approver is None:
            raise ValidationError("device approved by a device that is not on the account")
        if approver.created_at > d.created_at or (
            approver.revoked_at is not None and approver.revoked_at <= d.created_at
        ):
            raise ValidationError("device approved by a device that was not active then")
        protocol.verify(
            approver.device_key,
            protocol.device_approval_content(server_id, username, d.device_id, d.device_key),
            d.approval_signature,
        )


def _check_path_value(ok: bool, what: str) -> None:
    if not ok:
        raise ConfigurationError(f"invalid {what}")


# --- the transport --------------------------------------------------------------------------


class Transport:
    """One device's connection to one server.

    ``device`` may be None for calls that need no identity (``server_info``). ``server_id``
    pins the server: signatures are bound to it, and an answer from another deployment is
    refused. ``http_transport`` replaces the network (tests use ``httpx.ASGITransport``).
    """

    def __init__(
        self,
        base_url: str,
        device: DeviceIdentity | None = None,
        *,
        server_id: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = 30.0,
        retries: int = 2,
        backoff: float = 0.2,
        max_backoff: float = 30.0,
        http_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ConfigurationError("base_url must start with http:// or https://")
        self.base_url = base_url.rstrip("/")
        self.device = device
        self.username: str | None = None
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._server_id = server_id
        self._ssl = ssl_context
        self._timeout = timeout
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            transport=http_transport,
            verify=ssl_context if ssl_context is not None else True,
            timeout=timeout,
        )
        self._token: str | None = None
        self._token_expires_at = 0.0
        self._auth_lock = asyncio.Lock()
        # Key transparency: the verifier that vouches for device lists (`doorless.client.kt`).
        # The client library sets its own (witnesses, persisted head); without one, a default
        # verifier with no witness quorum (and a loud warning) is made on first use.
        self.kt: KtVerifier | None = None
        self.kt_cipher_suite = kt_wire.DEFAULT_SUITE

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Transport:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _identity(self) -> DeviceIdentity:
        if self.device is None:
            raise StateError("this transport has no device identity")
        return self.device

    # --- HTTP plumbing ---------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        content: Callable[[], AsyncIterator[bytes]] | None = None,
        headers: dict[str, str] | None = None,
        auth: bool = True,
        retry_unanswered: bool = False,
    ) -> httpx.Response:
        """One API call. Retries a connection that failed before sending (always safe) and,
        if ``retry_unanswered``, a request that got no answer (for idempotent calls); on 401
        it logs in again once."""
        attempt = 0
        logged_in_again = False
        while True:
            request_headers = dict(headers or {})
            if auth:
                request_headers["Authorization"] = f"Bearer {await self._ensure_token()}"
            try:
                response = await self._http.request(
                    method,
                    path,
                    json=json,
                    params=params,
                    content=content() if content is not None else None,
                    headers=request_headers,
                )
            except httpx.TransportError as exc:
                never_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
                if attempt < self.retries and (never_sent or retry_unanswered):
                    attempt += 1
                    await asyncio.sleep(min(self.max_backoff, self.backoff * 2**attempt))
                    continue
                raise ServerUnreachable(
                    f"{method} request got no answer ({type(exc).__name__})"
                ) from None
            if response.status_code == 401 and auth and not logged_in_again:
                logged_in_again = True
                self._token = None
                continue
            if response.status_code >= 400:
                raise _error_of(response)
            return response

    async def _json(self, method: str, path: str, what: str, **kwargs: Any) -> _Fields:
        response = await self._call(method, path, **kwargs)
        try:
            data = response.json()
        except ValueError:
            raise BadResponse(f"{what}: not JSON") from None
        return _Fields(data, what)

    # --- server and authentication ---------------------------------------------------------

    async def server_info(self) -> ServerInfo:
        f = await self._json("GET", "/v1/info", "info", auth=False, retry_unanswered=True)
        limits = f.obj("limits").raw()
        info = ServerInfo(
            server_id=f.text("server_id"),
            version=f.text("version"),
            registration=f.text("registration"),
            limits={k: v for k, v in limits.items() if isinstance(v, int)},
            franking_public_key=(
                f.blob("franking_public_key") if f.opt_text("franking_public_key") else None
            ),
        )
        self._pin(info.server_id)
        return info

    def _pin(self, server_id: str) -> None:
        if self._server_id is None:
            self._server_id = server_id
        elif self._server_id != server_id:
            raise BadResponse("the server's id changed: this is not the server we registered on")

    async def server_id(self) -> str:
        """The pinned server id (fetched from ``/v1/info`` on first use)."""
        if self._server_id is None:
            await self.server_info()
        assert self._server_id is not None
        return self._server_id

    async def _ensure_token(self) -> str:
        async with self._auth_lock:
            if self._token is None or self._token_expires_at - time.time() < _TOKEN_MARGIN:
                await self._login()
            assert self._token is not None
            return self._token

    async def authenticate(self) -> None:
        """Log in now (challenge, signature, token). Other calls do this when needed."""
        async with self._auth_lock:
            await self._login()

    async def _login(self) -> None:
        device = self._identity()
        server_id = await self.server_id()
        challenge = await self._json(
            "POST", "/v1/auth/challenge", "challenge", auth=False, retry_unanswered=True
        )
        self._pin(challenge.text("server_id"))
        nonce = challenge.blob("nonce")
        signature = device.sign(protocol.auth_content(server_id, nonce, device.device_id))
        token = await self._json(
            "POST",
            "/v1/auth/token",
            "token",
            auth=False,
            json={
                "device_id": device.device_id,
                "nonce": protocol.b64encode(nonce),
                "signature": protocol.b64encode(signature),
            },
        )
        self._token = token.text("token")
        self._token_expires_at = float(token.integer("expires_at"))
        self.username = token.text("username")

    # --- accounts and devices --------------------------------------------------------------

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
        _check_path_value(protocol.is_username(username), "username")
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
        _check_path_value(protocol.is_username(username), "username")
        f = await self._json(
            "GET", f"/v1/users/{username}/devices", "devices", retry_unanswered=True
        )
        devices = [_device_info(_Fields(d, "device")) for d in f.items("devices")]
        if verify:
            check_device_approvals(await self.server_id(), username, devices)
        return devices

    async def revoke_device(self, device_id: str, *, device_list: DeviceList | None = None) -> None:
        """Revoke a device of this account; the account's next key-transparency device list
        (without it, signed by this device) is built from the verified current one unless
        ``device_list`` is given."""
        _check_path_value(protocol.is_device_id(device_id), "device id")
        if device_list is None:
            device_list = await self._next_own_list(without_device(device_id))
        body: dict[str, Any] = {}
        if device_list is not None:
            await self.kt_verifier().note_published(device_list)
            body["device_list"] = kt_wire.encode_device_list(device_list)
        await self._call(
            "DELETE", f"/v1/devices/{device_id}", json=body or None, retry_unanswered=True
        )

    # --- linking a new device --------------------------------------------------------------

    async def request_link(self, username: str) -> LinkTicket:
        """On the new device: ask to join ``username``. Show the code (and this device's
        fingerprint) to the owner, who approves on an existing device."""
        _check_path_value(protocol.is_username(username), "username")
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
        _check_path_value(0 < len(code) <= 16 and code.replace("-", "").isalnum(), "link code")
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
        _check_path_value(0 < len(code) <= 16 and code.replace("-", "").isalnum(), "link code")
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
        return _device_info(f)

    # --- key transparency (doorless.client.kt) ---------------------------------------------

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

    # --- key packages ----------------------------------------------------------------------

    async def upload_key_packages(
        self, key_packages: Sequence[bytes], last_resort: bytes | None = None
    ) -> KeyPackageStatus:
        """Upload encoded MLSMessage(mls_key_package)s; optionally replace the last resort."""
        body: dict[str, Any] = {"key_packages": [protocol.b64encode(k) for k in key_packages]}
        if last_resort is not None:
            body["last_resort"] = protocol.b64encode(last_resort)
        return _key_package_status(
            await self._json("POST", "/v1/keypackages", "key packages", json=body)
        )

    async def key_package_status(self) -> KeyPackageStatus:
        return _key_package_status(
            await self._json("GET", "/v1/keypackages/count", "key packages", retry_unanswered=True)
        )

    async def claim_key_package(self, device_id: str) -> ClaimedKeyPackage:
        _check_path_value(protocol.is_device_id(device_id), "device id")
        return _claimed(
            await self._json("POST", f"/v1/devices/{device_id}/keypackages/claim", "claim")
        )

    async def claim_key_packages(self, username: str) -> UserKeyPackages:
        """One KeyPackage per live device of ``username`` (not this device)."""
        _check_path_value(protocol.is_username(username), "username")
        f = await self._json("POST", f"/v1/users/{username}/keypackages/claim", "claim")
        return UserKeyPackages(
            username=f.text("username"),
            key_packages=[_claimed(_Fields(k, "claim")) for k in f.items("key_packages")],
            missing=[str(m) for m in f.items("missing")],
        )

    # --- delivery --------------------------------------------------------------------------

    async def send(
        self,
        data: bytes,
        recipients: Sequence[str],
        *,
        message_id: str | None = None,
        welcome: bytes | None = None,
        welcome_recipients: Sequence[str] = (),
    ) -> SendResult:
        """Send an MLSMessage to these devices (and a commit's Welcome, atomically).

        Retried with the same ``message_id`` when no answer came, so a message is enqueued
        once. Raises `EpochConflict` when another commit won the epoch.
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
        f = await self._json("POST", "/v1/messages", "send", json=body, retry_unanswered=True)
        return SendResult(f.text("message_id"), f.opt_integer("group_epoch"), f.flag("duplicate"))

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
            [_inbound(_Fields(m, "message")) for m in f.items("messages")], f.flag("more")
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
        _check_path_value(0 < len(group_id) <= 255, "group id")
        try:
            f = await self._json(
                "GET", f"/v1/groups/{group_id.hex()}/epoch", "epoch", retry_unanswered=True
            )
        except ServerError as exc:
            if exc.status == 404:
                return None
            raise
        return f.integer("epoch")

    def push(self, after: int = 0, *, max_reconnects: int | None = None) -> PushStream:
        """Pushed events over a WebSocket, reconnecting (with backoff) when it drops.

        Messages stay queued until acked (`ack` or `PushStream.ack`); after a reconnect the
        stream resumes after the last seq it yielded.
        """
        return PushStream(self, after, max_reconnects)

    # --- abuse reports and blocks (doorless.franking, docs/franking.md) --------------------

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
        _check_path_value(protocol.is_username(username), "username")
        await self._call("PUT", f"/v1/blocks/{username}", retry_unanswered=True)

    async def unblock(self, username: str) -> None:
        _check_path_value(protocol.is_username(username), "username")
        await self._call("DELETE", f"/v1/blocks/{username}", retry_unanswered=True)

    # --- attachments -----------------------------------------------------------------------

    async def upload_attachment(
        self, data: bytes | Path, *, progress: ProgressCallback | None = None
    ) -> AttachmentInfo:
        """Upload an (already encrypted) blob from memory or a file."""
        total = len(data) if isinstance(data, bytes) else data.stat().st_size

        async def body() -> AsyncIterator[bytes]:
            done = 0
            async for chunk in _chunks_of(data):
                done += len(chunk)
                yield chunk
                if progress is not None:
                    progress(done, total)

        f = await self._json(
            "POST",
            "/v1/attachments",
            "attachment",
            content=body,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(total)},
        )
        return AttachmentInfo(f.text("attachment_id"), f.integer("size"), f.integer("expires_at"))

    async def download_attachment(
        self, attachment_id: str, *, progress: ProgressCallback | None = None
    ) -> bytes:
        parts: list[bytes] = []

        async def sink(chunk: bytes) -> None:
            parts.append(chunk)

        await self._download(attachment_id, sink, progress)
        return b"".join(parts)

    async def download_attachment_to(
        self, attachment_id: str, path: Path, *, progress: ProgressCallback | None = None
    ) -> int:
        """Stream a blob into ``path`` (replaced only when complete); returns its size."""
        tmp = path.with_name(path.name + ".part")
        f: BinaryIO = await asyncio.to_thread(tmp.open, "wb")
        try:

            async def sink(chunk: bytes) -> None:
                await asyncio.to_thread(f.write, chunk)

            size = await self._download(attachment_id, sink, progress)
            await asyncio.to_thread(f.close)
            await asyncio.to_thread(tmp.replace, path)
        except BaseException:
            f.close()
            tmp.unlink(missing_ok=True)
            raise
        return size

    async def _download(
        self,
        attachment_id: str,
        sink: Callable[[bytes], Awaitable[None]],
        progress: ProgressCallback | None,
    ) -> int:
        _check_path_value(
            len(attachment_id) == 32 and all(c in "0123456789abcdef" for c in attachment_id),
            "attachment id",
        )
        for attempt in range(2):
            headers = {"Authorization": f"Bearer {await self._ensure_token()}"}
            try:
                async with self._http.stream(
                    "GET", f"/v1/attachments/{attachment_id}", headers=headers
                ) as response:
                    if response.status_code == 401 and attempt == 0:
                        self._token = None
                        continue
                    if response.status_code >= 400:
                        await response.aread()
                        raise _error_of(response)
                    total_header = response.headers.get("content-length")
                    total = int(total_header) if total_header and total_header.isdigit() else None
                    done = 0
                    async for chunk in response.aiter_bytes(_CHUNK):
                        await sink(chunk)
                        done += len(chunk)
                        if progress is not None:
                            progress(done, total)
                    if total is not None and done != total:
                        raise BadResponse("attachment download ended early")
                    return done
            except httpx.TransportError as exc:
                raise ServerUnreachable(
                    f"attachment download failed ({type(exc).__name__})"
                ) from None
        raise Unauthorized(401, "unauthorized", "token refused twice", {})

    # --- WebSocket -------------------------------------------------------------------------

    async def _open_socket(self, after: int) -> ClientConnection:
        """Open the push socket (one login retry on 401); raises typed errors."""
        url = self.base_url.replace("http", "ws", 1) + f"/v1/ws?after={after}"
        for attempt in range(2):
            token = await self._ensure_token()
            try:
                return await connect(
                    url,
                    additional_headers={"Authorization": f"Bearer {token}"},
                    ssl=self._ssl if url.startswith("wss") else None,
                    open_timeout=self._timeout,
                    max_size=4 * 1024 * 1024,
                    proxy=None,
                )
            except InvalidStatus as exc:
                status = exc.response.status_code
                if status == 401 and attempt == 0:
                    self._token = None
                    continue
                body: Any = None
                with contextlib.suppress(ValueError):
                    body = json.loads(exc.response.body or b"")
                raise server_error(status, body, exc.response.headers.get("Retry-After")) from None
            except (OSError, TimeoutError, WebSocketException) as exc:
                raise ServerUnreachable(f"push socket failed ({type(exc).__name__})") from None
        raise Unauthorized(401, "unauthorized", "token refused twice", {})


def _error_of(response: httpx.Response) -> ServerError:
    try:
        body = response.json()
    except ValueError:
        body = None
    return server_error(response.status_code, body, response.headers.get("retry-after"))


async def _chunks_of(data: bytes | Path) -> AsyncIterator[bytes]:
    if isinstance(data, bytes):
        for i in range(0, len(data), _CHUNK):
            yield data[i : i + _CHUNK]
        return
    f = await asyncio.to_thread(data.open, "rb")
    try:
        while chunk := await asyncio.to_thread(f.read, _CHUNK):
            yield chunk
    finally:
        f.close()


class PushStream:
    """``async for event in transport.push(): ...`` — see `Transport.push`."""

    def __init__(self, transport: Transport, after: int, max_reconnects: int | None) -> None:
        self._t = transport
        self.last_seq = after
        self._max_reconnects = max_reconnects
        self._failures = 0
        self._socket: ClientConnection | None = None
        self._closed = False

    def __aiter__(self) -> PushStream:
        return self

    async def __anext__(self) -> PushEvent:
        while not self._closed:
            if self._socket is None:
                await self._reconnect()
                continue
            try:
                raw = await self._socket.recv()
            except ConnectionClosed as exc:
                self._socket = None
                if exc.rcvd is not None and exc.rcvd.code == _CLOSE_TOKEN_EXPIRED:
                    self._t._token = None
                continue
            event = self._parse(raw)
            if event is not None:
                return event
        raise StopAsyncIteration

    async def _reconnect(self) -> None:
        while True:
            try:
                self._socket = await self._t._open_socket(self.last_seq)
                self._failures = 0
                return
            except (ServerUnreachable, ServerError) as exc:
                if isinstance(exc, ServerError) and exc.status not in (429, 500, 502, 503, 504):
                    raise
                self._failures += 1
                if self._max_reconnects is not None and self._failures > self._max_reconnects:
                    raise
                delay = min(self._t.max_backoff, self._t.backoff * 2**self._failures)
                retry_after = getattr(exc, "retry_after", None)
                await asyncio.sleep(max(delay, retry_after or 0.0))

    def _parse(self, raw: str | bytes) -> PushEvent | None:
        try:
            frame = _Fields(json.loads(raw), "push frame")
        except ValueError:
            raise BadResponse("push frame is not JSON") from None
        kind = frame.text("type")
        if kind == "message":
            message = _inbound(frame)
            if message.seq <= self.last_seq:  # already yielded before a reconnect
                return None
            self.last_seq = message.seq
            return message
        if kind == "keypackages_low":
            return KeyPackagesLow(frame.integer("count"), frame.integer("low_watermark"))
        return None  # "acked", "error" and future frame types

    async def ack(self, seqs: Sequence[int]) -> None:
        """Acknowledge over the socket if it is open, else over HTTP."""
        if not seqs:
            return
        if self._socket is not None:
            with contextlib.suppress(ConnectionClosed):
                await self._socket.send(json.dumps({"type": "ack", "seqs": list(seqs)}))
                return
        await self._t.ack(seqs)

    async def aclose(self) -> None:
        self._closed = True
        if self._socket is not None:
            await self._socket.close()
            self._socket = None

    async def __aenter__(self) -> PushStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


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
]
