"""The QUIC rule both ends of the relay share (`doorless.wire.relay_quic`): acknowledgements
wait for a media frame going the other way (at most `ACK_DELAY`) instead of one ACK-only
packet per received packet, and frames are queued within bounds."""

from __future__ import annotations

from pathlib import Path

from doorless.sframe import encode_header
from doorless.wire.calls import FrameEnvelope, StreamKind
from doorless.wire.relay_quic import (
    ACK_DELAY,
    ACK_EVERY,
    MAX_PENDING_DATAGRAMS,
    queue_envelope,
)
from support.quic_memory import Peer, deliver, handshake

T0 = 1000.0


def envelope(ctr: int) -> bytes:
    return FrameEnvelope(StreamKind.audio, encode_header(1, ctr) + b"x" * 80).to_bytes()


def send(peer: Peer, other: Peer, ctr: int, now: float) -> list[bytes]:
    assert queue_envelope(peer.quic, envelope(ctr))
    return deliver(peer, other, now)


def media_pair(tmp_path: Path) -> tuple[Peer, Peer]:
    client, server = handshake(tmp_path, T0 - 1)
    client.media()
    server.media()
    return client, server


def test_no_ack_only_packet_within_the_ack_delay(tmp_path: Path) -> None:
    client, server = media_pair(tmp_path)
    assert len(send(client, server, 1, T0 + 0.001)) == 1
    assert server.datagrams() == [envelope(1)]
    # aioquic alone would send an ACK-only packet 1 ms after the frame came in.
    for ms in (2, 5, 10, 20):
        assert server.quic.datagrams_to_send(now=T0 + ms / 1000) == []
    assert server.quic.get_timer() == T0 + 0.001 + ACK_DELAY


def test_the_ack_leaves_with_the_next_frame_going_back(tmp_path: Path) -> None:
    client, server = media_pair(tmp_path)
    send(client, server, 1, T0 + 0.001)
    server.datagrams()
    in_flight = client.quic._loss.bytes_in_flight
    assert in_flight > 0
    # The server's next frame to the client, 5 ms later, is one packet that also acknowledges.
    assert len(send(server, client, 2, T0 + 0.006)) == 1
    assert client.datagrams() == [envelope(2)]
    assert client.quic._loss.bytes_in_flight < in_flight
    assert server.quic.datagrams_to_send(now=T0 + 0.030) == []  # nothing left to acknowledge


def test_a_connection_that_sends_nothing_back_acks_after_the_delay(tmp_path: Path) -> None:
    client, server = media_pair(tmp_path)
    send(client, server, 1, T0 + 0.001)
    assert len(server.datagrams()) == 1
    due = server.quic.get_timer()
    assert due == T0 + 0.001 + ACK_DELAY
    assert server.send(due - 0.0001) == []
    server.quic.handle_timer(now=due)
    assert len(deliver(server, client, due)) == 1  # the ACK, alone
    assert client.quic._loss.bytes_in_flight == 0
    assert client.datagrams() == []


def test_a_one_way_flow_is_acknowledged_every_second_packet(tmp_path: Path) -> None:
    # RFC 9000 13.2.2: the sender's congestion window grows with ACKs, which must not wait
    # for media that never comes back (a participant who only listens and watches).
    client, server = media_pair(tmp_path)
    acks = []
    for n in range(1, 7):
        now = T0 + 0.001 * n
        send(client, server, n, now)
        acks.append(len(deliver(server, client, now)))
    assert ACK_EVERY == 2
    assert acks == [0, 1, 0, 1, 0, 1]
    assert client.quic._loss.bytes_in_flight == 0


def test_frames_queued_together_leave_in_one_packet(tmp_path: Path) -> None:
    client, server = media_pair(tmp_path)
    for ctr in range(1, 9):
        assert queue_envelope(client.quic, envelope(ctr))
    assert len(deliver(client, server, T0 + 0.001)) == 1
    assert server.datagrams() == [envelope(ctr) for ctr in range(1, 9)]


def test_the_datagram_queue_is_bounded(tmp_path: Path) -> None:
    client, _ = media_pair(tmp_path)
    for ctr in range(MAX_PENDING_DATAGRAMS):
        assert queue_envelope(client.quic, envelope(ctr + 1))
    assert not queue_envelope(client.quic, envelope(MAX_PENDING_DATAGRAMS + 1))


def test_a_one_way_audio_flow_needs_no_ack_timer(tmp_path: Path) -> None:
    # A frame every 20 ms plus the sender's own work (0.5 ms), every other one 3 ms late (its
    # loop, the network): the timer of a pending ACK is never due before the next frame
    # arrives, and that arrival sends the ACK (every second packet). With a delay of exactly
    # one period the timer came first whenever a frame was later than 20 ms after the last.
    client, server = media_pair(tmp_path)

    def arrival(n: int) -> float:
        return T0 + 0.0205 * n + 0.003 * ((n + 1) % 2)

    early_timers = 0
    acks = []
    for n in range(1, 21):
        send(client, server, n, arrival(n))
        acks.append(len(deliver(server, client, arrival(n))))
        due = server.quic.get_timer()
        early_timers += due is not None and due < arrival(n + 1)
    assert early_timers == 0
    assert acks == [0, 1] * 10
