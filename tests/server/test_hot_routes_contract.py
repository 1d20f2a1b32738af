"""The plain endpoints of `doorless.server.routes.hot` answer as their FastAPI twins do.

``POST /v1/messages`` and ``POST /v1/messages/ack`` are served by plain Starlette endpoints
mounted ahead of the FastAPI routes of `doorless.server.routes.messages`, which promise the same
contract. Two apps are set up the same way (same configuration, same fake clock, same users): the
real app, and the same app with the two plain routes removed, so the twins serve. One table of
requests is sent in order to both, and each answer must match: status code, content type,
``Retry-After`` and the JSON body. Message ids are chosen by the client and the clock is fake,
so bodies are compared whole, with the device ids (random per app) replaced by their owner's
name.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from starlette.routing import Match, Route

from doorless.client.transport import Transport
from doorless.server.routes import hot
from doorless.wire import protocol
from support.servers import FakeClock, generous_config

from .helpers import Harness, commit, private_message, running

pytestmark = pytest.mark.asyncio

GROUP = b"twin-group"
MAX_RECIPIENTS = 2  # small, so that "too many recipients" is a short request
NOBODY = "0" * 32  # a well-formed device id of no device
MID = "message-0001"


def b64(data: bytes) -> str:
    return protocol.b64encode(data)


@dataclass(frozen=True)
class Case:
    """One request. ``auth`` is whose bearer token goes along ("alice", "bob", "wrong" or
    None); in ``body`` the strings "{bob}" and "{alice}" become device ids and "{bob_seqs}" the
    seqs queued for bob; ``bytes`` are sent as they are, with ``content_type``."""

    name: str
    path: str
    body: Any
    auth: str | None = "alice"
    content_type: str | None = "application/json"


def _send(data: bytes, recipients: list[str], message_id: str = MID, **extra: Any) -> Any:
    return {"message_id": message_id, "data": b64(data), "recipients": recipients, **extra}


HELLO = private_message(GROUP, 0, ciphertext=b"hello" * 8)

CASES: list[Case] = [
    Case("valid send", "/v1/messages", _send(HELLO, ["{bob}"])),
    Case("repeat of the same message id", "/v1/messages", _send(HELLO, ["{bob}"])),
    Case(
        "same message id, other content",
        "/v1/messages",
        _send(private_message(GROUP, 0, ciphertext=b"other" * 8), ["{bob}"]),
    ),
    Case("unparsable JSON", "/v1/messages", b"{not json"),
    Case("unparsable JSON, no token", "/v1/messages", b"{not json", auth=None),
    Case("bytes that are no text", "/v1/messages", b"\xff\xfe\x00"),
    Case("no body", "/v1/messages", b""),
    Case(
        "JSON under another content type",
        "/v1/messages",
        json.dumps(_send(HELLO, [NOBODY], "message-0002")).encode(),
        content_type="text/plain",
    ),
    Case("no Authorization", "/v1/messages", _send(HELLO, ["{bob}"], "message-0003"), auth=None),
    Case("wrong token", "/v1/messages", _send(HELLO, ["{bob}"], "message-0003"), auth="wrong"),
    Case("schema failure, no token", "/v1/messages", {"data": "AA=="}, auth=None),
    Case("schema failure, wrong token", "/v1/messages", {"data": "AA=="}, auth="wrong"),
    Case("missing field", "/v1/messages", {"message_id": MID, "recipients": ["{bob}"]}),
    Case("wrong type", "/v1/messages", {"message_id": MID, "data": 5, "recipients": ["{bob}"]}),
    Case("not base64", "/v1/messages", {"message_id": MID, "data": "!!", "recipients": []}),
    Case("unknown field", "/v1/messages", _send(HELLO, ["{bob}"], "message-0004", extra=1)),
    Case("a list, not an object", "/v1/messages", [1, 2]),
    Case(
        "too many recipients",
        "/v1/messages",
        _send(HELLO, ["{bob}", "{alice}", NOBODY], "message-0005"),
    ),
    Case("repeated recipient", "/v1/messages", _send(HELLO, ["{bob}", "{bob}"], "message-0006")),
    Case("unknown recipient", "/v1/messages", _send(HELLO, [NOBODY], "message-0007")),
    Case("not an MLSMessage", "/v1/messages", _send(b"\x00\x01\x02", ["{bob}"], "message-0008")),
    Case("commit", "/v1/messages", _send(commit(GROUP, 0), ["{bob}"], "message-0009")),
    Case(
        "stale epoch commit",
        "/v1/messages",
        _send(commit(GROUP, 0, b"late" * 8), ["{bob}"], "message-0010"),
    ),
    Case("valid ack", "/v1/messages/ack", {"seqs": "{bob_seqs}"}, auth="bob"),
    Case("ack again", "/v1/messages/ack", {"seqs": "{bob_seqs}"}, auth="bob"),
    Case("ack, seq out of range", "/v1/messages/ack", {"seqs": [0]}, auth="bob"),
    Case("ack, wrong type", "/v1/messages/ack", {"seqs": ["x"]}, auth="bob"),
    Case("ack, missing field", "/v1/messages/ack", {}, auth="bob"),
    Case("ack, unparsable JSON", "/v1/messages/ack", b"[", auth="bob"),
    Case("ack, schema failure, no token", "/v1/messages/ack", {}, auth=None),
    Case("ack, wrong token", "/v1/messages/ack", {"seqs": [1]}, auth="wrong"),
]

# With a device rate limit of a few requests: the limit is checked after the JSON is parsed and
# before the schema, for both routes.
RATE_BURST = 2
RATE_CASES: list[Case] = [
    Case("valid send", "/v1/messages", _send(HELLO, ["{bob}"])),
    Case("schema failure", "/v1/messages", {"data": "AA=="}),
    Case("send over the limit, schema failure", "/v1/messages", {"data": "AA=="}),
    Case("send over the limit", "/v1/messages", _send(HELLO, ["{bob}"], "message-0002")),
    Case("over the limit, unparsable JSON", "/v1/messages", b"{not json"),
    Case("over the limit, wrong token", "/v1/messages", {"data": "AA=="}, auth="wrong"),
    Case("ack over the limit, schema failure", "/v1/messages/ack", {}),
    Case("ack over the limit", "/v1/messages/ack", {"seqs": [1]}),
]


@dataclass
class Side:
    """One app and its two users."""

    harness: Harness
    http: httpx.AsyncClient
    alice: Transport
    bob: Transport

    def ids(self) -> dict[str, str]:
        assert self.alice.device is not None and self.bob.device is not None
        return {"alice": self.alice.device.device_id, "bob": self.bob.device.device_id}

    async def fill(self, value: Any) -> Any:
        if value == "{bob_seqs}":
            return [m.seq for m in (await self.bob.fetch()).messages]
        if isinstance(value, str):
            for name, device_id in self.ids().items():
                value = value.replace("{" + name + "}", device_id)
            return value
        if isinstance(value, list):
            return [await self.fill(v) for v in value]
        if isinstance(value, dict):
            return {k: await self.fill(v) for k, v in value.items()}
        return value

    async def request(self, case: Case) -> tuple[int, str | None, str | None, Any]:
        headers: dict[str, str] = {}
        if case.content_type is not None:
            headers["Content-Type"] = case.content_type
        if case.auth in ("alice", "bob"):
            who = self.alice if case.auth == "alice" else self.bob
            headers["Authorization"] = f"Bearer {who._token}"
        elif case.auth == "wrong":
            headers["Authorization"] = "Bearer " + "x" * 43
        body = case.body if isinstance(case.body, bytes) else json.dumps(await self.fill(case.body))
        r = await self.http.post(case.path, content=body, headers=headers)
        text = r.text
        for name, device_id in self.ids().items():
            text = text.replace(device_id, "{" + name + "}")
        headers_seen = r.headers.get("content-type"), r.headers.get("retry-after")
        return r.status_code, *headers_seen, json.loads(text)


def _serving(app: Any, path: str) -> Any:
    """The route the app's router picks for ``POST path`` (the first that matches)."""
    scope = {"type": "http", "method": "POST", "path": path}
    for route in app.router.routes:
        if route.matches(scope)[0] == Match.FULL:
            return route
    raise AssertionError(f"no route serves POST {path}")


def _remove_plain_routes(app: Any) -> None:
    plain = [
        r for r in app.router.routes if isinstance(r, Route) and r.endpoint in (hot.send, hot.ack)
    ]
    assert len(plain) == 2
    app.router.routes[:] = [r for r in app.router.routes if r not in plain]


async def _side(stack: AsyncExitStack, data_dir: Path, *, twins: bool, **overrides: Any) -> Side:
    config = generous_config(data_dir, max_recipients=MAX_RECIPIENTS, **overrides)
    harness = await stack.enter_async_context(running(config, FakeClock()))
    if twins:
        _remove_plain_routes(harness.app)
    http = await stack.enter_async_context(harness.http())
    alice = await harness.user("alice")
    bob = await harness.user("bob")
    return Side(harness, http, alice, bob)


@asynccontextmanager
async def _sides(data_dir: Path, **config: Any) -> AsyncIterator[tuple[Side, Side]]:
    """The real app and its twin-serving copy, set up the same way."""
    async with AsyncExitStack() as stack:
        plain = await _side(stack, data_dir / "plain", twins=False, **config)
        twin = await _side(stack, data_dir / "twin", twins=True, **config)
        yield plain, twin


async def _compare(plain: Side, twin: Side, cases: list[Case]) -> set[int]:
    """Send each case to both apps in order; every answer must be the same. Returns the
    statuses seen."""
    statuses: set[int] = set()
    for case in cases:
        got = await plain.request(case)
        expected = await twin.request(case)
        assert got == expected, case.name
        statuses.add(got[0])
    return statuses


@pytest_asyncio.fixture
async def sides(data_dir: Path) -> AsyncIterator[tuple[Side, Side]]:
    async with _sides(data_dir) as both:
        yield both


async def test_the_apps_serve_what_the_test_means(sides: tuple[Side, Side]) -> None:
    plain, twin = sides
    for path, endpoint in (("/v1/messages", hot.send), ("/v1/messages/ack", hot.ack)):
        assert _serving(plain.harness.app, path).endpoint is endpoint
        assert getattr(_serving(twin.harness.app, path), "endpoint", None) not in (
            hot.send,
            hot.ack,
        )


async def test_plain_endpoints_answer_as_their_fastapi_twins(sides: tuple[Side, Side]) -> None:
    # The table reaches every kind of answer it is meant to compare.
    assert await _compare(*sides, CASES) >= {200, 201, 400, 401, 409, 422}


async def test_rate_limited_answers_are_the_twins(data_dir: Path) -> None:
    config = {"rate_per_second": 1e-6, "rate_burst": RATE_BURST}
    async with _sides(data_dir, **config) as (plain, twin):
        # Logging in took none of the device's budget.
        assert await _compare(plain, twin, RATE_CASES) == {201, 401, 422, 429}
