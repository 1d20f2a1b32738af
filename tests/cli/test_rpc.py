"""JSON-RPC 2.0 dispatch (`doorless.cli.rpc`) without a server: the protocol's error cases,
batches, notifications, parameter checking, and how failures become error codes."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from doorless.cli import rpc
from doorless.cli.main import app  # noqa: F401  (registers every module's methods)
from doorless.cli.session import CliError
from doorless.client import Client, NotAMember, ServerUnreachable, UnknownConversation
from doorless.client.errors import NotFound
from doorless.errors import ConfigurationError

DOCS = Path(__file__).resolve().parents[2] / "docs" / "json-rpc.md"


class FakeClient:
    profile_dir = Path("/nonexistent/profile")


CLIENT = cast(Client, FakeClient())


def ask(line: str | bytes) -> Any:
    answer = asyncio.run(rpc.dispatch(CLIENT, line))
    return None if answer is None else json.loads(answer)


def request(method: str, params: Any = None, id_: Any = 1) -> str:
    body: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": id_}
    if params is not None:
        body["params"] = params
    return json.dumps(body)


@pytest.fixture
def probe() -> Iterator[list[Any]]:
    """A method ``probe`` that records its params and raises what ``params.raise`` names."""
    seen: list[Any] = []
    errors: dict[str, BaseException] = {
        "usage": CliError("usage", "bad", 2),
        "unknown_conversation": UnknownConversation("no conversation abc"),
        "not_a_member": NotAMember("removed"),
        "unreachable": ServerUnreachable("connection refused"),
        "not_found": NotFound(404, "not_found", "no such user", {}),
        "invalid": ConfigurationError("invalid username 'Bob'"),
        "crash": RuntimeError("secret internal detail"),
    }

    async def handler(client: Client, params: rpc.Params) -> Any:
        which = params.opt_string("raise")
        value = params.opt_int("value")
        params.done()
        seen.append(value)
        if which is not None:
            raise errors[which]
        return {"value": value}

    rpc.METHODS["probe"] = rpc.Method("probe", handler, "test")
    try:
        yield seen
    finally:
        del rpc.METHODS["probe"]


def test_a_call_and_its_answer(probe: list[Any]) -> None:
    assert ask(request("probe", {"value": 7}, id_="abc")) == {
        "jsonrpc": "2.0",
        "id": "abc",
        "result": {"value": 7},
    }
    assert probe == [7]


def test_parse_error() -> None:
    answer = ask("{not json")
    assert answer["error"]["code"] == rpc.PARSE_ERROR and answer["id"] is None
    assert ask(b"\xff\xfe")["error"]["code"] == rpc.PARSE_ERROR


@pytest.mark.parametrize(
    "body",
    [
        "1",
        "[1]",
        '{"method": "version", "id": 1}',  # no "jsonrpc"
        '{"jsonrpc": "1.0", "method": "version", "id": 1}',
        '{"jsonrpc": "2.0", "method": 5, "id": 1}',
        '{"jsonrpc": "2.0", "method": "version", "id": true}',
        '{"jsonrpc": "2.0", "method": "version", "id": [1]}',
        "[]",
    ],
)
def test_invalid_requests(body: str) -> None:
    answer = ask(body)
    if isinstance(answer, list):
        (answer,) = answer
    assert answer["error"]["code"] == rpc.INVALID_REQUEST


def test_unknown_method() -> None:
    answer = ask(request("nope"))
    assert answer["error"]["code"] == rpc.METHOD_NOT_FOUND and answer["id"] == 1


def test_notifications_get_no_answer(probe: list[Any]) -> None:
    assert ask('{"jsonrpc": "2.0", "method": "probe", "params": {"value": 1}}') is None
    assert ask('{"jsonrpc": "2.0", "method": "nope"}') is None
    assert probe == [1]


def test_batch(probe: list[Any]) -> None:
    batch = [
        json.loads(request("probe", {"value": 1}, 1)),
        {"jsonrpc": "2.0", "method": "probe", "params": {"value": 2}},  # notification
        json.loads(request("nope", None, 3)),
        5,
    ]
    answers = ask(json.dumps(batch))
    assert [a.get("id") for a in answers] == [1, 3, None]
    assert answers[0]["result"] == {"value": 1}
    assert answers[1]["error"]["code"] == rpc.METHOD_NOT_FOUND
    assert answers[2]["error"]["code"] == rpc.INVALID_REQUEST
    assert sorted(probe) == [1, 2]
    only_notifications = [{"jsonrpc": "2.0", "method": "probe", "params": {"value": 3}}]
    assert ask(json.dumps(only_notifications)) is None


@pytest.mark.parametrize(
    "params",
    [[1, 2], "x", {"value": "7"}, {"value": True}, {"value": 1, "extra": 2}],
    ids=["positional", "string", "wrong-type", "bool-for-int", "unknown-name"],
)
def test_invalid_params(probe: list[Any], params: Any) -> None:
    answer = ask(request("probe", params))
    assert answer["error"]["code"] == rpc.INVALID_PARAMS
    assert answer["error"]["data"] == {"error": "usage"}
    assert probe == []


@pytest.mark.parametrize(
    ("which", "code", "name"),
    [
        ("usage", rpc.INVALID_PARAMS, "usage"),
        ("invalid", rpc.INVALID_PARAMS, "invalid"),
        ("unknown_conversation", -32003, "unknown_conversation"),
        ("not_a_member", -32006, "not_a_member"),
        ("unreachable", -32001, "server_unreachable"),
        ("not_found", -32004, "not_found"),
    ],
)
def test_failures_become_error_codes(probe: list[Any], which: str, code: int, name: str) -> None:
    error = ask(request("probe", {"raise": which}))["error"]
    assert (error["code"], error["data"]["error"]) == (code, name)
    assert "\n" not in error["message"]


def test_unexpected_exceptions_are_internal_errors(probe: list[Any]) -> None:
    error = ask(request("probe", {"raise": "crash"}))["error"]
    assert error["code"] == rpc.INTERNAL_ERROR
    assert "RuntimeError" in error["message"]


def test_version_and_method_list() -> None:
    assert ask(request("version"))["result"]["version"]
    methods = ask(request("listMethods"))["result"]["methods"]
    assert methods == sorted(rpc.METHODS)
    for name in ("send", "sendFile", "receive", "createGroup", "approveLink", "whoami"):
        assert name in methods


def test_every_method_has_a_docstring_and_is_documented() -> None:
    documented = set(re.findall(r"^### `(\w+)`", DOCS.read_text(), flags=re.MULTILINE))
    for name, method in rpc.METHODS.items():
        assert method.doc, f"method {name} has no docstring"
        assert name in documented, f"docs/json-rpc.md does not document {name}"
    assert documented <= set(rpc.METHODS), documented - set(rpc.METHODS)


def test_every_error_code_is_documented() -> None:
    text = DOCS.read_text()
    for name, code in rpc.ERROR_CODES.items():
        assert f"`{name}`" in text and str(code) in text, name


def test_log_view_and_compare_checkpoint() -> None:
    """What the KT methods answer and how a fork and bad input become errors."""
    from doorless.client import GossipResult, KtFork, LogView

    class KtClient(FakeClient):
        outcome: Any = GossipResult.CONSISTENT

        async def log_view(self) -> LogView:
            return LogView("log+01234567+AAAA", 7, bytes(32), b"note\n")

        async def compare_checkpoint(self, checkpoint: bytes) -> GossipResult:
            assert checkpoint == b"note\n"
            if isinstance(self.outcome, Exception):
                raise self.outcome
            return cast(GossipResult, self.outcome)

    fake = KtClient()

    def call(method: str, params: Any = None) -> Any:
        return json.loads(asyncio.run(rpc.dispatch(cast(Client, fake), request(method, params))))

    view = call("logView")["result"]
    assert view["log_size"] == 7 and view["checkpoint"] == "bm90ZQo="
    assert len(view["log_key_fingerprint"].split()) == 8
    params = {"user": "bob", "checkpoint": "bm90ZQo="}
    assert call("compareCheckpoint", params)["result"] == {"result": "consistent"}
    fake.outcome = KtFork("two different logs of size 7 (split view)")
    error = call("compareCheckpoint", params)["error"]
    assert error["data"]["error"] == "remote_error"
    assert error["message"].startswith("KEY TRANSPARENCY ALARM")
    fake.outcome = GossipResult.UNVERIFIABLE
    assert call("compareCheckpoint", params)["error"]["data"]["error"] == "invalid"
    bad = call("compareCheckpoint", {"user": "bob", "checkpoint": "not base64!"})
    assert bad["error"]["data"]["error"] == "usage"


@pytest.mark.parametrize("text", ["", None])
def test_the_daemon_refuses_an_empty_message(text: str | None) -> None:
    """As ``doorless send`` does: before anything is looked up or sent (the fake client has
    no conversation to send to)."""
    params = {"user": "bob"} if text is None else {"user": "bob", "text": text}
    answer = ask(request("send", params))
    assert answer["error"]["code"] == rpc.INVALID_PARAMS
    assert answer["error"]["data"] == {"error": "usage"}


@pytest.mark.parametrize(("given", "user"), [("@Bob", "bob"), ("BOB", "bob"), ("@bob", "bob")])
def test_usernames_in_capitals_are_lowered(given: str, user: str) -> None:
    assert rpc.Params({"user": given}).target().user == user


@pytest.mark.parametrize("given", ["@\u212aarl", "@b", "@bob smith", "@b\u00f6b", "@"])
def test_what_is_not_a_username_is_refused_with_a_hint(given: str) -> None:
    answer = ask(request("history", {"user": given}))
    assert answer["error"]["data"] == {"error": "usage"}
    assert "lowercase ASCII" in answer["error"]["message"]
