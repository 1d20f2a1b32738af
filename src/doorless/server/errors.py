"""HTTP errors of the API: every error response is JSON ``{"error": code, "message": text}``.

`ApiError` is what routes raise; `install_handlers` maps it, the refusals of the delivery rules
(`doorless.server.delivery.DeliveryRefused`), the storage's rejections
(`doorless.server.storage.base.Rejected`) and every framework error (bad JSON, validation,
unknown route, wrong method) onto that body, so no input produces anything but a typed 4xx.
Messages never echo the request's content.

Codes (stable; clients switch on them):

=======  ======================  ==================================================
status   code                    meaning
=======  ======================  ==================================================
400      malformed_message       bytes are not a valid MLSMessage of the right kind
400      invalid_request         well-formed JSON, but a field breaks a rule
400      invalid_signature       a signature in the body does not verify
400      unknown_recipient       a recipient is not a live device; body has
                                 ``unknown_devices``
401      unauthorized            missing, unknown or expired bearer token
401      auth_failed             challenge unknown/expired/used, or bad signature
403      forbidden               not allowed for this device (other account, ...)
403      invite_required         registration is by invitation; code missing/invalid
404      not_found               no such route, user, device, link, attachment, ...
405      method_not_allowed
409      username_taken
409      device_exists           this device key is already registered
409      epoch_conflict          another commit already took this epoch (retry on the
                                 new epoch); body has ``current_epoch``
409      idempotency_conflict    message id reused for different content
409      too_many_key_packages
413      payload_too_large
422      invalid_request         request body or parameters do not match the schema
429      rate_limited            ``Retry-After`` header says when to retry
500      internal                a bug; never expected
503      unavailable             the database cannot be reached now (or the KT log is
                                 too busy); nothing was changed that the request
                                 reported; ``Retry-After`` says when to retry
=======  ======================  ==================================================
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from doorless.errors import DoorlessError
from doorless.server.log import describe_exception
from doorless.server.refusals import (
    DeliveryRefused,
    InvalidHandshake,
    InvalidSend,
    MalformedMessage,
    MessageTooLarge,
    NotGroupMember,
    UnknownGroup,
)
from doorless.server.storage.base import (
    DeviceExists,
    EpochConflict,
    GroupExists,
    IdempotencyConflict,
    InviteInvalid,
    LinkGone,
    Rejected,
    StorageUnavailable,
    TooManyKeyPackages,
    UnknownAccount,
    UnknownDevice,
    UsernameTaken,
)
from doorless.wire.errors import ErrorCode

log = logging.getLogger("doorless.server")
Status = tuple[int, ErrorCode]
E = TypeVar("E", bound=Exception)


class ErrorBody(BaseModel):
    """The body of every error response."""

    error: str
    message: str
    current_epoch: int | None = None
    unknown_devices: list[str] | None = None


class ApiError(DoorlessError):
    """An error response: HTTP ``status``, stable ``code``, human ``message``."""

    def __init__(
        self,
        status: int,
        code: ErrorCode,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.extra = extra


def error_response(
    status: int,
    code: ErrorCode,
    message: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {"error": code, "message": message}
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse(body, status_code=status, headers=headers)


def bad_request(message: str) -> ApiError:
    return ApiError(400, ErrorCode.INVALID_REQUEST, message)


def malformed(message: str) -> ApiError:
    return ApiError(400, ErrorCode.MALFORMED_MESSAGE, message)


def not_found(message: str = "not found") -> ApiError:
    return ApiError(404, ErrorCode.NOT_FOUND, message)


def forbidden(message: str) -> ApiError:
    return ApiError(403, ErrorCode.FORBIDDEN, message)


def too_large(message: str) -> ApiError:
    return ApiError(413, ErrorCode.PAYLOAD_TOO_LARGE, message)


_STATUS_CODES = {
    400: ErrorCode.INVALID_REQUEST,
    401: ErrorCode.UNAUTHORIZED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    409: ErrorCode.CONFLICT,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
    415: ErrorCode.UNSUPPORTED_MEDIA_TYPE,
    429: ErrorCode.RATE_LIMITED,
}


def _describe_validation(exc: RequestValidationError) -> str:
    # Only locations and pydantic's fixed messages: never the offending input itself.
    parts = []
    for err in exc.errors()[:3]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


async def _api_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message, exc.headers or None, **exc.extra)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(422, ErrorCode.INVALID_REQUEST, _describe_validation(exc))


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _STATUS_CODES.get(exc.status_code, ErrorCode.ERROR)
    message = exc.detail if isinstance(exc.detail, str) else code
    return error_response(exc.status_code, code, message, dict(exc.headers or {}) or None)


def _first_match(exc: E, table: Mapping[type[E], Status], default: Status) -> Status:
    """The (status, code) of the first class in ``table`` that ``exc`` is an instance of."""
    return next((v for cls, v in table.items() if isinstance(exc, cls)), default)


# Delivery refusals (the message breaks a delivery rule) -> (status, code).
_REFUSALS: dict[type[DeliveryRefused], tuple[int, ErrorCode]] = {
    MalformedMessage: (400, ErrorCode.MALFORMED_MESSAGE),
    InvalidSend: (400, ErrorCode.INVALID_REQUEST),
    MessageTooLarge: (413, ErrorCode.PAYLOAD_TOO_LARGE),
    InvalidHandshake: (400, ErrorCode.INVALID_HANDSHAKE),
    NotGroupMember: (403, ErrorCode.NOT_GROUP_MEMBER),
    UnknownGroup: (404, ErrorCode.NOT_FOUND),
}


async def _refused(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DeliveryRefused)
    status, code = _first_match(exc, _REFUSALS, (400, ErrorCode.INVALID_REQUEST))
    return error_response(status, code, str(exc))


# Storage rejections (well-formed request, state does not allow it) -> (status, code).
_REJECTIONS: dict[type[Rejected], tuple[int, ErrorCode]] = {
    UsernameTaken: (409, ErrorCode.USERNAME_TAKEN),
    DeviceExists: (409, ErrorCode.DEVICE_EXISTS),
    InviteInvalid: (403, ErrorCode.INVITE_REQUIRED),
    UnknownAccount: (404, ErrorCode.NOT_FOUND),
    UnknownDevice: (400, ErrorCode.UNKNOWN_RECIPIENT),
    LinkGone: (404, ErrorCode.NOT_FOUND),
    EpochConflict: (409, ErrorCode.EPOCH_CONFLICT),
    GroupExists: (409, ErrorCode.GROUP_EXISTS),
    IdempotencyConflict: (409, ErrorCode.IDEMPOTENCY_CONFLICT),
    TooManyKeyPackages: (409, ErrorCode.TOO_MANY_KEY_PACKAGES),
}


async def _rejected(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Rejected)
    status, code = _first_match(exc, _REJECTIONS, (409, ErrorCode.CONFLICT))
    extra: dict[str, Any] = {}
    if isinstance(exc, EpochConflict):
        extra["current_epoch"] = exc.current_epoch
    if isinstance(exc, UnknownDevice):
        extra["unknown_devices"] = list(exc.device_ids)
    return error_response(status, code, str(exc), **extra)


# Seconds a client waits before retrying after a 503 (the database is back within seconds
# after a restart or failover; the pool reconnects on the next request).
UNAVAILABLE_RETRY_AFTER = 2


def unavailable(exc: StorageUnavailable) -> ApiError:
    """The 503 for a database that cannot be reached now (logged as a warning, not an error:
    nothing is wrong with the server, and it recovers by itself)."""
    log.warning("storage unavailable", extra={"fields": {"reason": str(exc)}})
    return ApiError(
        503,
        ErrorCode.UNAVAILABLE,
        "the server cannot reach its database now; retry later",
        headers={"Retry-After": str(UNAVAILABLE_RETRY_AFTER)},
    )


async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StorageUnavailable)
    return await _api_error(request, unavailable(exc))


async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled exception", extra={"fields": describe_exception(exc)})
    return error_response(500, ErrorCode.INTERNAL, "internal server error")


def install_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(DeliveryRefused, _refused)
    app.add_exception_handler(Rejected, _rejected)
    app.add_exception_handler(StorageUnavailable, _unavailable)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
