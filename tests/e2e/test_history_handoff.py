"""History handoff through the real ``doorless`` program and the real server process: a
new device linked with ``device approve --history days:1`` gets the last day's messages of
every conversation once, marked transferred, and nobody else gets anything; the server holds
no plaintext of them (I1)."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from pathlib import Path
from typing import Any

from .helpers import PASSPHRASE, ServerProcess, doorless_command, run_cli, scan


def ok(result: Any) -> Any:
    assert result.returncode == 0, result.stderr
    return result


def events(profile: Path) -> list[dict[str, Any]]:
    out = ok(run_cli(profile, "receive", json_output=True)).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def received(profile: Path) -> list[str]:
    return [e["message"]["text"] for e in events(profile) if e.get("type") == "message_received"]


def history(profile: Path, *target: str) -> list[dict[str, Any]]:
    out = ok(run_cli(profile, "history", *target, json_output=True)).stdout
    messages: list[dict[str, Any]] = json.loads(out)["messages"]
    return messages


def test_history_handoff_through_the_program(server: ServerProcess, tmp_path: Path) -> None:
    p = {n: tmp_path / "profiles" / n for n in ("alice", "bob", "carol", "alice2")}
    canaries = [f"canary-{i}-{secrets.token_hex(12)}" for i in range(3)]
    for name in ("alice", "bob", "carol"):
        ok(run_cli(p[name], "account", "create", "--server", server.url, name))
    ok(run_cli(p["alice"], "group", "create", "team", "--member", "@bob", "--member", "@carol"))
    ok(run_cli(p["alice"], "send", "@bob", f"direct {canaries[0]}"))
    ok(run_cli(p["alice"], "send", "--group", "team", f"team {canaries[1]}"))
    assert received(p["bob"]) == [f"direct {canaries[0]}", f"team {canaries[1]}"]
    ok(run_cli(p["bob"], "send", "@alice", f"reply {canaries[2]}"))
    assert received(p["alice"]) == [f"reply {canaries[2]}"]
    assert received(p["carol"]) == [f"team {canaries[1]}"]

    # alice links a second device and hands it the last day's history.
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOORLESS_")}
    env["DOORLESS_PASSPHRASE"] = PASSPHRASE
    link = subprocess.Popen(
        [
            *doorless_command(),
            *("--profile", str(p["alice2"]), "--json", "device", "link"),
            *("--server", server.url, "alice", "--timeout", "90"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert link.stdout is not None
    requested = json.loads(link.stdout.readline())
    approved = ok(
        run_cli(
            p["alice"],
            "device",
            "approve",
            requested["code"],
            "--fingerprint",
            requested["fingerprint"],
            "--history",
            "days:1",
            json_output=True,
        )
    )
    handed = json.loads(approved.stdout)["history"]
    assert (handed["messages"], handed["conversations"]) == (3, 2)
    assert link.wait(90) == 0

    # receive shows what was stored since the last receive: the transferred messages, as such.
    got = events(p["alice2"])
    assert not [e for e in got if e.get("type") == "delivery_failed"]
    shown = [e["message"] for e in got if e.get("type") == "message_received"]
    assert sorted(m["text"] for m in shown) == sorted(
        [f"direct {canaries[0]}", f"team {canaries[1]}", f"reply {canaries[2]}"]
    )
    assert all(m["transferred"] for m in shown)
    direct = history(p["alice2"], "@bob")
    assert [(m["text"], m["transferred"]) for m in direct] == [
        (f"direct {canaries[0]}", True),
        (f"reply {canaries[2]}", True),
    ]
    team = history(p["alice2"], "--group", "team")
    assert [(m["text"], m["transferred"]) for m in team] == [(f"team {canaries[1]}", True)]
    text = ok(run_cli(p["alice2"], "history", "@bob")).stdout
    assert "(transferred)" in text

    # Exactly once: nothing more on the next receive; the others got nothing at all.
    assert events(p["alice2"]) == []
    assert len(history(p["alice2"], "@bob")) == 2
    for other in ("bob", "carol"):
        got = events(p[other])
        assert not [e for e in got if e.get("type") in ("message_received", "delivery_failed")]
    # alice's own history is not touched by the handoff.
    assert [m["transferred"] for m in history(p["alice"], "@bob")] == [False, False]

    server.stop()
    needles = [c.encode() for c in canaries]
    assert scan([server.data_dir, server.log_path], needles) == []
