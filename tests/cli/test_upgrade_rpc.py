"""The daemon method ``upgradeConversation``: its params, its result (the new conversation
with ``upgraded_from``) and `CannotUpgrade` as ``user_unavailable`` naming who cannot."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, cast

from doorless.cli import groups, rpc  # noqa: F401  (registers the group methods)
from doorless.client import CannotUpgrade, Client, Conversation, ConversationKind
from doorless.client.events import ConversationStatus

OLD, NEW = "aa" * 32, "bb" * 32


def _conv(id_: str, **fields: Any) -> Conversation:
    return Conversation(
        id=id_,
        kind=ConversationKind.GROUP,
        name="team",
        members=("alice", "bob"),
        devices=(),
        epoch=1,
        status=ConversationStatus.ACTIVE,
        created_at=0,
        updated_at=0,
        **fields,
    )


class FakeClient:
    profile_dir = Path("/nonexistent/profile")

    def __init__(self, refuse: bool = False) -> None:
        self.refuse = refuse
        self.upgraded: list[str] = []

    async def conversation(self, conversation_id: str) -> Conversation:
        return _conv(conversation_id)

    async def upgrade_conversation(self, conversation_id: str) -> Conversation:
        if self.refuse:
            raise CannotUpgrade(("olga",))
        self.upgraded.append(conversation_id)
        return _conv(NEW, upgraded_from=conversation_id, post_quantum=True)


def _ask(client: FakeClient, params: dict[str, Any]) -> Any:
    body = {"jsonrpc": "2.0", "method": "upgradeConversation", "id": 1, "params": params}
    answer = asyncio.run(rpc.dispatch(cast(Client, client), json.dumps(body)))
    assert answer is not None
    return json.loads(answer)


def test_upgrade_conversation_returns_the_successor() -> None:
    client = FakeClient()
    result = _ask(client, {"conversation_id": OLD})["result"]
    assert (result["id"], result["upgraded_from"], result["upgraded_to"]) == (NEW, OLD, None)
    assert result["post_quantum"] is True
    assert client.upgraded == [OLD]


def test_upgrade_conversation_params_and_refusal() -> None:
    client = FakeClient()
    assert _ask(client, {})["error"]["code"] == rpc.INVALID_PARAMS
    assert _ask(client, {"conversation_id": OLD, "x": 1})["error"]["code"] == rpc.INVALID_PARAMS
    assert client.upgraded == []
    error = _ask(FakeClient(refuse=True), {"conversation_id": OLD})["error"]
    assert error["code"] == -32007 and "olga" in error["message"]
