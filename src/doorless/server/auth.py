"""Device authentication: challenge/response with the device key, then short-lived bearer tokens.

1. ``POST /v1/auth/challenge`` mints a random 32-byte nonce (stored hashed, single use, expires
   after ``challenge_ttl``).
2. The device signs ``auth_content(server_id, nonce, device_id)`` with its device key and posts
   it to ``/v1/auth/token``; the server consumes the nonce, verifies the signature against the
   registered key and returns a random token (stored hashed, expires after ``token_ttl``).
3. Requests carry ``Authorization: Bearer <token>``.

Every failure of step 2 (unknown/expired/used nonce, unknown device, bad signature) is the
same ``401 auth_failed``: the answer does not tell which check failed. Only a caller that proved
it holds the device's key (a valid signature) or one of its tokens learns that the device was
revoked (``401 device_revoked``), so that the device can tell its owner why it stopped working.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from fastapi import Request
from starlette.requests import HTTPConnection

from doorless.errors import InvalidSignature
from doorless.server.context import ServerContext, get_context
from doorless.server.errors import ApiError
from doorless.server.ratelimit import RateLimiter, retry_after_header
from doorless.server.storage.base import DeviceRecord
from doorless.wire import protocol
from doorless.wire.errors import ErrorCode

NONCE_LENGTH = 32


def secret_hash(value: bytes) -> bytes:
    """How server-minted secrets (nonces, tokens, invite codes) are stored."""
    return hashlib.sha256(value).digest()


def invite_hash(code: str) -> bytes:
    """Invite codes are typed by people: case, spaces and dashes do not matter."""
    return secret_hash(code.strip().replace("-", "").replace(" ", "").upper().encode())


@dataclass(frozen=True, slots=True)
class AuthedDevice:
    device: DeviceRecord
    token_expires_at: int

    @property
    def device_id(self) -> str:
        return self.device.device_id

    @property
    def username(self) -> str:
        return self.device.username


def unauthorized_error(message: str) -> ApiError:
    return ApiError(401, ErrorCode.UNAUTHORIZED, message, headers={"WWW-Authenticate": "Bearer"})


def revoked_error() -> ApiError:
    return ApiError(401, ErrorCode.DEVICE_REVOKED, "this device was revoked")


def bearer_token(conn: HTTPConnection) -> str | None:
    header = conn.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


async def authenticate(ctx: ServerContext, token: str | None) -> AuthedDevice:
    if token is None:
        raise unauthorized_error("a bearer token is required")
    found = await ctx.storage.token_holder(secret_hash(token.encode()), ctx.now())
    if found is None:
        raise unauthorized_error("unknown or expired token")
    device = found[0]
    if device.revoked_at is not None:  # the token proves it is this device asking
        raise revoked_error()
    return AuthedDevice(device, found[1])


def rate_limit(limiter: RateLimiter, key: str) -> None:
    wait = limiter.take(key)
    if wait is not None:
        raise ApiError(
            429,
            ErrorCode.RATE_LIMITED,
            "too many requests, slow down",
            headers={"Retry-After": retry_after_header(wait)},
        )


def client_key(conn: HTTPConnection) -> str:
    return f"addr:{conn.client.host if conn.client else 'unknown'}"


async def require_device(request: Request) -> AuthedDevice:
    """Dependency: the authenticated device of this request (rate-limited per device)."""
    ctx = get_context(request)
    authed = await authenticate(ctx, bearer_token(request))
    request.state.device_id = authed.device_id  # for the request log (hashed there)
    rate_limit(ctx.device_limiter, authed.device_id)
    return authed


async def limit_anonymous(request: Request) -> None:
    """Dependency: rate limit for routes that need no token (per client address)."""
    rate_limit(get_context(request).anonymous_limiter, client_key(request))


async def issue_challenge(ctx: ServerContext) -> tuple[bytes, int]:
    nonce = secrets.token_bytes(NONCE_LENGTH)
    expires_at = ctx.now() + ctx.config.challenge_ttl
    await ctx.storage.put_challenge(secret_hash(nonce), expires_at)
    return nonce, expires_at


async def issue_token(
    ctx: ServerContext, device_id: str, nonce: bytes, signature: bytes
) -> tuple[str, int, DeviceRecord]:
    failed = ApiError(401, ErrorCode.AUTH_FAILED, "challenge response rejected")
    # Consume the nonce first, whatever happens next: a challenge is good for one try.
    if not await ctx.storage.take_challenge(secret_hash(nonce), ctx.now()):
        raise failed
    device = await ctx.storage.get_device(device_id)
    if device is None:
        raise failed
    try:
        protocol.verify(
            device.device_key,
            protocol.auth_content(ctx.server_id, nonce, device_id),
            signature,
        )
    except InvalidSignature:
        raise failed from None
    if device.revoked_at is not None:  # told only to the holder of its key
        raise revoked_error()
    token = secrets.token_urlsafe(32)
    expires_at = ctx.now() + ctx.config.token_ttl
    await ctx.storage.put_token(secret_hash(token.encode()), device_id, expires_at)
    return token, expires_at, device
