"""Encrypted attachments: opaque blobs with a size limit, deleted after expiry.

The client encrypts (and commits to) the attachment itself; the server sees bytes. The id is a
random 128-bit capability: whoever holds it (via an encrypted message) and is logged in may
download the blob until it expires.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import StreamingResponse
from starlette.requests import ClientDisconnect

from doorless.server.blobs import ATTACHMENT_ID_PATTERN, BlobTooLarge, read_chunks
from doorless.server.errors import bad_request, not_found, too_large
from doorless.server.routes.common import AUTHED, Ctx, Device, errors
from doorless.server.schemas import AttachmentInfo
from doorless.server.storage.base import AttachmentRecord

router = APIRouter(prefix="/v1", tags=["attachments"])

UPLOAD_PATH = "/v1/attachments"
AttachmentIdPath = Annotated[str, Path(pattern=ATTACHMENT_ID_PATTERN)]


async def _body(request: Request) -> AsyncIterator[bytes]:
    async for chunk in request.stream():
        yield chunk


@router.post(
    "/attachments",
    status_code=201,
    response_model=AttachmentInfo,
    responses=errors(*AUTHED, 400, 413),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/octet-stream": {"schema": {"type": "string"}}},
        }
    },
)
async def upload(request: Request, _me: Device, ctx: Ctx) -> AttachmentInfo:
    """Store the raw request body (already encrypted by the client) as a blob."""
    limit = ctx.config.max_attachment_size
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise bad_request("invalid Content-Length")
        if int(declared) > limit:
            raise too_large(f"attachment is larger than {limit} bytes")
    try:
        attachment_id, size = await ctx.blobs.write(_body(request), limit)
    except BlobTooLarge:
        raise too_large(f"attachment is larger than {limit} bytes") from None
    except ClientDisconnect:
        raise bad_request("upload interrupted") from None
    if size == 0:
        ctx.blobs.delete([attachment_id])
        raise bad_request("attachment is empty")
    now = ctx.now()
    record = AttachmentRecord(attachment_id, size, now, now + ctx.config.attachment_ttl)
    await ctx.storage.add_attachment(record)
    return AttachmentInfo(attachment_id=attachment_id, size=size, expires_at=record.expires_at)


@router.get(
    "/attachments/{attachment_id}",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The blob",
            "content": {"application/octet-stream": {"schema": {"type": "string"}}},
        },
        **errors(*AUTHED, 404, 422),
    },
)
async def download(attachment_id: AttachmentIdPath, _me: Device, ctx: Ctx) -> StreamingResponse:
    """The blob's bytes, until it expires."""
    record = await ctx.storage.get_attachment(attachment_id, ctx.now())
    f = ctx.blobs.open(attachment_id) if record is not None else None
    if record is None or f is None:
        raise not_found("no such attachment (or it expired)")
    return StreamingResponse(
        read_chunks(f),
        media_type="application/octet-stream",
        headers={"Content-Length": str(record.size)},
    )
