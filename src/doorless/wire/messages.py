"""Messages as both ends of the delivery protocol see them (docs/protocol-http.md)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    """One message in a device's queue: what the server stores and what the client fetches.

    ``seq`` orders the device's queue (acknowledged by it); ``data`` is the MLSMessage as the
    sender posted it; ``frank`` is the server's ServerFrank of an application message
    (docs/franking.md), None for handshakes.
    """

    seq: int
    data: bytes
    received_at: int
    frank: bytes | None = None


__all__ = ["QueuedMessage"]
