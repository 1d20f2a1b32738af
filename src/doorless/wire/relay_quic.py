"""How a relay frame envelope travels on a QUIC connection, the same rule at both ends.

An envelope that fits one DATAGRAM frame (`MAX_DATAGRAM_ENVELOPE`, RFC 9221) goes as one;
a larger one goes on a unidirectional stream of its own. Both are bounded per connection, so a
peer that does not read cannot grow the sender's buffers: beyond the bounds the frame is not
queued (the caller counts it as dropped), as a congested datagram path would drop it anyway.

Acknowledgements (`MediaAcks`): a call sends a frame every 10-20 ms in each direction, and
aioquic acknowledges every ack-eliciting packet after 1 ms in a packet of its own. That doubled
the packets, the timers and the AES-GCM work per frame at both ends (an ACK-only packet costs
its sender a timer, a packet build and a seal, and its receiver an open and the loss-recovery
bookkeeping). Here ACKs wait up to `ACK_DELAY`, below the 25 ms max_ack_delay aioquic
announces (RFC 9000 13.2.1, 18.2), and leave with the next media frame going the other way;
only a connection that sends nothing back pays ACK-only packets, one per `ACK_EVERY` packets
received or per `ACK_DELAY`.

`ACK_DELAY` is longer than an audio frame period (20 ms) on purpose: at exactly one period the
delayed-ACK timer raced the next frame and nearly always won (the next frame is a period plus
the sender's and the network's delays later), so a one-way flow woke the receiver's loop on a
timer about once per frame for an ACK-only packet that the next frame's arrival would have
sent anyway (`ACK_EVERY`) without a timer.

No I/O here: this works on aioquic's connection state; the caller transmits.
"""

from __future__ import annotations

from aioquic import tls
from aioquic.quic.connection import NetworkAddress, QuicConnection
from aioquic.quic.recovery import QuicPacketSpace

from doorless.wire.calls import MAX_DATAGRAM_ENVELOPE

MAX_PENDING_DATAGRAMS = 512
MAX_OPEN_STREAMS = 128  # frames on streams not yet delivered (and acknowledged)
# Seconds: an audio frame period (20 ms) and some jitter, below the 25 ms max_ack_delay
# aioquic announces (RFC 9000 18.2), with 1 ms (its timer granularity) to spare.
ACK_DELAY = 0.024
ACK_EVERY = 2  # received ack-eliciting packets (RFC 9000 13.2.2)


def queue_envelope(quic: QuicConnection, data: bytes) -> bool:
    """Queue ``data`` (an encoded envelope) on ``quic``; False if the bounds drop it."""
    if len(data) <= MAX_DATAGRAM_ENVELOPE:
        if len(quic._datagrams_pending) >= MAX_PENDING_DATAGRAMS:
            return False
        quic.send_datagram_frame(data)
        return True
    if len(quic._streams) >= MAX_OPEN_STREAMS:
        return False
    stream_id = quic.get_next_available_stream_id(is_unidirectional=True)
    quic.send_stream_data(stream_id, data, end_stream=True)
    return True


class MediaAcks:
    """One connection's acknowledgements (see the module docstring): received datagrams go
    through `receive`, and `before_transmit` runs before each transmit.

    ACKs wait up to `ACK_DELAY` for a media frame going the other way, but no longer than
    `ACK_EVERY` received packets (RFC 9000 13.2.2), so a one-way flow (a participant that only
    listens and watches) still acknowledges every second packet and the sender's congestion
    window grows as usual. aioquic has no setting for its local ACK delay; handshake packets
    are still acknowledged at once."""

    def __init__(self, quic: QuicConnection) -> None:
        self._quic = quic
        self._unacked = 0  # packets received since the last ACK left
        quic._ack_delay = ACK_DELAY

    def _space(self) -> QuicPacketSpace | None:
        return self._quic._spaces.get(tls.Epoch.ONE_RTT)

    def receive(self, data: bytes, addr: NetworkAddress, now: float) -> None:
        space = self._space()
        if space is None or space.ack_at is None:
            self._unacked = 0  # nothing was waiting: the last ACK left (or none was due)
        self._quic.receive_datagram(data, addr, now=now)
        space = self._space()
        if space is not None and space.ack_at is not None:
            self._unacked += 1
            if self._unacked >= ACK_EVERY and space.ack_at > now:
                space.ack_at = now

    def before_transmit(self, now: float) -> None:
        """When frames are waiting, make a pending ACK due now so that it leaves in their
        packet (RFC 9000 13.2.1 lets any packet carry it) instead of alone later."""
        if self._quic._datagrams_pending:
            space = self._space()
            if space is not None and space.ack_at is not None and space.ack_at > now:
                space.ack_at = now


__all__ = [
    "ACK_DELAY",
    "ACK_EVERY",
    "MAX_OPEN_STREAMS",
    "MAX_PENDING_DATAGRAMS",
    "MediaAcks",
    "queue_envelope",
]
