"""The KeyPackage directory: upload, count, claim (one-time packages are consumed).

Each device uploads one-time KeyPackages and one last-resort KeyPackage, each as an encoded
``MLSMessage`` with wire format ``mls_key_package``. A claim hands out (and deletes) the oldest
one-time package; when none is left it hands out the last-resort one, which stays. When a claim
leaves a device below the low watermark, the device is told over its socket to top up.

Packages are kept per cipher suite (a device publishes for the post-quantum hybrid suite and the
classic one): an upload holds packages of one suite, and a claim or count names the suite in
``?cipher_suite=``; without it, it is about the RFC 9420 suites only, as older clients expect.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from doorless.codec import decode
from doorless.crypto import cipher_suite
from doorless.errors import DoorlessError
from doorless.mls.framing import MLSMessage, WireFormat, peek_routing
from doorless.mls.key_package import KeyPackage
from doorless.server.context import ServerContext
from doorless.server.errors import malformed, not_found, too_large
from doorless.server.fanout.base import Topic
from doorless.server.routes.common import AUTHED, Ctx, Device, errors
from doorless.server.schemas import (
    ClaimedKeyPackage,
    KeyPackageStatus,
    KeyPackageUpload,
    UserKeyPackages,
)
from doorless.server.storage.base import ClaimedKeyPackage as StoredClaim
from doorless.server.storage.base import KeyPackageCount
from doorless.wire import protocol

router = APIRouter(prefix="/v1", tags=["key packages"])

UsernamePath = Annotated[str, Path(pattern=protocol.USERNAME_PATTERN)]
DeviceIdPath = Annotated[str, Path(pattern=protocol.DEVICE_ID_PATTERN)]
SuiteQuery = Annotated[
    int | None,
    Query(ge=1, le=0xFFFF, description="the MLS cipher suite (default: RFC 9420 suites only)"),
]


def _status(ctx: ServerContext, count: KeyPackageCount) -> KeyPackageStatus:
    return KeyPackageStatus(
        count=count.count,
        last_resort=count.last_resort,
        low_watermark=ctx.config.key_package_low_watermark,
    )


def _check_key_package(ctx: ServerContext, data: bytes) -> int:
    """The package's cipher suite (one this server knows), or a 4xx."""
    if len(data) > ctx.config.max_key_package_size:
        raise too_large(f"a KeyPackage may be at most {ctx.config.max_key_package_size} bytes")
    try:
        routing = peek_routing(data)
    except DoorlessError:
        raise malformed("not an encoded MLSMessage") from None
    if routing.wire_format != WireFormat.mls_key_package:
        raise malformed("expected an MLSMessage with wire format mls_key_package")
    try:
        body = decode(MLSMessage, data).body
        if not isinstance(body, KeyPackage):
            raise malformed("expected a KeyPackage")
        return int(cipher_suite(body.cipher_suite).id)
    except DoorlessError as exc:
        raise malformed(f"not a usable KeyPackage: {exc}") from None


@router.post(
    "/keypackages",
    response_model=KeyPackageStatus,
    responses=errors(*AUTHED, 400, 409, 413, 422),
)
async def upload(body: KeyPackageUpload, me: Device, ctx: Ctx) -> KeyPackageStatus:
    """Add one-time KeyPackages and/or replace the last-resort one."""
    if len(body.key_packages) > ctx.config.max_key_packages_per_upload:
        raise too_large(f"at most {ctx.config.max_key_packages_per_upload} KeyPackages per upload")
    suites = {_check_key_package(ctx, kp) for kp in body.key_packages}
    if body.last_resort is not None:
        suites.add(_check_key_package(ctx, body.last_resort))
    if len(suites) > 1:
        raise malformed("the KeyPackages of one upload must share one cipher suite")
    count = await ctx.storage.add_key_packages(
        me.device_id,
        body.key_packages,
        body.last_resort,
        ctx.config.max_key_packages_stored,
        suites.pop() if suites else 1,
    )
    return _status(ctx, count)


@router.get("/keypackages/count", response_model=KeyPackageStatus, responses=errors(*AUTHED))
async def count(me: Device, ctx: Ctx, cipher_suite: SuiteQuery = None) -> KeyPackageStatus:
    """How many one-time KeyPackages this device has left (top up below ``low_watermark``)."""
    return _status(ctx, await ctx.storage.key_package_count(me.device_id, cipher_suite))


async def _claim(ctx: ServerContext, device_id: str, suite: int | None) -> StoredClaim | None:
    claimed = await ctx.storage.claim_key_package(device_id, suite)
    if claimed is not None and not claimed.last_resort:
        left = await ctx.storage.key_package_count(device_id, suite)
        if left.count < ctx.config.key_package_low_watermark:
            await ctx.fanout.publish([device_id], Topic.keypackages)
    return claimed


def _claimed(c: StoredClaim) -> ClaimedKeyPackage:
    return ClaimedKeyPackage(
        device_id=c.device_id, key_package=c.key_package, last_resort=c.last_resort
    )


@router.post(
    "/devices/{device_id}/keypackages/claim",
    response_model=ClaimedKeyPackage,
    responses=errors(*AUTHED, 404, 422),
)
async def claim_device(
    device_id: DeviceIdPath, _me: Device, ctx: Ctx, cipher_suite: SuiteQuery = None
) -> ClaimedKeyPackage:
    """Claim one KeyPackage of one device (to add it to a group)."""
    device = await ctx.storage.get_device(device_id)
    if device is None or device.revoked_at is not None:
        raise not_found("no such device")
    claimed = await _claim(ctx, device_id, cipher_suite)
    if claimed is None:
        raise not_found("this device has no KeyPackage")
    return _claimed(claimed)


@router.post(
    "/users/{username}/keypackages/claim",
    response_model=UserKeyPackages,
    responses=errors(*AUTHED, 404, 422),
)
async def claim_user(
    username: UsernamePath, me: Device, ctx: Ctx, cipher_suite: SuiteQuery = None
) -> UserKeyPackages:
    """Claim one KeyPackage for every live device of a user (except the calling device)."""
    devices = await ctx.storage.list_devices(username)
    if devices is None:
        raise not_found("no such user")
    claimed: list[ClaimedKeyPackage] = []
    missing: list[str] = []
    for d in devices:
        if d.revoked_at is not None or d.device_id == me.device_id:
            continue
        c = await _claim(ctx, d.device_id, cipher_suite)
        if c is None:
            missing.append(d.device_id)
        else:
            claimed.append(_claimed(c))
    return UserKeyPackages(username=username, key_packages=claimed, missing=missing)
