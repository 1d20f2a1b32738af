"""``/v1/ws``: push over a WebSocket, one per connected device.

Connect with ``Authorization: Bearer <token>`` and optionally ``?after=<seq>`` (the last seq the
client already has). The server first sends every queued message with a larger seq, then each
new one as it is committed: handed over with the wake-up when the send was committed by this
process and continues what the socket pushed (`continuation`), read from the queue otherwise.
Frames are JSON text:

server -> client::

    {"type": "message", "seq": 7, "data": "<base64 MLSMessage>", "received_at": 1700000000}
    {"type": "keypackages_low", "count": 3, "low_watermark": 10}
    {"type": "acked", "acknowledged": 2}
    {"type": "error", "error": "invalid_request", "message": "..."}

client -> server::

    {"type": "ack", "seqs": [7, 8]}

A push is not an acknowledgement: a message stays queued until the client acks it (here or
over HTTP), and is sent again on the next connection. When the token expires (or the device is
revoked) the server closes with code 4401; a refused handshake is an HTTP 401 (or 429) with
the JSON error body.

Two implementations of one contract: `endpoint`, a plain ASGI endpoint, is what the app serves
(`doorless.server.middleware.RequestLogMiddleware` hands it the server's own ``send``); `push`,
the FastAPI route, is its twin, kept as the reference the contract test compares it with
(``tests/server/test_ws_contract.py``). Both run the same push and ack loops; they differ in
what the contract test checks: the handshake and the ``send`` under the loops. Through the
twin every frame passes starlette's `WebSocket` and the exception middleware's and request
log's ``send`` wrappers; at 1,000 sockets and 1,200 pushes a second those were a tenth of the
server's event loop. The plain endpoint writes each frame with one call of the server's
``send``, the ``message`` frame formatted directly (`message_text`: the text starlette's
``send_json`` makes of the same dict, tested).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from doorless.server.auth import (
    AuthedDevice,
    authenticate,
    bearer_token,
    rate_limit,
    secret_hash,
)
from doorless.server.context import ServerContext, get_context
from doorless.server.errors import ApiError, error_response, unavailable
from doorless.server.fanout.base import Subscription, Topic
from doorless.server.log import device_tag, log_event
from doorless.server.schemas import MAX_SEQ
from doorless.server.storage.base import StorageUnavailable
from doorless.wire import protocol
from doorless.wire.errors import ErrorCode
from doorless.wire.messages import QueuedMessage

router = APIRouter(tags=["push"])

CLOSE_TOKEN_EXPIRED = 4401
_MAX_FRAME = 64 * 1024
_PAGE = 100


async def _refuse(websocket: WebSocket, exc: ApiError) -> None:
    response: Response = error_response(exc.status, exc.code, exc.message, exc.headers or None)
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(response)
    else:
        await websocket.close(code=1008, reason=exc.code)


def _after(websocket: WebSocket) -> int:
    raw = websocket.query_params.get("after", "0")
    if not raw.isdigit() or int(raw) > MAX_SEQ:
        raise ApiError(422, ErrorCode.INVALID_REQUEST, "after: must be a non-negative integer")
    return int(raw)


@router.websocket("/v1/ws")
async def push(websocket: WebSocket) -> None:
    ctx = get_context(websocket)
    token = bearer_token(websocket)
    try:
        after = _after(websocket)
        me = await authenticate(ctx, token)
        websocket.scope.setdefault("state", {})["device_id"] = me.device_id
        rate_limit(ctx.device_limiter, me.device_id)
    except ApiError as exc:
        await _refuse(websocket, exc)
        return
    except StorageUnavailable as exc:  # 503 + Retry-After: the client reconnects later
        await _refuse(websocket, unavailable(exc))
        return
    assert token is not None  # authenticate() refused a missing one
    await websocket.accept()
    subscription = await ctx.fanout.subscribe(me.device_id)
    # The same loops as the plain endpoint's, over starlette's WebSocket (so the contract test
    # compares what differs: the handshake, the wrappers around ``send``, the log line).
    await _serve(
        _push_loop(ctx, websocket.send, websocket.send_text, me, token, subscription, after),
        _ack_loop(ctx, websocket.receive, websocket.send_text, me),
        me,
        subscription,
    )


async def _serve(
    pushing: Coroutine[Any, Any, None],
    acking: Coroutine[Any, Any, None],
    me: AuthedDevice,
    subscription: Subscription,
) -> None:
    """Run a socket's push and ack loops until either ends (the client went away, the token
    expired); then stop the other and unsubscribe."""
    sender, receiver = asyncio.create_task(pushing), asyncio.create_task(acking)
    try:
        done, _ = await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            failure = task.exception()
            # The client went away under a send: OSError under the server's own ``send``,
            # `WebSocketDisconnect` under starlette's.
            if failure is not None and not isinstance(failure, WebSocketDisconnect | OSError):
                log_event(
                    "websocket error",
                    device=device_tag(me.device_id),
                    exception=type(failure).__name__,
                )
    finally:
        for task in (sender, receiver):
            task.cancel()
        for task in (sender, receiver):
            with contextlib.suppress(BaseException):
                await task
        await subscription.close()


def _parse_ack(text: str) -> list[int]:
    try:
        frame: Any = json.loads(text)
    except ValueError:
        raise ApiError(400, ErrorCode.INVALID_REQUEST, "frame is not JSON") from None
    if not isinstance(frame, dict) or frame.get("type") != "ack":
        raise ApiError(400, ErrorCode.INVALID_REQUEST, 'expected {"type": "ack", "seqs": [...]}')
    seqs = frame.get("seqs")
    if (
        not isinstance(seqs, list)
        or len(seqs) > 1000
        or not all(type(s) is int and 1 <= s <= MAX_SEQ for s in seqs)
    ):
        raise ApiError(
            400, ErrorCode.INVALID_REQUEST, "seqs: a list of at most 1000 positive integers"
        )
    return seqs


# --- the plain ASGI endpoint (what is served) -------------------------------------------------


def _dumps(frame: dict[str, Any]) -> str:
    """What starlette's ``WebSocket.send_json`` writes."""
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)


def message_text(m: QueuedMessage) -> str:
    """The ``message`` frame: ``_dumps`` of the twin's dict, formatted directly (base64 needs
    no JSON escaping; ``seq`` and ``received_at`` are ints)."""
    frank = "null" if m.frank is None else f'"{protocol.b64encode(m.frank)}"'
    return (
        f'{{"type":"message","seq":{int(m.seq)},"data":"{protocol.b64encode(m.data)}",'
        f'"received_at":{int(m.received_at)},"frank":{frank}}}'
    )


async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
    """``/v1/ws``, answered as `push` answers it. ``send`` is the server's own: the request
    log learns the handshake's status from ``scope["state"]["status"]``."""
    state = scope.setdefault("state", {})
    websocket = WebSocket(scope, receive, send)  # for the handshake only
    ctx = get_context(websocket)
    token = bearer_token(websocket)
    try:
        after = _after(websocket)
        me = await authenticate(ctx, token)
        state["device_id"] = me.device_id
        rate_limit(ctx.device_limiter, me.device_id)
    except ApiError as exc:
        await _refuse_plain(websocket, exc, state)
        return
    except StorageUnavailable as exc:  # 503 + Retry-After: the client reconnects later
        await _refuse_plain(websocket, unavailable(exc), state)
        return
    assert token is not None  # authenticate() refused a missing one
    await websocket.accept()
    state["status"] = 101
    subscription = await ctx.fanout.subscribe(me.device_id)

    async def send_text(text: str) -> None:
        await send({"type": "websocket.send", "text": text})

    await _serve(
        _push_loop(ctx, send, send_text, me, token, subscription, after),
        _ack_loop(ctx, receive, send_text, me),
        me,
        subscription,
    )


async def _refuse_plain(websocket: WebSocket, exc: ApiError, state: dict[str, Any]) -> None:
    has_denial = "websocket.http.response" in websocket.scope.get("extensions", {})
    state["status"] = exc.status if has_denial else 403  # a close before the accept
    await _refuse(websocket, exc)


async def _push_loop(
    ctx: ServerContext,
    send: Send,
    send_text: Callable[[str], Awaitable[None]],
    me: AuthedDevice,
    token: str,
    subscription: Subscription,
    after: int,
) -> None:
    """Push the queue from ``after`` on, then each wake-up's new messages, until the token
    goes; ``send`` is the raw ASGI send (for the close), ``send_text`` writes a text frame."""
    last = after
    token_hash = secret_hash(token.encode())
    checked = ctx.clock()
    topics: frozenset[Topic] = frozenset()
    carried: list[QueuedMessage] | None = None  # what the wake-up handed over, if usable
    while True:
        now = ctx.clock()
        remaining = me.token_expires_at - now
        # The token is checked at the handshake, on a `Topic.revoked` wake-up (a revocation
        # publishes it) and every ``ws_idle_timeout`` (a lost wake-up): not on every push.
        if Topic.revoked in topics or now - checked >= ctx.config.ws_idle_timeout:
            checked = now
            if await ctx.storage.token_device(token_hash, ctx.now()) is None:
                remaining = 0
        # Expired, or deleted by a revocation of the device: the socket goes with the token.
        if remaining <= 0:
            await send(
                {
                    "type": "websocket.close",
                    "code": CLOSE_TOKEN_EXPIRED,
                    "reason": "token expired or revoked",
                }
            )
            return
        if carried is None:
            page = await ctx.storage.fetch(me.device_id, last, _PAGE)
        else:
            page, carried = carried, None
        for m in page:
            await send_text(message_text(m))
            last = m.seq
        if len(page) == _PAGE:
            topics = frozenset()
            continue
        topics = await subscription.wait(min(ctx.config.ws_idle_timeout, remaining))
        if Topic.queue in topics:
            carried = continuation(subscription.take_queued(), last)
        if Topic.keypackages in topics:
            count = await ctx.storage.key_package_count(me.device_id)
            await send_text(
                _dumps(
                    {
                        "type": "keypackages_low",
                        "count": count.count,
                        "low_watermark": ctx.config.key_package_low_watermark,
                    }
                )
            )


def continuation(
    carried: tuple[QueuedMessage, ...] | None, last: int
) -> list[QueuedMessage] | None:
    """The carried entries after ``last`` if they continue the pushed sequence with no gap,
    else None (read the queue). A device's seqs are consecutive and given in commit order, so
    ``last + 1, last + 2, ...`` is exactly what a read of the queue after ``last`` would
    return first; entries up to ``last`` were pushed already (a read got them first)."""
    if not carried:
        return None
    fresh = sorted((m for m in carried if m.seq > last), key=lambda m: m.seq)
    for expected, m in enumerate(fresh, start=last + 1):
        if m.seq != expected:
            return None
    return fresh


async def _ack_loop(
    ctx: ServerContext,
    receive: Receive,
    send_text: Callable[[str], Awaitable[None]],
    me: AuthedDevice,
) -> None:
    """Answer each ack frame (rate-limited, validated) until the client disconnects."""
    while True:
        message: Message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        try:
            if text is None or len(text) > _MAX_FRAME:
                raise ApiError(400, ErrorCode.INVALID_REQUEST, "expected a JSON text frame")
            rate_limit(ctx.device_limiter, me.device_id)
            seqs = _parse_ack(text)
        except ApiError as exc:
            await send_text(_dumps({"type": "error", "error": exc.code, "message": exc.message}))
            continue
        acknowledged = await ctx.storage.ack(me.device_id, seqs)
        await send_text(_dumps({"type": "acked", "acknowledged": acknowledged}))
