"""Pure ASGI middleware: request logging and the request-body size limit."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from doorless.server.log import device_tag, log_event, monotonic_ms

REQUEST_ID_HEADER = b"x-request-id"


class RequestLogMiddleware:
    """One JSON log line per request or WebSocket session; adds ``X-Request-Id``.

    ``direct``: WebSocket paths served by a plain endpoint that gets the server's own ``send``
    (no wrapper on every frame of a long session) and reports its handshake's status in
    ``scope["state"]["status"]`` (`doorless.server.routes.ws.endpoint`).
    """

    def __init__(self, app: ASGIApp, direct: Mapping[str, ASGIApp] | None = None) -> None:
        self.app = app
        self.direct = dict(direct or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = secrets.token_hex(8)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        direct = self.direct.get(scope["path"]) if scope["type"] == "websocket" else None
        if direct is not None:
            start = time.perf_counter()
            try:
                await direct(scope, receive, send)
            finally:
                self._log(scope, scope["path"], int(state.get("status", 0)), start)
            return
        status = 0

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            kind = message["type"]
            if kind == "http.response.start":
                status = int(message["status"])
                headers = [*message.get("headers", ()), (REQUEST_ID_HEADER, request_id.encode())]
                message = {**message, "headers": headers}
            elif kind == "websocket.accept":
                status = 101
            elif kind == "websocket.close" and status == 0:
                status = 403
            elif kind == "websocket.http.response.start":
                status = int(message["status"])
            await send(message)

        start = time.perf_counter()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self._log(scope, getattr(scope.get("route"), "path", "unmatched"), status, start)

    @staticmethod
    def _log(scope: Scope, route: str, status: int, start: float) -> None:
        state = scope.get("state", {})
        device_id = state.get("device_id")
        log_event(
            "request" if scope["type"] == "http" else "websocket",
            request_id=state.get("request_id"),
            method=scope.get("method", "WS"),
            route=route,
            # No response started: the client went away (or the request was cancelled)
            # before one could be sent; an exception would have been answered with a 500.
            status=status or 499,
            duration_ms=monotonic_ms(start),
            device=device_tag(device_id) if device_id else None,
        )


class BodyLimitMiddleware:
    """Refuse request bodies over a limit with 413 before any route sees them.

    Bodies are buffered (they are small) and replayed to the app. Paths for which
    ``streamed(path)`` is true (attachment uploads) pass through: the route enforces its own,
    larger limit while streaming to disk.
    """

    def __init__(self, app: ASGIApp, limit: int, streamed: Callable[[str], bool]) -> None:
        self.app = app
        self.limit = limit
        self.streamed = streamed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.streamed(scope["path"]):
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _reply(send, 400, "invalid_request", "invalid Content-Length")
                    return
                if declared > self.limit:
                    await _reply(send, 413, "payload_too_large", self._too_large())
                    return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await _reply(send, 413, "payload_too_large", self._too_large())
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _too_large(self) -> str:
        return f"request body is larger than {self.limit} bytes"


async def _reply(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps({"error": code, "message": message}).encode()
    headers: list[tuple[bytes, bytes]] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    start: dict[str, Any] = {"type": "http.response.start", "status": status, "headers": headers}
    await send(start)
    await send({"type": "http.response.body", "body": body})
