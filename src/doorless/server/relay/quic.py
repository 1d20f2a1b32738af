"""The relay's primary transport: raw QUIC (RFC 9000) with DATAGRAM frames (RFC 9221), ALPN
``doorless-relay/1`` (`doorless.wire.calls.ALPN`), on its own UDP port.

Per connection: the client opens one bidirectional stream and sends a `JoinRequest` on it
(`encode_control` framing); the relay answers `JoinAccepted` or `Refused` there (a refusal
closes the connection). After that, every frame envelope is one DATAGRAM frame, or, when it
does not fit one (`MAX_DATAGRAM_ENVELOPE`), one client- or server-initiated unidirectional
stream. A `Refused` on the control stream later means the relay dropped the participant (its
device left the group).

Why raw QUIC and not WebTransport over HTTP/3: the only clients are Doorless clients (the local
app's browser talks to its own client, never to the relay), so an HTTP/3 layer would add
SETTINGS, CONNECT and capsule handling for no one; the pinned certificate and our ALPN give the
same security, and a datagram costs a few bytes less (docs/calls.md).
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from typing import Any, cast

from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import QuicServer, serve
from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration

from doorless.errors import DecodeError
from doorless.server.log import log_event
from doorless.server.relay.cert import RelayCertificate
from doorless.server.relay.hub import Participant, Relay, RelayRefusal
from doorless.wire.calls import (
    ALPN,
    MAX_FRAME_BYTES,
    ControlReader,
    JoinAccepted,
    JoinRequest,
    Leave,
    Refused,
    encode_control,
)
from doorless.wire.errors import ErrorCode
from doorless.wire.relay_quic import MediaAcks, queue_envelope

_JOIN_TIMEOUT = 10.0
_IDLE_TIMEOUT = 30.0
_CLOSE_DELAY = 0.2


def configuration(cert: RelayCertificate) -> QuicConfiguration:
    config = QuicConfiguration(
        is_client=False,
        alpn_protocols=[ALPN],
        max_datagram_frame_size=65536,
        idle_timeout=_IDLE_TIMEOUT,
    )
    config.load_cert_chain(cert.cert_path, cert.key_path)
    return config


class Outbox:
    """The connections given frames while one received UDP datagram is processed; they
    transmit as soon as it is done (`RelayQuicProtocol.datagram_received`).

    Why not aioquic's `_transmit_soon` (a callback on the next loop turn): the listener has one
    UDP socket for every connection, and uvloop (which uvicorn runs) reads up to 32 datagrams
    from it before any callback, so a frame forwarded from the first waited until all the others
    were decrypted and forwarded (a few ms at ten calls). Now a frame leaves right after its own
    datagram, and the frames that came in one datagram still leave in one packet per recipient
    (a burst stays one transmit, which keeps the CPU per frame of bursts low)."""

    def __init__(self) -> None:
        self.receiving = False
        self.waiting: dict[RelayQuicProtocol, None] = {}  # insertion-ordered set

    def flush(self) -> None:
        waiting, self.waiting = self.waiting, {}
        for protocol in waiting:
            protocol.transmit()


class RelayQuicProtocol(QuicConnectionProtocol):
    """One client connection (see the module docstring)."""

    def __init__(self, *args: Any, relay: Relay, outbox: Outbox, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._relay = relay
        self._outbox = outbox
        self._control_id: int | None = None
        self._control = ControlReader()
        self._participant: Participant | None = None
        self._joining = False
        self._streams: dict[int, bytearray] = {}
        self._join_timer = self._loop.call_later(_JOIN_TIMEOUT, self._join_timeout)
        self._acks = MediaAcks(self._quic)

    def datagram_received(self, data: bytes | str, addr: Any) -> None:
        # As aioquic's, but the connections this datagram's frames were forwarded to transmit
        # first, right after it (`Outbox`), then this one (its ACKs, its timer).
        outbox = self._outbox
        outbox.receiving = True
        try:
            self._acks.receive(cast(bytes, data), addr, self._loop.time())
            self._process_events()
        finally:
            outbox.receiving = False
        outbox.flush()
        self.transmit()

    def transmit(self) -> None:
        self._acks.before_transmit(self._loop.time())
        super().transmit()

    # --- Link --------------------------------------------------------------------------------

    def send_frame(self, data: bytes) -> bool:
        if not queue_envelope(self._quic, data):
            return False
        if self._outbox.receiving:
            self._outbox.waiting[self] = None
        else:
            self._transmit_soon()  # from the bridge (another node) or a forwarder's timer
        return True

    def drop(self, refused: Refused) -> None:
        if self._control_id is not None:
            self._quic.send_stream_data(self._control_id, encode_control(refused))
            self._transmit_soon()
        # A CONNECTION_CLOSE discards stream data not yet sent: give the refusal a moment.
        self._loop.call_later(_CLOSE_DELAY, self._close, refused.code)

    def _close(self, reason: str) -> None:
        self._quic.close(error_code=0, reason_phrase=reason)
        self._transmit_soon()

    # --- events ------------------------------------------------------------------------------

    def quic_event_received(self, event: events.QuicEvent) -> None:
        if isinstance(event, events.DatagramFrameReceived):
            if self._participant is not None:
                self._relay.receive(self._participant, event.data)
        elif isinstance(event, events.StreamDataReceived):
            self._stream_data(event)
        elif isinstance(event, events.ConnectionTerminated):
            self._join_timer.cancel()
            if self._participant is not None:
                self._relay.leave(self._participant)

    def _stream_data(self, event: events.StreamDataReceived) -> None:
        sid = event.stream_id
        if sid & 0x2:  # unidirectional (RFC 9000 2.1): one frame envelope per stream
            buf = self._streams.setdefault(sid, bytearray())
            buf += event.data
            if len(buf) > MAX_FRAME_BYTES + 2:
                self._streams.pop(sid, None)
                self._quic.stop_stream(sid, 0)
                return
            if event.end_stream:
                data = bytes(self._streams.pop(sid))
                if self._participant is not None:
                    self._relay.receive(self._participant, data)
            return
        if self._control_id is None:
            self._control_id = sid
        elif sid != self._control_id:
            return  # one control stream per connection; others are ignored
        try:
            messages = self._control.feed(event.data)
        except DecodeError as exc:
            self._refuse(Refused(ErrorCode.INVALID_REQUEST, f"bad control message: {exc}"))
            return
        for message in messages:
            if isinstance(message, JoinRequest) and not self._joining:
                self._joining = True
                self._loop.create_task(self._join(message))
            elif isinstance(message, Leave):
                self._quic.close(error_code=0, reason_phrase="leave")
                self._transmit_soon()
            else:
                self._refuse(Refused(ErrorCode.INVALID_REQUEST, "unexpected control message"))

    async def _join(self, request: JoinRequest) -> None:
        try:
            participant = await self._relay.admit(request, self, "quic")
        except RelayRefusal as exc:
            self._refuse(exc.refused)
            return
        self._join_timer.cancel()
        if self._closed.is_set():  # gone while we checked
            self._relay.leave(participant)
            return
        self._participant = participant
        count = len(self._relay.participants(request.group_id, request.call_id.value))
        answer = JoinAccepted(participant.number, max(1, min(count, 0xFFFF)))
        assert self._control_id is not None
        self._quic.send_stream_data(self._control_id, encode_control(answer))
        self._transmit_soon()

    def _refuse(self, refused: Refused) -> None:
        log_event("relay refused", logging.INFO, transport="quic", error=refused.code)
        self.drop(refused)

    def _join_timeout(self) -> None:
        if self._participant is None:
            self._refuse(Refused(ErrorCode.TIMEOUT, "no join request in time"))


async def start(relay: Relay, cert: RelayCertificate, host: str, port: int) -> QuicServer:
    """Listen on ``host:port`` (UDP; port 0: any free port, see `bound_port`)."""
    return await serve(
        host,
        port,
        configuration=configuration(cert),
        create_protocol=partial(RelayQuicProtocol, relay=relay, outbox=Outbox()),
    )


def bound_port(server: QuicServer) -> int:
    transport: asyncio.DatagramTransport | None = server._transport
    assert transport is not None
    return int(transport.get_extra_info("sockname")[1])


__all__ = ["Outbox", "RelayQuicProtocol", "bound_port", "configuration", "start"]
