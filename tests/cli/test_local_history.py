"""Local history commands (``search``, ``export``, ``contacts``, ``group list``) and their
daemon methods, in-process against a real server over loopback."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from doorless.client.store import ProfileStore
from support.servers import ThreadServer

from .conftest import PASSPHRASE, Doorless


def unique(name: str) -> str:
    return f"{name}-{secrets.token_hex(3)}"


@dataclass(frozen=True)
class Chat:
    """alice and bob talk directly; the three of them in a group."""

    alice: str
    bob: str
    carol: str
    group: str


@pytest.fixture(scope="module")
def chat(shared: Doorless) -> Iterator[Chat]:
    alice, bob, carol = unique("alice"), unique("bob"), unique("carol")
    for name in (alice, bob, carol):
        shared.account(name)
    group = unique("team")
    shared.ok(alice, "send", f"@{bob}", "the quick brown fox")
    shared.ok(bob, "receive")
    shared.ok(bob, "send", f"@{alice}", "a lazy dog, \x1b[31mred\x1b[0m café\nline two")
    shared.ok(alice, "group", "create", group, "-m", f"@{bob}", "-m", f"@{carol}")
    shared.ok(alice, "send", "--group", group, "fox in the group")
    for name in (alice, bob, carol):
        shared.ok(name, "receive")
    yield Chat(alice, bob, carol, group)


def results(r: Any) -> list[tuple[str, str]]:
    return [(x["message"]["text"], x["snippet"]) for x in r.json["results"]]


def test_search_finds_own_and_received_messages(shared: Doorless, chat: Chat) -> None:
    r = shared.ok(chat.alice, "search", "fox")
    assert sorted(t for t, _ in results(r)) == ["fox in the group", "the quick brown fox"]
    hit = r.json["results"][0]
    start, end = hit["matches"][0]
    assert hit["snippet"][start:end].lower() == "fox"
    assert shared.ok(chat.carol, "search", "fox").json["results"][0]["message"]["text"] == (
        "fox in the group"
    )
    assert shared.ok(chat.carol, "search", "quick").json["results"] == []


def test_search_within_one_conversation(shared: Doorless, chat: Chat) -> None:
    r = shared.ok(chat.alice, "search", "--in", chat.group, "fox")
    assert [t for t, _ in results(r)] == ["fox in the group"]
    r = shared.ok(chat.alice, "search", "--in", f"@{chat.bob}", "fox")
    assert [t for t, _ in results(r)] == ["the quick brown fox"]


def test_search_text_output_renders_peer_text_safely(shared: Doorless, chat: Chat) -> None:
    r = shared.ok(chat.alice, "search", "cafe", json_output=False)
    (line,) = r.stdout.splitlines()
    assert "\x1b" not in line and "\\x1b[31m" in line
    assert "[café]" in line and "\\nline two" in line
    assert f"@{chat.bob}" in line


@pytest.mark.parametrize("query", ['"open', "AND", "fox OR", "nocolumn:fox", "don't"])
def test_bad_query_is_one_line_error(shared: Doorless, chat: Chat, query: str) -> None:
    r = shared(chat.alice, "search", query)
    assert r.exit_code == 1
    assert r.error["error"] == "invalid" and "invalid search query" in r.error["message"]
    text = shared(chat.alice, "search", query, json_output=False)
    assert text.stderr.startswith("error: ") and "Traceback" not in text.stderr


def test_literal_search(shared: Doorless, chat: Chat) -> None:
    r = shared.ok(chat.alice, "search", "--literal", "dog,", "AND")
    assert r.json["results"] == []
    r = shared.ok(chat.alice, "search", "--literal", "lazy", "dog")
    assert [t for t, _ in results(r)] == ["a lazy dog, \x1b[31mred\x1b[0m café\nline two"]


def test_export_json_to_a_file(shared: Doorless, chat: Chat, tmp_path: Path) -> None:
    out = tmp_path / "direct.json"
    r = shared.ok(chat.alice, "export", f"@{chat.bob}", "--output", out)
    assert r.json == {"format": "json", "path": str(out), "messages": 2}
    assert out.stat().st_mode & 0o777 == 0o600
    doc = json.loads(out.read_text())
    assert doc["format"] == "doorless.conversation-export" and doc["version"] == 1
    assert doc["exported_by"]["user"] == chat.alice
    assert sorted(doc["conversation"]["members"]) == sorted([chat.alice, chat.bob])
    assert [(m["sender"]["user"], m["text"]) for m in doc["messages"]] == [
        (chat.alice, "the quick brown fox"),
        (chat.bob, "a lazy dog, \x1b[31mred\x1b[0m café\nline two"),
    ]


def test_export_markdown_to_stdout(shared: Doorless, chat: Chat) -> None:
    r = shared.ok(chat.bob, "export", chat.group, "--format", "markdown", json_output=False)
    assert r.stdout.startswith(f"# Group \\#{chat.group.replace('-', chr(92) + '-')}\n")
    assert "> fox in the group" in r.stdout
    assert f"**@{chat.alice.replace('-', chr(92) + '-')}**" in r.stdout


def test_export_errors(shared: Doorless, chat: Chat, tmp_path: Path) -> None:
    r = shared(chat.alice, "export", "no-such-group")
    assert r.exit_code == 1 and r.error["error"] == "unknown_conversation"
    r = shared(chat.alice, "export", chat.group, "--format", "pdf")
    assert r.exit_code == 2 and "unknown export format" in r.error["message"]
    r = shared(chat.alice, "export", chat.group, "--output", tmp_path)
    assert r.exit_code == 2 and "directory" in r.error["message"]


def test_contacts_and_nicknames(shared: Doorless, chat: Chat, server: ThreadServer) -> None:
    listed = shared.ok(chat.alice, "contacts", "list").json["contacts"]
    assert [c["username"] for c in listed] == sorted([chat.bob, chat.carol])
    bob = next(c for c in listed if c["username"] == chat.bob)
    assert bob["nickname"] is None and len(bob["conversations"]) == 2

    canary = "Nick" + secrets.token_hex(8)
    r = shared.ok(chat.alice, "contacts", "nick", f"@{chat.bob}", f"  {canary}  ")
    assert r.json["nickname"] == canary
    shown = f"~{canary} (@{chat.bob})"
    assert shared.ok(chat.alice, "contacts", "show", f"@{chat.bob}").json["nickname"] == canary
    assert shown in shared.ok(chat.alice, "contacts", "list", json_output=False).stdout
    # Shown wherever bob's name is: history, conversations, search, export, receive.
    history = shared.ok(chat.alice, "history", f"@{chat.bob}", json_output=False).stdout
    assert f"  {shown}  {shown}: a lazy dog" in history
    assert shown in shared.ok(chat.alice, "conversations", json_output=False).stdout
    assert shown in shared.ok(chat.alice, "search", "lazy", json_output=False).stdout
    md = shared.ok(chat.alice, "export", f"@{chat.bob}", "-f", "markdown", json_output=False)
    assert f"\\~{canary} (@{chat.bob.replace('-', chr(92) + '-')})" in md.stdout
    wrapped = shared.ok(chat.alice, "export", f"@{chat.bob}").json  # --json: one object
    assert wrapped["format"] == "json" and wrapped["messages"] == 2
    assert wrapped["export"]["nicknames"] == {chat.bob: canary}
    md_json = shared.ok(chat.alice, "export", f"@{chat.bob}", "-f", "markdown").json

    def undated(doc: str) -> list[str]:
        return [line for line in doc.splitlines() if not line.startswith("- Exported by")]

    assert undated(md_json["export"]) == undated(md.stdout)
    shared.ok(chat.bob, "send", f"@{chat.alice}", "ping")
    assert f"{shown}: ping" in shared.ok(chat.alice, "receive", json_output=False).stdout
    # Local only: bob sees nothing of it, and the server never got it.
    assert shared.ok(chat.bob, "contacts", "show", f"@{chat.alice}").json["nickname"] is None
    assert not any(
        canary.encode() in p.read_bytes() for p in server.data_dir.rglob("*") if p.is_file()
    )

    r = shared.ok(chat.alice, "contacts", "unnick", f"@{chat.bob}")
    assert r.json["nickname"] is None
    assert shown not in shared.ok(chat.alice, "history", f"@{chat.bob}", json_output=False).stdout


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["nick", "@{bob}", "   "], "invalid"),
        (["nick", "@{bob}", "bad\u202enick"], "invalid"),
        (["nick", "@{bob}", "x" * 65], "invalid"),
        (["nick", "@{alice}", "me"], "invalid"),
        (["show", "@nobody-known"], "invalid"),
        (["nick", "@Not A User", "x"], "usage"),
    ],
)
def test_contact_errors(shared: Doorless, chat: Chat, args: list[str], code: str) -> None:
    argv = [a.format(bob=chat.bob, alice=chat.alice) for a in args]
    r = shared(chat.alice, "contacts", *argv)
    assert r.exit_code != 0 and r.error["error"] == code, r.stderr


def test_group_list_counts_follow_add_and_remove(shared: Doorless, chat: Chat) -> None:
    def counts(profile: str) -> dict[str, tuple[int, list[str]]]:
        groups = shared.ok(profile, "group", "list").json["groups"]
        return {g["name"]: (g["member_count"], g["members"]) for g in groups}

    other = unique("other")
    shared.ok(chat.alice, "group", "create", other, "-m", f"@{chat.bob}")
    assert counts(chat.alice)[chat.group][0] == 3
    assert counts(chat.alice)[other] == (2, sorted([chat.alice, chat.bob]))
    assert other not in counts(chat.carol)
    shared.ok(chat.alice, "group", "add", other, f"@{chat.carol}")
    shared.ok(chat.carol, "receive")
    assert counts(chat.carol)[other][0] == 3
    shared.ok(chat.alice, "group", "remove", other, f"@{chat.bob}")
    assert counts(chat.alice)[other] == (2, sorted([chat.alice, chat.carol]))
    shared.ok(chat.carol, "receive")
    assert counts(chat.carol)[other][0] == 2
    text = shared.ok(chat.alice, "group", "list", json_output=False).stdout
    line = next(x for x in text.splitlines() if f"#{other}" in x)
    assert "2 members (" in line and "me" in line
    # bob, removed, keeps the group as removed; direct conversations are not groups.
    shared.ok(chat.bob, "receive")
    bobs = {g["name"]: g for g in shared.ok(chat.bob, "group", "list").json["groups"]}
    assert set(bobs) == {chat.group, other}
    assert bobs[other]["status"] == "removed" and bobs[chat.group]["member_count"] == 3
    text = shared.ok(chat.bob, "group", "list", json_output=False).stdout
    assert "[removed]" in next(x for x in text.splitlines() if f"#{other}" in x)


def decrypted_rows(profile: Path) -> bytes:
    """Every value of every table of a profile's store, the search index's shadow tables
    included, read through SQLCipher with the profile's passphrase."""
    store = ProfileStore.open(profile, PASSPHRASE, environ={})
    try:
        conn = store._conn
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        assert "message_search_data" in names
        values = []
        for name in names:
            for row in conn.execute(f'SELECT * FROM "{name}"'):
                values.extend(v if isinstance(v, bytes) else str(v).encode() for v in row)
        return b"\n".join(values)
    finally:
        store.close()


def test_disappeared_message_leaves_search_and_the_store(shared: Doorless, chat: Chat) -> None:
    group = unique("vanish")
    shared.ok(chat.alice, "group", "create", group, "-m", f"@{chat.carol}")
    shared.ok(chat.alice, "disappearing", "--group", group, "3s")
    shared.ok(chat.carol, "receive")
    word = "zqgone" + secrets.token_hex(8)
    shared.ok(chat.alice, "send", "--group", group, f"self-destruct {word}")
    shared.ok(chat.carol, "receive")
    carol = shared.profile(chat.carol)
    assert word.encode() in decrypted_rows(carol)  # the check sees the word while it is there
    time.sleep(3.2)
    for who in (chat.alice, chat.carol):
        assert shared.ok(who, "search", word).json["results"] == []  # purged by the command
        assert word.encode() not in decrypted_rows(shared.profile(who))
