"""`create_app`: the Doorless server as an ASGI application (FastAPI)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from doorless import __version__
from doorless.server.blobs import BlobStore
from doorless.server.config import ServerConfig
from doorless.server.context import ServerContext
from doorless.server.errors import ErrorBody, install_handlers
from doorless.server.fanout.base import Fanout
from doorless.server.fanout.memory import MemoryFanout
from doorless.server.franking import FrankingService
from doorless.server.kt_service import KtService
from doorless.server.log import describe_exception, log_event
from doorless.server.middleware import BodyLimitMiddleware, RequestLogMiddleware
from doorless.server.ratelimit import RateLimiter
from doorless.server.relay.bridge import Bridge
from doorless.server.relay.hub import Forwarder
from doorless.server.relay.service import RelayService, make_relay
from doorless.server.routes import (
    accounts,
    attachments,
    auth,
    hot,
    info,
    keypackages,
    messages,
    ws,
)
from doorless.server.routes import calls as calls_routes
from doorless.server.routes import kt as kt_routes
from doorless.server.routes import safety as safety_routes
from doorless.server.storage.base import Storage, StorageDamaged
from doorless.server.storage.sqlite import SQLiteStorage

DESCRIPTION = """\
The Doorless delivery service, KeyPackage directory, account/device registry and attachment
store. It routes MLS ciphertext by its cleartext header and never holds a key that decrypts it.
Every error body is `{"error": code, "message": text}`. See docs/protocol-http.md.
"""


async def sweep(ctx: ServerContext) -> None:
    """Delete expired attachments (rows, then blobs) and expired auth/link/invite records."""
    now = ctx.now()
    expired = await ctx.storage.take_expired_attachments(now)
    await asyncio.to_thread(ctx.blobs.delete, expired)
    await ctx.storage.purge_expired(now, now - ctx.config.idempotency_ttl)
    await ctx.kt.publish()  # versions a crash left pending
    await ctx.franking.maintain()  # rotate and expire franking keys
    ctx.device_limiter.prune()
    ctx.anonymous_limiter.prune()
    if expired:
        log_event("attachments expired", count=len(expired))


async def _sweeper(ctx: ServerContext) -> None:
    while True:
        await asyncio.sleep(ctx.config.sweep_interval)
        try:
            await sweep(ctx)
        # The last-resort boundary of a background task: an error escaping here would end the
        # task and with it every later sweep, silently. The storage drivers (sqlite3, asyncpg),
        # the blob directory (OSError) and the KT log raise unrelated types, so the sweep logs
        # the type of any failure and the next round retries. Cancellation (a BaseException)
        # still stops the task. (RUF100: the noqa is unused until BLE001 is enabled.)
        except Exception as exc:  # noqa: BLE001
            log_event("sweep failed", logging.WARNING, **describe_exception(exc))


def create_app(
    config: ServerConfig,
    *,
    storage: Storage | None = None,
    fanout: Fanout | None = None,
    clock: Callable[[], float] = time.time,
    background_sweeper: bool = True,
    relay_bridge: Bridge | None = None,
    relay_forwarder: Forwarder | None = None,
    on_started: Callable[[], None] | None = None,
) -> FastAPI:
    """Build the app. Storage opens (and migrates) in the lifespan, so run it under an ASGI
    server, or enter ``app.router.lifespan_context(app)`` in tests. ``on_started`` runs once
    the startup is done, before the first request (``doorless server``: process settings,
    `doorless.server.runtime.tune_gc`)."""
    storage = storage if storage is not None else SQLiteStorage(config.database_path)
    ctx = ServerContext(
        config=config,
        storage=storage,
        fanout=fanout if fanout is not None else MemoryFanout(),
        blobs=BlobStore(config.attachments_dir, clock=clock),
        clock=clock,
        device_limiter=RateLimiter(config.rate_per_second, config.rate_burst, clock),
        anonymous_limiter=RateLimiter(config.anon_rate_per_second, config.anon_rate_burst, clock),
        kt=KtService(storage, clock, config.kt_witnesses),
        franking=FrankingService(
            storage,
            rotation_ms=config.franking_rotation * 1000,
            retention_ms=config.franking_retention * 1000,
            clock_ms=lambda: int(clock() * 1000),
        ),
    )

    relay = RelayService(make_relay(ctx, relay_bridge, relay_forwarder), config)
    ctx.relay = relay.relay

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            await ctx.storage.open()
        except StorageDamaged as exc:  # the operator's message: which file, what to do
            log_event("database damaged", logging.CRITICAL, problem=str(exc))
            raise
        try:
            ctx.server_id = await ctx.storage.server_id()
            await ctx.kt.open(ctx.server_id)
            await ctx.franking.load()
            await asyncio.to_thread(ctx.blobs.prepare)
            orphans = await asyncio.to_thread(
                ctx.blobs.remove_orphans, await ctx.storage.attachment_ids()
            )
            await sweep(ctx)
            if on_started is not None:
                on_started()
            log_event("server started", orphan_blobs_removed=orphans)
            task = asyncio.create_task(_sweeper(ctx)) if background_sweeper else None
            try:
                ctx.relay_endpoint = await relay.start()
                yield
            finally:
                await relay.close()
                ctx.relay_endpoint = None
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
        finally:
            await ctx.fanout.close()
            await ctx.storage.close()
            ctx.server_id = ""

    app = FastAPI(
        title="Doorless",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.ctx = ctx
    install_handlers(app)
    for module in (info, auth, accounts, keypackages, messages, attachments, ws, kt_routes):
        app.include_router(module.router)
    app.include_router(safety_routes.router)
    app.include_router(calls_routes.router)
    # The hot routes as plain endpoints, ahead of their FastAPI twins (which stay for the
    # OpenAPI document): `doorless.server.routes.hot`.
    app.router.routes[:0] = [
        hot.HotRoute("/v1/messages", hot.send, methods=["POST"], include_in_schema=False),
        hot.HotRoute("/v1/messages/ack", hot.ack, methods=["POST"], include_in_schema=False),
    ]
    app.add_middleware(
        BodyLimitMiddleware,
        limit=config.max_json_body,
        streamed=lambda path: path == attachments.UPLOAD_PATH,
    )
    # `/v1/ws` is served by its plain endpoint, given the server's own send
    # (`doorless.server.routes.ws`); the FastAPI route of the same path is its twin.
    app.add_middleware(RequestLogMiddleware, direct={"/v1/ws": ws.endpoint})
    _document_errors(app)
    return app


def _document_errors(app: FastAPI) -> None:
    """Make the OpenAPI document say what is served: FastAPI describes validation errors
    with its own schema, but every error body here is `ErrorBody`."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        schemas.setdefault("ErrorBody", ErrorBody.model_json_schema())
        ref = {"$ref": "#/components/schemas/ErrorBody"}
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                for status, response in operation.get("responses", {}).items():
                    if status.startswith(("4", "5")):
                        response["content"] = {"application/json": {"schema": ref}}
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
