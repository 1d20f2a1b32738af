"""How a relay frame envelope travels on a QUIC connection, the same rule at both ends.

An envelope that fits one DATAGRAM frame (`MAX_DATAGRAM_ENVELOPE`, RFC 9221) goes as one;
a larger one goes on a unidirectional stream of its own. Both are bounded per connection, so a
peer that does not read cannot grow the sender's buffers: beyond the bounds the frame is not
queued (the caller counts it as dropped), as a congested datagram path would drop it anyway.
No I/O here: this queues on aioquic's connection state; the caller transmits.
"""

from __future__ import annotations

from aioquic.quic.connection import QuicConnection

from doorless.wire.calls import MAX_DATAGRAM_ENVELOPE

MAX_PENDING_DATAGRAMS = 512
MAX_OPEN_STREAMS = 128  # frames on streams not yet delivered (and acknowledged)


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


__all__ = ["MAX_OPEN_STREAMS", "MAX_PENDING_DATAGRAMS", "queue_envelope"]
