"""The media relay (SFU): admission, selective forwarding of SFrame frames it cannot read, over
QUIC datagrams (`quic`) or the WebSocket fallback (``server/routes/calls.py``), across nodes
through a `Bridge` (docs/calls.md, "The relay")."""

from doorless.server.relay.bridge import Bridge, CallKey, LocalBridge, RedisBridge
from doorless.server.relay.hub import (
    Counters,
    Deliver,
    ForwardedFrame,
    Forwarder,
    Link,
    Participant,
    PlainForwarder,
    Relay,
    RelayRefusal,
)

__all__ = [
    "Bridge",
    "CallKey",
    "Counters",
    "Deliver",
    "ForwardedFrame",
    "Forwarder",
    "Link",
    "LocalBridge",
    "Participant",
    "PlainForwarder",
    "RedisBridge",
    "Relay",
    "RelayRefusal",
]
