"""Abuse reports (``/v1/reports``) and blocks (``/v1/blocks``).

Reports are verified and filed by `doorless.server.franking.file_report` (``docs/franking.md``);
what a block does to delivery is a rule of `doorless.server.delivery`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, Field

from doorless.errors import RemoteError
from doorless.franking import ReportExpired
from doorless.server.errors import ApiError, bad_request
from doorless.server.franking import file_report
from doorless.server.log import log_event
from doorless.server.routes.common import AUTHED, Ctx, Device, errors
from doorless.server.schemas import B64, Request
from doorless.wire import protocol
from doorless.wire.errors import ErrorCode

router = APIRouter(prefix="/v1", tags=["safety"])

UsernamePath = Annotated[str, Path(pattern=protocol.USERNAME_PATTERN)]


# --- reports ---------------------------------------------------------------------------------


class ReportRequest(Request):
    report: B64 = Field(description="An encoded AbuseReport (docs/franking.md)")


class ReportResponse(BaseModel):
    report_id: int
    sender: str = Field(description="The username the server stamped the message with")
    attachments: list[str] = Field(
        description="Per reported attachment: ok, mismatch (FRANK-8) or gone (expired)"
    )


@router.post(
    "/reports",
    status_code=201,
    response_model=ReportResponse,
    responses=errors(*AUTHED, 400, 413, 422),
)
async def report(body: ReportRequest, me: Device, ctx: Ctx) -> ReportResponse:
    """Report one message this device received: its franked content and the server's frank.

    The server checks that it stamped exactly this content from this sender in this group
    (its HMAC and signature over the franking tag) and files the report for the moderators.
    ``400 report_expired``: the franking key of the message was deleted (docs/franking.md).
    ``400 invalid_report``: the report does not verify (forged, edited, another server's).
    """
    try:
        filed = await file_report(
            ctx.franking,
            ctx.storage,
            ctx.blobs,
            body.report,
            reporter=(me.username, me.device_id),
            now=ctx.now(),
        )
    except ReportExpired as exc:
        raise ApiError(400, ErrorCode.REPORT_EXPIRED, str(exc)) from None
    except RemoteError as exc:
        # The rule id only: nothing of the reported content goes into the answer or the log.
        rule = getattr(exc, "rule", None) or type(exc).__name__
        raise ApiError(
            400, ErrorCode.INVALID_REPORT, f"the report does not verify ({rule})"
        ) from None
    log_event("report filed", report_id=filed.report_id, reason=filed.verified.reason.name)
    return ReportResponse(
        report_id=filed.report_id,
        sender=filed.verified.sender.user_id.decode("ascii", "replace"),
        attachments=list(filed.attachments),
    )


# --- blocks ----------------------------------------------------------------------------------


class BlockList(BaseModel):
    blocked: list[str] = Field(description="The users the caller's account blocks")


@router.get("/blocks", response_model=BlockList, responses=errors(*AUTHED))
async def list_blocks(me: Device, ctx: Ctx) -> BlockList:
    """The users this account blocks (every device of the account reads the same list)."""
    return BlockList(blocked=await ctx.storage.list_blocks(me.username))


@router.put("/blocks/{username}", status_code=204, responses=errors(*AUTHED, 400, 422))
async def block(username: UsernamePath, me: Device, ctx: Ctx) -> Response:
    """Block a user for every device of this account: the server no longer queues their
    application messages or Welcomes for them. The blocked user is not told."""
    if username == me.username:
        raise bad_request("an account cannot block itself")
    await ctx.storage.set_block(me.username, username, True, ctx.now())
    return Response(status_code=204)


@router.delete("/blocks/{username}", status_code=204, responses=errors(*AUTHED, 422))
async def unblock(username: UsernamePath, me: Device, ctx: Ctx) -> Response:
    """Undo a block (idempotent)."""
    await ctx.storage.set_block(me.username, username, False, ctx.now())
    return Response(status_code=204)
