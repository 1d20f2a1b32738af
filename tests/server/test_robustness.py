"""I4 at the HTTP boundary: bad input gives a typed 4xx, changes nothing, never a 500.
Also: rate limits, size limits, the OpenAPI document, and what the logs may contain."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

from doorless.client.errors import PayloadTooLarge, RateLimited
from doorless.wire import protocol

from .helpers import FakeClock, Harness, commit, make_config, private_message, running

pytestmark = pytest.mark.asyncio

GROUP = b"robust-group"


def b64(data: bytes) -> str:
    return protocol.b64encode(data)


# (method, path, body) requests that must each be refused with a 4xx and change nothing.
# "{bob}" in a string becomes bob's device id.
MALFORMED: list[tuple[str, str, Any]] = [
    ("POST", "/v1/messages", b"{not json"),
    ("POST", "/v1/messages", b"\xff\xfe\x00"),
    ("POST", "/v1/messages", []),
    ("POST", "/v1/messages", {}),
    ("POST", "/v1/messages", {"message_id": "m" * 10, "data": "!!!", "recipients": ["{bob}"]}),
    ("POST", "/v1/messages", {"message_id": "m" * 10, "data": "AAEC", "recipients": ["{bob}"]}),
    ("POST", "/v1/messages", {"message_id": "short", "data": "AA==", "recipients": ["{bob}"]}),
    ("POST", "/v1/messages", {"message_id": "m" * 10, "data": "AA==", "recipients": ["BOB"]}),
    ("POST", "/v1/messages", {"message_id": "m" * 10, "data": 5, "recipients": ["{bob}"]}),
    ("POST", "/v1/messages", {"message_id": "m" * 10, "data": None, "recipients": "{bob}"}),
    (
        "POST",
        "/v1/messages",
        {"message_id": "m" * 10, "data": "COMMIT", "recipients": ["{bob}"], "extra": 1},
    ),
    (
        "POST",
        "/v1/messages",
        {"message_id": "m" * 10, "data": "COMMIT", "recipients": ["{bob}"], "welcome": {}},
    ),
    (
        "POST",
        "/v1/messages",
        {"message_id": "m" * 10, "data": "HUGE_EPOCH", "recipients": ["{bob}"]},
    ),
    ("POST", "/v1/messages/ack", {"seqs": [0]}),
    ("POST", "/v1/messages/ack", {"seqs": [2**70]}),
    ("POST", "/v1/messages/ack", {"seqs": ["1"]}),
    ("POST", "/v1/messages/ack", {"seqs": list(range(1, 1002))}),
    ("GET", "/v1/messages?after=-1", None),
    ("GET", "/v1/messages?after=99999999999999999999999", None),
    ("GET", "/v1/messages?limit=0", None),
    ("GET", "/v1/messages?limit=abc", None),
    ("POST", "/v1/keypackages", {"key_packages": "AA=="}),
    ("POST", "/v1/keypackages", {"key_packages": ["AA=="]}),
    ("POST", "/v1/keypackages", {"last_resort": "AA=="}),
    ("POST", "/v1/accounts", {"username": "x", "device_key": "AA==", "signature": "AA=="}),
    ("POST", "/v1/accounts", {"username": "alice2", "device_key": "AA==", "signature": "AA=="}),
    ("POST", "/v1/auth/token", {"device_id": "{bob}", "nonce": "AA==", "signature": "AA=="}),
    ("POST", "/v1/auth/token", {"device_id": "../../etc", "nonce": "AA==", "signature": "AA=="}),
    ("POST", "/v1/links", {"username": "alice", "device_key": "AA==", "signature": "AA=="}),
    ("GET", "/v1/links/0000-0000", None),
    ("GET", "/v1/links/%2e%2e/status", None),
    ("POST", "/v1/links/ABCD-EFGH/approve", {"device_id": "{bob}"}),
    ("GET", "/v1/users/NOT_VALID/devices", None),
    ("DELETE", "/v1/devices/not-a-device", None),
    ("POST", "/v1/devices/{bob}/keypackages/claim", None),  # bob has none: 404
    ("GET", "/v1/attachments/../../doorless.sqlite3", None),
    ("GET", "/v1/attachments/" + "0" * 32, None),
    ("POST", "/v1/attachments", b""),
    ("PUT", "/v1/messages", None),
    ("GET", "/v1/nothing-here", None),
]


def _fill(value: Any, bob: str) -> Any:
    if isinstance(value, str):
        value = value.replace("{bob}", bob)
        if value == "COMMIT":
            return b64(commit(GROUP, 0))
        if value == "HUGE_EPOCH":
            return b64(commit(GROUP, 2**64 - 1))
        return value
    if isinstance(value, list):
        return [_fill(v, bob) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, bob) for k, v in value.items()}
    return value


@pytest.mark.parametrize(
    ("method", "path", "body"), MALFORMED, ids=[f"{m} {p}" for m, p, _ in MALFORMED]
)
async def test_malformed_requests_are_typed_4xx_and_change_nothing(
    server: Harness, method: str, path: str, body: Any
) -> None:
    alice = await server.user("alice")
    bob = await server.user("bob")
    assert bob.device is not None
    await alice.send(private_message(GROUP, 0), [bob.device.device_id])  # some state to keep
    path = path.replace("{bob}", bob.device.device_id)
    kwargs: dict[str, Any] = {"headers": {"Authorization": f"Bearer {alice._token}"}}
    if isinstance(body, bytes):
        kwargs["content"] = body
        kwargs["headers"]["Content-Type"] = "application/json"
    elif body is not None:
        kwargs["json"] = _fill(body, bob.device.device_id)
    before_db, before_files = server.db_dump(), server.files()
    async with server.http() as http:
        r = await http.request(method, path, **kwargs)
    assert 400 <= r.status_code < 500, r.text
    payload = r.json()
    assert set(payload) >= {"error", "message"} and isinstance(payload["error"], str)
    assert server.db_dump() == before_db
    assert server.files() == before_files


# --- limits ----------------------------------------------------------------------------------


async def test_rate_limit_answers_429_with_retry_after(data_dir: Path, clock: FakeClock) -> None:
    config = make_config(data_dir, rate_per_second=1.0, rate_burst=3)
    async with running(config, clock) as server:
        alice = await server.user("alice")  # login is rate limited per address, not per device
        for _ in range(3):
            await alice.fetch()
        with pytest.raises(RateLimited) as e:
            await alice.fetch()
        assert e.value.status == 429 and e.value.retry_after >= 1
        async with server.http() as http:
            r = await http.get("/v1/messages", headers={"Authorization": f"Bearer {alice._token}"})
        assert r.status_code == 429
        assert r.headers["retry-after"] == "1"
        assert r.json()["error"] == "rate_limited"
        clock.advance(1)
        await alice.fetch()
        # Another device has its own bucket.
        bob = await server.user("bob")
        await bob.fetch()


async def test_anonymous_rate_limit(data_dir: Path, clock: FakeClock) -> None:
    config = make_config(data_dir, anon_rate_per_second=0.5, anon_rate_burst=2)
    async with running(config, clock) as server, server.http() as http:
        assert (await http.post("/v1/auth/challenge")).status_code == 200
        assert (await http.get("/v1/info")).status_code == 200
        r = await http.post("/v1/auth/challenge")
        assert r.status_code == 429
        assert r.headers["retry-after"] == "2"


async def test_message_size_limit(data_dir: Path, clock: FakeClock) -> None:
    config = make_config(data_dir, max_message_size=1000, max_json_body=10_000)
    async with running(config, clock) as server:
        alice = await server.user("alice")
        bob = await server.user("bob")
        assert bob.device is not None
        before = server.db_dump()
        with pytest.raises(PayloadTooLarge):
            await alice.send(
                private_message(GROUP, 0, ciphertext=b"x" * 1000), [bob.device.device_id]
            )
        with pytest.raises(PayloadTooLarge) as e:  # the body limit stops it before parsing
            await alice.send(
                private_message(GROUP, 0, ciphertext=b"x" * 9000), [bob.device.device_id]
            )
        assert "larger than 10000 bytes" in e.value.message
        assert server.db_dump() == before
        await alice.send(private_message(GROUP, 0, ciphertext=b"x" * 900), [bob.device.device_id])


async def test_chunked_body_over_the_limit(data_dir: Path, clock: FakeClock) -> None:
    config = make_config(data_dir, max_json_body=1000)
    async with running(config, clock) as server:

        async def chunks() -> Any:
            for _ in range(20):
                yield b" " * 100

        async with server.http() as http:
            r = await http.post("/v1/accounts", content=chunks())
        assert r.status_code == 413
        assert r.json()["error"] == "payload_too_large"


# --- OpenAPI ---------------------------------------------------------------------------------


async def test_openapi_documents_every_route_and_error_body(server: Harness) -> None:
    async with server.http() as http:
        spec = (await http.get("/openapi.json")).json()

    def leaves(routes: list[Any]) -> list[Any]:
        out = []
        for route in routes:
            inner = getattr(route, "original_router", None)
            out.extend(leaves(inner.routes) if inner is not None else [route])
        return out

    served = {
        (method.upper(), route.path)
        for route in leaves(list(server.app.routes))
        if route.path.startswith("/v1/") and route.path != "/v1/ws"
        for method in getattr(route, "methods", ())
    }
    assert len(served) >= 19
    documented = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    assert served == documented
    assert "HTTPValidationError" not in json.dumps(spec)
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            for status, response in op["responses"].items():
                if status.startswith("4"):
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (path, method)
            # The transparency log is public (witnesses have no account), searching excepted.
            anonymous_kt = path.startswith("/v1/kt/") and path != "/v1/kt/search"
            if path not in ("/v1/info", "/v1/auth/challenge", "/v1/auth/token") and not (
                path in ("/v1/accounts", "/v1/links") or path.endswith("/status") or anonymous_kt
            ):
                assert "401" in op["responses"], (path, method)


async def test_openapi_responses_match_what_is_served(server: Harness) -> None:
    """Validate real responses against the documented schemas (a small schema check)."""
    alice = await server.user("alice")
    async with server.http() as http:
        spec = (await http.get("/openapi.json")).json()
        auth = {"Authorization": f"Bearer {alice._token}"}
        cases = [
            ("GET", "/v1/info", None, "/v1/info"),
            ("GET", "/v1/messages", None, "/v1/messages"),
            ("GET", "/v1/keypackages/count", None, "/v1/keypackages/count"),
            ("GET", "/v1/users/alice/devices", None, "/v1/users/{username}/devices"),
            ("GET", "/v1/users/nobody/devices", None, "/v1/users/{username}/devices"),
            ("POST", "/v1/messages/ack", {"seqs": [1]}, "/v1/messages/ack"),
        ]
        for method, path, body, template in cases:
            r = await http.request(method, path, headers=auth, json=body)
            op = spec["paths"][template][method.lower()]
            assert str(r.status_code) in op["responses"], (path, r.status_code)
            schema = op["responses"][str(r.status_code)]["content"]["application/json"]["schema"]
            _conforms(r.json(), schema, spec)


def _conforms(value: Any, schema: dict[str, Any], spec: dict[str, Any]) -> None:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        schema = spec["components"]["schemas"][name]
    if "anyOf" in schema:
        errors = []
        for option in schema["anyOf"]:
            try:
                _conforms(value, option, spec)
                return
            except AssertionError as exc:
                errors.append(exc)
        raise AssertionError(f"{value!r} matches no option: {errors}")
    kind = schema.get("type")
    if kind == "object":
        assert isinstance(value, dict)
        for key in schema.get("required", []):
            assert key in value, key
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                _conforms(value[key], sub, spec)
    elif kind == "array":
        assert isinstance(value, list)
        for item in value:
            _conforms(item, schema.get("items", {}), spec)
    elif kind == "string":
        assert isinstance(value, str)
        if schema.get("format") == "byte":
            base64.b64decode(value, validate=True)
    elif kind == "integer":
        assert isinstance(value, int) and not isinstance(value, bool)
    elif kind == "boolean":
        assert isinstance(value, bool)
    elif kind == "null":
        assert value is None


# --- logs ------------------------------------------------------------------------------------


async def test_the_log_names_the_route_of_a_send_and_an_ack(
    server: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """The two plain endpoints (`doorless.server.routes.hot`) are logged by their path
    template like every other route, not as ``unmatched`` (which reads as a 404)."""
    caplog.set_level(logging.INFO, logger="doorless.server")
    alice = await server.user("alice")
    bob = await server.user("bob")
    assert bob.device is not None
    await alice.send(private_message(b"log-group", 0), [bob.device.device_id])
    page = await bob.fetch()
    assert await bob.ack([m.seq for m in page.messages]) == 1
    logged = [
        (r.fields["method"], r.fields["route"], r.fields["status"])  # type: ignore[attr-defined]
        for r in caplog.records
        if r.getMessage() == "request"
    ]
    assert ("POST", "/v1/messages", 201) in logged
    assert ("POST", "/v1/messages/ack", 200) in logged
    assert not [entry for entry in logged if entry[1] == "unmatched"]


async def test_logs_hold_no_content_keys_tokens_or_ids(
    server: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    from doorless.server.log import JsonFormatter

    caplog.set_level(logging.INFO, logger="doorless.server")
    alice = await server.user("alice")
    bob = await server.user("bob")
    assert alice.device is not None and bob.device is not None
    canary = b"CANARY-" + bytes(range(48, 58)) * 3
    group = b"secret-group-id-canary"
    await alice.send(private_message(group, 0, ciphertext=canary), [bob.device.device_id])
    await bob.fetch()
    async with server.http() as http:
        await http.post("/v1/messages", json={"oops": canary.decode()})
        ticket_json = (
            await http.post("/v1/links", json={"username": "alice", "device_key": "AA=="})
        ).text
    lines = [JsonFormatter().format(r) for r in caplog.records if r.name == "doorless.server"]
    assert any('"route":"/v1/messages"' in line for line in lines)
    text = "\n".join(lines)
    for needle in (
        canary.decode(),
        b64(canary),
        group.decode(),
        group.hex(),
        str(alice._token),
        str(bob._token),
        alice.device.device_id,
        bob.device.device_id,
        b64(alice.device.public_key),
    ):
        assert needle not in text
    assert ticket_json  # the request happened
    for line in lines:
        json.loads(line)  # every line is one JSON object


async def test_request_id_header(server: Harness) -> None:
    async with server.http() as http:
        r = await http.get("/v1/info")
        assert len(r.headers["x-request-id"]) == 16
        r2 = await http.get("/v1/info")
        assert r2.headers["x-request-id"] != r.headers["x-request-id"]


async def test_transport_maps_http_errors() -> None:
    """Typed errors from raw statuses, including bodies that are not ours."""
    from doorless.client.errors import (
        BadResponse,
        EpochConflict,
        Forbidden,
        InvalidRequest,
        NotFound,
        ServerFailure,
        Unauthorized,
    )
    from doorless.client.transport import DeviceIdentity, Transport

    def handler(request: httpx.Request) -> httpx.Response:
        table: dict[str, httpx.Response] = {
            "/v1/info": httpx.Response(200, text="not json"),
            "/v1/a": httpx.Response(403, json={"error": "forbidden", "message": "no"}),
            "/v1/b": httpx.Response(404, text="<html>"),
            "/v1/c": httpx.Response(
                409, json={"error": "epoch_conflict", "message": "x", "current_epoch": 4}
            ),
            "/v1/d": httpx.Response(502, text="bad gateway"),
            "/v1/e": httpx.Response(422, json={"error": "invalid_request", "message": "m"}),
            "/v1/f": httpx.Response(401, json={"error": "auth_failed", "message": "m"}),
        }
        return table[request.url.path]

    t = Transport(
        "http://x", DeviceIdentity.generate(), http_transport=httpx.MockTransport(handler)
    )
    try:
        with pytest.raises(BadResponse):
            await t.server_info()
        expected = {
            "/v1/a": Forbidden,
            "/v1/b": NotFound,
            "/v1/c": EpochConflict,
            "/v1/d": ServerFailure,
            "/v1/e": InvalidRequest,
            "/v1/f": Unauthorized,
        }
        for path, cls in expected.items():
            with pytest.raises(cls) as e:
                await t._call("GET", path, auth=False)
            assert type(e.value) is cls
        with pytest.raises(EpochConflict) as conflict:
            await t._call("GET", "/v1/c", auth=False)
        assert conflict.value.current_epoch == 4
    finally:
        await t.aclose()


async def test_transport_unreachable_server() -> None:
    import socket

    from doorless.client.errors import ServerUnreachable
    from doorless.client.transport import Transport

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t = Transport(f"http://127.0.0.1:{port}", retries=1, backoff=0.01)
    try:
        with pytest.raises(ServerUnreachable):
            await t.server_info()
    finally:
        await t.aclose()


async def test_published_openapi_document_is_current(server: Harness) -> None:
    """docs/openapi.json is what the server serves (regenerate: doorless server openapi)."""
    published = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
    async with server.http() as http:
        served = (await http.get("/openapi.json")).json()
    assert json.loads(published.read_text()) == served
