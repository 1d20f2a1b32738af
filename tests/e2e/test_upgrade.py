"""Upgrading a classic conversation to the post-quantum suite through the real server process
and the real ``doorless`` program: ``group upgrade`` makes a new hybrid conversation that all
three members see as the old one's successor and talk in; the old history stays; a member
without post-quantum KeyPackages makes it fail, naming them, with nothing changed."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from .helpers import Devices, ServerProcess, run_cli

HYBRID = "MLS_128_MLKEM768X25519_AES128GCM_SHA256_Ed25519"
CLASSIC = "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519"


def _ok(profile: Path, *args: str, json_output: bool = False) -> str:
    r = run_cli(profile, *args, json_output=json_output)
    assert r.returncode == 0, r.stderr
    return r.stdout


def _convs(profile: Path) -> dict[str, dict[str, Any]]:
    out = json.loads(_ok(profile, "conversations", json_output=True))
    return {c["id"]: c for c in out["conversations"]}


def _received(profile: Path) -> list[tuple[str, str]]:
    lines = _ok(profile, "receive", json_output=True).splitlines()
    events = [json.loads(x) for x in lines if x.strip()]
    return [
        (e["message"]["conversation_id"], e["message"]["text"])
        for e in events
        if e.get("type") == "message_received"
    ]


def _texts(profile: Path, conversation_id: str) -> list[str]:
    out = json.loads(_ok(profile, "history", "--group", conversation_id, json_output=True))
    return [m["text"] for m in out["messages"]]


def test_a_classic_group_is_upgraded_and_all_three_talk_in_it(
    server: ServerProcess, tmp_path: Path
) -> None:
    p = {u: tmp_path / "profiles" / u for u in ("bob", "carol")}
    for user, profile in p.items():
        _ok(profile, "account", "create", "--server", server.url, user)
    net = Devices(server.url, tmp_path / "library")

    async def before_pq() -> tuple[str, str]:
        # alice's and olga's clients are from before the PQ suites: classic KeyPackages only.
        await net.account("olga", post_quantum=False)
        alice = await net.account("alice", post_quantum=False)
        team = await alice.create_group("team", ["bob", "carol"])
        mixed = await alice.create_group("mixed", ["bob", "olga"])
        await alice.send_text(team.id, "classic hello")
        await net.close_all()
        return team.id, mixed.id

    old_id, mixed_id = asyncio.run(before_pq())
    p["alice"] = net.profile("alice")  # now run by the doorless program, PQ on by default
    assert _convs(p["alice"])[old_id]["cipher_suite"] == CLASSIC
    for member in ("bob", "carol"):
        assert _received(p[member]) == [(old_id, "classic hello")]

    new = json.loads(_ok(p["alice"], "group", "upgrade", "team", json_output=True))
    new_id = new["id"]
    assert (new["cipher_suite"], new["post_quantum"], new["name"]) == (HYBRID, True, "team")
    assert (new["members"], new["upgraded_from"]) == (["alice", "bob", "carol"], old_id)
    for member in ("bob", "carol"):
        _received(p[member])  # the Welcome and the upgrade notice
    for user in ("alice", "bob", "carol"):
        convs = _convs(p[user])
        assert (convs[old_id]["upgraded_to"], convs[old_id]["cipher_suite"]) == (new_id, CLASSIC)
        assert (convs[new_id]["upgraded_from"], convs[new_id]["post_quantum"]) == (old_id, True)
        assert _texts(p[user], old_id) == ["classic hello"]
    lines = _ok(p["bob"], "conversations").splitlines()
    line = [x for x in lines if x.startswith(old_id[:12])]
    assert line and f"[upgraded to {new_id[:12]}]" in line[0]

    # The group's name now names the successor.
    _ok(p["carol"], "send", "--group", "team", "quantum-safe now")
    assert _received(p["bob"]) == [(new_id, "quantum-safe now")]
    _ok(p["bob"], "send", "--group", "team", "agreed")
    assert _received(p["alice"]) == [(new_id, "quantum-safe now"), (new_id, "agreed")]
    assert _received(p["carol"]) == [(new_id, "agreed")]
    assert _texts(p["carol"], new_id) == ["quantum-safe now", "agreed"]

    # olga cannot do post-quantum: refused, naming her, and nothing changes.
    before = _convs(p["alice"])
    r = run_cli(p["alice"], "group", "upgrade", "mixed", json_output=True)
    assert r.returncode == 1 and "olga" in r.stderr and "user_unavailable" in r.stderr
    assert _convs(p["alice"]) == before
    assert before[mixed_id]["upgraded_to"] is None
    _received(p["bob"])
    assert _convs(p["bob"])[mixed_id]["upgraded_to"] is None
    assert len(_convs(p["bob"])) == 3  # team, its successor, mixed
