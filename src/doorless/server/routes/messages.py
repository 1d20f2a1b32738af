"""The delivery service: send to per-device queues, fetch, acknowledge.

The server reads only the cleartext MLSMessage header (`doorless.mls.framing.peek_routing`):
wire format, group id, epoch, content type. Recipients are named by the sender (the roster lives
in MLS, not on the server). Per group the server keeps only the current epoch:

* a commit for epoch ``e`` is accepted only if ``e`` is the group's current epoch, which then
  becomes ``e + 1`` (in the same transaction as enqueuing it): exactly one commit per epoch, so
  the group never forks; the loser gets ``409 epoch_conflict`` with ``current_epoch`` and
  retries after processing the winning commit;
* a proposal or application message must be for the current epoch (``409 epoch_conflict``
  otherwise: the sender is behind and must catch up first);
* the first message seen for a group fixes its epoch.

A Welcome sent with its commit (``welcome`` field) is delivered if and only if the commit is.
The response comes after the transaction that enqueued the message to every recipient queue is
durably committed (I5). Queue entries stay until their device acknowledges them.
"""

from __future__ import annotations

import hashlib
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from doorless.codec import Writer
from doorless.errors import DoorlessError
from doorless.mls.framing import ContentType, Routing, WireFormat, peek_routing
from doorless.server.context import ServerContext
from doorless.server.errors import bad_request, malformed, not_found, too_large
from doorless.server.fanout.base import Topic
from doorless.server.routes.common import AUTHED, Ctx, Device, errors
from doorless.server.routes.safety import application_delivery, welcome_delivery
from doorless.server.schemas import (
    MAX_SEQ,
    AckRequest,
    AckResponse,
    GroupEpoch,
    MessagePage,
    QueuedMessage,
    SendRequest,
    SendResponse,
)
from doorless.server.storage.base import EpochGate

router = APIRouter(prefix="/v1", tags=["messages"])

# Epochs are stored in signed 64-bit columns; no real group gets near this.
MAX_EPOCH = 2**63 - 2
_GROUP_MESSAGES = (WireFormat.mls_public_message, WireFormat.mls_private_message)
_SENDABLE = (*_GROUP_MESSAGES, WireFormat.mls_welcome, WireFormat.mls_group_info)

GroupIdPath = Annotated[str, Path(pattern=r"^([0-9a-f]{2}){1,255}$")]


def _peek(ctx: ServerContext, data: bytes, what: str) -> Routing:
    if not data:
        raise malformed(f"{what} is empty")
    if len(data) > ctx.config.max_message_size:
        raise too_large(f"{what} is larger than {ctx.config.max_message_size} bytes")
    try:
        return peek_routing(data)
    except DoorlessError:
        raise malformed(f"{what} is not an encoded MLSMessage") from None


def _check_recipients(ctx: ServerContext, recipients: list[str], what: str) -> None:
    if len(recipients) > ctx.config.max_recipients:
        raise bad_request(f"{what}: at most {ctx.config.max_recipients} recipients")
    if len(set(recipients)) != len(recipients):
        raise bad_request(f"{what}: duplicate recipients")


def _gate(routing: Routing) -> EpochGate | None:
    if routing.wire_format not in _SENDABLE:
        raise malformed("KeyPackages go to the directory (POST /v1/keypackages), not to queues")
    if routing.wire_format not in _GROUP_MESSAGES:
        return None
    assert routing.group_id is not None and routing.epoch is not None
    if routing.epoch > MAX_EPOCH:
        raise malformed("epoch out of range")
    return EpochGate(routing.group_id, routing.epoch, routing.content_type == ContentType.commit)


def _digest(body: SendRequest) -> bytes:
    """What the idempotency key protects: the messages and their recipients."""
    w = Writer()
    w.push_opaque(body.data)
    w.push_vector(body.recipients, lambda w, r: w.push_opaque(r.encode()))
    if body.welcome is not None:
        w.push_opaque(body.welcome.data)
        w.push_vector(body.welcome.recipients, lambda w, r: w.push_opaque(r.encode()))
    return hashlib.sha256(w.getvalue()).digest()


@router.post(
    "/messages",
    status_code=201,
    response_model=SendResponse,
    responses={
        200: {"model": SendResponse, "description": "Repeat of an accepted message id"},
        **errors(*AUTHED, 400, 409, 413, 422),
    },
)
async def send(body: SendRequest, response: Response, me: Device, ctx: Ctx) -> SendResponse:
    """Enqueue an MLSMessage (and the Welcome of a commit) for the given devices."""
    _check_recipients(ctx, body.recipients, "recipients")
    gate = _gate(_peek(ctx, body.data, "data"))
    parts = [await application_delivery(ctx, me, body.data, tuple(body.recipients))]
    if body.welcome is not None:
        if gate is None or not gate.is_commit:
            raise bad_request("a welcome can only accompany a commit")
        _check_recipients(ctx, body.welcome.recipients, "welcome.recipients")
        if _peek(ctx, body.welcome.data, "welcome.data").wire_format != WireFormat.mls_welcome:
            raise malformed("welcome.data is not an MLSMessage with wire format mls_welcome")
        parts.append(
            await welcome_delivery(ctx, me, body.welcome.data, tuple(body.welcome.recipients))
        )
    result = await ctx.storage.deliver(
        me.device_id, body.message_id, _digest(body), parts, gate, ctx.now()
    )
    if result.duplicate:
        response.status_code = 200
    else:
        await ctx.fanout.publish({r for p in parts for r in p.recipients}, Topic.queue)
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
