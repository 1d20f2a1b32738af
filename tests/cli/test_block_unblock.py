"""Blocking, then unblocking, a user leaves a working conversation with them (a real server
over loopback, the commands run in-process)."""

from __future__ import annotations

import secrets

import pytest

from .conftest import Doorless


def unique(name: str) -> str:
    return f"{name}-{secrets.token_hex(3)}"


def texts(lines: list[dict[str, object]]) -> list[object]:
    return [x["message"]["text"] for x in lines if x["type"] == "message_received"]  # type: ignore[index]


@pytest.mark.parametrize("accepted", [True, False], ids=["accepted", "request"])
def test_block_then_unblock_leaves_a_working_conversation(
    doorless: Doorless, accepted: bool
) -> None:
    alice, bob = unique("alice"), unique("bob")
    doorless.account(alice)
    doorless.account(bob)
    doorless.ok(alice, "send", f"@{bob}", "hi bob")
    assert texts(doorless.ok(bob, "receive").lines) == ["hi bob"]
    if accepted:
        doorless.ok(bob, "requests", "accept", f"@{alice}")
        doorless.ok(bob, "send", f"@{alice}", "hi alice")
        assert texts(doorless.ok(alice, "receive").lines) == ["hi alice"]
    doorless.ok(bob, "block", f"@{alice}")
    doorless.ok(alice, "send", f"@{bob}", "while blocked")
    doorless.ok(bob, "receive")
    doorless.ok(bob, "unblock", f"@{alice}")
    doorless.ok(alice, "send", f"@{bob}", "after unblock")
    got = doorless.ok(bob, "receive").lines
    assert texts(got) == ["after unblock"]
    assert not [x for x in got if x["type"] == "delivery_failed"]
    doorless.ok(bob, "send", f"@{alice}", "welcome back")
    assert texts(doorless.ok(alice, "receive").lines) == ["welcome back"]
    for name in (alice, bob):
        convs = doorless.ok(name, "conversations").json["conversations"]
        assert len(convs) == 1, (name, convs)
