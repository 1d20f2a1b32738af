"""``GET /v1/info``: what a client needs before it signs anything."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from doorless import __version__
from doorless.server.auth import limit_anonymous
from doorless.server.routes.common import Ctx, errors
from doorless.server.schemas import Limits, ServerInfo

router = APIRouter(prefix="/v1", tags=["server"])


@router.get(
    "/info",
    response_model=ServerInfo,
    responses=errors(429),
    dependencies=[Depends(limit_anonymous)],
)
async def server_info(ctx: Ctx) -> ServerInfo:
    c = ctx.config
    return ServerInfo(
        server_id=ctx.server_id,
        version=__version__,
        registration=c.registration,
        franking_public_key=ctx.franking.public_key,
        limits=Limits(
            max_message_size=c.max_message_size,
            max_recipients=c.max_recipients,
            max_attachment_size=c.max_attachment_size,
            max_key_package_size=c.max_key_package_size,
            max_key_packages_per_upload=c.max_key_packages_per_upload,
            max_key_packages_stored=c.max_key_packages_stored,
            key_package_low_watermark=c.key_package_low_watermark,
            attachment_ttl=c.attachment_ttl,
            token_ttl=c.token_ttl,
            challenge_ttl=c.challenge_ttl,
            link_ttl=c.link_ttl,
        ),
    )
