"""Backups through the real ``doorless`` program and the real server process: a backup in
one profile folder, restored into a fresh folder, reads its old history and exchanges new
messages; a conversation left since the backup is reported; damaged, truncated and wrong-key
backups, weak passphrases and live targets are refused with nothing written; and neither the
server nor the backup file holds any message plaintext (I1)."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

from .helpers import ServerProcess, run_cli, scan


def ok(result: Any) -> Any:
    assert result.returncode == 0, result.stderr
    return result


def received(profile: Path) -> list[str]:
    out = ok(run_cli(profile, "receive", json_output=True)).stdout
    events = [json.loads(line) for line in out.splitlines() if line.strip()]
    return [e["message"]["text"] for e in events if e.get("type") == "message_received"]


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


def test_backup_and_restore_through_the_program(server: ServerProcess, tmp_path: Path) -> None:
    profiles = tmp_path / "profiles"
    alice, bob, restored = profiles / "alice", profiles / "bob", profiles / "alice-new"
    canaries = [f"canary-{i}-{secrets.token_hex(12)}" for i in range(4)]
    ok(run_cli(alice, "account", "create", "--server", server.url, "alice"))
    ok(run_cli(bob, "account", "create", "--server", server.url, "bob"))
    ok(run_cli(bob, "group", "create", "team", "--member", "@alice"))
    ok(run_cli(alice, "send", "@bob", f"old {canaries[0]}"))
    assert received(bob) == [f"old {canaries[0]}"]
    ok(run_cli(bob, "send", "@alice", f"old reply {canaries[1]}"))
    assert received(alice) == [f"old reply {canaries[1]}"]

    backup = tmp_path / "alice.backup"
    made = json.loads(ok(run_cli(alice, "backup", "create", backup, json_output=True)).stdout)
    assert made["conversations"] == 2 and made["messages"] == 2
    key = made["recovery_key"]
    assert len(key.replace("-", "")) == 52

    # A passphrase backup: a weak passphrase is refused (no file), a strong one works.
    weak = run_cli(
        alice,
        "backup",
        "create",
        tmp_path / "weak.backup",
        "--passphrase",
        extra_env={"DOORLESS_BACKUP_PASSPHRASE": "password1234"},
    )
    assert weak.returncode == 1 and "common password" in errors(weak.stderr)[0]
    assert not (tmp_path / "weak.backup").exists()
    strong = {"DOORLESS_BACKUP_PASSPHRASE": "violet anchor mango trellis"}
    by_passphrase = tmp_path / "passphrase.backup"
    r = ok(run_cli(alice, "backup", "create", by_passphrase, "--passphrase", extra_env=strong))
    assert "Recovery key" not in r.stdout

    # Since the backup, bob removed alice from the team.
    ok(run_cli(bob, "group", "remove", "team", "@alice"))

    # Damaged, truncated and wrong-key backups are refused, and the target is never created
    # (garbage and wrong passphrases: tests/client/backup).
    data = backup.read_bytes()
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x40
    other_key = "-".join(["AAAA"] * 12 + ["AAAA"])
    for name, content, with_key, expected in [
        ("tampered", bytes(flipped), key, "altered"),
        ("truncated", data[: len(data) - 40], key, "truncated"),
        ("wrong-key", data, other_key, "wrong recovery key"),
    ]:
        bad = tmp_path / f"{name}.backup"
        bad.write_bytes(content)
        r = run_cli(restored, "backup", "restore", bad, "--recovery-key", with_key)
        assert r.returncode == 1, name
        assert expected in errors(r.stderr)[0], (name, r.stderr)
        assert not restored.exists(), name

    # The real restore: history back, the direct conversation rejoined, the team reported.
    r = ok(run_cli(restored, "backup", "restore", backup, "--recovery-key", key, json_output=True))
    report = json.loads(r.stdout)
    assert report["username"] == "alice" and report["messages"] == 2
    assert len(report["rejoined"]) == 1
    (missing,) = report["not_restored"]
    assert missing["name"] == "team" and "removed" in missing["reason"]
    history = json.loads(ok(run_cli(restored, "history", "@bob", json_output=True)).stdout)
    assert [m["text"] for m in history["messages"]] == [
        f"old {canaries[0]}",
        f"old reply {canaries[1]}",
    ]

    ok(run_cli(restored, "send", "@bob", f"new {canaries[2]}"))
    assert received(bob) == [f"new {canaries[2]}"]
    ok(run_cli(bob, "send", "@alice", f"new reply {canaries[3]}"))
    assert f"new reply {canaries[3]}" in received(restored)

    # Restoring over the live profile needs --force, and changes nothing without it.
    before = tree(restored)
    r = run_cli(restored, "backup", "restore", backup, "--recovery-key", key)
    assert r.returncode == 1 and "already holds a profile" in errors(r.stderr)[0]
    assert tree(restored) == before

    # I1: the server never saw plaintext; the backups hold none in clear either.
    server.stop()
    needles = [c.encode() for c in canaries]
    assert scan([server.data_dir, server.log_path], needles) == []
    assert scan([backup, by_passphrase], needles) == []
