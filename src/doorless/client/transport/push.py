"""The WebSocket push stream: opening the socket (one login retry), reconnecting with backoff,
resuming after the last message yielded, acknowledging over the socket or HTTP.

An ack sent over the socket is confirmed by the server's ``acked`` (or ``error``) frame, one
per ack frame, in order. Acks not yet confirmed when the socket drops (the node died before it
processed them) are sent again on the next socket: the stream resumes after the last seq it
yielded, so the server would not push those messages again, and they would stay queued."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from collections.abc import Sequence
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from doorless.client.errors import (
    BadResponse,
    ServerError,
    ServerUnreachable,
    Unauthorized,
    server_error,
)
from doorless.client.transport.delivery import DeliveryEndpoints
from doorless.client.transport.parsing import Fields, parse_inbound
from doorless.client.transport.types import KeyPackagesLow, PushEvent

_CLOSE_TOKEN_EXPIRED = 4401
_ACK_FRAME_MAX = 1000  # seqs per ack frame (the server's limit)


class PushEndpoints(DeliveryEndpoints):
    """Pushed events over a WebSocket (`push`)."""

    def push(self, after: int = 0, *, max_reconnects: int | None = None) -> PushStream:
        """Pushed events over a WebSocket, reconnecting (with backoff) when it drops.

        Messages stay queued until acked (`ack` or `PushStream.ack`); after a reconnect the
        stream resumes after the last seq it yielded.
        """
        return PushStream(self, after, max_reconnects)

    async def _open_socket(self, after: int) -> ClientConnection:
        """Open the push socket (one login retry on 401); raises typed errors."""
        url = self.base_url.replace("http", "ws", 1) + f"/v1/ws?after={after}"
        for attempt in range(2):
            token = await self._ensure_token()
            try:
                return await connect(
                    url,
                    additional_headers={"Authorization": f"Bearer {token}"},
                    ssl=self._ssl if url.startswith("wss") else None,
                    open_timeout=self._timeout,
                    max_size=4 * 1024 * 1024,
                    proxy=None,
                )
            except InvalidStatus as exc:
                status = exc.response.status_code
                if status == 401 and attempt == 0:
                    self._token = None
                    continue
                body: Any = None
                with contextlib.suppress(ValueError):
                    body = json.loads(exc.response.body or b"")
                raise server_error(status, body, exc.response.headers.get("Retry-After")) from None
            except (OSError, TimeoutError, WebSocketException) as exc:
                raise ServerUnreachable(f"push socket failed ({type(exc).__name__})") from None
        raise Unauthorized(401, "unauthorized", "token refused twice", {})


class PushStream:
    """``async for event in transport.push(): ...`` — see `Transport.push`."""

    def __init__(self, transport: PushEndpoints, after: int, max_reconnects: int | None) -> None:
        self._t = transport
        self.last_seq = after
        self._max_reconnects = max_reconnects
        self._failures = 0
        self._socket: ClientConnection | None = None
        self._closed = False
        self._unconfirmed: deque[list[int]] = deque()  # acks sent on the socket, in order
        self._retry: list[int] = []  # refused by an "error" frame: sent with the next ack

    def __aiter__(self) -> PushStream:
        return self

    async def __anext__(self) -> PushEvent:
        while not self._closed:
            if self._socket is None:
                await self._reconnect()
                continue
            try:
                raw = await self._socket.recv()
            except ConnectionClosed as exc:
                self._socket = None
                if exc.rcvd is not None and exc.rcvd.code == _CLOSE_TOKEN_EXPIRED:
                    self._t._token = None
                continue
            event = self._parse(raw)
            if event is not None:
                return event
        raise StopAsyncIteration

    @property
    def unconfirmed(self) -> list[int]:
        """Seqs acked over the socket that the server has not confirmed yet."""
        return [seq for seqs in self._unconfirmed for seq in seqs]

    async def _reconnect(self) -> None:
        while True:
            try:
                self._socket = await self._t._open_socket(self.last_seq)
                self._failures = 0
                resend = self.unconfirmed
                self._unconfirmed.clear()
                await self.ack(resend)  # acks the dropped socket may have lost (idempotent)
                return
            except (ServerUnreachable, ServerError) as exc:
                if isinstance(exc, ServerError) and exc.status not in (429, 500, 502, 503, 504):
                    raise
                self._failures += 1
                if self._max_reconnects is not None and self._failures > self._max_reconnects:
                    raise
                delay = min(self._t.max_backoff, self._t.backoff * 2**self._failures)
                retry_after = getattr(exc, "retry_after", None)
                await asyncio.sleep(max(delay, retry_after or 0.0))

    def _parse(self, raw: str | bytes) -> PushEvent | None:
        try:
            frame = Fields(json.loads(raw), "push frame")
        except ValueError:
            raise BadResponse("push frame is not JSON") from None
        kind = frame.text("type")
        if kind == "message":
            message = parse_inbound(frame)
            if message.seq <= self.last_seq:  # already yielded before a reconnect
                return None
            self.last_seq = message.seq
            return message
        if kind == "keypackages_low":
            return KeyPackagesLow(frame.integer("count"), frame.integer("low_watermark"))
        if kind in ("acked", "error") and self._unconfirmed:
            confirmed = self._unconfirmed.popleft()  # the answer to the oldest ack frame
            if kind == "error":
                # Refused (e.g. rate limited): send it again with the next ack.
                self._retry.extend(confirmed)
        return None  # future frame types

    async def ack(self, seqs: Sequence[int]) -> None:
        """Acknowledge over the socket if it is open, else over HTTP."""
        seqs = [*self._retry, *seqs]
        self._retry.clear()
        if not seqs:
            return
        if self._socket is not None:
            with contextlib.suppress(ConnectionClosed):
                for start in range(0, len(seqs), _ACK_FRAME_MAX):
                    chunk = seqs[start : start + _ACK_FRAME_MAX]
                    self._unconfirmed.append(chunk)
                    await self._socket.send(json.dumps({"type": "ack", "seqs": chunk}))
                return
            # Dropped: what the socket took is re-sent after the reconnect; the rest now.
            seqs = [s for s in seqs if s not in set(self.unconfirmed)]
            if not seqs:
                return
        await self._t.ack(seqs)

    async def aclose(self) -> None:
        self._closed = True
        if self._socket is not None:
            await self._socket.close()
            self._socket = None

    async def __aenter__(self) -> PushStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


__all__ = ["PushEndpoints", "PushStream"]
