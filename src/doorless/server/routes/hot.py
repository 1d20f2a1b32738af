"""``POST /v1/messages`` and ``POST /v1/messages/ack`` as plain Starlette endpoints.

The two routes every message takes (a send, then one ack per recipient device) skip FastAPI's
per-request machinery (dependency solving, a model for every parameter, response-model
validation): on PostgreSQL at 150 sends/s that machinery was about a quarter of the server's
CPU. They are mounted ahead of the FastAPI routes of the same path and method in
`doorless.server.routes.messages`, which stay in the app so that the OpenAPI document
describes them; what is served is the same contract:

* the body is parsed as FastAPI parses a JSON model parameter (a JSON content type, else the
  raw bytes, which the model refuses) and validated by the same model (`SendRequest`,
  `AckRequest`); errors raise `RequestValidationError` with FastAPI's ``body`` locations, so
  the 422 envelope is the app's handler's;
* the same order of answers: unparsable JSON (422), then the token (401) and the rate limit
  (429), then the body's schema (422), then the delivery rules (`doorless.server.delivery`);
* errors are the app's exception handlers' (`doorless.server.errors`), the responses the
  same models serialized the same way.

A send reads its token, the group's access, the group's next franking number and the blocked
recipients in one `Storage.send_context` call (one query on PostgreSQL), then delivers: two
round trips on PostgreSQL (`doorless.server.storage.pg_send`). The token is checked on every
request, not cached per connection: a revoked or expired token is refused at once.
"""

from __future__ import annotations

import email.message
import json
from typing import Any, TypeVar

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import Scope

from doorless.errors import DoorlessError
from doorless.mls.framing import peek_routing
from doorless.server import delivery
from doorless.server.auth import (
    AuthedDevice,
    authenticate,
    bearer_token,
    rate_limit,
    revoked_error,
    secret_hash,
    unauthorized_error,
)
from doorless.server.context import ServerContext, get_context
from doorless.server.routes.common import send_of
from doorless.server.schemas import AckRequest, AckResponse, SendRequest, SendResponse

M = TypeVar("M", bound=BaseModel)

_MISSING = object()  # no body at all


async def _json_body(request: Request) -> Any:
    """The body as FastAPI reads it for a JSON model parameter (`fastapi.routing`): decoded
    if it has a JSON content type (invalid JSON is a 422 at once, bytes that are no text a
    400), else its bytes."""
    raw = await request.body()
    if not raw:
        return _MISSING
    content_type = request.headers.get("content-type")
    if content_type is not None:
        parsed = email.message.Message()
        parsed["content-type"] = content_type
        subtype = parsed.get_content_subtype()
        if parsed.get_content_maintype() == "application" and (
            subtype == "json" or subtype.endswith("+json")
        ):
            try:
                return json.loads(raw)
            except json.JSONDecodeError as exc:
                raise RequestValidationError(
                    [
                        {
                            "type": "json_invalid",
                            "loc": ("body", exc.pos),
                            "msg": "JSON decode error",
                            "input": {},
                            "ctx": {"error": exc.msg},
                        }
                    ]
                ) from None
            except ValueError:  # not text at all (UnicodeDecodeError): FastAPI's answer
                raise HTTPException(400, "There was an error parsing the body") from None
    return raw


def _validate(model: type[M], body: Any) -> M:
    if body is _MISSING:
        raise RequestValidationError(
            [{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}]
        )
    try:
        return model.model_validate(body, from_attributes=True)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        raise RequestValidationError(
            [{**e, "loc": ("body", *e.get("loc", ()))} for e in errors]
        ) from None


class HotRoute(Route):
    """A plain route that names itself in the scope as FastAPI's routes do, so that the
    request log shows its path template (`doorless.server.middleware.RequestLogMiddleware`;
    it logged every send and ack as ``unmatched``)."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        if match is not Match.NONE:
            child["route"] = self
        return match, child


def _json(model: BaseModel, status: int) -> Response:
    return Response(model.model_dump_json(), status, media_type="application/json")


def _admit(ctx: ServerContext, request: Request, authed: AuthedDevice) -> None:
    """What `doorless.server.auth.require_device` does after the lookup."""
    request.state.device_id = authed.device_id  # for the request log (hashed there)
    rate_limit(ctx.device_limiter, authed.device_id)


def _group_id(data: bytes) -> bytes | None:
    """The group a message names, for the read ahead of the rules (which peek again and
    refuse what does not parse)."""
    try:
        return peek_routing(data).group_id
    except DoorlessError:
        return None


async def send(request: Request) -> Response:
    """``POST /v1/messages`` (documented by `doorless.server.routes.messages.send`)."""
    ctx = get_context(request)
    body = await _json_body(request)
    token = bearer_token(request)
    if token is None:
        raise unauthorized_error("a bearer token is required")
    try:
        req = _validate(SendRequest, body)
    except RequestValidationError:
        _admit(ctx, request, await authenticate(ctx, token))  # 401/429 before 422
        raise
    recipients = list(req.recipients)
    if req.welcome is not None:
        recipients += req.welcome.recipients
    seen = await ctx.storage.send_context(
        secret_hash(token.encode()), ctx.now(), _group_id(req.data), recipients
    )
    if seen is None:
        raise unauthorized_error("unknown or expired token")
    if seen.device.revoked_at is not None:  # the token proves it is this device asking
        raise revoked_error()
    me = AuthedDevice(seen.device, seen.token_expires_at)
    _admit(ctx, request, me)
    result = await delivery.send(ctx, me, send_of(req), seen)
    return _json(
        SendResponse(
            message_id=result.message_id, group_epoch=result.group_epoch, duplicate=result.duplicate
        ),
        200 if result.duplicate else 201,
    )


async def ack(request: Request) -> Response:
    """``POST /v1/messages/ack`` (documented by `doorless.server.routes.messages.ack`)."""
    ctx = get_context(request)
    body = await _json_body(request)
    me = await authenticate(ctx, bearer_token(request))
    _admit(ctx, request, me)
    req = _validate(AckRequest, body)
    return _json(AckResponse(acknowledged=await ctx.storage.ack(me.device_id, req.seqs)), 200)
