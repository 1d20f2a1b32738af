"""``/v1/messages`` and ``/v1/groups/{id}/epoch``: send to per-device queues, fetch, acknowledge.

HTTP only: a send is parsed here and handed to `doorless.server.delivery.send`, which holds
every delivery rule (recipients, framing, epochs, franking stamp, blocks, Welcome, idempotency,
push). Queue entries stay until their device acknowledges them.

``POST /v1/messages`` and ``POST /v1/messages/ack`` are served by the plain endpoints of
`doorless.server.routes.hot`, mounted ahead of these; the declarations here are what the
OpenAPI document describes, and their handlers are the same contract through FastAPI. That the
plain endpoints answer as these handlers do (status, error envelope, body, order of answers) is
checked by ``tests/server/test_hot_routes_contract.py``, which serves one table of requests with
and without the plain endpoints.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from doorless.mls.public_group import PublicGroup
from doorless.server import delivery, groups
from doorless.server.errors import not_found
from doorless.server.routes.common import AUTHED, Ctx, Device, errors, send_of
from doorless.server.schemas import (
    MAX_SEQ,
    AckRequest,
    AckResponse,
    GroupEpoch,
    GroupInfoResponse,
    MessagePage,
    QueuedMessage,
    RegisterGroupRequest,
    SendRequest,
    SendResponse,
)

router = APIRouter(prefix="/v1", tags=["messages"])

GroupIdPath = Annotated[str, Path(pattern=r"^([0-9a-f]{2}){1,255}$")]


@router.post(
    "/messages",
    status_code=201,
    response_model=SendResponse,
    responses={
        200: {"model": SendResponse, "description": "Repeat of an accepted message id"},
        **errors(*AUTHED, 400, 403, 409, 413, 422),
    },
)
async def send(body: SendRequest, response: Response, me: Device, ctx: Ctx) -> SendResponse:
    """Enqueue an MLSMessage (and the Welcome of a commit) for the given devices."""
    result = await delivery.send(ctx, me, send_of(body))
    if result.duplicate:
        response.status_code = 200
    return SendResponse(
        message_id=result.message_id, group_epoch=result.group_epoch, duplicate=result.duplicate
    )


@router.get("/messages", response_model=MessagePage, responses=errors(*AUTHED, 422))
async def fetch(
    me: Device,
    ctx: Ctx,
    after: Annotated[int, Query(ge=0, le=MAX_SEQ, description="Last seq seen")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> MessagePage:
    """Queued messages of this device with ``seq > after``, oldest first."""
    limit = min(limit, ctx.config.fetch_page_limit)
    rows = await ctx.storage.fetch(me.device_id, after, limit + 1)
    return MessagePage(
        messages=[
            QueuedMessage(seq=m.seq, data=m.data, received_at=m.received_at, frank=m.frank)
            for m in rows[:limit]
        ],
        more=len(rows) > limit,
    )


@router.post("/messages/ack", response_model=AckResponse, responses=errors(*AUTHED, 422))
async def ack(body: AckRequest, me: Device, ctx: Ctx) -> AckResponse:
    """Delete these messages from this device's queue (unknown seqs are ignored)."""
    return AckResponse(acknowledged=await ctx.storage.ack(me.device_id, body.seqs))


@router.get(
    "/groups/{group_id}/epoch",
    response_model=GroupEpoch,
    responses=errors(*AUTHED, 404, 422),
)
async def group_epoch(group_id: GroupIdPath, _me: Device, ctx: Ctx) -> GroupEpoch:
    """The epoch the server expects the next commit of this group to be for."""
    epoch = await ctx.storage.group_epoch(bytes.fromhex(group_id))
    if epoch is None:
        raise not_found("the server has seen no message of this group")
    return GroupEpoch(group_id=group_id, epoch=epoch)


@router.post(
    "/groups",
    status_code=201,
    response_model=GroupEpoch,
    responses=errors(*AUTHED, 400, 409, 413, 422),
)
async def register_group(body: RegisterGroupRequest, me: Device, ctx: Ctx) -> GroupEpoch:
    """Register a new group: from now on the server validates its handshakes and lets only
    its member devices post to it (`doorless.server.groups`)."""
    state = await groups.register(ctx, me, body.group_info, body.ratchet_tree)
    return GroupEpoch(group_id=state.group_id.hex(), epoch=state.epoch)


@router.get(
    "/groups/{group_id}/info",
    response_model=GroupInfoResponse,
    responses=errors(*AUTHED, 403, 404, 422),
)
async def group_info(group_id: GroupIdPath, me: Device, ctx: Ctx) -> GroupInfoResponse:
    """The latest GroupInfo and ratchet tree of a registered group, for its members (to rejoin
    by external commit)."""
    state = await groups.latest_group_info(ctx, me, bytes.fromhex(group_id))
    return GroupInfoResponse(
        group_id=group_id,
        epoch=state.epoch,
        group_info=state.group_info,
        ratchet_tree=PublicGroup.from_bytes(state.state).ratchet_tree(),
    )
