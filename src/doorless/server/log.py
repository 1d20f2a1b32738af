"""Structured logs: one JSON object per line.

What may be logged: request id, method, route *template* (``/v1/links/{code}``, never the
concrete path, which can hold a link code or an attachment capability), status, duration, and a
short hash of the device id. Never: bodies, query strings, headers, tokens, keys, group ids.
Fields go in ``extra={"fields": {...}}``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
import traceback
from typing import Any

from doorless.errors import DoorlessError

LOGGER_NAME = "doorless.server"


def device_tag(device_id: str) -> str:
    """A short pseudonym for a device id in logs (correlates lines, does not print the id)."""
    return hashlib.sha256(b"doorless/log/" + device_id.encode()).hexdigest()[:12]


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update((k, v) for k, v in fields.items() if v is not None)
        # Deliberately no stack or foreign message: a traceback can quote data.
        if record.exc_info and record.exc_info[1] is not None:
            entry.update(describe_exception(record.exc_info[1]))
        return json.dumps(entry, separators=(",", ":"), sort_keys=False, default=str)


def describe_exception(exc: BaseException) -> dict[str, str]:
    """What the log may say about an unexpected exception: its type, where it was raised
    (module, function, line) and, for Doorless's own errors (whose messages never hold data,
    see `doorless.errors`), its message. Never the text of a foreign exception: a driver's
    message can quote a row or a request."""
    fields = {"exception": f"{type(exc).__module__}.{type(exc).__qualname__}"}
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        last = frames[-1]
        fields["where"] = f"{last.filename.rsplit('/', 1)[-1]}:{last.name}:{last.lineno}"
    if isinstance(exc, DoorlessError):
        fields["message"] = str(exc) or "(no message)"
    return fields


class _NoSocketChatter(logging.Filter):
    """Drop uvicorn's informational WebSocket lines: they carry the client address and the raw
    path with its query string. Our own line per socket session replaces them."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.levelno < logging.WARNING
            and "protocols" in record.pathname
            and "websockets" in record.pathname
        )


def configure_logging(level: str = "info", stream: Any = None) -> None:
    """JSON lines on stderr for the server and uvicorn (whose own access log stays off)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(_NoSocketChatter())
    for name in (LOGGER_NAME, "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False


def log_event(event: str, level: int = logging.INFO, **fields: Any) -> None:
    logging.getLogger(LOGGER_NAME).log(level, event, extra={"fields": fields})


def monotonic_ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 2)
