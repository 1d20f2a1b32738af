"""Split view against a fresh client, through real processes: a real ``doorless server``
(honest), a real ``doorless witness`` watching it, and a second real server process that the
operator built from a copy of the honest one's database (same server id, same log key) and
where "bob" is a device the operator controls.

`test_split_view_against_a_fresh_client` (the CLI, as separate processes):

* Without a witness (the default, quorum 0) the attack works: carol's message to "bob" is
  read by the operator's device, and carol's commands print the insecure-KT warning.
* With the witness configured through the CLI (``account create --witness KEY``), dave, served
  the same fork, cannot send anything to "bob": no head showing the operator's "bob" is
  cosigned. The daemon's ``--witness`` does the same for one run.
* The same witness setting (``doorless config set``) on the honest server works, the warning
  is gone, and ``doorless verify --checkpoint`` tells the two views apart.

`test_split_view_is_caught_by_checkpoint_gossip` (library clients, no witness): carol's
key-transparency requests go to the fork, everything else to the honest server; the first
message she exchanges with alice raises the alarm on both sides.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from doorless.client import (
    AlarmKind,
    Client,
    GossipResult,
    KtFork,
    MessageReceived,
    TransparencyAlarm,
)

from .helpers import PASSPHRASE, Devices, ServerProcess, doorless_command, options, run_cli

INSECURE = "KEY TRANSPARENCY WITHOUT WITNESSES"


def copy_server(src: ServerProcess, dst: Path) -> None:
    """What the operator can do: a consistent copy of the running server's data."""
    dst.mkdir(parents=True)
    for item in src.data_dir.iterdir():
        if item.is_dir():
            shutil.copytree(item, dst / item.name)
    source = sqlite3.connect(src.database)
    target = sqlite3.connect(dst / src.database.name)
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()


@pytest.fixture
def witnessed(tmp_path: Path) -> Iterator[tuple[ServerProcess, str]]:
    """The honest server, collecting the cosignatures of a witness that watches it."""
    state = tmp_path / "witness"
    key = run_cli(None, "witness", "--state", state, "--print-key").stdout.strip()
    assert key.startswith("doorless-witness+")
    honest = ServerProcess(tmp_path / "honest", tmp_path / "honest.log", args=("--kt-witness", key))
    honest.start()
    with (tmp_path / "witness.log").open("wb") as log:
        witness = subprocess.Popen(
            [
                *doorless_command(),
                "witness",
                "--server",
                honest.url,
                "--state",
                str(state),
                "--interval",
                "2",
            ],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
        )
    try:
        yield honest, key
    finally:
        witness.terminate()
        witness.wait(15)
        honest.stop()


def test_split_view_against_a_fresh_client(
    witnessed: tuple[ServerProcess, str], tmp_path: Path
) -> None:
    honest, key = witnessed
    profiles = tmp_path / "profiles"
    created = run_cli(
        profiles / "alice",
        "account",
        "create",
        "alice",
        "--server",
        honest.url,
        "--witness",
        key,
    )
    assert created.returncode == 0, created.stderr
    assert INSECURE not in created.stderr  # the witness is required: no warning

    # The operator forks the log here: the honest log gets the real bob, the fork a "bob"
    # whose only device is the operator's.
    fork = ServerProcess(tmp_path / "fork", tmp_path / "fork.log", args=("--kt-witness", key))
    copy_server(honest, fork.data_dir)
    fork.start()
    try:
        real_bob = run_cli(
            profiles / "bob",
            "account",
            "create",
            "bob",
            "--server",
            honest.url,
            "--witness",
            key,
        )
        assert real_bob.returncode == 0, real_bob.stderr
        operator = Devices(fork.url, tmp_path / "operator")

        async def operator_bob() -> None:
            await operator.account("ghost", username="bob")
            await operator.close_all()

        asyncio.run(operator_bob())

        # Carol without a witness (the default): the forked log is accepted, her secret goes
        # to the operator's "bob", and only the warning says anything.
        carol = profiles / "carol"
        result = run_cli(carol, "account", "create", "carol", "--server", fork.url)
        assert result.returncode == 0, result.stderr
        sent = run_cli(carol, "send", "@bob", "the secret")
        assert sent.returncode == 0, sent.stderr
        assert INSECURE in result.stderr + sent.stderr

        async def operator_reads() -> list[str]:
            ghost = await Client.open(operator.profile("ghost"), PASSPHRASE, options=options())
            await ghost.sync()
            await ghost.close()
            return [e.text or "" async for e in ghost.events() if isinstance(e, MessageReceived)]

        assert asyncio.run(operator_reads()) == ["the secret"]

        # The daemon's --witness applies the same policy for one run: carol's daemon then
        # refuses the fork's heads (its logView needs a verified head); without it, it does not.
        ask = '{"jsonrpc":"2.0","id":1,"method":"logView"}\n'
        plain = run_cli(carol, "daemon", "--json-rpc", stdin=ask)
        assert "result" in json.loads(plain.stdout.splitlines()[0]), plain.stderr
        strict = run_cli(carol, "daemon", "--json-rpc", "--witness", key, stdin=ask)
        answer = json.loads(strict.stdout.splitlines()[0])
        assert "not witnessed" in answer["error"]["message"], strict
        assert not (carol / "config.toml").exists()  # for that run only

        # Dave, the same fresh client, with the witness given on the command line: no head
        # of the fork is cosigned, so nothing is accepted from it, and he sends nothing.
        dave = profiles / "dave"
        result = run_cli(
            dave,
            "account",
            "create",
            "dave",
            "--server",
            fork.url,
            "--witness",
            key,
            "--witness-quorum",
            "1",
        )
        # (The fork's older heads, copied from the honest log, are cosigned: the account may
        # be created. Every head that shows the operator's "bob" is not.)
        sent = run_cli(dave, "send", "@bob", "another secret")
        assert sent.returncode != 0
        assert "not witnessed" in sent.stderr, sent.stderr
        assert run_cli(dave, "config", "get", "kt.witnesses").stdout.strip() == key
        assert INSECURE not in result.stderr + sent.stderr
        assert asyncio.run(operator_reads()) == []  # nothing more reached the operator

        # The same setting through 'doorless config' on the honest server: it works, and
        # the warning is gone.
        erin = profiles / "erin"
        assert run_cli(erin, "config", "set", "kt.witnesses", key).returncode == 0
        assert run_cli(erin, "config", "get", "kt.witnesses").stdout.strip() == key
        result = run_cli(erin, "account", "create", "erin", "--server", honest.url)
        assert result.returncode == 0, result.stderr
        sent = run_cli(erin, "send", "@bob", "hello bob")
        assert sent.returncode == 0, sent.stderr
        assert INSECURE not in result.stderr + sent.stderr
        got = run_cli(profiles / "bob", "receive", json_output=True)
        assert "hello bob" in got.stdout, got.stderr

        # 'doorless verify' shows the log key fingerprint and compares checkpoints: erin and
        # bob see the same log; carol, served the fork, is shown to be on another one.
        shown = json.loads(run_cli(erin, "verify", "@bob", json_output=True).stdout)
        theirs = json.loads(run_cli(profiles / "bob", "verify", "@erin", json_output=True).stdout)
        assert shown["log_key_fingerprint"] == theirs["log_key_fingerprint"]
        same = run_cli(
            erin, "verify", "@bob", "--checkpoint", theirs["checkpoint"], json_output=True
        )
        assert json.loads(same.stdout)["checkpoint_compared"] == "consistent", same.stderr
        forked = run_cli(carol, "verify", "@bob", "--checkpoint", theirs["checkpoint"])
        assert forked.returncode == 1
        assert "KEY TRANSPARENCY ALARM" in forked.stderr, forked.stderr
        bad = run_cli(erin, "verify", "@bob", "--checkpoint", "not base64!")
        assert bad.returncode == 2 and "base64" in bad.stderr
    finally:
        fork.stop()


# --- without a witness: checkpoint gossip ------------------------------------------------------


class KtFrom(httpx.AsyncHTTPTransport):
    """Carol's network as the operator routes it: her key-transparency requests go to the
    fork once ``fork_port`` is set, everything else (directory, messages) to the honest
    server."""

    def __init__(self) -> None:
        super().__init__()
        self.fork_port: int | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.fork_port is not None and request.url.path.startswith("/v1/kt/"):
            request.url = request.url.copy_with(port=self.fork_port)
        return await super().handle_async_request(request)


def alarms(client: Client) -> list[TransparencyAlarm]:
    """The alarms emitted since the last call (the client's event backlog)."""
    backlog = client._hub._backlog
    found = [e for e in backlog if isinstance(e, TransparencyAlarm)]
    backlog.clear()
    return found


@pytest.mark.asyncio
async def test_split_view_is_caught_by_checkpoint_gossip(tmp_path: Path) -> None:
    """No witness anywhere (quorum 0). The operator forks the log after carol's
    registration: in carol's view "bob" is the operator's device. The first message carol
    exchanges with alice, who sees the honest log, exposes the fork, on both sides."""
    honest = ServerProcess(tmp_path / "honest", tmp_path / "honest.log")
    honest.start()
    fork = ServerProcess(tmp_path / "fork", tmp_path / "fork.log")
    users = Devices(honest.url, tmp_path / "profiles")
    operator = Devices(fork.url, tmp_path / "operator")
    route = KtFrom()
    try:
        alice = await users.account("alice")
        carol = users._add(
            "carol",
            await Client.create_account(
                users.profile("carol"),
                PASSPHRASE,
                server_url=honest.url,
                username="carol",
                options=options(http_transport=route),
            ),
        )
        # The fork: from here on, the honest log gets the real bob, carol's view the
        # operator's.
        copy_server(honest, fork.data_dir)
        fork.start()
        bob = await users.account("bob")
        await operator.account("ghost", username="bob")
        route.fork_port = fork.port

        # An honest message raises nothing.
        to_alice = await bob.start_direct("alice")
        await bob.send_text(to_alice.id, "hello alice")
        await alice.sync()
        assert alarms(alice) == []

        # Carol's view of the log now holds the operator's "bob" (and nothing in it
        # contradicts itself: on its own, her client cannot tell).
        assert set((await carol._core.kt.device_list("bob")).devices()) == {
            operator.clients["ghost"].device_id
        }
        assert alarms(carol) == []
        forked_size = (await carol.log_view()).size
        conv = await carol.start_direct("alice")
        await carol.send_text(conv.id, "hi alice")

        # Alice receives carol's message with the checkpoint carol verified: a log of the
        # same server that the server cannot show to be her own.
        await alice.sync()
        (alarm,) = alarms(alice)
        assert alarm.kind is AlarmKind.FORK and "carol" in alarm.detail
        assert "hi alice" in [m.text for m in await alice.history(conv.id)]

        # Alice answers: carol's client sees alice's checkpoint, and raises the alarm too.
        await alice.send_text(conv.id, "hi carol")
        await carol.sync()
        (alarm,) = alarms(carol)
        assert alarm.kind is AlarmKind.FORK and "alice" in alarm.detail
        assert "split view" in alarm.detail
        # Reported once: the next message with the same checkpoint is shown without a new alarm.
        await alice.send_text(conv.id, "still there?")
        await carol.sync()
        assert alarms(carol) == []
        assert "still there?" in [m.text for m in await carol.history(conv.id)]

        # Commits carry the checkpoint too (in their authenticated data): the fork grows,
        # carol verifies its new head, and her next commit in a group with alice shows it.
        await operator.account("ghost2", username="mallory")
        assert (await carol.log_view()).size > forked_size  # carol verifies the new head
        group = await carol.create_group("plans", ["alice"])
        await alice.sync()  # joins by Welcome (no checkpoint in a Welcome)
        assert alarms(alice) == []
        await carol.rename(group.id, "plans v2")
        await alice.sync()
        (alarm,) = alarms(alice)
        assert alarm.kind is AlarmKind.FORK and "carol" in alarm.detail

        # The same comparison on demand (what 'doorless verify --checkpoint' does).
        honest_view = await alice.log_view()
        assert await bob.compare_checkpoint(honest_view.checkpoint) is GossipResult.CONSISTENT
        with pytest.raises(KtFork):
            await carol.compare_checkpoint(honest_view.checkpoint)
    finally:
        await users.close_all()
        await operator.close_all()
        fork.stop()
        honest.stop()
