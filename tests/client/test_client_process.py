"""Clients against a real server process over loopback: WebSocket push, the server killed
(kill -9) and restarted between messages, a message sent while it is down.

(The full multi-process end-to-end suite, with the CLI, lives elsewhere; this is the client
library's own check that it works over real sockets.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import pytest

from doorless.client import (
    Client,
    ClientOptions,
    ConversationJoined,
    Event,
    MessageReceived,
    MessageSent,
    MessageState,
)
from support.servers import ServerProcess

from .harness import FAST_ARGON2, PASSPHRASE

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

EVENT_TIMEOUT = 30.0


@contextmanager
def server_process(data_dir: Path) -> Iterator[ServerProcess]:
    data_dir.mkdir(parents=True, exist_ok=True)
    server = ServerProcess(data_dir=data_dir, log_path=data_dir.parent / "server.log")
    try:
        yield server
    finally:
        server.kill()


class Inbox:
    """Collects one client's events from `Client.events` in the background."""

    def __init__(self, client: Client) -> None:
        self.events: list[Event] = []
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._run(client))

    async def _run(self, client: Client) -> None:
        async for event in client.events():
            self.events.append(event)
            self._changed.set()

    async def wait_for(self, cls: type[Event], count: int = 1) -> list[Event]:
        async with asyncio.timeout(EVENT_TIMEOUT):
            while True:
                found = [e for e in self.events if isinstance(e, cls)]
                if len(found) >= count:
                    return found
                self._changed.clear()
                await self._changed.wait()

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


@asynccontextmanager
async def started(client: Client) -> AsyncIterator[Inbox]:
    inbox = Inbox(client)
    await client.start()
    try:
        yield inbox
    finally:
        await inbox.stop()
        await client.close()


def options() -> ClientOptions:
    return ClientOptions(
        push=True, argon2=FAST_ARGON2, key_package_target=12, retry_interval=0.3, backoff=0.1
    )


async def test_push_delivery_across_server_crashes(tmp_path: Path) -> None:
    with server_process(tmp_path / "server") as server:
        await asyncio.to_thread(server.start)
        alice = await Client.create_account(
            tmp_path / "alice",
            PASSPHRASE,
            server_url=server.url,
            username="alice",
            options=options(),
        )
        bob = await Client.create_account(
            tmp_path / "bob",
            PASSPHRASE,
            server_url=server.url,
            username="bob",
            options=options(),
        )
        async with started(alice) as alice_inbox, started(bob) as bob_inbox:
            chat = await alice.start_direct("bob")
            await bob_inbox.wait_for(ConversationJoined)
            await alice.send_text(chat.id, "over the socket")
            (first,) = await bob_inbox.wait_for(MessageReceived)
            assert isinstance(first, MessageReceived) and first.text == "over the socket"

            server.kill()  # kill -9: acknowledged messages must survive (I5)
            queued = await alice.send_text(chat.id, "while the server was down")
            assert queued.state is MessageState.PENDING
            await asyncio.to_thread(server.start)
            # alice's background task sends it; bob's push session reconnects and gets it.
            await alice_inbox.wait_for(MessageSent, 1)
            await bob_inbox.wait_for(MessageReceived, 2)
            await bob.send_text(chat.id, "welcome back")
            await alice_inbox.wait_for(MessageReceived, 1)

        got = [e.text for e in bob_inbox.events if isinstance(e, MessageReceived)]
        assert got == ["over the socket", "while the server was down"]
        reply = [e.text for e in alice_inbox.events if isinstance(e, MessageReceived)]
        assert reply == ["welcome back"]

        # Restarted from their profiles, both have the same history.
        server.kill()
        await asyncio.to_thread(server.start)
        for name in ("alice", "bob"):
            again = await Client.open(tmp_path / name, PASSPHRASE, options=options())
            try:
                assert [m.text for m in await again.history(chat.id)] == [
                    "over the socket",
                    "while the server was down",
                    "welcome back",
                ]
                assert await again.sync() == 0  # nothing left queued, nothing twice
            finally:
                await again.close()
