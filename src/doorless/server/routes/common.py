"""Helpers shared by the route modules."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from doorless.server import delivery
from doorless.server.auth import AuthedDevice, require_device
from doorless.server.context import ServerContext, get_context
from doorless.server.errors import ErrorBody
from doorless.server.schemas import SendRequest

_DESCRIPTIONS = {
    400: "Malformed input (bad framing, signature, recipients, ...)",
    401: "Missing, unknown or expired token",
    403: "Not allowed for this device or registration closed",
    404: "Not found",
    409: "Conflicts with the current state",
    413: "Too large",
    422: "Body or parameters do not match the schema",
    429: "Rate limited (see Retry-After)",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries: each status with the shared `ErrorBody` schema."""
    return {s: {"model": ErrorBody, "description": _DESCRIPTIONS[s]} for s in statuses}


AUTHED = (401, 429)  # what every authenticated route can answer


async def context(request: Request) -> ServerContext:
    return get_context(request)


Ctx = Annotated[ServerContext, Depends(context)]
Device = Annotated[AuthedDevice, Depends(require_device)]


def send_of(req: SendRequest) -> delivery.Send:
    """What a send request asks `doorless.server.delivery` to deliver: for the plain endpoint
    (`doorless.server.routes.hot`) and its FastAPI twin (`doorless.server.routes.messages`)."""
    welcome = req.welcome
    return delivery.Send(
        req.message_id,
        delivery.Outgoing(req.data, tuple(req.recipients)),
        None if welcome is None else delivery.Outgoing(welcome.data, tuple(welcome.recipients)),
        req.group_info,
    )
