"""What every route needs, built once by `create_app` and kept in ``app.state.ctx``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.requests import HTTPConnection

from doorless.errors import StateError
from doorless.server.blobs import BlobStore
from doorless.server.config import ServerConfig
from doorless.server.fanout.base import Fanout
from doorless.server.franking import FrankingService
from doorless.server.kt_service import KtService
from doorless.server.ratelimit import RateLimiter
from doorless.server.relay.hub import Relay, RelayEndpoint
from doorless.server.storage.base import Storage


@dataclass(slots=True)
class ServerContext:
    config: ServerConfig
    storage: Storage
    fanout: Fanout
    blobs: BlobStore
    clock: Callable[[], float]
    device_limiter: RateLimiter
    anonymous_limiter: RateLimiter
    kt: KtService
    franking: FrankingService
    server_id: str = field(default="")
    relay: Relay | None = None  # the media relay (doorless.server.relay)
    relay_endpoint: RelayEndpoint | None = None  # its QUIC listener, once started

    def now(self) -> int:
        """Wall-clock time in whole seconds (what the storage records)."""
        return int(self.clock())


def get_context(conn: HTTPConnection) -> ServerContext:
    ctx = getattr(conn.app.state, "ctx", None)
    if not isinstance(ctx, ServerContext) or not ctx.server_id:
        raise StateError("server is not started (lifespan did not run)")
    return ctx
