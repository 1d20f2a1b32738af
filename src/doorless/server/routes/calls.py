"""The media relay's entries on the main HTTP app.

* ``GET /v1/calls/relay`` (authenticated): where the relay's QUIC port is and the SHA-256
  fingerprint of its certificate, which clients pin (they learn it over this authenticated TLS
  API, so a self-signed certificate is enough);
* ``/v1/calls/ws``: the WebSocket fallback where UDP is blocked. The same admission and the same
  messages as over QUIC (`doorless.wire.calls`), one binary WebSocket message each: the client
  sends a `JoinRequest` first; the relay answers `JoinAccepted` or `Refused` (and closes with
  1008); then frame envelopes both ways, and a `Refused` if the participant is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import BaseModel, Field

from doorless.errors import DecodeError
from doorless.server.context import get_context
from doorless.server.relay.hub import Participant, Relay, RelayRefusal
from doorless.server.routes.common import AUTHED, Ctx, Device, errors
from doorless.wire.calls import (
    ALPN,
    JoinAccepted,
    JoinRequest,
    Refused,
    RelayMessageType,
    decode_message,
    encode_message,
)
from doorless.wire.errors import ErrorCode

router = APIRouter(tags=["calls"])

WS_PATH = "/v1/calls/ws"
_QUEUE = 256  # envelopes waiting for a slow socket; beyond that they are dropped (media is lossy)
_JOIN_TIMEOUT = 10.0
_LEAVE = bytes((RelayMessageType.leave,))


class RelayInfo(BaseModel):
    host: str | None = Field(
        description="Host of the QUIC relay; null: the host of this API (same name, UDP)"
    )
    port: int | None = Field(description="UDP port of the QUIC relay; null: QUIC is off")
    fingerprint: str | None = Field(
        description="Hex SHA-256 of the relay certificate (DER); clients pin it"
    )
    alpn: str = Field(description="ALPN of the relay's QUIC protocol")
    websocket: str = Field(description="Path of the WebSocket fallback on this API")


@router.get("/v1/calls/relay", response_model=RelayInfo, responses=errors(*AUTHED))
async def relay_info(ctx: Ctx, me: Device) -> RelayInfo:
    endpoint = ctx.relay_endpoint
    return RelayInfo(
        host=None if endpoint is None else endpoint.host,
        port=None if endpoint is None else endpoint.port,
        fingerprint=None if endpoint is None else endpoint.fingerprint,
        alpn=ALPN,
        websocket=WS_PATH,
    )


class _WebSocketLink:
    """A participant on the WebSocket fallback: a bounded queue and one writer task."""

    def __init__(self, websocket: WebSocket) -> None:
        self._websocket = websocket
        self.queue: asyncio.Queue[bytes | Refused] = asyncio.Queue(_QUEUE)

    def send_frame(self, data: bytes) -> bool:
        try:
            self.queue.put_nowait(data)
        except asyncio.QueueFull:
            return False
        return True

    def drop(self, refused: Refused) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(refused)

    async def write(self) -> None:
        while True:
            item = await self.queue.get()
            if isinstance(item, Refused):
                await self._websocket.send_bytes(encode_message(item))
                await self._websocket.close(code=1008, reason=item.code)
                return
            await self._websocket.send_bytes(item)


async def _join_request(websocket: WebSocket) -> JoinRequest:
    try:
        data = await asyncio.wait_for(websocket.receive_bytes(), _JOIN_TIMEOUT)
    except TimeoutError:
        raise RelayRefusal(ErrorCode.TIMEOUT, "no join request in time") from None
    except KeyError:  # a text message: receive_bytes finds no "bytes"
        raise RelayRefusal(ErrorCode.INVALID_REQUEST, "expected a binary message") from None
    try:
        message = decode_message(data)
    except DecodeError as exc:
        raise RelayRefusal(ErrorCode.INVALID_REQUEST, f"bad join request: {exc}") from None
    if not isinstance(message, JoinRequest):
        raise RelayRefusal(ErrorCode.INVALID_REQUEST, "the first message must be a join")
    return message


@router.websocket(WS_PATH)
async def relay_socket(websocket: WebSocket) -> None:
    ctx = get_context(websocket)
    relay: Relay | None = ctx.relay
    await websocket.accept()
    if relay is None:
        await _close_refused(websocket, Refused(ErrorCode.NOT_FOUND, "no relay on this server"))
        return
    link = _WebSocketLink(websocket)
    try:
        request = await _join_request(websocket)
        participant = await relay.admit(request, link, "websocket")
    except RelayRefusal as exc:
        await _close_refused(websocket, exc.refused)
        return
    except WebSocketDisconnect:
        return
    writer = asyncio.create_task(link.write())
    try:
        count = len(relay.participants(request.group_id, request.call_id.value))
        await websocket.send_bytes(encode_message(JoinAccepted(participant.number, count)))
        reader = asyncio.create_task(_read(websocket, relay, participant))
        await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
        reader.cancel()
        with contextlib.suppress(BaseException):
            await reader
    except WebSocketDisconnect:
        pass
    finally:
        relay.leave(participant)
        writer.cancel()
        with contextlib.suppress(BaseException):
            await writer


async def _read(websocket: WebSocket, relay: Relay, participant: Participant) -> None:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        data = message.get("bytes")
        if data is None:
            participant.counters.rejected_in += 1
            continue
        if data[:1] == _LEAVE:
            return
        relay.receive(participant, data)


async def _close_refused(websocket: WebSocket, refused: Refused) -> None:
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        await websocket.send_bytes(encode_message(refused))
        await websocket.close(code=1008, reason=refused.code)


__all__ = ["WS_PATH", "RelayInfo", "router"]
