"""A ``doorless receive`` killed (SIGKILL) while it prints a backlog of 200 messages, three
times, then run to the end: every message is shown, and none twice but the one being printed
at the instant of a kill (shown, killed before its mark was saved: shown again rather than
lost). Before each message was marked as it was shown, 60 of 200 came twice. The real server
process and the real ``doorless`` program."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from doorless.client import Client

from .helpers import PASSPHRASE, ServerProcess, doorless_command, options

MESSAGES = 200
KILLS = 3
KILL_AFTER = 25  # message lines read before each kill


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    s = ServerProcess(tmp_path / "server", tmp_path / "server.log")
    s.start()
    try:
        yield s
    finally:
        s.stop()


def receive(profile: Path, kill_after: int | None) -> tuple[list[str], int]:
    """The texts one ``doorless --json receive`` printed (killed after ``kill_after`` of
    them, if given; what it wrote before dying is read to the end), and its exit status."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOORLESS_")}
    env["DOORLESS_PASSPHRASE"] = PASSPHRASE
    proc = subprocess.Popen(
        [*doorless_command(), "--profile", str(profile), "--json", "receive"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    texts: list[str] = []
    for line in proc.stdout:
        item = json.loads(line)
        if item["type"] == "message_received":
            texts.append(item["message"]["text"])
            if kill_after is not None and len(texts) == kill_after:
                proc.send_signal(signal.SIGKILL)
    return texts, proc.wait(60)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "fetched_before", [True, False], ids=["backlog-in-the-profile", "backlog-on-the-server"]
)
async def test_a_receive_killed_mid_backlog_shows_the_rest_next_time(
    server: ServerProcess, tmp_path: Path, fetched_before: bool
) -> None:
    """The backlog is either already in bob's profile (fetched by another command, not shown
    yet) or still on the server (fetched, then shown, by the killed ``receive`` itself)."""
    sent = [f"backlog message {i:03d}" for i in range(MESSAGES)]
    alice = await Client.create_account(
        tmp_path / "alice", PASSPHRASE, server_url=server.url, username="alice", options=options()
    )
    bob = await Client.create_account(
        tmp_path / "bob", PASSPHRASE, server_url=server.url, username="bob", options=options()
    )
    await bob.close()
    async with alice:
        chat = await alice.start_direct("bob")
        for text in sent:
            await alice.send_text(chat.id, text)
    if fetched_before:
        async with await Client.open(tmp_path / "bob", PASSPHRASE, options=options()) as bob:
            assert await bob.sync() > 0

    shown: list[str] = []
    in_flight: set[str] = set()  # the message each kill interrupted (its line just read)
    for _ in range(KILLS):
        texts, status = receive(tmp_path / "bob", KILL_AFTER)
        assert status == -signal.SIGKILL, "the receive ended before it could be killed"
        assert len(texts) >= KILL_AFTER
        in_flight.add(texts[KILL_AFTER - 1])
        shown += texts
    assert len(set(shown)) < MESSAGES  # the kills did interrupt the backlog
    texts, status = receive(tmp_path / "bob", None)
    assert status == 0
    shown += texts

    counts = Counter(shown)
    twice = sorted(t for t, n in counts.items() if n > 1)
    assert sorted(counts) == sent  # every message shown, nothing else
    assert set(twice) <= in_flight, f"{len(twice)} shown twice: {twice}"
    assert receive(tmp_path / "bob", None) == ([], 0)  # and nothing more afterwards
