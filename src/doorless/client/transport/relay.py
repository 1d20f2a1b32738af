"""The client's connection to the server's media relay (docs/calls.md, "The relay").

::

    info = await transport.relay_info()                 # GET /v1/calls/relay: port, fingerprint
    conn = await transport.join_call(group_id, call_id)  # QUIC, else the WebSocket fallback
    await conn.send(StreamKind.audio, sframe_frame)      # one SFrame frame (RFC 9605)
    async for envelope in conn:                          # FrameEnvelope from the others
        ...
    await conn.close()

`RelayConnection.open` tries QUIC first (raw QUIC with DATAGRAM frames, ALPN
``doorless-relay/1``) and checks that the relay's certificate has the SHA-256 fingerprint the
authenticated API gave, *before* sending anything (the join carries the bearer token). A wrong
fingerprint raises `RelayFingerprintMismatch` and nothing falls back: it is an attack or a
misconfiguration to report, not a network problem. When QUIC cannot connect (UDP blocked, no
QUIC listener, timeout) it falls back to the WebSocket ``/v1/calls/ws`` on the API's own TLS and
keeps the reason in `RelayConnection.fallback_reason`. A refused join raises `RelayRefused`
(``code`` is an `ErrorCode` value). If the relay drops the participant later (its device left
the group), iteration ends with `RelayRefused`.

Frames are media: sending never waits for the network and a full queue drops (counted in
`RelayCounters`); a received envelope that is not a valid frame envelope is counted and skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from doorless.client.errors import BadResponse, ServerUnreachable
from doorless.client.transport.http import HttpBase
from doorless.errors import CryptoError, DecodeError, RemoteError, StateError
from doorless.wire.calls import (
    CallId,
    FrameEnvelope,
    JoinAccepted,
    JoinRequest,
    Leave,
    Refused,
    RelayMessageType,
    StreamKind,
    decode_message,
    encode_message,
)

if TYPE_CHECKING:
    from doorless.client.transport.relay_quic_link import QuicLink

TransportChoice = Literal["auto", "quic", "websocket"]
_QUEUE = 1024  # received envelopes not yet read; beyond that the oldest media is dropped
_REFUSED = bytes((RelayMessageType.refused,))


class RelayRefused(RemoteError):
    """The relay refused the join, or dropped this participant (``code``: an ErrorCode)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"relay refused ({code}): {message}")
        self.code = code
        self.message = message


class RelayFingerprintMismatch(CryptoError):
    """The relay's QUIC certificate is not the one the API announced (nothing was sent)."""


class RelayUnreachable(ServerUnreachable):
    """Neither QUIC nor the WebSocket fallback could reach the relay."""


@dataclass(frozen=True, slots=True)
class RelayInfo:
    """``GET /v1/calls/relay``: the QUIC listener (``port`` None: none) and the fallback."""

    host: str
    port: int | None
    fingerprint: str | None
    alpn: str
    websocket_url: str


@dataclass(slots=True)
class RelayCounters:
    frames_sent: int = 0
    bytes_sent: int = 0
    frames_received: int = 0
    bytes_received: int = 0
    malformed_received: int = 0  # not a frame envelope: skipped
    dropped_sent: int = 0  # the connection was congested
    dropped_received: int = 0  # not read in time (the receive queue was full)


_Item = bytes | Refused | None  # a frame envelope, a refusal, or the end


class Inbox:
    def __init__(self, counters: RelayCounters) -> None:
        self.queue: asyncio.Queue[_Item] = asyncio.Queue(_QUEUE)
        self._counters = counters

    def frame(self, data: bytes) -> None:
        if self.queue.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
            self._counters.dropped_received += 1
        self.queue.put_nowait(data)

    def end(self, item: Refused | None) -> None:
        while self.queue.full():
            self.queue.get_nowait()
        self.queue.put_nowait(item)


# --- WebSocket -------------------------------------------------------------------------------


class _WebSocketLink:
    def __init__(self, socket: ClientConnection) -> None:
        self.socket = socket
        self._reader: asyncio.Task[None] | None = None
        self._outbox: asyncio.Queue[bytes] = asyncio.Queue(_QUEUE)
        self._writer: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls, url: str, ssl_context: ssl.SSLContext | None, timeout: float
    ) -> _WebSocketLink:
        socket = await ws_connect(
            url,
            ssl=ssl_context if url.startswith("wss") else None,
            open_timeout=timeout,
            max_size=64 * 1024,
            proxy=None,
        )
        return cls(socket)

    async def join(self, request: JoinRequest, timeout: float) -> JoinAccepted | Refused:
        await self.socket.send(encode_message(request))
        raw = await asyncio.wait_for(self.socket.recv(), timeout)
        if not isinstance(raw, bytes):
            raise BadResponse("relay answered with a text message")
        try:
            answer = decode_message(raw)
        except DecodeError as exc:
            raise BadResponse(f"relay answer: {exc}") from None
        if not isinstance(answer, JoinAccepted | Refused):
            raise BadResponse("relay answered the join with something else")
        return answer

    def start(self, inbox: Inbox) -> None:
        self._reader = asyncio.create_task(self._read(inbox))
        self._writer = asyncio.create_task(self._write())

    async def _read(self, inbox: Inbox) -> None:
        refused: Refused | None = None
        try:
            async for raw in self.socket:
                if not isinstance(raw, bytes):
                    continue
                if raw[:1] == _REFUSED:
                    with contextlib.suppress(DecodeError):
                        message = decode_message(raw)
                        if isinstance(message, Refused):
                            refused = message
                    continue
                inbox.frame(raw)
        except (ConnectionClosed, OSError):
            pass
        inbox.end(refused)

    async def _write(self) -> None:
        with contextlib.suppress(ConnectionClosed, OSError):
            while True:
                await self.socket.send(await self._outbox.get())

    def send(self, data: bytes) -> bool:
        try:
            self._outbox.put_nowait(data)
        except asyncio.QueueFull:
            return False
        return True

    def send_all(self, envelopes: list[bytes]) -> int:
        return sum(1 for data in envelopes if self.send(data))

    async def close(self) -> None:
        with contextlib.suppress(ConnectionClosed, OSError):
            await self.socket.send(encode_message(Leave()))
        for task in (self._writer, self._reader):
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        await self.socket.close()


# --- the connection ----------------------------------------------------------------------------


class RelayConnection:
    """One device in one call on the relay (see the module docstring)."""

    def __init__(
        self,
        link: QuicLink | _WebSocketLink,
        transport: Literal["quic", "websocket"],
        joined: JoinAccepted,
        counters: RelayCounters,
        inbox: Inbox,
        fallback_reason: str | None,
    ) -> None:
        self._link = link
        self.transport = transport
        self.joined = joined
        self.counters = counters
        self._inbox = inbox
        self.fallback_reason = fallback_reason
        self.refused: Refused | None = None  # why the relay dropped us, if it did
        self._closed = False

    @classmethod
    async def open(
        cls,
        info: RelayInfo,
        *,
        token: str,
        group_id: bytes,
        call_id: CallId,
        transport: TransportChoice = "auto",
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = 5.0,
    ) -> RelayConnection:
        """Connect and join; see the module docstring for the order and the errors."""
        request = JoinRequest(token, group_id, call_id)
        reason: str | None = None
        if transport in ("auto", "quic"):
            if info.port is None or info.fingerprint is None:
                reason = "the server has no QUIC relay"
            else:
                try:
                    return await cls._open_quic(info, request, timeout)
                except (OSError, TimeoutError, ServerUnreachable, ConnectionError) as exc:
                    reason = f"QUIC failed: {type(exc).__name__}: {exc}"[:300]
            if transport == "quic":
                raise RelayUnreachable(reason)
        return await cls._open_websocket(info, request, ssl_context, timeout, reason)

    @classmethod
    async def _open_quic(
        cls, info: RelayInfo, request: JoinRequest, timeout: float
    ) -> RelayConnection:
        assert info.port is not None and info.fingerprint is not None
        # aioquic is loaded with the first QUIC call, not with every client program.
        from doorless.client.transport.relay_quic_link import QuicLink

        link = await QuicLink.open(info.host, info.port, info.fingerprint, timeout)
        counters = RelayCounters()
        inbox = Inbox(counters)
        link.protocol.inbox = inbox
        try:
            answer = await link.join(request, timeout)
        except BaseException:
            await link.close()
            raise
        if isinstance(answer, Refused):
            await link.close()
            raise RelayRefused(answer.code, answer.message)
        return cls(link, "quic", answer, counters, inbox, None)

    @classmethod
    async def _open_websocket(
        cls,
        info: RelayInfo,
        request: JoinRequest,
        ssl_context: ssl.SSLContext | None,
        timeout: float,
        reason: str | None,
    ) -> RelayConnection:
        try:
            link = await _WebSocketLink.open(info.websocket_url, ssl_context, timeout)
        except InvalidStatus as exc:
            raise RelayUnreachable(f"relay WebSocket refused: {exc.response.status_code}") from None
        except (OSError, TimeoutError, WebSocketException) as exc:
            raise RelayUnreachable(f"relay WebSocket failed ({type(exc).__name__})") from None
        try:
            answer = await link.join(request, timeout)
        except (ConnectionClosed, OSError, TimeoutError) as exc:
            await link.close()
            raise RelayUnreachable(f"relay WebSocket failed ({type(exc).__name__})") from None
        except BaseException:
            await link.close()
            raise
        if isinstance(answer, Refused):
            await link.close()
            raise RelayRefused(answer.code, answer.message)
        counters = RelayCounters()
        inbox = Inbox(counters)
        link.start(inbox)
        return cls(link, "websocket", answer, counters, inbox, reason)

    async def send(self, stream_kind: StreamKind, frame: bytes) -> bool:
        """Send one SFrame frame; False if it was dropped (congestion). Never waits for the
        network."""
        if self._closed:
            raise StateError("the relay connection is closed")
        data = FrameEnvelope(stream_kind, frame).to_bytes()
        if self._link.send(data):
            self.counters.frames_sent += 1
            self.counters.bytes_sent += len(data)
            return True
        self.counters.dropped_sent += 1
        return False

    def __aiter__(self) -> AsyncIterator[FrameEnvelope]:
        return self

    async def __anext__(self) -> FrameEnvelope:
        while True:
            item = await self._inbox.queue.get()
            if item is None:
                raise StopAsyncIteration
            if isinstance(item, Refused):
                self.refused = item
                raise RelayRefused(item.code, item.message)
            try:
                message = decode_message(item)
            except DecodeError:
                self.counters.malformed_received += 1
                continue
            if not isinstance(message, FrameEnvelope):
                self.counters.malformed_received += 1
                continue
            self.counters.frames_received += 1
            self.counters.bytes_received += len(item)
            return message

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._link.close()
        self._inbox.end(None)


class RelayEndpoints(HttpBase):
    """The relay's entries on the main API (mixed into `Transport`)."""

    async def relay_info(self) -> RelayInfo:
        f = await self._json("GET", "/v1/calls/relay", "relay info", retry_unanswered=True)
        path = f.text("websocket")
        if not path.startswith("/"):
            raise BadResponse("relay info: websocket is not a path")
        fingerprint = f.opt_text("fingerprint")
        if fingerprint is not None and len(fingerprint) != 64:
            raise BadResponse("relay info: fingerprint is not a SHA-256 in hex")
        return RelayInfo(
            host=f.opt_text("host") or (urlsplit(self.base_url).hostname or "localhost"),
            port=f.opt_integer("port"),
            fingerprint=fingerprint,
            alpn=f.text("alpn"),
            websocket_url=self.base_url.replace("http", "ws", 1) + path,
        )

    async def join_call(
        self,
        group_id: bytes,
        call_id: CallId,
        *,
        transport: TransportChoice = "auto",
        timeout: float = 5.0,
    ) -> RelayConnection:
        """`relay_info`, then `RelayConnection.open` with this device's token."""
        info = await self.relay_info()
        return await RelayConnection.open(
            info,
            token=await self._ensure_token(),
            group_id=group_id,
            call_id=call_id,
            transport=transport,
            ssl_context=self._ssl,
            timeout=timeout,
        )


__all__ = [
    "RelayConnection",
    "RelayCounters",
    "RelayEndpoints",
    "RelayFingerprintMismatch",
    "RelayInfo",
    "RelayRefused",
    "RelayUnreachable",
    "TransportChoice",
]
