"""The daemon methods of local history (``search``, ``exportConversation``, ``listContacts``,
``getContact``, ``setNickname``, ``listGroups``) through JSON-RPC dispatch, with clients of a
real server over loopback."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pytest

from doorless.cli import rpc
from doorless.cli.main import app  # noqa: F401 - registers every command's methods
from doorless.client import Client, ClientOptions

from .conftest import FAST_ARGON2, PASSPHRASE, ThreadServer

pytestmark = pytest.mark.asyncio


async def call(client: Client, method: str, **params: Any) -> dict[str, Any]:
    line = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
    answer = await rpc.dispatch(client, line)
    assert answer is not None
    value: dict[str, Any] = json.loads(answer)
    return value


async def test_local_history_methods(server: ThreadServer, tmp_path: Path) -> None:
    options = ClientOptions(push=False, argon2=FAST_ARGON2, key_package_target=5)
    names = {n: f"{n}-{secrets.token_hex(3)}" for n in ("alice", "bob")}
    alice, bob = [
        await Client.create_account(
            tmp_path / n, PASSPHRASE, server_url=server.url, username=u, options=options
        )
        for n, u in names.items()
    ]
    async with alice, bob:
        chat = await alice.start_direct(names["bob"])
        await alice.send_text(chat.id, "hello rpc world")
        group = await alice.create_group("rpc-team", [names["bob"]])
        await bob.sync()

        found = (await call(bob, "search", text="world"))["result"]
        assert [r["message"]["text"] for r in found["results"]] == ["hello rpc world"]
        scoped = await call(alice, "search", text="world", group="rpc-team")
        assert scoped["result"]["results"] == []
        literal = await call(alice, "search", text="rpc world", literal=True, limit=1)
        assert len(literal["result"]["results"]) == 1
        both = (await call(alice, "search", text="x", user="bob", group="rpc-team"))["error"]
        assert both["code"] == rpc.INVALID_PARAMS
        bad = (await call(alice, "search", text="AND"))["error"]
        assert bad["code"] == rpc.INVALID_PARAMS and bad["data"]["error"] == "invalid"

        exported = await call(alice, "exportConversation", user=f"@{names['bob']}")
        result = exported["result"]
        assert result["format"] == "json" and result["messages"] == 1
        assert result["export"]["messages"][0]["text"] == "hello rpc world"
        md = await call(alice, "exportConversation", conversation_id=chat.id, format="markdown")
        assert md["result"]["export"].startswith("# Conversation with @")
        target = tmp_path / "out.json"
        saved = await call(alice, "exportConversation", conversation_id=chat.id, path=str(target))
        assert saved["result"]["path"] == str(target)
        assert json.loads(target.read_text())["conversation"]["id"] == chat.id
        wrong = (await call(alice, "exportConversation", group="x", format="pdf"))["error"]
        assert wrong["code"] == rpc.INVALID_PARAMS

        nicked = await call(alice, "setNickname", user=names["bob"], nickname="Bobby")
        assert nicked["result"]["nickname"] == "Bobby"
        got = (await call(alice, "getContact", user=f"@{names['bob']}"))["result"]
        assert got["nickname"] == "Bobby" and sorted(got["conversations"]) == sorted(
            [chat.id, group.id]
        )
        listed = (await call(alice, "listContacts"))["result"]["contacts"]
        assert [(c["username"], c["nickname"]) for c in listed] == [(names["bob"], "Bobby")]
        cleared = await call(alice, "setNickname", user=names["bob"], nickname=None)
        assert cleared["result"]["nickname"] is None

        groups = (await call(bob, "listGroups"))["result"]["groups"]
        assert [(g["id"], g["member_count"], g["device_count"]) for g in groups] == [
            (group.id, 2, 2)
        ]
        assert (await call(bob, "listGroups", extra=1))["error"]["code"] == rpc.INVALID_PARAMS
