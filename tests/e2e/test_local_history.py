"""Local history through the real ``doorless`` program (separate processes) and the real
server process: two users chat and search finds it (bad queries are one error line), exports
to JSON and Markdown are right, a nickname shows and stays local, ``group list`` counts follow
adds and removes, and the server learns none of it. (That a deleted message leaves the index
and the decrypted store is tested in-process: tests/cli/test_local_history.py and
tests/client/test_store_search.py.)"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

from .helpers import CliResult, ServerProcess, run_cli, scan


def ok(profile: Path, *args: str | Path, json_output: bool = True) -> CliResult:
    r = run_cli(profile, *args, json_output=json_output)
    assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r


def js(r: CliResult) -> Any:
    return json.loads(r.stdout)


def received(r: CliResult) -> list[str]:
    items = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
    return [x["message"]["text"] for x in items if x.get("type") == "message_received"]


def test_search_export_contacts_and_group_list(server: ServerProcess, tmp_path: Path) -> None:
    p = {name: tmp_path / "profiles" / name for name in ("alice", "bob", "carol")}
    for name, profile in p.items():
        ok(profile, "account", "create", "--server", server.url, name)
    word = "zq" + secrets.token_hex(6)
    nickname = "Nick" + secrets.token_hex(6)

    # --- two users chat; search finds it on both sides ------------------------------------
    ok(p["alice"], "send", "@bob", f"meet at the café about {word}")
    assert received(ok(p["bob"], "receive")) == [f"meet at the café about {word}"]
    ok(p["bob"], "send", "@alice", "sure,\nsee you there")
    assert received(ok(p["alice"], "receive")) == ["sure,\nsee you there"]
    for who in ("alice", "bob"):
        hits = js(ok(p[who], "search", word))["results"]
        assert [h["message"]["text"] for h in hits] == [f"meet at the café about {word}"]
        start, end = hits[0]["matches"][0]
        assert hits[0]["snippet"][start:end] == word
    text = ok(p["alice"], "search", "cafe", "OR", "see", json_output=False).stdout
    assert "@bob: sure,\\n[see] you there" in text
    assert "me: meet at the [café] about" in text
    bad = run_cli(p["alice"], "search", '"unclosed')
    assert bad.returncode == 1 and bad.stderr.startswith("error: invalid search query")
    assert "Traceback" not in bad.stderr and bad.stdout == ""

    # --- a local nickname -----------------------------------------------------------------
    ok(p["alice"], "contacts", "nick", "@bob", nickname)
    history = ok(p["alice"], "history", "@bob", json_output=False).stdout
    assert f"~{nickname} (@bob): sure," in history
    contacts = js(ok(p["alice"], "contacts", "list"))["contacts"]
    assert [(c["username"], c["nickname"]) for c in contacts] == [("bob", nickname)]

    # --- exports --------------------------------------------------------------------------
    out_json, out_md = tmp_path / "bob.json", tmp_path / "bob.md"
    assert js(ok(p["alice"], "export", "@bob", "-o", out_json))["messages"] == 2
    ok(p["alice"], "export", "@bob", "--format", "markdown", "--output", out_md)
    doc = json.loads(out_json.read_text())
    assert doc["format"] == "doorless.conversation-export" and doc["version"] == 1
    assert doc["nicknames"] == {"bob": nickname}
    assert [(m["sender"]["user"], m["outgoing"], m["text"]) for m in doc["messages"]] == [
        ("alice", True, f"meet at the café about {word}"),
        ("bob", False, "sure,\nsee you there"),
    ]
    md = out_md.read_text()
    assert md.startswith(f"# Conversation with \\~{nickname} (@bob)\n")
    assert f"> meet at the café about {word}\n" in md
    assert "> sure\\,\\\n> see you there\n" in md
    assert out_md.stat().st_mode & 0o777 == 0o600

    # --- group list counts follow adds and removes ----------------------------------------
    def members(who: str, group: str) -> int | None:
        groups = js(ok(p[who], "group", "list"))["groups"]
        return next((g["member_count"] for g in groups if g["name"] == group), None)

    ok(p["alice"], "group", "create", "team", "-m", "@bob")
    ok(p["alice"], "group", "add", "team", "@carol")
    assert members("alice", "team") == 3
    for who in ("bob", "carol"):
        ok(p[who], "receive")
        assert members(who, "team") == 3
    ok(p["alice"], "group", "remove", "team", "@bob")
    assert members("alice", "team") == 2
    ok(p["bob"], "receive")
    groups = js(ok(p["bob"], "group", "list"))["groups"]
    assert [(g["name"], g["status"]) for g in groups] == [("team", "removed")]

    # --- the server learnt none of it -----------------------------------------------------
    needles = [word.encode(), nickname.encode()]
    assert scan([server.data_dir, server.log_path], needles) == []
