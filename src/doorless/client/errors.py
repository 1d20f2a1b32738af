"""Errors of talking to a Doorless server, in the one tree of `doorless.errors`.

::

    DoorlessError
     └── RemoteError
          ├── ServerUnreachable        no answer: connection refused/reset, DNS, TLS, timeout
          ├── BadResponse              an answer that does not follow the protocol
          └── ServerError              the server refused the request (HTTP 4xx/5xx)
               ├── InvalidRequest      400/422: malformed message, bad signature, unknown
               │                       recipient (``unknown_devices``), schema mismatch
               ├── Unauthorized        401: token missing/expired, challenge response rejected
               ├── Forbidden           403: not allowed for this device; invite required
               ├── NotFound            404
               ├── Conflict            409: username taken, device exists, ...
               │    └── EpochConflict  another commit took this epoch (``current_epoch``):
               │                       process the pending commits, then retry
               ├── PayloadTooLarge     413
               ├── RateLimited         429 (``retry_after`` seconds)
               └── ServerFailure       5xx (503: ``retry_after`` seconds)

Every `ServerError` carries the HTTP ``status`` and the server's stable error ``code``
(see ``docs/protocol-http.md``).
"""

from __future__ import annotations

from typing import Any

from doorless.errors import RemoteError
from doorless.wire.errors import ErrorCode


class ServerUnreachable(RemoteError):
    """The request got no answer (it may or may not have reached the server)."""


class BadResponse(RemoteError):
    """The server answered with something the protocol does not allow."""


class ServerError(RemoteError):
    def __init__(self, status: int, code: str, message: str, body: dict[str, Any]) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.body = body


class InvalidRequest(ServerError):
    @property
    def unknown_devices(self) -> list[str]:
        devices = self.body.get("unknown_devices")
        return [str(d) for d in devices] if isinstance(devices, list) else []


class Unauthorized(ServerError):
    pass


class Forbidden(ServerError):
    pass


class NotFound(ServerError):
    pass


class Conflict(ServerError):
    pass


class EpochConflict(Conflict):
    @property
    def current_epoch(self) -> int | None:
        epoch = self.body.get("current_epoch")
        return epoch if isinstance(epoch, int) else None


class PayloadTooLarge(ServerError):
    pass


class RateLimited(ServerError):
    def __init__(
        self, status: int, code: str, message: str, body: dict[str, Any], retry_after: float
    ) -> None:
        super().__init__(status, code, message, body)
        self.retry_after = retry_after


class ServerFailure(ServerError):
    """5xx. ``retry_after``: the seconds a 503 (the server's database is unavailable) asks to
    wait, else None."""

    retry_after: float | None = None


_BY_STATUS: dict[int, type[ServerError]] = {
    400: InvalidRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: InvalidRequest,
}
_BY_CODE: dict[str, type[ServerError]] = {ErrorCode.EPOCH_CONFLICT: EpochConflict}


def server_error(status: int, body: Any, retry_after: str | None = None) -> ServerError:
    """The typed error for an HTTP error response (``body`` is its parsed JSON, if any)."""
    if not isinstance(body, dict):
        body = {}
    code = body.get("error") if isinstance(body.get("error"), str) else f"http_{status}"
    message = body.get("message") if isinstance(body.get("message"), str) else "request failed"
    try:
        wait = max(0.0, float(retry_after)) if retry_after is not None else 1.0
    except ValueError:
        wait = 1.0
    if status == 429:
        return RateLimited(status, code, message, body, wait)
    cls = _BY_CODE.get(code) or _BY_STATUS.get(status)
    if cls is None:
        cls = ServerFailure if status >= 500 else InvalidRequest
    error = cls(status, code, message, body)
    if isinstance(error, ServerFailure) and status == 503:
        error.retry_after = wait
    return error


__all__ = [
    "BadResponse",
    "Conflict",
    "EpochConflict",
    "Forbidden",
    "InvalidRequest",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "ServerError",
    "ServerFailure",
    "ServerUnreachable",
    "Unauthorized",
    "server_error",
]
