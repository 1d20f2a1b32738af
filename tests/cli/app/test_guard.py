"""The app's local security: only the page opened through the printed link gets in.

In-process (the real ASGI app, no account): no cookie or a wrong secret, a foreign Origin,
a DNS-rebinding Host header — each refused, on HTTP and on the WebSocket; the headers that keep
a page from running anything but its own scripts.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from doorless.cli.app.guard import CONTENT_SECURITY_POLICY, Guard
from doorless.cli.app.runtime import AppRuntime
from doorless.cli.app.web import build_app
from doorless.cli.common import State

PORT = 4321
ORIGIN = f"http://127.0.0.1:{PORT}"


@pytest.fixture
def guard() -> Guard:
    return Guard(port=PORT)


@pytest.fixture
def web(tmp_path: Path, guard: Guard) -> TestClient:
    runtime = AppRuntime(State(profile=tmp_path / "profile", json=False))
    return TestClient(build_app(runtime, guard), base_url=ORIGIN)


def opened(web: TestClient, guard: Guard) -> TestClient:
    answer = web.get(f"/open?key={guard.open_key.value.decode()}", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/"
    return web


def test_the_opening_key_gives_a_strict_session_cookie(web: TestClient, guard: Guard) -> None:
    answer = web.get(f"/open?key={guard.open_key.value.decode()}", follow_redirects=False)
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"doorless_app_{PORT}=")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    # The session token is not the opening key: a URL left in a history is no cookie.
    assert guard.open_key.value.decode() not in cookie
    page = web.get("/")
    assert page.status_code == 200
    assert 'src="/static/app.js"' in page.text


@pytest.mark.parametrize("key", ["", "wrong", "x" * 43])
def test_a_wrong_opening_key_is_refused(web: TestClient, key: str) -> None:
    answer = web.get(f"/open?key={key}", follow_redirects=False)
    assert answer.status_code == 403
    assert "set-cookie" not in answer.headers


@pytest.mark.parametrize("path", ["/", "/static/app.js", "/files/00112233aabbccdd"])
def test_nothing_is_served_without_the_cookie(web: TestClient, path: str) -> None:
    answer = web.get(path)
    assert answer.status_code == 403
    assert "doorless app" in answer.text


def test_a_wrong_cookie_is_refused(web: TestClient, guard: Guard) -> None:
    web.cookies.set(guard.cookie_name, "not-the-session")
    assert web.get("/").status_code == 403


def test_a_rebinding_host_is_refused_even_with_the_cookie(web: TestClient, guard: Guard) -> None:
    opened(web, guard)
    assert web.get("/").status_code == 200
    # A page on evil.example whose name now resolves to 127.0.0.1: its requests say so.
    answer = web.get("/", headers={"host": f"evil.example:{PORT}"})
    assert answer.status_code == 403
    assert web.get("/", headers={"host": "127.0.0.1:9999"}).status_code == 403


def test_a_cross_site_request_is_refused(web: TestClient, guard: Guard) -> None:
    opened(web, guard)
    answer = web.post(
        "/files/send?conversation_id=00", content=b"x", headers={"origin": "http://evil.example"}
    )
    assert answer.status_code == 403
    # A POST must say where it comes from.
    assert web.post("/files/send?conversation_id=00", content=b"x").status_code == 403


def test_every_answer_carries_a_strict_content_security_policy(
    web: TestClient, guard: Guard
) -> None:
    opened(web, guard)
    for path in ("/", "/static/app.js", "/static/style.css"):
        answer = web.get(path)
        assert answer.status_code == 200, path
        csp = answer.headers["content-security-policy"]
        assert csp == CONTENT_SECURITY_POLICY
        assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert answer.headers["x-content-type-options"] == "nosniff"
    assert web.get("/nope").headers["content-security-policy"] == CONTENT_SECURITY_POLICY


def test_the_page_has_no_inline_script_or_style() -> None:
    static = Path(__file__).parents[3] / "src/doorless/cli/app/static"
    html = (static / "index.html").read_text()
    assert "<script>" not in html and "<style" not in html and " style=" not in html
    assert " on" not in html.replace("<button", "").split("<body>")[1].split("=")[0]
    # Peer text goes in as text: no markup sinks in the page's code.
    for script in static.glob("*.js"):
        code = script.read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in code, f"{script.name} uses {sink}"


HOST = f"127.0.0.1:{PORT}"


def cookie(guard: Guard) -> str:
    # The test client does not send its cookie jar on a WebSocket: say it, as a browser does.
    return f"{guard.cookie_name}={guard.session.value.decode()}"


def refused_code(web: TestClient, headers: dict[str, str]) -> int:
    with (
        pytest.raises(WebSocketDisconnect) as refused,
        web.websocket_connect("/rpc", headers=headers),
    ):
        pass
    return refused.value.code


def test_the_websocket_needs_the_cookie_and_our_origin(
    web: TestClient, guard: Guard, caplog: pytest.LogCaptureFixture
) -> None:
    assert refused_code(web, {"origin": ORIGIN, "host": HOST}) == 1008
    assert "session" in caplog.text
    assert refused_code(web, {"origin": ORIGIN, "host": HOST, "cookie": "doorless_app_4321=x"})
    for origin in ("http://evil.example", f"http://127.0.0.1:{PORT + 1}", None):
        headers = {"host": HOST, "cookie": cookie(guard)}
        if origin is not None:
            headers["origin"] = origin
        caplog.clear()
        assert refused_code(web, headers) == 1008, origin
        assert "origin" in caplog.text
    caplog.clear()
    rebinding = {"origin": ORIGIN, "host": f"evil.example:{PORT}", "cookie": cookie(guard)}
    assert refused_code(web, rebinding) == 1008
    assert "host" in caplog.text


def test_the_websocket_speaks_json_rpc(web: TestClient, guard: Guard) -> None:
    headers = {"origin": ORIGIN, "host": HOST, "cookie": cookie(guard)}
    with web.websocket_connect("/rpc", headers=headers) as ws:
        ws.send_text(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "appStatus"}))
        answer = json.loads(ws.receive_text())
        assert answer == {
            "jsonrpc": "2.0",
            "id": 1,
            "result": {"state": "new", "account": None, "link": None, "error": None},
        }
        # Before there is an account only the set-up methods exist.
        ws.send_text(json.dumps({"jsonrpc": "2.0", "id": 2, "method": "send", "params": {}}))
        assert json.loads(ws.receive_text())["error"]["code"] == -32601
        ws.send_text("not json")
        assert json.loads(ws.receive_text())["error"]["code"] == -32700
        bad = {"jsonrpc": "2.0", "id": 3, "method": "createAccount", "params": {"username": 5}}
        ws.send_text(json.dumps(bad))
        assert json.loads(ws.receive_text())["error"]["data"]["error"] == "usage"
