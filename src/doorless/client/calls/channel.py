"""The call engine's `MediaChannel` over the relay connection
(`doorless.client.transport.relay.RelayConnection`): one SFrame frame per envelope."""

from __future__ import annotations

from doorless.client.core import Session
from doorless.client.transport.relay import RelayConnection, TransportChoice
from doorless.errors import StateError
from doorless.wire.calls import CallId, StreamKind


class ChannelClosed(StateError):
    """The relay connection ended (closed here, or the relay dropped this device)."""


class RelayChannel:
    """A `MediaChannel` over a `RelayConnection`."""

    def __init__(self, connection: RelayConnection) -> None:
        self.connection = connection

    @property
    def transport(self) -> str:
        return self.connection.transport

    async def send(self, stream: StreamKind, frame: bytes) -> None:
        await self.connection.send(stream, frame)  # False: dropped (counted by the relay)

    async def receive(self) -> bytes:
        try:
            envelope = await anext(self.connection)
        except StopAsyncIteration:
            raise ChannelClosed("the relay connection ended") from None
        return envelope.frame

    async def close(self) -> None:
        await self.connection.close()


async def join_relay(
    s: Session, group_id: bytes, call_id: bytes, transport: TransportChoice = "auto"
) -> RelayChannel:
    """Join the call on the server's relay (QUIC with the pinned certificate, else the
    WebSocket fallback)."""
    connection = await s.transport.join_call(group_id, CallId(call_id), transport=transport)
    return RelayChannel(connection)


__all__ = ["ChannelClosed", "RelayChannel", "join_relay"]
