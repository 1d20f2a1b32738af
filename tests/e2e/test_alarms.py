"""Alarms people can trust, through the real ``doorless`` program and the real server process:
what someone with write access to the server's database can do (a ghost device row, a
swapped key, a rolled-back log) is caught, alarmed once and stored until acknowledged, and
never stops the rest of the client from working; a contact's ordinary device link is a
roster notice shown exactly once, not an alarm."""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from doorless.client.conversations import CONVERSATION_INFO_EXTENSION
from doorless.client.safety import DISAPPEARING_EXTENSION
from doorless.client.transport import DeviceIdentity
from doorless.codec import encode
from doorless.crypto import cipher_suite
from doorless.mls.credential import BasicCredential, CredentialType
from doorless.mls.framing import MLSMessage
from doorless.mls.group import generate_key_package
from doorless.mls.group_context import ProtocolVersion
from doorless.mls.leaf_node import Capabilities
from doorless.wire.kt import credential_identity

from .helpers import ServerProcess, run_cli
from .test_cli_process import LineReader, lines, of_type, spawn

# The extensions a Doorless client announces (doorless.client.core.Session.capabilities).
_EXTENSIONS = (CONVERSATION_INFO_EXTENSION, DISAPPEARING_EXTENSION)


@pytest.fixture
def server(tmp_path: Path) -> Any:
    s = ServerProcess(tmp_path / "server", tmp_path / "server.log")
    s.start()
    try:
        yield s
    finally:
        s.stop()


def _key_package(username: str, signer: DeviceIdentity, device_id: str) -> bytes:
    """An MLSMessage(KeyPackage) signed by ``signer`` whose credential names
    ``username``/``device_id``, with a Doorless client's capabilities."""
    bundle = generate_key_package(
        cipher_suite(1),
        BasicCredential(credential_identity(username, device_id)),
        signer.private_key,
        now=int(time.time()),
        capabilities=Capabilities(
            versions=(ProtocolVersion.mls10,),
            cipher_suites=(1,),
            extensions=_EXTENSIONS,
            proposals=(),
            credentials=(int(CredentialType.basic),),
        ),
    )
    return encode(MLSMessage(bundle.key_package))


def _db(server: ServerProcess) -> sqlite3.Connection:
    return sqlite3.connect(server.database, timeout=30)


def write_ghost_row(server: ServerProcess, username: str) -> str:
    """What a coerced operator does: a device row written straight into the database for
    ``username`` (a junk approval, not in the transparency log), with a KeyPackage."""
    ghost = DeviceIdentity.generate()
    conn = _db(server)
    try:
        ((approver,),) = conn.execute(
            "SELECT device_id FROM devices WHERE username = ? ORDER BY created_at LIMIT 1",
            (username,),
        ).fetchall()
        conn.execute(
            "INSERT INTO devices (device_id, username, device_key, approved_by, "
            "approval_signature, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (ghost.device_id, username, ghost.public_key, approver, b"\0" * 64, int(time.time())),
        )
        conn.execute(
            "INSERT INTO key_packages (device_id, data, last_resort) VALUES (?, ?, ?)",
            (ghost.device_id, _key_package(username, ghost, ghost.device_id), False),
        )
        conn.commit()
    finally:
        conn.close()
    return ghost.device_id


def _device_id(server: ServerProcess, username: str) -> str:
    conn = _db(server)
    try:
        ((device_id,),) = conn.execute(
            "SELECT device_id FROM devices WHERE username = ?", (username,)
        ).fetchall()
        return str(device_id)
    finally:
        conn.close()


def _ok(r: Any) -> Any:
    assert r.returncode == 0, r.stderr
    return r


def _events(profile: Path, *args: str) -> list[dict[str, Any]]:
    return lines(_ok(run_cli(profile, *args, json_output=True)).stdout)


def _alarms(profile: Path) -> list[dict[str, Any]]:
    alarms: list[dict[str, Any]] = _events(profile, "alarms")[0]["alarms"]
    return alarms


def _accounts(server: ServerProcess, tmp_path: Path, *names: str) -> dict[str, Path]:
    p = {name: tmp_path / "profiles" / name for name in names}
    for name in names:
        _ok(run_cli(p[name], "account", "create", "--server", server.url, name))
    return p


def _history_texts(call: Any, user: str) -> list[str]:
    return [m["text"] for m in call("history", user=user)["result"]["messages"]]


def test_ghost_device_row_is_alarmed_once_and_stops_nothing(
    server: ServerProcess, tmp_path: Path
) -> None:
    p = _accounts(server, tmp_path, "alice", "bob")
    _ok(run_cli(p["alice"], "send", "@bob", "hello"))
    _events(p["bob"], "receive")
    _ok(run_cli(p["bob"], "disappearing", "@alice", "4s"))
    _events(p["alice"], "receive")

    ghost = write_ghost_row(server, "bob")

    # Alice: the ghost's KeyPackage is left out, and she is warned (once, at her next
    # receive: the send itself shows no events).
    r = _ok(run_cli(p["alice"], "group", "create", "team", "--member", "@bob"))
    assert f"{ghost[:8]}" in r.stderr and "was left out" in r.stderr  # seen at once
    _ok(run_cli(p["alice"], "send", "@bob", "this one disappears"))
    got = _events(p["alice"], "receive")
    (skipped,) = of_type(got, "device_skipped")
    assert skipped["device"]["device_id"] == ghost
    assert "transparency log" in skipped["detail"]
    assert not of_type(got, "transparency_alarm")
    assert not of_type(_events(p["alice"], "receive"), "device_skipped")  # once

    # Bob: receive works (exit 0, messages shown at once), the ghost is alarmed once.
    got = _events(p["bob"], "receive")
    texts = [x["message"]["text"] for x in of_type(got, "message_received")]
    assert texts == ["this one disappears"]
    assert of_type(got, "conversation_joined")
    (alarm,) = of_type(got, "transparency_alarm")
    assert (alarm["kind"], alarm["device"]["device_id"]) == ("unapproved_device", ghost)
    assert "revoke" in alarm["advice"]
    assert not of_type(_events(p["bob"], "receive"), "transparency_alarm")  # not again
    assert [a["id"] for a in _alarms(p["bob"])] == [alarm["id"]]  # listed until acknowledged
    text = _ok(run_cli(p["bob"], "alarms")).stdout
    assert "KEY TRANSPARENCY ALARM: unapproved_device" in text and "revoke" in text

    # Sending, the daemon's maintenance (disappearing-message expiry) keep working.
    _ok(run_cli(p["bob"], "send", "@alice", "still working"))
    got = _events(p["alice"], "receive")
    assert [x["message"]["text"] for x in of_type(got, "message_received")] == ["still working"]
    daemon = spawn(p["bob"], "daemon", "--json-rpc", json_output=False)
    assert daemon.stdin is not None and daemon.stdout is not None
    answers = LineReader(daemon.stdout)
    counter = iter(range(1, 1000))

    def call(method: str, **params: Any) -> dict[str, Any]:
        assert daemon.stdin is not None
        id_ = next(counter)
        body = {"jsonrpc": "2.0", "id": id_, "method": method, "params": params}
        daemon.stdin.write(json.dumps(body) + "\n")
        daemon.stdin.flush()
        while True:
            message = answers.next()
            if message.get("id") == id_:
                return message

    try:
        assert [a["id"] for a in call("listAlarms")["result"]["alarms"]] == [alarm["id"]]
        deadline = time.monotonic() + 60
        while "this one disappears" in _history_texts(call, "@alice"):
            assert time.monotonic() < deadline, "the expired message was never deleted"
            time.sleep(0.5)
        assert call("ackAlarms", all=True)["result"]["acknowledged"] == [alarm["id"]]
        assert call("listAlarms")["result"]["alarms"] == []
    finally:
        daemon.stdin.close()
        assert daemon.wait(60) == 0
    # Acknowledged: the same finding raises no alarm again.
    assert not of_type(_events(p["bob"], "receive"), "transparency_alarm")
    assert _alarms(p["bob"]) == []


def test_swapped_key_is_a_key_mismatch_alarm(server: ServerProcess, tmp_path: Path) -> None:
    p = _accounts(server, tmp_path, "alice", "bob")
    bob_device = _device_id(server, "bob")
    # The operator replaces bob's KeyPackages by one naming bob's device, with its own key.
    attacker = DeviceIdentity.generate()
    conn = _db(server)
    try:
        conn.execute("DELETE FROM key_packages WHERE device_id = ?", (bob_device,))
        conn.execute(
            "INSERT INTO key_packages (device_id, data, last_resort) VALUES (?, ?, ?)",
            (bob_device, _key_package("bob", attacker, bob_device), True),
        )
        conn.commit()
    finally:
        conn.close()
    r = run_cli(p["alice"], "send", "@bob", "for bob only")
    assert r.returncode == 1 and "no device" in r.stderr, r.stderr  # nothing for the attacker
    # Shown by the next receive (the failed send showed no events), then never again.
    (alarm,) = of_type(_events(p["alice"], "receive"), "transparency_alarm")
    assert (alarm["kind"], alarm["device"]["device_id"]) == ("key_mismatch", bob_device)
    assert "safety numbers" in alarm["advice"]
    assert not of_type(_events(p["alice"], "receive"), "transparency_alarm")
    assert [a["id"] for a in _alarms(p["alice"])] == [alarm["id"]]  # until acknowledged


def test_rolled_back_log_is_a_rollback_alarm(server: ServerProcess, tmp_path: Path) -> None:
    p = _accounts(server, tmp_path, "alice", "bob")
    server.stop()
    snapshot = tmp_path / "snapshot"
    shutil.copytree(server.data_dir, snapshot)
    server.start()
    _accounts(server, tmp_path, "carol")  # the log grows ...
    _ok(run_cli(p["alice"], "verify", "@carol", "--no-qr"))  # ... and alice verified it
    server.stop()
    shutil.rmtree(server.data_dir)
    shutil.copytree(snapshot, server.data_dir)  # the operator restores an old database
    server.start()
    r = run_cli(p["alice"], "receive", json_output=True)
    said = r.stdout + r.stderr
    assert "rollback" in said or "went back" in said, said
    assert "older log" in said  # what to do
    kinds = [a["kind"] for a in _alarms(p["alice"])]
    assert kinds == ["rollback"]
    r = run_cli(p["alice"], "receive", json_output=True)
    assert not of_type(lines(r.stdout), "transparency_alarm")  # not on every command


def test_benign_link_is_a_roster_notice_shown_once(server: ServerProcess, tmp_path: Path) -> None:
    p = _accounts(server, tmp_path, "alice", "bob")
    p["bob2"] = tmp_path / "profiles" / "bob2"
    _ok(run_cli(p["alice"], "send", "@bob", "hello"))
    _events(p["bob"], "receive")
    _ok(run_cli(p["alice"], "verify", "@bob", "--confirm", "--no-qr"))

    # Bob links a laptop, approved by his phone (and so published in the log by it).
    link = spawn(p["bob2"], "device", "link", "--server", server.url, "bob", "--timeout", "90")
    assert link.stdout is not None
    reader = LineReader(link.stdout)
    requested = reader.next()
    _ok(
        run_cli(
            p["bob"],
            "device",
            "approve",
            requested["code"],
            "--fingerprint",
            requested["fingerprint"],
        )
    )
    assert reader.next()["type"] == "linked"
    assert link.wait(60) == 0

    # Alice sends before she receives: the change is still shown, once, and is no alarm.
    r = _ok(run_cli(p["alice"], "send", "@bob", "to both of bob's devices"))
    assert "ALARM" not in r.stdout + r.stderr
    got = _events(p["alice"], "receive")
    assert not of_type(got, "transparency_alarm")
    notices = [x for x in of_type(got, "device_changed") if x["notice"]]
    assert [(x["device"]["device_id"], x["change"]) for x in notices] == [
        (requested["device_id"], "linked")
    ]
    again = _events(p["alice"], "receive") + _events(p["alice"], "receive")
    assert not [x for x in of_type(again, "device_changed") if x["notice"]]
    assert _alarms(p["alice"]) == []
    text_profile = tmp_path / "profiles" / "alice"
    assert "ALARM" not in _ok(run_cli(text_profile, "receive")).stdout
    # The laptop got the message; the safety number says it changed (compare again).
    got = _events(p["bob2"], "receive")
    assert "to both of bob's devices" in [
        x["message"]["text"] for x in of_type(got, "message_received")
    ]
    verify = _events(p["alice"], "verify", "@bob", "--no-qr")[0]
    assert verify["status"] == "changed"

    # Bob revokes the laptop: alice, sending first again, is told once.
    _ok(run_cli(p["bob"], "device", "revoke", requested["device_id"]))
    _ok(run_cli(p["alice"], "send", "@bob", "to bob's phone only"))
    # This time a daemon started afterwards shows it (takeNotices), and then nothing does.
    daemon = spawn(p["alice"], "daemon", "--json-rpc", json_output=False)
    assert daemon.stdin is not None and daemon.stdout is not None
    answers = LineReader(daemon.stdout)

    def call(id_: int, method: str) -> dict[str, Any]:
        assert daemon.stdin is not None
        body = {"jsonrpc": "2.0", "id": id_, "method": method, "params": {}}
        daemon.stdin.write(json.dumps(body) + "\n")
        daemon.stdin.flush()
        while (message := answers.next()).get("id") != id_:
            pass
        return message

    try:
        got = call(1, "takeNotices")["result"]["events"]
        assert not of_type(got, "transparency_alarm")
        notices = [x for x in of_type(got, "device_changed") if x["notice"]]
        assert [(x["device"]["device_id"], x["change"]) for x in notices] == [
            (requested["device_id"], "revoked")
        ]
        assert call(2, "takeNotices")["result"]["events"] == []
    finally:
        daemon.stdin.close()
        assert daemon.wait(60) == 0
    assert not [x for x in of_type(_events(p["alice"], "receive"), "device_changed") if x["notice"]]
