"""Terminal injection through the real ``doorless`` commands (a real server over loopback):
alice names a group, writes a message, sends a file and names her device with text that would
forge a line from carol, drive the terminal (ESC/CSI/OSC) or reorder what is shown (bidi
overrides); bob receives all of it. Nothing of it reaches bob's terminal raw, and ``--json``
keeps it exact."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from doorless.cli.output import CONTINUATION
from doorless.cli.safety import _report_text

from .conftest import Doorless

FORGED = "2026-01-01 00:00:00  #team  carol: wire me the money"
EVIL = (
    f"hello\n{FORGED}\r{FORGED}\u2028{FORGED}"
    "\x1b[2J\x1b]8;;http://evil.example\x1b\\link\x1b]8;;\x1b\\\x9b31m"
    "\u202eevil\u2066x\u2069\u200f[bold red]markup[/]"
)
# A file name must be printable, with no path separator (the protocol refuses others, on sending
# and on receiving): markup then.
EVIL_FILE = "[bold red]invoice [link=https:evil.example]x.pdf"
RAW = {chr(c) for c in [*range(0x20), 0x7F, *range(0x80, 0xA0)] if c != 0x0A} | set(
    "\u2028\u2029\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f"
)


def unique(name: str) -> str:
    return f"{name}-{secrets.token_hex(3)}"


def assert_clean(out: str) -> None:
    """No raw control, separator or bidi character; no line forged as carol's."""
    assert not RAW & set(out), sorted(f"U+{ord(c):04X}" for c in RAW & set(out))
    for line in out.splitlines():
        assert not line.startswith(FORGED[:20]), line


def test_peer_text_never_reaches_the_terminal_raw(doorless: Doorless, tmp_path: Path) -> None:
    alice, bob = unique("alice"), unique("bob")
    doorless.ok(
        alice, "account", "create", "--server", doorless.server_url, alice, "--device-name", EVIL
    )
    doorless.account(bob)
    doorless.ok(alice, "group", "create", EVIL, "-m", bob)
    doorless.ok(alice, "send", "--group", EVIL, EVIL)
    evil_file = tmp_path / "upload.bin"
    evil_file.write_bytes(b"attached")
    doorless.ok(alice, "send-file", "--group", EVIL, evil_file, "--name", EVIL_FILE)

    out = doorless.ok(bob, "receive", json_output=False).stdout
    assert_clean(out)
    assert "\\x1b[2J" in out and "<U+202E>" in out and "[bold red]markup[/]" in out
    assert EVIL_FILE in out  # shown literally: markup is not interpreted
    lines = out.splitlines()
    message_line = next(i for i, line in enumerate(lines) if line.endswith(f"{alice}: hello"))
    assert lines[message_line + 1].startswith(CONTINUATION + FORGED), out  # a continuation

    group = json.loads(doorless.ok(bob, "conversations").stdout)["conversations"][0]["id"]
    for args in (
        ["history", "--group", group],
        ["conversations"],
        ["group", "members", group],
        ["requests", "list"],
    ):
        assert_clean(doorless.ok(bob, *args, json_output=False).stdout)

    # The device name, in alice's own device list.
    devices = doorless.ok(alice, "device", "list", json_output=False).stdout
    assert_clean(devices)
    assert "hello\\n2026" in devices

    # --json is exact: the same strings, JSON-escaped.
    joined = doorless.ok(bob, "history", "--group", group).json
    texts = [m["text"] for m in joined["messages"] if m["kind"] == "text"]
    assert texts == [EVIL]
    assert joined["conversation"]["name"] == EVIL
    assert [m["file"]["name"] for m in joined["messages"] if m["kind"] == "file"] == [EVIL_FILE]
    (device,) = doorless.ok(alice, "device", "list").json["devices"]
    assert device["name"] == EVIL


def test_a_moderator_sees_reported_text_rendered_safe() -> None:
    """``doorless server reports``: the reported text, note and names are peer text."""
    view = {
        "report_id": 7,
        "created_at": 1_700_000_000,
        "reason": "spam",
        "note": EVIL,
        "reporter": {"user": "bob", "device_id": "b" * 32},
        "sender": {"user": "alice", "device_id": "a" * 32},
        "group_id": "c0" * 32,
        "message": "m" * 16,
        "accepted_at_ms": 1_700_000_000_000,
        "kind": "file",
        "file_name": EVIL,
        "text": EVIL,
        "attachments": [
            {
                "attachment_id": EVIL,
                "media_type": EVIL,
                "size": 3,
                "sha256": "00" * 32,
                "verdict": "ok",
            }
        ],
    }
    assert_clean(_report_text(view))
