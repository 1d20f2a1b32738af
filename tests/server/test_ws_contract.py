"""The plain ``/v1/ws`` endpoint answers as its FastAPI twin does.

`doorless.server.routes.ws.endpoint` is served (the request log hands it the server's own
``send``); the FastAPI route `doorless.server.routes.ws.push` of the same path is its twin.
Two apps are set up the same way (same configuration, same fake clock, same users): the real
app, and the same app whose request log does not hand ``/v1/ws`` to the plain endpoint, so
the twin serves. One script of WebSocket sessions is played against both through the ASGI
interface, and everything each app sends must match: the refusals of the handshake (status,
headers, JSON body, or the close without the denial extension), the accept, every frame's
text (device ids replaced by their owner's name, franks by a marker: each app has its own
franking key), the 4401 close of an expired token, and the request log's line per session.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from doorless.client.transport import Transport
from doorless.server.log import device_tag
from doorless.server.middleware import RequestLogMiddleware
from doorless.server.ratelimit import RateLimiter
from doorless.server.routes import ws
from doorless.server.schemas import MAX_SEQ
from doorless.wire.messages import QueuedMessage
from support.servers import FakeClock, generous_config

from .helpers import Harness, commit, key_package, private_message, running

GROUP = b"ws-twin-group"
NOW = 1_800_000_000.0  # both apps' fake clock


@dataclass
class Side:
    harness: Harness
    alice: Transport
    bob: Transport
    sent: int = 0
    transcript: list[Any] = field(default_factory=list)

    def ids(self) -> dict[str, str]:
        assert self.alice.device is not None and self.bob.device is not None
        return {"alice": self.alice.device.device_id, "bob": self.bob.device.device_id}

    def token(self, who: str) -> str:
        t = self.alice if who == "alice" else self.bob
        assert t._token is not None
        return t._token

    async def send_to_bob(self, data: bytes) -> None:
        self.sent += 1
        await self.alice.send(data, [self.ids()["bob"]], message_id=f"ws-twin-{self.sent:04}")

    def record(self, message: dict[str, Any]) -> None:
        """One ASGI message the app sent, in a form both apps must agree on."""
        text = json.dumps(message, default=lambda b: b.decode("latin-1"), sort_keys=True)
        for name, device_id in self.ids().items():
            text = text.replace(device_id, "{" + name + "}")
        seen = json.loads(text)
        if seen.get("type") == "websocket.send":
            frame = json.loads(seen["text"])
            if frame.get("frank") is not None:  # each app signs with its own key
                frame["frank"] = "<frank>"
            seen["text"] = frame
        self.transcript.append(seen)


class Session:
    """One WebSocket session driven through the ASGI interface."""

    def __init__(self, side: Side, token: str | None, query: str = "", *, denial: bool = True):
        self.side = side
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        headers = [(b"host", b"testserver")]
        if token is not None:
            headers.append((b"authorization", f"Bearer {token}".encode()))
        scope = {
            "type": "websocket",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "scheme": "ws",
            "http_version": "1.1",
            "path": "/v1/ws",
            "raw_path": b"/v1/ws",
            "query_string": query.encode(),
            "root_path": "",
            "headers": headers,
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
            "subprotocols": [],
            "extensions": {"websocket.http.response": {}} if denial else {},
        }
        self.inbox.put_nowait({"type": "websocket.connect"})
        self.task = asyncio.create_task(side.harness.app(scope, self.inbox.get, self._send))

    async def _send(self, message: dict[str, Any]) -> None:
        self.side.record(message)
        await self.outbox.put(message)

    async def expect(self, count: int) -> list[dict[str, Any]]:
        async with asyncio.timeout(10):
            return [await self.outbox.get() for _ in range(count)]

    async def frame(self, text: str | None = None, data: bytes | None = None) -> dict[str, Any]:
        message: dict[str, Any] = {"type": "websocket.receive"}
        message["text" if data is None else "bytes"] = text if data is None else data
        await self.inbox.put(message)
        (reply,) = await self.expect(1)
        return json.loads(reply["text"])  # type: ignore[no-any-return]

    async def finished(self) -> None:
        async with asyncio.timeout(10):
            await self.task

    async def disconnect(self) -> None:
        await self.inbox.put({"type": "websocket.disconnect", "code": 1000})
        await self.finished()


async def _side(stack: AsyncExitStack, data_dir: Path, *, twin: bool) -> Side:
    clock = FakeClock()
    clock.now = NOW
    harness = await stack.enter_async_context(running(generous_config(data_dir), clock))
    if twin:
        log = [m for m in harness.app.user_middleware if m.cls is RequestLogMiddleware]
        assert len(log) == 1 and log[0].kwargs == {"direct": {"/v1/ws": ws.endpoint}}
        log[0].kwargs.clear()  # the stack is built on the first request, after this
    alice = await harness.user("alice")
    bob = await harness.user("bob")
    return Side(harness, alice, bob)


@asynccontextmanager
async def _sides(data_dir: Path) -> AsyncIterator[tuple[Side, Side]]:
    async with AsyncExitStack() as stack:
        plain = await _side(stack, data_dir / "plain", twin=False)
        twin = await _side(stack, data_dir / "twin", twin=True)
        yield plain, twin


async def _refusals(side: Side) -> None:
    """Handshakes refused with the denial extension (an HTTP answer) and without it."""
    for token, query in (
        (None, ""),
        ("x" * 43, ""),
        (side.token("bob"), "after=abc"),
        (side.token("bob"), "after=99999999999999999999"),
    ):
        session = Session(side, token, query)
        await session.finished()
    session = Session(side, None, denial=False)
    await session.finished()
    # Rate limited: the device's budget is spent.
    limiter = side.harness.ctx.device_limiter
    side.harness.ctx.device_limiter = RateLimiter(1e-6, 0, side.harness.clock)
    try:
        session = Session(side, side.token("bob"))
        await session.finished()
    finally:
        side.harness.ctx.device_limiter = limiter


async def _session(side: Side) -> None:
    """Replay, live pushes, acks and bad frames, KeyPackages running low, expiry."""
    await side.send_to_bob(commit(GROUP, 0))
    await side.send_to_bob(private_message(GROUP, 1, ciphertext=b"queued" * 6))
    await side.bob.upload_key_packages([key_package(i) for i in range(2)])
    session = Session(side, side.token("bob"), "after=0")
    accept, first, second = await session.expect(3)
    assert accept["type"] == "websocket.accept"
    seqs = [json.loads(m["text"])["seq"] for m in (first, second)]
    await side.send_to_bob(private_message(GROUP, 1, ciphertext=b"live" * 8))
    (live,) = await session.expect(1)
    seqs.append(json.loads(live["text"])["seq"])
    assert (await session.frame(json.dumps({"type": "ack", "seqs": seqs})))["acknowledged"] == 3
    for bad in ("not json", '{"type": "nope"}', '{"type": "ack", "seqs": [0]}', "x" * 70_000):
        assert (await session.frame(bad))["type"] == "error"
    assert (await session.frame(data=b"\x00binary"))["type"] == "error"
    await side.alice.claim_key_packages("bob")  # below the watermark: bob is told
    (low,) = await session.expect(1)
    assert json.loads(low["text"])["type"] == "keypackages_low"
    # The token expires; the next wake-up closes the socket with 4401.
    side.harness.clock.advance(side.harness.config.token_ttl + 1)
    await side.alice.authenticate()
    await side.send_to_bob(private_message(GROUP, 1, ciphertext=b"late" * 8))
    (closed,) = await session.expect(1)
    assert (closed["type"], closed["code"]) == ("websocket.close", ws.CLOSE_TOKEN_EXPIRED)
    await session.disconnect()
    # A session the client ends.
    await side.bob.authenticate()
    session = Session(side, side.token("bob"), "after=0")
    accept, pending = await session.expect(2)
    assert json.loads(pending["text"])["type"] == "message"  # the one not acked
    await session.disconnect()


def _log_lines(caplog: pytest.LogCaptureFixture, side: Side) -> list[dict[str, Any]]:
    """The request log's session lines, device tags (per app) replaced by the owner's name."""
    names = {device_tag(device_id): name for name, device_id in side.ids().items()}
    lines = []
    for record in caplog.records:
        fields = dict(getattr(record, "fields", {}))
        if record.getMessage() == "websocket":
            fields.pop("request_id")
            fields.pop("duration_ms")
            if fields.get("device") is not None:
                fields["device"] = names[fields["device"]]
            lines.append(fields)
    return lines


@pytest.mark.asyncio
async def test_plain_ws_endpoint_is_served(data_dir: Path) -> None:
    async with _sides(data_dir) as (plain, twin):
        for side, expected in ((plain, {"/v1/ws": ws.endpoint}), (twin, {})):
            session = Session(side, None)
            await session.finished()
            stack = side.harness.app.middleware_stack
            while not isinstance(stack, RequestLogMiddleware):
                stack = stack.app
            assert stack.direct == expected


@pytest.mark.asyncio
async def test_plain_ws_endpoint_answers_as_its_fastapi_twin(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with _sides(data_dir) as (plain, twin):
        logs = []
        for side in (plain, twin):
            caplog.clear()
            with caplog.at_level(logging.INFO, logger="doorless.server"):
                await _refusals(side)
                await _session(side)
            logs.append(_log_lines(caplog, side))
        assert plain.transcript == twin.transcript
        assert logs[0] == logs[1]
        # The script reaches what it is meant to compare.
        statuses = {line["status"] for line in logs[0]}
        assert statuses >= {101, 401, 403, 422, 429}
        kinds = {m["type"] for m in plain.transcript}
        assert kinds >= {
            "websocket.http.response.start",
            "websocket.http.response.body",
            "websocket.accept",
            "websocket.send",
            "websocket.close",
        }
        frames = {m["text"]["type"] for m in plain.transcript if m["type"] == "websocket.send"}
        assert frames == {"message", "acked", "error", "keypackages_low"}
        assert any(
            m["type"] == "websocket.send" and m["text"].get("frank") == "<frank>"
            for m in plain.transcript
        )


@settings(max_examples=200, deadline=None)
@given(
    seq=st.integers(1, MAX_SEQ),
    data=st.binary(max_size=300),
    received_at=st.integers(0, 2**40),
    frank=st.none() | st.binary(min_size=1, max_size=100),
)
def test_message_text_is_send_json_text(
    seq: int, data: bytes, received_at: int, frank: bytes | None
) -> None:
    m = QueuedMessage(seq=seq, data=data, received_at=received_at, frank=frank)
    frame = {
        "type": "message",
        "seq": m.seq,
        "data": ws.protocol.b64encode(m.data),
        "received_at": m.received_at,
        "frank": None if frank is None else ws.protocol.b64encode(frank),
    }
    # starlette's ``WebSocket.send_json`` is ``json.dumps`` with these arguments.
    assert ws.message_text(m) == json.dumps(frame, separators=(",", ":"), ensure_ascii=False)
