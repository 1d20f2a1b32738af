"""Rich messages through the real ``doorless`` program and the real server process: three
users and a linked device; a mention, a reply, reactions and an un-reaction, an edit, a
refused edit and delete by someone else, a read receipt, a typing notice and a delete for
everyone are each seen by every device once, in order. Afterwards the deleted text is in no
member's store (the decrypted tables and the raw files), and the server holds no canary (I1).
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

import pytest

from doorless.client import Client, outbox
from doorless.content import SALT_SIZE
from doorless.wire import rich
from doorless.wire.payload import content_payload

from .helpers import PASSPHRASE, ServerProcess, options, run_cli, scan
from .test_cli_process import LineReader, spawn

pytestmark = pytest.mark.asyncio

SHOWN = ("message_received", "message_changed", "read_up_to", "typing", "delivery_failed")


def ok(profile: Path, *args: str) -> Any:
    r = run_cli(profile, *args, json_output=True)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout) if r.stdout.strip().startswith("{") else None


def receive(profile: Path) -> list[dict[str, Any]]:
    r = run_cli(profile, "receive", json_output=True)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


def summary(item: dict[str, Any]) -> tuple[Any, ...]:
    """What one shown line says, in a form to compare."""
    kind = item["type"]
    if kind == "message_received":
        m = item["message"]
        return (kind, m["sender"]["user"], m["text"], m["reply_to"], m["mentions_me"])
    if kind == "message_changed":
        return (kind, item["change"], item["by"]["user"], item["emoji"])
    if kind == "read_up_to":
        return (kind, item["reader"]["user"], item["message_id"])
    if kind == "typing":
        return (kind, item["user"]["user"], item["active"])
    return (kind, item["reason"], item["sender"]["user"])


async def forge(profile: Path, group_id: str, message_id: str) -> None:
    """A modified client of carol sends an edit and a delete of alice's message."""
    carol = await Client.open(profile, PASSPHRASE, options=options())
    try:
        meta = await carol._tx(
            lambda tx: tx.get_rich(tx.get_message_by_server_id(message_id).local_id)
        )
        gid = bytes.fromhex(group_id)
        members = frozenset({"alice", "bob", "carol"})
        for content in (
            rich.edit(meta.mimi_id, "forged", salt=os.urandom(SALT_SIZE), members=members),
            rich.delete(meta.mimi_id, salt=os.urandom(SALT_SIZE)),
        ):
            payload = content_payload(content, carol._core.now_ms())
            await outbox.send_payload(carol._core, gid, payload, shown=None)
    finally:
        await carol.close()


async def store_rows(profile: Path) -> list[Any]:
    """Every value of every table of a profile's decrypted store."""
    client = await Client.open(profile, PASSPHRASE, options=options())
    try:

        def dump(tx: Any) -> list[Any]:
            tables = [r[0] for r in tx._all("SELECT name FROM sqlite_master WHERE type='table'")]
            return [v for t in tables for row in tx._all(f'SELECT * FROM "{t}"') for v in row]

        rows: list[Any] = await client._tx(dump)
        return rows
    finally:
        await client.close()


def contains(values: list[Any], needle: str) -> bool:
    raw = needle.encode()
    return any(
        (isinstance(v, str) and needle in v) or (isinstance(v, bytes) and raw in v) for v in values
    )


async def test_rich_messages_end_to_end(server: ServerProcess, tmp_path: Path) -> None:
    p = {n: tmp_path / "profiles" / n for n in ("alice", "bob", "bob2", "carol")}
    c = [f"canary-{i}-{secrets.token_hex(12)}" for i in range(3)]
    for name in ("alice", "bob", "carol"):
        ok(p[name], "account", "create", "--server", server.url, name)
    link = spawn(p["bob2"], "device", "link", "--server", server.url, "bob", "--timeout", "90")
    assert link.stdout is not None
    requested = LineReader(link.stdout).next()
    ok(p["bob"], "device", "approve", requested["code"], "--fingerprint", requested["fingerprint"])
    assert link.wait(60) == 0
    ok(p["carol"], "config", "set", "privacy.read_receipts", "off")

    group = ok(p["alice"], "group", "create", "team", "--member", "@bob", "--member", "@carol")
    shown: dict[str, list[dict[str, Any]]] = {n: [] for n in p}
    for name in ("bob", "bob2", "carol"):
        shown[name] += receive(p[name])

    m = ok(p["alice"], "send", "--group", "team", f"hello @bob {c[0]}")
    mid = m["message_id"]
    short = mid[:8]
    for name in ("bob", "carol"):
        shown[name] += receive(p[name])
    r = ok(p["bob"], "reply", short, f"re {c[1]}")
    assert r["reply_to"] == mid
    ok(p["carol"], "react", short, "👍")
    ok(p["bob"], "react", short, "🎉")
    ok(p["bob"], "react", short, "🎉", "--remove")
    ok(p["alice"], "edit", short, f"edited {c[2]}")
    await forge(p["carol"], group["id"], mid)
    refused = run_cli(p["carol"], "--json", "edit", short, "mine now")  # refused at home
    assert refused.returncode != 0 and "only its sender" in refused.stderr
    read = ok(p["bob"], "read", "--group", "team")
    assert read["read_up_to"] == mid and read["sent"]
    assert ok(p["carol"], "read", "--group", "team")["sent"] is False  # receipts off
    ok(p["carol"], "typing", "--group", "team")
    shown["alice"] += receive(p["alice"])
    ok(p["alice"], "delete", short)
    for name in p:
        shown[name] += receive(p[name])

    rid = r["message_id"]
    posted = ("message_received", "alice", f"hello @bob {c[0]}", None)
    reply = ("message_received", "bob", f"re {c[1]}", mid, False)
    refusals = [("delivery_failed", "not_author", "carol")] * 2
    expected = {
        "alice": [
            reply,
            ("message_changed", "reacted", "carol", "👍"),
            ("message_changed", "reacted", "bob", "🎉"),
            ("message_changed", "unreacted", "bob", "🎉"),
            *refusals,
            ("read_up_to", "bob", mid),
            ("typing", "carol", True),
        ],
        "bob": [
            (*posted, True),
            ("message_changed", "reacted", "carol", "👍"),
            ("message_changed", "edited", "alice", None),
            *refusals,
            ("typing", "carol", True),
            ("message_changed", "deleted", "alice", None),
        ],
        "bob2": [
            (*posted, True),
            reply,
            ("message_changed", "reacted", "carol", "👍"),
            ("message_changed", "reacted", "bob", "🎉"),
            ("message_changed", "unreacted", "bob", "🎉"),
            ("message_changed", "edited", "alice", None),
            *refusals,
            ("read_up_to", "bob", mid),
            ("typing", "carol", True),
            ("message_changed", "deleted", "alice", None),
        ],
        "carol": [
            (*posted, False),
            reply,
            ("message_changed", "reacted", "bob", "🎉"),
            ("message_changed", "unreacted", "bob", "🎉"),
            ("message_changed", "edited", "alice", None),
            ("read_up_to", "bob", mid),
            ("message_changed", "deleted", "alice", None),
        ],
    }
    for name, lines in shown.items():
        got = [summary(x) for x in lines if x["type"] in SHOWN]
        assert got == expected[name], (name, got)

    # --- every store: the message is a "deleted" placeholder; its texts are gone -------------
    for name in p:
        history = ok(p[name], "history", "--group", "team")["messages"]
        assert [(h["message_id"], h["deleted"], h["text"]) for h in history] == [
            (mid, True, None),
            (rid, False, f"re {c[1]}"),
        ]
        assert history[1]["reply_to"] == mid and history[1]["reply_text"] is None
        assert history[0]["reactions"] == []
        values = await store_rows(p[name])
        assert contains(values, c[1]), name  # the scan finds what is there
        assert not contains(values, c[0]) and not contains(values, c[2]), name

    # --- raw files of every profile and everything the server wrote: no canary ------------
    server.stop()
    needles = [x.encode() for x in c]
    assert scan([server.data_dir, server.log_path], needles) == []
    assert scan(list(p.values()), needles) == []
