"""QUIC connections without sockets: aioquic's sans-I/O `QuicConnection` driven by hand, with
the time as a parameter, for tests of what goes into which packet and when.

`Peer` is one endpoint (its connection and its address); `handshake` connects a client to a
server; `deliver` hands every datagram one side has to send to the other and returns them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection

from doorless.server.relay.cert import load_or_create
from doorless.server.relay.quic import configuration as relay_configuration
from doorless.wire.calls import ALPN
from doorless.wire.relay_quic import MediaAcks

CLIENT_ADDR = ("127.0.0.1", 40001)
SERVER_ADDR = ("127.0.0.1", 4433)


def client_configuration() -> QuicConfiguration:
    return QuicConfiguration(
        is_client=True, alpn_protocols=[ALPN], max_datagram_frame_size=65536, verify_mode=0
    )


def client_connection(addr_of_server: tuple[str, int], now: float) -> QuicConnection:
    quic = QuicConnection(configuration=client_configuration())
    quic.connect(addr_of_server, now=now)
    return quic


@dataclass
class Peer:
    quic: QuicConnection
    addr: tuple[str, int]
    acks: MediaAcks | None = None  # the relay's ACK policy, once `media` is called

    def media(self) -> None:
        self.acks = MediaAcks(self.quic)

    def receive(self, data: bytes, addr: tuple[str, int], now: float) -> None:
        if self.acks is None:
            self.quic.receive_datagram(data, addr, now=now)
        else:
            self.acks.receive(data, addr, now)

    def send(self, now: float) -> list[bytes]:
        if self.acks is not None:
            self.acks.before_transmit(now)
        return [data for data, _ in self.quic.datagrams_to_send(now=now)]

    def events(self) -> list[events.QuicEvent]:
        out = []
        while (event := self.quic.next_event()) is not None:
            out.append(event)
        return out

    def datagrams(self) -> list[bytes]:
        return [e.data for e in self.events() if isinstance(e, events.DatagramFrameReceived)]


def deliver(sender: Peer, receiver: Peer, now: float) -> list[bytes]:
    """Every datagram ``sender`` has to send at ``now``, received by ``receiver``."""
    sent = sender.send(now)
    for data in sent:
        receiver.receive(data, sender.addr, now)
    return sent


def handshake(folder: Path, now: float) -> tuple[Peer, Peer]:
    """A connected (client, server) pair at ``now``, the handshake done and acknowledged, its
    events consumed: nothing is left to send."""
    client = Peer(client_connection(SERVER_ADDR, now), CLIENT_ADDR)
    first = [data for data, _ in client.quic.datagrams_to_send(now=now)]
    server = Peer(
        QuicConnection(
            configuration=relay_configuration(load_or_create(folder)),
            original_destination_connection_id=client.quic._original_destination_connection_id,
        ),
        SERVER_ADDR,
    )
    for data in first:
        server.quic.receive_datagram(data, client.addr, now=now)
    for _ in range(4):
        deliver(server, client, now)
        deliver(client, server, now)
    for peer, other in ((client, server), (server, client), (client, server)):
        timer = peer.quic.get_timer()
        if timer is not None and timer <= now + 0.1:  # the 1-RTT ACKs, delayed
            peer.quic.handle_timer(now=now + 0.1)
        deliver(peer, other, now + 0.1)
    client.events()
    server.events()
    assert client.quic._handshake_confirmed and server.quic._handshake_complete
    assert not client.quic.datagrams_to_send(now=now + 0.1)
    assert not server.quic.datagrams_to_send(now=now + 0.1)
    return client, server
