"""The daemon on a Unix socket, in-process, against a real server over loopback: requests and
answers, event notifications, the ``receive`` catch-up, the socket's permissions.

(The daemon over stdin/stdout, as a separate process, is in ``tests/e2e/test_cli_process.py``.)
"""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import stat
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from doorless.cli.daemon import run_daemon
from doorless.client import Client, ClientOptions

from .conftest import FAST_ARGON2, PASSPHRASE, ThreadServer

pytestmark = pytest.mark.asyncio
TIMEOUT = 30.0


def options(push: bool = False) -> ClientOptions:
    return ClientOptions(push=push, argon2=FAST_ARGON2, key_package_target=5)


async def account(server: ThreadServer, root: Path, name: str, push: bool = False) -> Client:
    return await Client.create_account(
        root / name, PASSPHRASE, server_url=server.url, username=name, options=options(push)
    )


class Peer:
    """One connection to the daemon's socket."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.events: list[dict[str, Any]] = []
        self._next_id = 0

    async def call(self, method: str, **params: Any) -> Any:
        self._next_id += 1
        body = {"jsonrpc": "2.0", "id": self._next_id, "method": method, "params": params}
        self.writer.write(json.dumps(body).encode() + b"\n")
        await self.writer.drain()
        async with asyncio.timeout(TIMEOUT):
            while True:
                message = json.loads(await self.reader.readline())
                if message.get("method") == "event":
                    self.events.append(message["params"])
                elif message.get("id") == self._next_id:
                    return message

    async def event(self, kind: str) -> dict[str, Any]:
        async with asyncio.timeout(TIMEOUT):
            while True:
                for e in self.events:
                    if e["type"] == kind:
                        self.events.remove(e)
                        return e
                message = json.loads(await self.reader.readline())
                assert message.get("method") == "event", message
                assert message["jsonrpc"] == "2.0" and "id" not in message
                self.events.append(message["params"])


@asynccontextmanager
async def daemon(client: Client, path: Path) -> AsyncIterator[None]:
    task = asyncio.create_task(run_daemon(client, stdio=False, socket_path=path))
    async with asyncio.timeout(TIMEOUT):
        while True:  # listening once a connection succeeds (a stale file may be there)
            try:
                _, writer = await asyncio.open_unix_connection(str(path))
            except OSError:
                await asyncio.sleep(0.02)
                continue
            writer.close()
            break
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@asynccontextmanager
async def connect(path: Path) -> AsyncIterator[Peer]:
    reader, writer = await asyncio.open_unix_connection(str(path))
    try:
        yield Peer(reader, writer)
    finally:
        writer.close()


@pytest.fixture
def sock_dir() -> Any:
    # AF_UNIX paths are limited to ~100 bytes: pytest's tmp_path can be longer.
    with tempfile.TemporaryDirectory(prefix="dl-") as d:
        yield Path(d)


async def test_socket_requests_and_notifications(
    server: ThreadServer, tmp_path: Path, sock_dir: Path
) -> None:
    suffix = secrets.token_hex(3)
    bot_name, alice_name = f"bot-{suffix}", f"alice-{suffix}"
    bot = await account(server, tmp_path, bot_name, push=True)
    alice = await account(server, tmp_path, alice_name)
    path = sock_dir / "d.sock"
    try:
        async with daemon(bot, path), connect(path) as peer:
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            assert (await peer.call("whoami"))["result"]["username"] == bot_name

            created = await peer.call("createGroup", name="ops", members=[f"@{alice_name}"])
            group = created["result"]
            assert group["members"] == sorted([bot_name, alice_name])
            # Post-quantum by default, and the daemon says which suite.
            assert group["cipher_suite"] == "MLS_128_MLKEM768X25519_AES128GCM_SHA256_Ed25519"
            assert group["post_quantum"] is True
            listed = (await peer.call("listConversations"))["result"]["conversations"]
            assert [c["cipher_suite"] for c in listed] == [group["cipher_suite"]]
            sent = await peer.call("send", group="ops", text="hello from the bot")
            assert sent["result"]["state"] == "sent"

            await alice.sync()
            (history,) = [await alice.history(group["id"])]
            assert [m.text for m in history] == ["hello from the bot"]

            # alice writes: the daemon (WebSocket) notifies every connection.
            await alice.send_text(group["id"], "hi bot")
            event = await peer.event("message_received")
            assert event["message"]["text"] == "hi bot"
            assert event["message"]["sender"]["user"] == alice_name
            # ... and the notification counts as shown: nothing for the catch-up.
            assert (await peer.call("receive"))["result"] == {"messages": []}

            members = (await peer.call("listMembers", group="ops"))["result"]
            assert [m["user"] for m in members["members"]] == sorted([bot_name, alice_name])
            missing = await peer.call("send", group="no-such-group", text="x")
            assert missing["error"]["data"]["error"] == "unknown_conversation"
            bad = await peer.call("send", group="ops")
            assert bad["error"]["code"] == -32602

        assert not path.exists()  # removed on exit

        # A message that arrives while no one is connected is not shown: the catch-up has it.
        await alice.send_text(group["id"], "anyone there?")
        await bot.sync()
        async with daemon(bot, path):
            await asyncio.sleep(0.2)  # the daemon passes the event on, to no one
            async with connect(path) as peer:
                got = (await peer.call("receive"))["result"]["messages"]
                assert [m["text"] for m in got] == ["anyone there?"]
                assert (await peer.call("receive"))["result"]["messages"] == []
    finally:
        await bot.close()
        await alice.close()


async def test_stale_socket_is_replaced_and_a_live_one_refused(
    server: ThreadServer, tmp_path: Path, sock_dir: Path
) -> None:
    bot = await account(server, tmp_path, f"bot-{secrets.token_hex(3)}")
    path = sock_dir / "s.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # the file stays, no one listens
    try:
        async with daemon(bot, path), connect(path) as peer:
            assert (await peer.call("version"))["result"]["version"]
            with pytest.raises(Exception, match="another process listens"):
                await run_daemon(bot, stdio=False, socket_path=path)
        regular = sock_dir / "file"
        regular.write_text("not a socket")
        with pytest.raises(Exception, match="not a socket"):
            await run_daemon(bot, stdio=False, socket_path=regular)
        assert regular.read_text() == "not a socket"
    finally:
        await bot.close()


async def test_rich_message_methods_and_notifications(
    server: ThreadServer, tmp_path: Path, sock_dir: Path
) -> None:
    suffix = secrets.token_hex(3)
    bot_name, alice_name = f"bot-{suffix}", f"alice-{suffix}"
    bot = await account(server, tmp_path, bot_name, push=True)
    alice = await account(server, tmp_path, alice_name)
    path = sock_dir / "d.sock"
    try:
        async with daemon(bot, path), connect(path) as peer:
            group = (await peer.call("createGroup", name="ops", members=[alice_name]))["result"]
            await alice.sync()
            asked = await alice.send_text(group["id"], f"status, @{bot_name}?")
            received = (await peer.event("message_received"))["message"]
            assert received["mentions_me"] and received["mentions"] == [bot_name]

            short = asked.message_id[:8]
            reply = (await peer.call("reply", message_id=short, text="all green"))["result"]
            assert reply["reply_to"] == asked.message_id and reply["reply_text"] == (
                f"status, @{bot_name}?"
            )
            assert (await peer.call("react", message_id=short, emoji="✅"))["result"] == {
                "message_id": asked.message_id,
                "emoji": "✅",
                "removed": False,
            }
            assert (await peer.call("markRead", message_id=short))["result"]["sent"]
            assert (await peer.call("typing", group="ops", active=False))["result"]["sent"]
            forbidden = await peer.call("edit", message_id=short, text="mine")
            assert forbidden["error"]["data"]["error"] == "forbidden"
            edited = await peer.call("edit", message_id=reply["message_id"], text="all GREEN")
            assert edited["result"]["edited"]
            versions = (await peer.call("editHistory", message_id=reply["message_id"]))["result"]
            assert [v["text"] for v in versions["versions"]] == ["all green"]
            unknown = await peer.call("react", message_id="00" * 8, emoji="x")
            assert unknown["error"]["data"]["error"] == "not_found"

            await alice.sync()
            [first, answer] = await alice.history(group["id"])
            assert [(r.user, r.emoji) for r in first.reactions] == [(bot_name, "✅")]
            assert (answer.text, answer.edited, answer.reply_to) == (
                "all GREEN",
                True,
                asked.message_id,
            )
            assert await alice.read_up_to(group["id"]) == {bot_name: asked.message_id}

            await alice.react(asked.message_id, "👀")
            changed = await peer.event("message_changed")
            assert (changed["change"], changed["emoji"]) == ("reacted", "👀")
            await alice.typing(group["id"], True)
            typing = await peer.event("typing")
            assert typing["active"] and typing["user"]["user"] == alice_name
            await alice.mark_read(reply["message_id"])
            read = await peer.event("read_up_to")
            assert read["message_id"] == reply["message_id"]
            await alice.delete(asked.message_id)
            deleted = await peer.event("message_changed")
            assert deleted["change"] == "deleted" and deleted["message"]["text"] is None
    finally:
        await bot.close()
        await alice.close()
