"""JSON-RPC 2.0 for the daemon: the method registry, parameter checking and dispatch.

Methods are registered where the matching CLI command lives (``@rpc.method("send")`` in
`doorless.cli.messaging`, ...), so a module adding commands adds its methods next to them.
A method is ``async def m(client, params) -> result``; ``params`` is a `Params` (by-name
parameters only), the result anything `json.dumps` takes. Errors raised by a method become
JSON-RPC errors through `doorless.cli.session.classify`, so the daemon and the CLI report the
same failures with the same stable code (``error.data.error``). No I/O here: `dispatch` takes a
line and returns the answer line (`doorless.cli.daemon` owns stdin/stdout and the socket).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from doorless.cli.session import CliError, Failure, Target, classify, usage_error
from doorless.wire.errors import ErrorCode

if TYPE_CHECKING:
    from doorless.client import Client

log = logging.getLogger("doorless.daemon")

JSONRPC = "2.0"

# JSON-RPC 2.0 §5.1.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

# Failures of a method, by the stable code of `doorless.cli.session.Failure` (the same string
# is in ``error.data.error``). The range -32000..-32099 is JSON-RPC's "server error" space.
GENERIC_ERROR = -32000
ERROR_CODES: dict[ErrorCode, int] = {
    ErrorCode.USAGE: INVALID_PARAMS,
    ErrorCode.INVALID: INVALID_PARAMS,
    ErrorCode.SERVER_UNREACHABLE: -32001,
    ErrorCode.UNKNOWN_USER: -32002,
    ErrorCode.UNKNOWN_CONVERSATION: -32003,
    ErrorCode.NOT_FOUND: -32004,
    ErrorCode.AMBIGUOUS: -32005,
    ErrorCode.NOT_A_MEMBER: -32006,
    ErrorCode.USER_UNAVAILABLE: -32007,
    ErrorCode.RATE_LIMITED: -32008,
    ErrorCode.REJECTED: -32009,
    ErrorCode.CONFLICT: -32009,
    ErrorCode.FORBIDDEN: -32009,
    ErrorCode.TOO_LARGE: -32009,
    ErrorCode.UNAUTHORIZED: -32009,
    ErrorCode.SERVER_ERROR: -32009,
    ErrorCode.FAILED: -32010,
    ErrorCode.INVALID_STATE: -32011,
    ErrorCode.FINGERPRINT_MISMATCH: -32012,
    ErrorCode.DEVICE_REVOKED: -32013,
}

# The client is Any so that a table of methods that run before there is a client (the app's
# account creation) fits the same type; every registered method takes a `Client`.
Handler = Callable[[Any, "Params"], Awaitable[Any]]
H = TypeVar("H", bound=Handler)


@dataclass(frozen=True, slots=True)
class Method:
    name: str
    handler: Handler
    doc: str


METHODS: dict[str, Method] = {}


def method(name: str) -> Callable[[H], H]:
    """Register ``async def handler(client, params)`` as the JSON-RPC method ``name``."""

    def register(handler: H) -> H:
        if name in METHODS:
            raise ValueError(f"JSON-RPC method {name!r} is registered twice")
        METHODS[name] = Method(name, handler, (handler.__doc__ or "").strip())
        return handler

    return register


class InvalidParams(CliError):
    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.USAGE, message, 2)


class Params:
    """A request's by-name parameters, read through typed getters; `done` refuses the rest."""

    def __init__(self, raw: Any) -> None:
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise InvalidParams("params must be an object (by-name parameters)")
        self._raw: dict[str, Any] = raw
        self._used: set[str] = set()

    def _get(self, name: str, kinds: tuple[type, ...], what: str, required: bool) -> Any:
        self._used.add(name)
        value = self._raw.get(name)
        if value is None:
            if required:
                raise InvalidParams(f"missing parameter {name!r}")
            return None
        # bool is an int in Python; JSON true is not a number.
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            raise InvalidParams(f"parameter {name!r} must be {what}")
        return value

    def string(self, name: str) -> str:
        value: str = self._get(name, (str,), "a string", True)
        return value

    def opt_string(self, name: str) -> str | None:
        value: str | None = self._get(name, (str,), "a string", False)
        return value

    def opt_int(self, name: str) -> int | None:
        value: int | None = self._get(name, (int,), "an integer", False)
        return value

    def flag(self, name: str, default: bool = False) -> bool:
        value: bool | None = self._get(name, (bool,), "true or false", False)
        return default if value is None else value

    def strings(self, name: str, *, required: bool = True) -> list[str]:
        value = self._get(name, (list,), "a list of strings", required)
        if value is None:
            return []
        if not all(isinstance(v, str) for v in value):
            raise InvalidParams(f"parameter {name!r} must be a list of strings")
        return list(value)

    def target(self) -> Target:
        """The conversation: exactly one of ``user`` ("bob" or "@bob"), ``group`` (name or
        id) and ``conversation_id``."""
        user, group = self.opt_string("user"), self.opt_string("group")
        conversation_id = self.opt_string("conversation_id")
        if sum(v is not None for v in (user, group, conversation_id)) != 1:
            raise InvalidParams("give exactly one of 'user', 'group', 'conversation_id'")
        return Target.of(user, group, conversation_id)

    def done(self) -> None:
        unknown = sorted(set(self._raw) - self._used)
        if unknown:
            raise InvalidParams(f"unknown parameter {unknown[0]!r}")


def _error(id_: Any, code: int, message: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": JSONRPC, "id": id_, "error": error}


def error_of(failure: Failure) -> tuple[int, str, dict[str, Any]]:
    return ERROR_CODES.get(failure.code, GENERIC_ERROR), failure.message, {"error": failure.code}


async def call(
    client: Client | None,
    request: Any,
    *,
    methods: Mapping[str, Method] = METHODS,
    profile: Path | None = None,
) -> dict[str, Any] | None:
    """Answer one request object (None for a notification, which gets no answer).

    ``methods``: another table (the app's methods before an account exists, whose handlers
    need no client); ``profile`` names the profile in errors when there is no client yet."""
    if not isinstance(request, dict):
        return _error(None, INVALID_REQUEST, "a request is a JSON object")
    is_notification = "id" not in request
    id_ = request.get("id")
    valid_id = id_ is None or (isinstance(id_, str | int) and not isinstance(id_, bool))
    name = request.get("method")
    if request.get("jsonrpc") != JSONRPC or not isinstance(name, str) or not valid_id:
        return _error(id_ if valid_id else None, INVALID_REQUEST, "not a JSON-RPC 2.0 request")
    entry = methods.get(name)
    if entry is None:
        response = _error(id_, METHOD_NOT_FOUND, f"no method {name!r}")
    else:
        try:
            params = Params(request.get("params"))
            result = await entry.handler(client, params)
            response = {"jsonrpc": JSONRPC, "id": id_, "result": result}
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            failure = classify(exc, client.profile_dir if client is not None else profile)
            if failure.code == ErrorCode.INTERNAL:
                log.exception("method %s failed", name)
                response = _error(id_, INTERNAL_ERROR, failure.message)
            else:
                response = _error(id_, *error_of(failure))
    return None if is_notification else response


async def dispatch(
    client: Client | None,
    line: str | bytes,
    *,
    methods: Mapping[str, Method] = METHODS,
    profile: Path | None = None,
) -> str | None:
    """Answer one line of input (a request or a batch); None when nothing is to be sent."""
    try:
        message = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return encode(_error(None, PARSE_ERROR, "not valid JSON"))
    if isinstance(message, list):
        if not message:
            return encode(_error(None, INVALID_REQUEST, "an empty batch"))
        answers = await asyncio.gather(
            *(call(client, r, methods=methods, profile=profile) for r in message)
        )
        batch = [a for a in answers if a is not None]
        return encode(batch) if batch else None
    answer = await call(client, message, methods=methods, profile=profile)
    return encode(answer) if answer is not None else None


def notification(method_name: str, params: dict[str, Any]) -> str:
    return encode({"jsonrpc": JSONRPC, "method": method_name, "params": params})


def encode(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


__all__ = [
    "ERROR_CODES",
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "METHODS",
    "METHOD_NOT_FOUND",
    "PARSE_ERROR",
    "InvalidParams",
    "Method",
    "Params",
    "call",
    "dispatch",
    "encode",
    "method",
    "notification",
    "usage_error",
]
