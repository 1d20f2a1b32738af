"""Accounts, devices and device linking.

A device joins an existing account only through a link approved by a device already on that
account: the approval is that device's signature over (server, account, new device id, new
device key), which the server verifies and keeps so every device can re-check it (I3). There is
no other way to add a device.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response

from doorless.errors import DecodeError, InvalidSignature, ValidationError
from doorless.server.auth import invite_hash as invite_code_hash
from doorless.server.auth import limit_anonymous
from doorless.server.config import Registration
from doorless.server.errors import ApiError, bad_request, forbidden, not_found
from doorless.server.fanout.base import Topic
from doorless.server.routes.common import AUTHED, Ctx, Device, errors
from doorless.server.schemas import (
    ApproveRequest,
    DeviceInfo,
    DeviceList,
    LinkCreated,
    LinkRequest,
    LinkStatus,
    PendingLink,
    RegisterRequest,
    RegisterResponse,
    RevokeRequest,
)
from doorless.server.storage.base import DeviceRecord, KtConflict, KtVersion, LinkRecord
from doorless.wire import protocol
from doorless.wire.errors import ErrorCode
from doorless.wire.kt import expected_after_link, expected_after_revoke

router = APIRouter(prefix="/v1", tags=["accounts"])

# Link codes: 8 characters without look-alikes (0/O, 1/I/L), shown as XXXX-XXXX.
_CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
_CODE_RE = re.compile(f"^[{_CODE_ALPHABET}]{{8}}$")

UsernamePath = Annotated[str, Path(pattern=protocol.USERNAME_PATTERN)]
DeviceIdPath = Annotated[str, Path(pattern=protocol.DEVICE_ID_PATTERN)]
CodePath = Annotated[str, Path(min_length=1, max_length=16)]


def _check_device_key(key: bytes) -> None:
    if len(key) != protocol.DEVICE_KEY_LENGTH:
        raise bad_request(f"device_key must be {protocol.DEVICE_KEY_LENGTH} bytes (Ed25519)")


def _check_signature(key: bytes, content: bytes, signature: bytes) -> None:
    try:
        protocol.verify(key, content, signature)
    except InvalidSignature:
        raise ApiError(400, ErrorCode.INVALID_SIGNATURE, "signature does not verify") from None


@contextmanager
def _kt_errors() -> Iterator[None]:
    """Map a rejected device list (key transparency) onto the API's errors."""
    try:
        yield
    except DecodeError:
        raise bad_request("device_list is not a DeviceList") from None
    except InvalidSignature:
        raise ApiError(
            400, ErrorCode.INVALID_SIGNATURE, "device_list signature does not verify"
        ) from None
    except ValidationError as exc:
        raise bad_request(f"device_list: {exc}") from None
    except KtConflict:
        raise ApiError(
            409, ErrorCode.KT_CONFLICT, "the account's device list changed: read it again and retry"
        ) from None


def _normalize_code(code: str) -> str:
    normalized = code.replace("-", "").upper()
    if _CODE_RE.fullmatch(normalized) is None:
        raise not_found("no pending link request with this code")
    return normalized


def _display_code(code: str) -> str:
    return f"{code[:4]}-{code[4:]}"


def device_info(d: DeviceRecord) -> DeviceInfo:
    return DeviceInfo(
        device_id=d.device_id,
        device_key=d.device_key,
        approved_by=d.approved_by,
        approval_signature=d.approval_signature,
        created_at=d.created_at,
        revoked_at=d.revoked_at,
    )


# --- accounts -------------------------------------------------------------------------------


@router.post(
    "/accounts",
    status_code=201,
    response_model=RegisterResponse,
    responses=errors(400, 403, 409, 422, 429),
    dependencies=[Depends(limit_anonymous)],
)
async def register(body: RegisterRequest, ctx: Ctx) -> RegisterResponse:
    """Create an account with its first device (signature proves possession of the key)."""
    _check_device_key(body.device_key)
    invite_hash: bytes | None = None
    if ctx.config.registration == Registration.invite:
        if body.invite_code is None:
            raise ApiError(
                403, ErrorCode.INVITE_REQUIRED, "registration on this server needs an invite"
            )
        invite_hash = invite_code_hash(body.invite_code)
    _check_signature(
        body.device_key,
        protocol.register_content(ctx.server_id, body.username, body.device_key),
        body.signature,
    )
    device = DeviceRecord(
        device_id=protocol.device_id_of(body.device_key),
        username=body.username,
        device_key=body.device_key,
        approved_by=None,
        approval_signature=body.signature,
        created_at=ctx.now(),
    )
    kt: KtVersion | None = None
    with _kt_errors():
        if body.device_list is not None:
            kt = await ctx.kt.version_for_register(
                device.username, device.device_id, device.device_key, body.device_list
            )
        invite_expiry = await ctx.storage.create_account(device, invite_hash, ctx.now(), kt)
    if kt is not None:
        consumed = None
        if invite_hash is not None and invite_expiry is not None:
            consumed = (invite_hash, invite_expiry)
        try:
            await ctx.kt.publish()
        except BaseException:
            # Atomic: an account whose first version did not reach the log is removed again
            # (with its invite restored), so the client's retry registers it anew instead of
            # finding the name taken. Logged meanwhile by another process: it stands.
            undone = await asyncio.shield(
                ctx.storage.undo_registration(device.username, device.device_id, kt.label, consumed)
            )
            if undone:
                raise
    return RegisterResponse(username=device.username, device_id=device.device_id)


@router.get(
    "/users/{username}/devices",
    response_model=DeviceList,
    responses=errors(*AUTHED, 404, 422),
)
async def list_devices(username: UsernamePath, _me: Device, ctx: Ctx) -> DeviceList:
    """Every device of a user, revoked ones included, with its approval signature."""
    devices = await ctx.storage.list_devices(username)
    if devices is None:
        raise not_found("no such user")
    return DeviceList(username=username, devices=[device_info(d) for d in devices])


@router.delete(
    "/devices/{device_id}",
    status_code=204,
    response_class=Response,
    responses=errors(*AUTHED, 400, 403, 404, 409, 422),
)
async def revoke_device(
    device_id: DeviceIdPath, me: Device, ctx: Ctx, body: RevokeRequest | None = None
) -> Response:
    """Revoke a device of one's own account (its queue, tokens and KeyPackages go too).

    An account with a device list in key transparency must send the next one (without the
    revoked device, signed by this device) in the body."""
    target = await ctx.storage.get_device(device_id)
    if target is None or target.revoked_at is not None:
        raise not_found("no such device")
    if target.username != me.username:
        raise forbidden("a device can only revoke devices of its own account")
    with _kt_errors():
        kt = await ctx.kt.version_for_change(
            me.username,
            me.device_id,
            body.device_list if body is not None else None,
            lambda current: expected_after_revoke(current, device_id),
        )
        await ctx.storage.revoke_device(device_id, ctx.now(), kt)
    if kt is not None:
        await ctx.kt.publish()
    await ctx.fanout.publish([device_id], Topic.revoked)  # its open sockets re-check and close
    return Response(status_code=204)


# --- device linking -------------------------------------------------------------------------


@router.post(
    "/links",
    status_code=201,
    response_model=LinkCreated,
    responses=errors(400, 404, 409, 422, 429),
    dependencies=[Depends(limit_anonymous)],
)
async def request_link(body: LinkRequest, ctx: Ctx) -> LinkCreated:
    """A new device asks to join ``username``; it gets a short code to show its owner."""
    _check_device_key(body.device_key)
    _check_signature(
        body.device_key,
        protocol.link_request_content(ctx.server_id, body.username, body.device_key),
        body.signature,
    )
    now = ctx.now()
    device_id = protocol.device_id_of(body.device_key)
    for _ in range(8):  # 31^8 codes: a collision with a live code is rare, a streak never
        code = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(8))
        link = LinkRecord(
            code=code,
            username=body.username,
            device_id=device_id,
            device_key=body.device_key,
            created_at=now,
            expires_at=now + ctx.config.link_ttl,
        )
        if await ctx.storage.create_link(link):
            return LinkCreated(
                code=_display_code(code), device_id=device_id, expires_at=link.expires_at
            )
    raise ApiError(429, ErrorCode.RATE_LIMITED, "could not allocate a link code, retry")


async def _own_link(code: str, username: str, ctx: Ctx) -> LinkRecord:
    link = await ctx.storage.get_link(_normalize_code(code), ctx.now())
    # Another account's link is "not found": codes must not probe other accounts.
    if link is None or link.username != username:
        raise not_found("no pending link request with this code")
    return link


@router.get(
    "/links/{code}",
    response_model=PendingLink,
    responses=errors(*AUTHED, 404, 422),
)
async def get_link(code: CodePath, me: Device, ctx: Ctx) -> PendingLink:
    """An existing device reads a pending request of its own account (to show the new key)."""
    link = await _own_link(code, me.username, ctx)
    return PendingLink(
        code=_display_code(link.code),
        username=link.username,
        device_id=link.device_id,
        device_key=link.device_key,
        created_at=link.created_at,
        expires_at=link.expires_at,
        approved=link.approved_at is not None,
    )


@router.get(
    "/links/{code}/status",
    response_model=LinkStatus,
    responses=errors(404, 422, 429),
    dependencies=[Depends(limit_anonymous)],
)
async def link_status(code: CodePath, ctx: Ctx) -> LinkStatus:
    """The new device polls this until its request is approved, then logs in."""
    link = await ctx.storage.get_link(_normalize_code(code), ctx.now())
    if link is None:
        raise not_found("no pending link request with this code")
    return LinkStatus(
        code=_display_code(link.code),
        state="approved" if link.approved_at is not None else "pending",
    )


@router.post(
    "/links/{code}/approve",
    status_code=201,
    response_model=DeviceInfo,
    responses=errors(*AUTHED, 400, 404, 409, 422),
)
async def approve_link(code: CodePath, body: ApproveRequest, me: Device, ctx: Ctx) -> DeviceInfo:
    """Admit the new device: the body is this device's signature over the approval content."""
    link = await _own_link(code, me.username, ctx)
    if body.device_id != link.device_id or body.device_key != link.device_key:
        raise bad_request("the approval names another device than the pending request")
    if link.approved_at is not None:
        raise not_found("this link request was already approved")
    _check_signature(
        me.device.device_key,
        protocol.device_approval_content(
            ctx.server_id, me.username, link.device_id, link.device_key
        ),
        body.signature,
    )
    device = DeviceRecord(
        device_id=link.device_id,
        username=me.username,
        device_key=link.device_key,
        approved_by=me.device_id,
        approval_signature=body.signature,
        created_at=ctx.now(),
    )
    with _kt_errors():
        kt = await ctx.kt.version_for_change(
            me.username,
            me.device_id,
            body.device_list,
            lambda current: expected_after_link(current, link.device_id, link.device_key),
        )
        await ctx.storage.approve_link(link.code, device, ctx.now(), kt)
    if kt is not None:
        await ctx.kt.publish()
    return device_info(device)
