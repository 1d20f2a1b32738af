"""The app's HTTP side: the page, its assets, the JSON-RPC WebSocket and file transfers.

Everything goes through `GuardMiddleware` (Host, Origin, session cookie; `doorless.cli.app.guard`).
The page is static: it gets every piece of data through the WebSocket as JSON and puts peer
text into the document only as text (``textContent``), never as markup; the strict
Content-Security-Policy would keep any script that slipped in from running.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, RedirectResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from doorless.cli import rpc
from doorless.cli.app.guard import SECURITY_HEADERS, Guard
from doorless.cli.app.media import MediaBridge
from doorless.cli.app.runtime import AppRuntime
from doorless.cli.daemon import Connection
from doorless.errors import DoorlessError

log = logging.getLogger("doorless.app")

STATIC = Path(__file__).parent / "static"
# What one upload may be; the server has its own limit for attachments (it answers too_large).
MAX_UPLOAD = 100 * 1024 * 1024
# A WebSocket message from the page: a request line, as the daemon's MAX_LINE.
MAX_RPC_MESSAGE = 4 * 1024 * 1024

REFUSED = (
    "Refused. The Doorless app opens only from the link that 'doorless app' printed "
    "(and only on this computer)."
)


class GuardMiddleware:
    """Refuse every request that is not from the page opened through the printed link."""

    def __init__(self, app: ASGIApp, guard: Guard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        websocket = scope["type"] == "websocket"
        unsafe = websocket or scope.get("method", "GET") not in ("GET", "HEAD")
        reason = None
        if not self.guard.host_ok(headers.get("host")):
            reason = "host"  # DNS rebinding: another site's name pointing here
        elif not self.guard.origin_ok(headers.get("origin"), required=unsafe):
            reason = "origin"  # a cross-site request
        elif scope["path"] != "/open" and not self.guard.cookie_ok(headers.get("cookie")):
            reason = "session"
        if reason is not None:
            log.warning("refused a %s request to %s: %s", scope["type"], scope["path"], reason)
            if websocket:
                await send({"type": "websocket.close", "code": 1008})
            else:
                await PlainTextResponse(REFUSED, status_code=403, headers=SECURITY_HEADERS)(
                    scope, receive, send
                )
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                raw = list(message.get("headers", []))
                present = {name.lower() for name, _ in raw}
                for name, value in SECURITY_HEADERS.items():
                    if name.encode() not in present:
                        raw.append((name.encode(), value.encode()))
                message = {**message, "headers": raw}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def build_app(runtime: AppRuntime, guard: Guard) -> ASGIApp:
    async def open_page(request: Request) -> PlainTextResponse | RedirectResponse:
        if not guard.key_ok(request.query_params.get("key")):
            return PlainTextResponse(REFUSED, status_code=403)
        # 303 to a URL without the key, so it is not left in the address bar or history.
        response = RedirectResponse("/", status_code=303)
        response.headers.append("set-cookie", guard.session_cookie())
        return response

    async def index(_request: Request) -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")

    async def rpc_socket(websocket: WebSocket) -> None:
        await websocket.accept()

        async def write(data: bytes) -> None:
            await websocket.send_text(data.decode("utf-8"))

        connection = Connection("app", write)
        runtime.connections.add(connection)
        try:
            while True:
                text = await websocket.receive_text()
                if len(text) > MAX_RPC_MESSAGE:
                    await websocket.close(code=1009)
                    return
                runtime.spawn(runtime.handle(connection, text))
        except WebSocketDisconnect:
            pass
        finally:
            connection.open = False
            runtime.connections.discard(connection)

    async def media_socket(websocket: WebSocket) -> None:
        if runtime.client is None:
            await websocket.close(code=1008)
            return
        await websocket.accept()
        bridge = MediaBridge(runtime.client, websocket.path_params["call_id"], websocket)
        try:
            await bridge.run()
        except DoorlessError as exc:  # no such call, not a member, relay unreachable, ...
            log.warning("call media ended: %s", type(exc).__name__)
            with contextlib.suppress(RuntimeError):
                await websocket.close(code=1011, reason=str(exc)[:120])

    async def send_file(request: Request) -> JSONResponse:
        """The page's file, streamed to a private temporary folder, then `sendFile`."""
        folder = Path(tempfile.mkdtemp(prefix="doorless-upload-"))  # mode 0700
        try:
            path = folder / "upload"
            size = 0
            with path.open("wb") as out:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > MAX_UPLOAD:
                        return _error(413, "too_large", "the file is larger than 100 MiB")
                    out.write(chunk)
            params: dict[str, Any] = {
                "conversation_id": request.query_params.get("conversation_id", ""),
                "path": str(path),
                "name": request.query_params.get("name") or "file",
            }
            if media_type := request.headers.get("content-type"):
                params["media_type"] = media_type.split(";")[0].strip()
            return await _call(runtime, "sendFile", params)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    async def download(request: Request) -> FileResponse | JSONResponse:
        """A received file, decrypted and checked, handed over as a download (never shown
        inline: a peer's file is not a page of ours)."""
        folder = Path(tempfile.mkdtemp(prefix="doorless-download-"))
        params = {"message_id": request.path_params["message_id"], "path": str(folder)}
        answer = await _call(runtime, "download", params)
        if answer.status_code != 200:
            shutil.rmtree(folder, ignore_errors=True)
            return answer
        result = json.loads(bytes(answer.body))
        return FileResponse(
            result["path"],
            media_type="application/octet-stream",
            filename=result["file"]["name"],
            background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True),
        )

    routes = [
        Route("/", index),
        Route("/open", open_page),
        Route("/files/send", send_file, methods=["POST"]),
        Route("/files/{message_id:str}", download),
        WebSocketRoute("/rpc", rpc_socket),
        WebSocketRoute("/media/{call_id:str}", media_socket),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return GuardMiddleware(Starlette(routes=routes), guard)


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status)


async def _call(runtime: AppRuntime, method: str, params: dict[str, Any]) -> JSONResponse:
    """Run one JSON-RPC method for an HTTP route; its error (if any) as a 4xx/5xx answer."""
    if runtime.client is None:
        return _error(409, "invalid_state", "create an account or link this device first")
    request = {"jsonrpc": rpc.JSONRPC, "id": 1, "method": method, "params": params}
    answer = await rpc.call(runtime.client, request)
    assert answer is not None
    if "error" in answer:
        error = answer["error"]
        code = (error.get("data") or {}).get("error", "failed")
        if code in ("not_found", "unknown_conversation"):
            status = 404
        else:
            status = 400 if error["code"] == rpc.INVALID_PARAMS else 502
        return _error(status, code, error["message"])
    return JSONResponse(answer["result"])


__all__ = ["MAX_UPLOAD", "GuardMiddleware", "build_app"]
