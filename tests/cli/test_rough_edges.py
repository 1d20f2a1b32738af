"""Rough edges of the commands, each against a real server over loopback (in-process runs):
usernames in capitals, the disappearing-timer change as it is shown, expired messages gone
from ``history`` without the network, errors free of library names, device names."""

from __future__ import annotations

import asyncio
import secrets
import time

import pytest

from doorless.client import Client, ClientOptions

from .conftest import FAST_ARGON2, PASSPHRASE, Doorless


def unique(name: str) -> str:
    return f"{name}-{secrets.token_hex(3)}"


def test_a_username_in_capitals_names_the_same_user(doorless: Doorless) -> None:
    alice, bob = unique("alice"), unique("bob")
    doorless.account(alice)
    doorless.account(bob)
    doorless.ok(alice, "send", f"@{bob.upper()}", "one")
    doorless.ok(alice, "send", f"@{bob}", "two")
    conversations = doorless.ok(alice, "conversations").json["conversations"]
    assert [c["members"] for c in conversations] == [sorted([alice, bob])]
    history = doorless.ok(alice, "history", f"@{bob.capitalize()}").json["messages"]
    assert [m["text"] for m in history] == ["one", "two"]


@pytest.mark.parametrize(
    "args",
    [
        ["send", "@\u212aarl", "hi"],  # Kelvin sign, not K
        ["verify", "@b\u00f6b"],
        ["history", "@bob smith"],
        ["block", "@\u212aarl"],
        ["group", "create", "g", "-m", "@x"],
    ],
    ids=["send", "verify", "history", "block", "group"],
)
def test_a_look_alike_username_is_refused_with_a_hint(doorless: Doorless, args: list[str]) -> None:
    alice = unique("alice")
    doorless.account(alice)
    r = doorless(alice, *args, json_output=False)
    assert r.exit_code == 2
    assert r.stderr.startswith("error: not a username") and "lowercase ASCII" in r.stderr


def test_the_timer_change_is_shown_as_such(doorless: Doorless) -> None:
    alice, bob = unique("alice"), unique("bob")
    doorless.account(alice)
    doorless.account(bob)
    doorless.ok(alice, "group", "create", "timers", "-m", bob)
    doorless.ok(bob, "receive")
    doorless.ok(alice, "disappearing", "--group", "timers", "1h")
    out = doorless.ok(bob, "receive", json_output=False).stdout
    assert out.splitlines() == [f"#timers: disappearing messages 1h by {alice}"]
    doorless.ok(alice, "group", "rename", "timers", "clocks")
    doorless.ok(alice, "disappearing", "--group", "clocks", "off")
    out = doorless.ok(bob, "receive", json_output=False).stdout
    assert out.splitlines() == [
        f"#clocks: renamed to #clocks by {alice}",
        f"#clocks: disappearing messages off by {alice}",
    ]


def test_expired_messages_vanish_from_history_without_the_network(doorless: Doorless) -> None:
    alice, bob = unique("alice"), unique("bob")
    doorless.account(alice)
    doorless.account(bob)
    doorless.ok(alice, "send", f"@{bob}", "lasting")
    doorless.ok(bob, "receive")
    doorless.ok(alice, "disappearing", f"@{bob}", "1s")
    doorless.ok(alice, "send", f"@{bob}", "fleeting")
    doorless.ok(bob, "receive")
    time.sleep(1.5)
    # An unreachable server: history does not use the network to drop what expired.
    offline = Doorless(doorless.root, "http://127.0.0.1:9")
    for name in (alice, bob):
        texts = [
            m["text"]
            for m in offline.ok(name, "history", f"@{bob if name == alice else alice}").json[
                "messages"
            ]
        ]
        assert "fleeting" not in texts and "lasting" in texts, (name, texts)


def test_no_library_names_in_errors(doorless: Doorless) -> None:
    name = unique("erin")
    doorless.account(name)
    again = doorless(
        name, "account", "create", "--server", doorless.server_url, name, json_output=False
    )
    assert again.exit_code == 1
    assert again.stderr.startswith("error: this profile already has an account")
    assert "Client" not in again.stderr and "open" not in again.stderr


def test_device_list_shows_the_device_name(doorless: Doorless) -> None:
    name = unique("dana")
    doorless.ok(
        name, "account", "create", "--server", doorless.server_url, name, "--device-name", "phone"
    )
    out = doorless.ok(name, "device", "list", json_output=False).stdout
    assert out.startswith("* ") and out.rstrip().endswith("  active  phone")
    (device,) = doorless.ok(name, "device", "list").json["devices"]
    assert device["name"] == "phone"


async def _link(doorless: Doorless, owner: str, new: str) -> str:
    """A second device of ``owner`` in profile ``new`` (linked with the client library);
    its device id."""
    options = ClientOptions(argon2=FAST_ARGON2, key_package_target=5)
    link = await Client.begin_link(
        doorless.profile(new),
        PASSPHRASE,
        server_url=doorless.server_url,
        username=owner,
        options=options,
    )
    async with await Client.open(doorless.profile(owner), PASSPHRASE, options=options) as old:
        pending = await old.get_link(link.code)
        device, _ = await asyncio.gather(
            link.complete(timeout=30, poll_interval=0.05),
            old.approve_link(pending, key_package_timeout=30),
        )
    device_id: str = device.device_id
    await device.close()
    return device_id


def test_a_revoked_device_is_told_it_was_revoked(doorless: Doorless) -> None:
    alice = unique("alice")
    doorless.account(alice)
    phone = asyncio.run(_link(doorless, alice, f"{alice}-phone"))
    doorless.ok(f"{alice}-phone", "receive")
    doorless.ok(alice, "device", "revoke", phone)
    r = doorless(f"{alice}-phone", "receive")
    assert r.exit_code == 1
    assert r.error["error"] == "device_revoked"
    text = doorless(f"{alice}-phone", "receive", json_output=False)
    assert text.stderr.startswith("error: this device was revoked from its account")
