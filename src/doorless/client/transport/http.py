"""HTTP plumbing of the transport: the connection, retries of unanswered requests, the
mapping of error answers to `doorless.client.errors`, the pinned server id, and the device's
login (challenge, signature, bearer token kept fresh)."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Self

import httpx

from doorless.client.errors import (
    BadResponse,
    ServerError,
    ServerFailure,
    ServerUnreachable,
    server_error,
)
from doorless.client.kt import KtVerifier
from doorless.client.transport.parsing import Fields
from doorless.client.transport.types import DeviceIdentity, ServerInfo
from doorless.errors import ConfigurationError, StateError
from doorless.wire import kt as kt_wire
from doorless.wire import protocol

_TOKEN_MARGIN = 30.0  # refresh a token this many seconds before it expires
# A pooled connection idle this long is not reused. Servers close idle connections after a
# few seconds (uvicorn, which `doorless server` runs on: 5 s, as httpx's own default); a
# request written as the server closes its side gets no answer, and one that is not
# idempotent (a registration) cannot be retried. httpx's default (5 s) is the server's own
# timeout: a connection reused just then races the server's close.
KEEPALIVE_EXPIRY = 2.0


class HttpBase:
    """The connection and login every group of endpoints builds on (see `Transport`)."""

    def __init__(
        self,
        base_url: str,
        device: DeviceIdentity | None = None,
        *,
        server_id: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = 30.0,
        retries: int = 2,
        backoff: float = 0.2,
        max_backoff: float = 30.0,
        http_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ConfigurationError("base_url must start with http:// or https://")
        self.base_url = base_url.rstrip("/")
        self.device = device
        self.username: str | None = None
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._server_id = server_id
        self._ssl = ssl_context
        self._timeout = timeout
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            transport=http_transport,
            verify=ssl_context if ssl_context is not None else True,
            timeout=timeout,
            limits=httpx.Limits(keepalive_expiry=KEEPALIVE_EXPIRY),
        )
        self._token: str | None = None
        self._token_expires_at = 0.0
        self._auth_lock = asyncio.Lock()
        # Key transparency: the verifier that vouches for device lists (`doorless.client.kt`).
        # The client library sets its own (witnesses, persisted head); without one, a default
        # verifier with no witness quorum (and a loud warning) is made on first use.
        self.kt: KtVerifier | None = None
        self.kt_cipher_suite = kt_wire.DEFAULT_SUITE

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _identity(self) -> DeviceIdentity:
        if self.device is None:
            raise StateError("this transport has no device identity")
        return self.device

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        content: Callable[[], AsyncIterator[bytes]] | None = None,
        headers: dict[str, str] | None = None,
        auth: bool = True,
        retry_unanswered: bool = False,
    ) -> httpx.Response:
        """One API call. Retries a connection that failed before sending (always safe) and,
        if ``retry_unanswered``, a request that got no answer or a 503 (for idempotent calls,
        after the ``Retry-After`` it names); on 401 it logs in again once."""
        attempt = 0
        logged_in_again = False
        while True:
            request_headers = dict(headers or {})
            if auth:
                request_headers["Authorization"] = f"Bearer {await self._ensure_token()}"
            try:
                response = await self._http.request(
                    method,
                    path,
                    json=json,
                    params=params,
                    content=content() if content is not None else None,
                    headers=request_headers,
                )
            except httpx.TransportError as exc:
                never_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
                if attempt < self.retries and (never_sent or retry_unanswered):
                    attempt += 1
                    await asyncio.sleep(min(self.max_backoff, self.backoff * 2**attempt))
                    continue
                raise ServerUnreachable(
                    f"{method} request got no answer ({type(exc).__name__})"
                ) from None
            if response.status_code == 401 and auth and not logged_in_again:
                logged_in_again = True
                self._token = None
                continue
            if response.status_code == 503 and retry_unanswered and attempt < self.retries:
                # The server's database is away for a moment: an idempotent call waits as asked.
                attempt += 1
                failure = error_of(response)
                wait = failure.retry_after if isinstance(failure, ServerFailure) else None
                await asyncio.sleep(min(self.max_backoff, wait or self.backoff))
                continue
            if response.status_code >= 400:
                raise error_of(response)
            return response

    async def _json(self, method: str, path: str, what: str, **kwargs: Any) -> Fields:
        response = await self._call(method, path, **kwargs)
        try:
            data = response.json()
        except ValueError:
            raise BadResponse(f"{what}: not JSON") from None
        return Fields(data, what)

    async def server_info(self) -> ServerInfo:
        f = await self._json("GET", "/v1/info", "info", auth=False, retry_unanswered=True)
        limits = f.obj("limits").raw()
        info = ServerInfo(
            server_id=f.text("server_id"),
            version=f.text("version"),
            registration=f.text("registration"),
            limits={k: v for k, v in limits.items() if isinstance(v, int)},
            franking_public_key=(
                f.blob("franking_public_key") if f.opt_text("franking_public_key") else None
            ),
        )
        self._pin(info.server_id)
        return info

    def _pin(self, server_id: str) -> None:
        if self._server_id is None:
            self._server_id = server_id
        elif self._server_id != server_id:
            raise BadResponse("the server's id changed: this is not the server we registered on")

    async def server_id(self) -> str:
        """The pinned server id (fetched from ``/v1/info`` on first use)."""
        if self._server_id is None:
            await self.server_info()
        assert self._server_id is not None
        return self._server_id

    async def _ensure_token(self) -> str:
        async with self._auth_lock:
            if self._token is None or self._token_expires_at - time.time() < _TOKEN_MARGIN:
                await self._login()
            assert self._token is not None
            return self._token

    async def authenticate(self) -> None:
        """Log in now (challenge, signature, token). Other calls do this when needed."""
        async with self._auth_lock:
            await self._login()

    async def _login(self) -> None:
        device = self._identity()
        server_id = await self.server_id()
        challenge = await self._json(
            "POST", "/v1/auth/challenge", "challenge", auth=False, retry_unanswered=True
        )
        self._pin(challenge.text("server_id"))
        nonce = challenge.blob("nonce")
        signature = device.sign(protocol.auth_content(server_id, nonce, device.device_id))
        token = await self._json(
            "POST",
            "/v1/auth/token",
            "token",
            auth=False,
            json={
                "device_id": device.device_id,
                "nonce": protocol.b64encode(nonce),
                "signature": protocol.b64encode(signature),
            },
        )
        self._token = token.text("token")
        self._token_expires_at = float(token.integer("expires_at"))
        self.username = token.text("username")


def error_of(response: httpx.Response) -> ServerError:
    try:
        body = response.json()
    except ValueError:
        body = None
    return server_error(response.status_code, body, response.headers.get("retry-after"))


__all__ = ["HttpBase", "error_of"]
