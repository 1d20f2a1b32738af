"""The daemon's safety methods (``report``, ``listRequests``, ``acceptRequest``,
``blockRequest``, ``reportRequest``, ``block``, ``unblock``, ``listBlocked``,
``setDisappearing``) over real clients and the in-process server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from doorless.cli import rpc
from doorless.cli.main import app  # noqa: F401  (registers every module's methods)
from doorless.client import Client

from .harness import safety_network

pytestmark = pytest.mark.asyncio


async def call(client: Client, method: str, **params: Any) -> Any:
    line = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
    answer = await rpc.dispatch(client, line)
    assert answer is not None
    body = json.loads(answer)
    if "error" in body:
        return body["error"]
    return body["result"]


async def test_safety_methods(tmp_path: Path) -> None:
    async with safety_network(tmp_path) as net:
        bob = await net.user("bob")
        carol = await net.user("carol")
        eve = await net.user("eve")
        chat = await carol.start_direct("bob")
        await carol.send_text(chat.id, "hi bob")
        spam = await eve.start_direct("bob")
        await eve.send_text(spam.id, "cheap watches")
        await bob.sync()

        listed = await call(bob, "listRequests")
        assert sorted(r["from"] for r in listed["requests"]) == ["carol", "eve"]
        accepted = await call(bob, "acceptRequest", request="@carol")
        assert accepted["accepted"]["conversation_id"] == chat.id
        reported = await call(bob, "reportRequest", request="@eve", reason="spam")
        assert reported["blocked"] == "eve" and [r["sender"] for r in reported["reports"]] == [
            "eve"
        ]
        assert await call(bob, "listRequests") == {"requests": []}
        assert await call(bob, "listBlocked") == {"blocked": ["eve"]}
        assert await call(bob, "unblock", user="@eve") == {"unblocked": "eve"}
        assert await call(bob, "block", user="carol") == {"blocked": "carol"}
        assert await call(bob, "listBlocked") == {"blocked": ["carol"]}
        await call(bob, "unblock", user="carol")

        (message,) = await bob.history(chat.id)
        filed = await call(bob, "report", message_ids=[message.message_id[:10]], reason="other")
        assert [r["message_id"] for r in filed["reports"]] == [message.message_id]
        bad = await call(bob, "report", message_ids=[message.message_id], reason="rude")
        assert bad["data"]["error"] == "invalid"

        timer = await call(bob, "setDisappearing", user="carol", seconds=300)
        assert timer == {"conversation_id": chat.id, "disappearing_seconds": 300}
        off = await call(bob, "setDisappearing", conversation_id=chat.id, seconds=None)
        assert off["disappearing_seconds"] is None
        assert (await call(bob, "blockRequest", request="@nobody"))["data"]["error"] == "not_found"
