"""The relay in a server process: built by `create_app`, its QUIC listener started and stopped
with the app's lifespan (``ServerConfig.relay_port``; None: WebSocket fallback only)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from aioquic.asyncio.server import QuicServer

from doorless.server.auth import authenticate
from doorless.server.config import ServerConfig
from doorless.server.errors import ApiError
from doorless.server.log import log_event
from doorless.server.relay import quic
from doorless.server.relay.bridge import Bridge
from doorless.server.relay.cert import load_or_create
from doorless.server.relay.hub import Forwarder, Relay, RelayEndpoint, RelayRefusal
from doorless.wire.errors import ErrorCode

if TYPE_CHECKING:
    from doorless.server.context import ServerContext


def make_relay(ctx: ServerContext, bridge: Bridge | None, forwarder: Forwarder | None) -> Relay:
    """The relay of this process, admitting by the server's own token check."""

    async def authenticate_token(token: str) -> str:
        try:
            return (await authenticate(ctx, token)).device_id
        except ApiError as exc:
            raise RelayRefusal(ErrorCode(exc.code), exc.message) from None

    return Relay(ctx.storage, authenticate_token, bridge=bridge, forwarder=forwarder)


class RelayService:
    def __init__(self, relay: Relay, config: ServerConfig) -> None:
        self.relay = relay
        self._cert_folder = config.relay_dir
        self._host = config.relay_host
        self._port = config.relay_port
        self._public_host = config.relay_public_host
        self._server: QuicServer | None = None

    async def start(self) -> RelayEndpoint | None:
        await self.relay.start()
        if self._port is None:
            return None
        cert = await asyncio.to_thread(load_or_create, self._cert_folder)
        self._server = await quic.start(self.relay, cert, self._host, self._port)
        port = quic.bound_port(self._server)
        log_event("relay listening", transport="quic", port=port)
        return RelayEndpoint(self._public_host, port, cert.fingerprint)

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        await self.relay.close()


__all__ = ["RelayEndpoint", "RelayService", "make_relay"]
