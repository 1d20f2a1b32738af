"""The relay connection's QUIC link (raw QUIC with DATAGRAM frames; docs/calls.md
"Transports"), apart from `doorless.client.transport.relay` so that aioquic is loaded with the
first QUIC call rather than by every client program."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ssl
from typing import Any, cast

from aioquic.asyncio.client import connect as quic_connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration
from cryptography.hazmat.primitives import serialization

from doorless.client.errors import BadResponse, ServerUnreachable
from doorless.client.transport.relay import Inbox, RelayFingerprintMismatch
from doorless.errors import DecodeError
from doorless.wire.calls import (
    ALPN,
    MAX_FRAME_BYTES,
    ControlReader,
    JoinAccepted,
    JoinRequest,
    Leave,
    Refused,
    RelayMessage,
    encode_control,
)
from doorless.wire.relay_quic import MediaAcks, queue_envelope


class QuicClient(QuicConnectionProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.inbox: Inbox | None = None
        self.control_id: int | None = None
        self._control = ControlReader()
        self.answer: asyncio.Future[JoinAccepted | Refused] = self._loop.create_future()
        self._streams: dict[int, bytearray] = {}
        self._acks = MediaAcks(self._quic)

    def datagram_received(self, data: bytes | str, addr: Any) -> None:
        # As aioquic's, with this connection's ACK policy (`MediaAcks`).
        self._acks.receive(cast(bytes, data), addr, self._loop.time())
        self._process_events()
        self.transmit()

    def transmit(self) -> None:
        self._acks.before_transmit(self._loop.time())
        super().transmit()

    def peer_certificate_der(self) -> bytes | None:
        # aioquic keeps the verified-by-signature leaf certificate on its TLS context.
        cert = getattr(self._quic.tls, "_peer_certificate", None)
        return None if cert is None else cert.public_bytes(serialization.Encoding.DER)

    def quic_event_received(self, event: events.QuicEvent) -> None:
        inbox = self.inbox
        if isinstance(event, events.DatagramFrameReceived):
            if inbox is not None:
                inbox.frame(event.data)
        elif isinstance(event, events.StreamDataReceived):
            self._stream_data(event)
        elif isinstance(event, events.ConnectionTerminated):
            if not self.answer.done():
                self.answer.set_exception(
                    ServerUnreachable(f"relay closed the connection: {event.reason_phrase}")
                )
            if inbox is not None:
                inbox.end(None)

    def _stream_data(self, event: events.StreamDataReceived) -> None:
        sid = event.stream_id
        if sid & 0x2:  # a frame envelope too large for a datagram
            buf = self._streams.setdefault(sid, bytearray())
            buf += event.data
            if len(buf) > MAX_FRAME_BYTES + 2:
                self._streams.pop(sid, None)
                self._quic.stop_stream(sid, 0)
            elif event.end_stream:
                data = bytes(self._streams.pop(sid))
                if self.inbox is not None:
                    self.inbox.frame(data)
            return
        if sid != self.control_id:
            return
        try:
            messages = self._control.feed(event.data)
        except DecodeError as exc:
            self._fail(BadResponse(f"relay control stream: {exc}"))
            return
        for message in messages:
            self._control_message(message)

    def _control_message(self, message: RelayMessage) -> None:
        if isinstance(message, JoinAccepted | Refused) and not self.answer.done():
            self.answer.set_result(message)
        elif isinstance(message, Refused) and self.inbox is not None:
            self.inbox.end(message)
        else:
            self._fail(BadResponse("relay sent an unexpected control message"))

    def _fail(self, exc: Exception) -> None:
        if not self.answer.done():
            self.answer.set_exception(exc)
        self._quic.close(error_code=0, reason_phrase="protocol error")
        self.transmit()

    def send_envelopes(self, envelopes: list[bytes]) -> int:
        """Queue ``envelopes`` and transmit them now, together (one packet for what fits):
        a media frame is due when it is sent, and aioquic's `_transmit_soon` would wait for
        the loop's next turn, after every other socket ready then. How many were queued."""
        queued = sum(1 for data in envelopes if queue_envelope(self._quic, data))
        if queued:
            self.transmit()
        return queued


class QuicLink:
    def __init__(self, stack: contextlib.AsyncExitStack, protocol: QuicClient) -> None:
        self._stack = stack
        self.protocol = protocol

    @classmethod
    async def open(cls, host: str, port: int, fingerprint: str, timeout: float) -> QuicLink:
        config = QuicConfiguration(
            is_client=True,
            alpn_protocols=[ALPN],
            max_datagram_frame_size=65536,
            # No CA: the certificate is pinned by its fingerprint below, before any data.
            verify_mode=ssl.CERT_NONE,
            server_name=host,
            idle_timeout=30.0,
        )
        stack = contextlib.AsyncExitStack()
        try:
            protocol = await asyncio.wait_for(
                stack.enter_async_context(
                    quic_connect(host, port, configuration=config, create_protocol=QuicClient)
                ),
                timeout,
            )
        except BaseException:
            await stack.aclose()
            raise
        assert isinstance(protocol, QuicClient)
        der = protocol.peer_certificate_der()
        actual = "" if der is None else hashlib.sha256(der).hexdigest()
        if not hmac.compare_digest(actual.encode(), fingerprint.lower().encode()):
            protocol.close()
            await stack.aclose()
            raise RelayFingerprintMismatch(
                "the relay's certificate does not have the fingerprint the server announced"
            )
        return cls(stack, protocol)

    async def join(self, request: JoinRequest, timeout: float) -> JoinAccepted | Refused:
        p = self.protocol
        p.control_id = p._quic.get_next_available_stream_id()
        p._quic.send_stream_data(p.control_id, encode_control(request))
        p.transmit()
        return await asyncio.wait_for(asyncio.shield(p.answer), timeout)

    def send(self, data: bytes) -> bool:
        return self.protocol.send_envelopes([data]) == 1

    def send_all(self, envelopes: list[bytes]) -> int:
        return self.protocol.send_envelopes(envelopes)

    async def close(self) -> None:
        p = self.protocol
        if p.control_id is not None:
            with contextlib.suppress(Exception):
                p._quic.send_stream_data(p.control_id, encode_control(Leave()))
        p.close()
        await self._stack.aclose()
