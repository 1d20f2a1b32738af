"""The messaging commands against a real server over loopback, run in-process.

Every command is run with ``--json`` (its output is checked as data) unless the text form is
what is tested. Users get unique names: the server is shared by the module.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from pathlib import Path

import pytest

from support.servers import free_port

from .conftest import Doorless


def unique(name: str) -> str:
    return f"{name}-{secrets.token_hex(3)}"


@pytest.fixture
def trio(doorless: Doorless) -> tuple[str, str, str]:
    names = (unique("alice"), unique("bob"), unique("carol"))
    for n in names:
        doorless.account(n)
    return names


@pytest.fixture(scope="module")
def loner(shared: Doorless) -> str:
    name = unique("loner")
    shared.account(name)
    return name


def received(lines: list[dict[str, object]]) -> list[str]:
    """The texts (or file names) of the message_received lines of ``receive --json``."""
    out = []
    for line in lines:
        if line["type"] == "message_received":
            m = line["message"]
            assert isinstance(m, dict)
            out.append(m["text"] if m["kind"] == "text" else m["file"]["name"])
    return out


# --- accounts and errors ----------------------------------------------------------------------


def test_account_create_and_info(doorless: Doorless) -> None:
    name = unique("dana")
    created = doorless.account(name).json
    assert created["username"] == name
    assert created["server_url"] == doorless.server_url
    assert len(created["device_id"]) == 32
    info = doorless.ok(name, "account", "info").json
    assert info == created
    text = doorless.ok(name, "account", "info", json_output=False).stdout
    assert f"@{name}" in text and created["fingerprint"] in text


def test_account_create_twice_is_refused(doorless: Doorless) -> None:
    name = unique("erin")
    doorless.account(name)
    again = doorless(name, "account", "create", "--server", doorless.server_url, name)
    assert again.exit_code == 1
    assert again.error["error"] == "invalid_state"


def test_taken_username(doorless: Doorless) -> None:
    name = unique("fred")
    doorless.account(name)
    r = doorless("other", "account", "create", "--server", doorless.server_url, name)
    assert r.exit_code == 1
    assert r.error == {"error": "conflict", "message": "this username is taken"}


def test_unknown_user_is_one_line_and_exit_1(shared: Doorless, loner: str) -> None:
    r = shared(loner, "send", "@nobody-here", "hi", json_output=False)
    assert r.exit_code == 1
    assert r.stderr == "error: unknown user @nobody-here\n"
    assert r.stdout == ""
    r = shared(loner, "group", "create", "g", "--member", "nobody-here")
    assert r.exit_code == 1 and r.error["error"] == "unknown_user"


def test_wrong_passphrase(shared: Doorless, loner: str) -> None:
    r = shared.with_passphrase("not it")(loner, "conversations", json_output=False)
    assert r.exit_code == 1
    assert r.stderr.startswith("error: wrong passphrase for profile ")
    assert r.stderr.count("\n") == 1


def test_no_passphrase_without_a_terminal(shared: Doorless, loner: str) -> None:
    r = shared.with_passphrase(None)(loner, "conversations")
    assert r.exit_code == 1
    assert r.error["error"] == "no_passphrase"
    assert "DOORLESS_PASSPHRASE" in r.error["message"]


def test_no_profile(doorless: Doorless) -> None:
    r = doorless("never-created", "conversations")
    assert r.exit_code == 1
    assert r.error["error"] == "no_account"
    assert not doorless.profile("never-created").exists()  # nothing created by the attempt


def test_server_unreachable(doorless: Doorless) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    r = doorless("ghost", "account", "create", "--server", dead, unique("ghost"))
    assert r.exit_code == 1
    assert r.error["error"] == "server_unreachable"
    assert r.error["message"].startswith("cannot reach the server")


@pytest.mark.parametrize(
    "args",
    [
        ["send"],  # no conversation
        ["send", "@bob", "hi", "--group", "g"],  # two conversations
        ["send-file", "@bob", "/definitely/not/a/file"],
        ["history"],
        ["daemon"],  # neither --json-rpc nor --socket
        ["download", "abc"],  # id too short
    ],
    ids=lambda a: "-".join(a),
)
def test_usage_errors_exit_2(loner: str, shared: Doorless, args: list[str]) -> None:
    r = shared(loner, *args, json_output=False)
    assert r.exit_code == 2, (r.stdout, r.stderr)
    assert r.stderr.startswith("error: ") or "Usage" in r.stderr


# --- messaging --------------------------------------------------------------------------------


def test_direct_group_file_receive_history(
    doorless: Doorless, trio: tuple[str, str, str], tmp_path: Path
) -> None:
    alice, bob, carol = trio
    sent = doorless.ok(alice, "send", f"@{bob}", "hello bob").json
    assert sent["state"] == "sent" and sent["outgoing"] and sent["text"] == "hello bob"

    group = doorless.ok(alice, "group", "create", "team", "--member", f"@{bob}", "-m", carol).json
    assert group["kind"] == "group" and group["members"] == sorted([alice, bob, carol])
    doorless.ok(alice, "send", "--group", "team", "hi team")
    doorless.ok(alice, "send", "--group", group["id"][:10], stdin="from stdin\n")
    # bob: the direct conversation, the group.
    lines = doorless.ok(bob, "receive").lines
    assert [x["type"] for x in lines].count("conversation_joined") == 2
    assert received(lines) == ["hello bob", "hi team", "from stdin"]
    assert doorless.ok(bob, "receive").lines == []  # each message once

    payload = os.urandom(200_000)
    source = tmp_path / "data.bin"
    source.write_bytes(payload)
    file_msg = doorless.ok(bob, "send-file", "--group", "team", source).json
    assert file_msg["file"]["size"] == len(payload)
    assert file_msg["file"]["sha256"] == hashlib.sha256(payload).hexdigest()

    # alice started the group: its files are saved as they arrive.
    downloads = tmp_path / "alice-files"
    lines = doorless.ok(alice, "receive", "--download", downloads).lines
    assert received(lines) == ["data.bin"]
    saved = [x["saved_to"] for x in lines if "saved_to" in x]
    assert [Path(p).read_bytes() for p in saved] == [payload]

    # For carol the group is a message request (alice is not a contact of hers yet): nothing
    # is downloaded by itself until she accepts it; then she downloads the file by its id.
    lines = doorless.ok(carol, "receive", "--download", tmp_path / "carol-files").lines
    assert received(lines) == ["hi team", "from stdin", "data.bin"]
    assert [x for x in lines if "saved_to" in x] == []
    assert not (tmp_path / "carol-files").exists() or not any((tmp_path / "carol-files").iterdir())
    doorless.ok(carol, "requests", "accept", f"@{alice}")
    out = tmp_path / "carol-copy.bin"
    got = doorless.ok(carol, "download", file_msg["message_id"][:12], "--output", out).json
    assert got["path"] == str(out) and out.read_bytes() == payload

    history = doorless.ok(carol, "history", "--group", "team").json
    assert [m["text"] for m in history["messages"]] == ["hi team", "from stdin", None]
    text = doorless.ok(bob, "history", f"@{alice}", json_output=False).stdout
    assert "hello bob" in text and f"@{alice}" in text

    convs = doorless.ok(bob, "conversations").json["conversations"]
    assert sorted(c["kind"] for c in convs) == ["direct", "group"]


def test_group_membership_commands(doorless: Doorless, trio: tuple[str, str, str]) -> None:
    alice, bob, carol = trio
    doorless.ok(alice, "group", "create", "club", "-m", bob)
    members = doorless.ok(alice, "group", "members", "club").json
    assert [m["user"] for m in members["members"]] == sorted([alice, bob])

    doorless.ok(alice, "group", "add", "club", f"@{carol}")
    doorless.ok(alice, "group", "rename", "club", "club2")
    after = doorless.ok(alice, "group", "remove", "club2", bob).json
    assert after["members"] == sorted([alice, carol]) and after["name"] == "club2"

    lines = doorless.ok(bob, "receive").lines
    kinds = [x["type"] for x in lines]
    assert kinds[0] == "conversation_joined"
    assert "membership_changed" in kinds and "conversation_updated" in kinds
    removed = [x for x in lines if x["type"] == "membership_changed" and x["removed_users"]]
    assert removed and removed[-1]["removed_users"] == [bob]

    r = doorless(bob, "send", "--group", "club2", "still here?")
    assert r.exit_code == 1 and r.error["error"] == "not_a_member"
    r = doorless(alice, "group", "members", "no-such-group")
    assert r.exit_code == 1 and r.error["error"] == "unknown_conversation"


def test_sending_before_receiving_finds_the_invitation(
    doorless: Doorless, trio: tuple[str, ...]
) -> None:
    """A group (or a direct conversation) someone else started is fetched when a send names
    it; the messages that came with it are shown by the next receive."""
    alice, bob, carol = trio
    doorless.ok(alice, "group", "create", "fresh", "-m", bob)
    doorless.ok(alice, "send", "--group", "fresh", "welcome")
    doorless.ok(bob, "send", "--group", "fresh", "thanks")
    doorless.ok(carol, "send", f"@{alice}", "hi alice")
    doorless.ok(alice, "send", f"@{carol}", "hi carol")  # joins carol's conversation
    assert len(doorless.ok(alice, "conversations").json["conversations"]) == 2
    assert received(doorless.ok(bob, "receive").lines) == ["welcome"]
    assert received(doorless.ok(carol, "receive").lines) == ["hi carol"]


def test_ambiguous_group_names_need_the_id(doorless: Doorless, trio: tuple[str, ...]) -> None:
    alice, bob, _ = trio
    first = doorless.ok(alice, "group", "create", "twin", "-m", bob).json
    doorless.ok(alice, "group", "create", "twin", "-m", bob)
    r = doorless(alice, "send", "--group", "twin", "which one?")
    assert r.exit_code == 1 and r.error["error"] == "ambiguous"
    doorless.ok(alice, "send", "--group", first["id"], "this one")


def test_receive_shows_messages_another_command_fetched(
    doorless: Doorless, trio: tuple[str, ...]
) -> None:
    """bob's ``send`` loses the epoch to alice's rename and so processes alice's queued
    message first; bob's next ``receive`` still shows it (the cursor), once."""
    alice, bob, _ = trio
    doorless.ok(alice, "group", "create", "race", "-m", bob)
    doorless.ok(bob, "receive")
    doorless.ok(alice, "group", "rename", "race", "race2")
    doorless.ok(alice, "send", "--group", "race2", "before bob's reply")
    doorless.ok(bob, "send", "--group", "race", "bob's reply")  # still the old name for bob
    lines = doorless.ok(bob, "receive").lines
    assert received(lines) == ["before bob's reply"]
    assert received(doorless.ok(alice, "receive").lines) == ["bob's reply"]
    assert doorless.ok(bob, "receive").lines == []


def test_text_output_of_receive(doorless: Doorless, trio: tuple[str, ...]) -> None:
    alice, bob, _ = trio
    doorless.ok(alice, "send", f"@{bob}", "plain text please")
    out = doorless.ok(bob, "receive", json_output=False).stdout.splitlines()
    assert out[0] == f"joined @{alice} ({', '.join(sorted([alice, bob]))}) by {alice}"
    assert out[1].endswith(f"@{alice}  {alice}: plain text please")


def test_receive_with_a_timeout_listens_then_exits(
    doorless: Doorless, trio: tuple[str, ...]
) -> None:
    """``--timeout S`` fetches, then listens (WebSocket) until S seconds pass quietly."""
    alice, bob, _ = trio
    doorless.ok(alice, "send", f"@{bob}", "first")
    started = time.monotonic()
    lines = doorless.ok(bob, "receive", "--timeout", "1").lines
    assert received(lines) == ["first"]
    assert 1 <= time.monotonic() - started < 30
    assert doorless.ok(bob, "receive", "--timeout", "0.5").lines == []
