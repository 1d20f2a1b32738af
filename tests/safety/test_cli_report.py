"""End to end over real processes: a ``doorless server`` on loopback, Bob reporting a message of
Alice's with the ``doorless`` CLI, the moderator reading it with ``doorless server reports``,
and a canary scan of everything the server wrote (database, WAL, blobs, its log): the reported
message's plaintext is in the report and nowhere else, no other message's plaintext is anywhere.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from client.harness import FAST_ARGON2, PASSPHRASE
from doorless.client import Client, ClientOptions

from .harness import canary

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

STARTUP_TIMEOUT = 30.0
CLI = [sys.executable, "-m", "doorless.cli.main"]
SERVER = [*CLI, "server"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@asynccontextmanager
async def server_process(data_dir: Path, log: Path) -> AsyncIterator[str]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [*SERVER, "--data-dir", str(data_dir), "--port", str(port), "--log-level", "debug"],
            stdout=err,
            stderr=err,
        )
        try:
            async with httpx.AsyncClient() as http, asyncio.timeout(STARTUP_TIMEOUT):
                while True:
                    assert proc.poll() is None, log.read_text()
                    try:
                        if (await http.get(url + "/v1/info")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    await asyncio.sleep(0.1)
            yield url
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def doorless(*args: str, profile: Path | None = None) -> Any:
    """Run ``doorless --json ...``; the parsed JSON lines of its output."""
    command = [*CLI, "--json"]
    if profile is not None:
        command += ["--profile", str(profile)]
    env = {**os.environ, "DOORLESS_PASSPHRASE": PASSPHRASE}
    done = subprocess.run(
        [*command, *args], capture_output=True, env=env, timeout=120, check=False, text=True
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def scan(root: Path, needles: list[bytes]) -> dict[bytes, list[str]]:
    hits: dict[bytes, list[str]] = {n: [] for n in needles}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            for n in needles:
                if n in data:
                    hits[n].append(str(path.relative_to(root)))
    return hits


async def test_bob_reports_alices_message_with_the_cli(tmp_path: Path) -> None:
    data_dir, log = tmp_path / "server", tmp_path / "server.log"
    reported, unreported, other_file = canary(), canary(), canary()
    options = ClientOptions(push=False, argon2=FAST_ARGON2, key_package_target=5)
    async with server_process(data_dir, log) as url:
        # Accounts made with the client library (fast key derivation for the test).
        profiles = {name: tmp_path / name for name in ("alice", "bob")}
        alice = await Client.create_account(
            profiles["alice"], PASSPHRASE, server_url=url, username="alice", options=options
        )
        bob = await Client.create_account(
            profiles["bob"], PASSPHRASE, server_url=url, username="bob", options=options
        )
        await bob.close()
        async with alice:
            chat = await alice.start_direct("bob")
            await alice.send_text(chat.id, f"this one: {reported}")
            await alice.send_text(chat.id, f"not this one: {unreported}")
            await alice.send_file(chat.id, other_file.encode() * 10, name="notes.txt")

        # Bob, with the CLI: receive, find alice's message, report it.
        doorless("receive", profile=profiles["bob"])
        (history,) = doorless("history", "@alice", profile=profiles["bob"])
        texts = {m["text"]: m["message_id"] for m in history["messages"] if m["text"]}
        message_id = texts[f"this one: {reported}"]
        (result,) = doorless(
            "report",
            message_id[:12],
            "--reason",
            "harassment",
            "--note",
            "see this",
            profile=profiles["bob"],
        )
        (receipt,) = result["reports"]
        assert receipt["message_id"] == message_id and receipt["sender"] == "alice"

        # A report that does not verify is refused: the CLI says so.
        bad = subprocess.run(
            [*CLI, "--profile", str(profiles["bob"]), "report", "0000000000", "--reason", "spam"],
            capture_output=True,
            env={**os.environ, "DOORLESS_PASSPHRASE": PASSPHRASE},
            text=True,
            check=False,
        )
        assert bad.returncode != 0 and "no message" in bad.stderr

    # The moderator's view: exactly the reported message, who sent it, who reported it.
    views = doorless("server", "reports", "--data-dir", str(data_dir))
    assert len(views) == 1
    (view,) = views
    assert view["text"] == f"this one: {reported}" and view["kind"] == "text"
    assert view["sender"]["user"] == "alice" and view["reporter"]["user"] == "bob"
    assert view["reason"] == "harassment" and view["note"] == "see this"
    assert view["attachments"] == []

    # The canary scan of everything the server wrote: the reported text only in its report,
    # nothing of the other messages (text or file), nothing at all in the log.
    needles = [c.encode() for c in (reported, unreported, other_file)]
    hits = scan(data_dir, needles)
    assert hits[unreported.encode()] == [] and hits[other_file.encode()] == []
    assert hits[reported.encode()] and all(
        p.startswith("doorless.sqlite3") for p in hits[reported.encode()]
    )
    server_log = log.read_bytes()
    assert server_log and not any(n in server_log for n in needles)

    # Deleting the handled report removes its plaintext too (secure_delete).
    (deleted,) = doorless(
        "server", "reports", "--data-dir", str(data_dir), "--delete", str(view["report_id"])
    )
    assert deleted == {"deleted": 1}
    assert doorless("server", "reports", "--data-dir", str(data_dir)) == []
    assert scan(data_dir, [reported.encode()])[reported.encode()] == []


async def test_requests_blocks_and_timers_with_the_cli(tmp_path: Path) -> None:
    data_dir, log = tmp_path / "server", tmp_path / "server.log"
    options = ClientOptions(push=False, argon2=FAST_ARGON2, key_package_target=5)
    async with server_process(data_dir, log) as url:
        bob_profile = tmp_path / "bob"
        bob = await Client.create_account(
            bob_profile, PASSPHRASE, server_url=url, username="bob", options=options
        )
        await bob.close()
        carol = await Client.create_account(
            tmp_path / "carol", PASSPHRASE, server_url=url, username="carol", options=options
        )
        async with carol:
            chat = await carol.start_direct("bob")
            await carol.send_text(chat.id, "hello stranger")

        doorless("receive", profile=bob_profile)
        (listed,) = doorless("requests", "list", profile=bob_profile)
        (request,) = listed["requests"]
        assert request["from"] == "carol" and request["conversation_id"] == chat.id

        (timer,) = doorless("disappearing", "@carol", "1h", profile=bob_profile)
        assert timer == {"conversation_id": chat.id, "disappearing_seconds": 3600}
        (accepted,) = doorless("requests", "accept", "@carol", profile=bob_profile)
        assert accepted["accepted"]["from"] is None
        assert doorless("requests", "list", profile=bob_profile) == [{"requests": []}]

        assert doorless("block", "@carol", profile=bob_profile) == [{"blocked": "carol"}]
        assert doorless("blocked", profile=bob_profile) == [{"blocked": ["carol"]}]
        # (unblock, and the daemon's methods: tests/safety/test_rpc_safety.py)

    # The operator rotates the franking key by hand (the server is stopped here; it works
    # the same while it runs).
    assert doorless("server", "rotate-franking-key", "--data-dir", str(data_dir)) == [
        {"franking_key_id": 1}
    ]
