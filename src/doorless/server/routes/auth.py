"""``/v1/auth/*``: challenge/response login of a device (see `doorless.server.auth`)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from doorless.server.auth import issue_challenge, issue_token, limit_anonymous
from doorless.server.routes.common import Ctx, errors
from doorless.server.schemas import Challenge, TokenRequest, TokenResponse

router = APIRouter(prefix="/v1/auth", tags=["auth"], dependencies=[Depends(limit_anonymous)])


@router.post("/challenge", response_model=Challenge, responses=errors(429))
async def challenge(ctx: Ctx) -> Challenge:
    """A single-use nonce to sign with the device key (expires after ``challenge_ttl``)."""
    nonce, expires_at = await issue_challenge(ctx)
    return Challenge(nonce=nonce, expires_at=expires_at, server_id=ctx.server_id)


@router.post("/token", response_model=TokenResponse, responses=errors(401, 422, 429))
async def token(body: TokenRequest, ctx: Ctx) -> TokenResponse:
    """Exchange a signed challenge for a bearer token (expires after ``token_ttl``)."""
    token, expires_at, device = await issue_token(ctx, body.device_id, body.nonce, body.signature)
    return TokenResponse(
        token=token, expires_at=expires_at, device_id=device.device_id, username=device.username
    )
