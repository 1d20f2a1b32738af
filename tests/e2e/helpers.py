"""End-to-end helpers: the real ``doorless server`` process, the real ``doorless`` program, and
clients of the library, all over loopback; the canary scan of invariants I1 and I6."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sqlite3
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from doorless.client import Argon2Params, Client, ClientOptions, Event
from support import servers
from support.servers import doorless_command

PASSPHRASE = "e2e passphrase"
FAST_ARGON2 = Argon2Params(time_cost=1, memory_cost_kib=8, parallelism=1)


class ServerProcess(servers.ServerProcess):
    """``doorless server`` at debug level (the most it ever writes, for the canary scans)."""

    def __init__(self, data_dir: Path, log_path: Path, *, args: tuple[str, ...] = ()) -> None:
        super().__init__(data_dir=data_dir, log_path=log_path, log_level="debug", args=args)

    @property
    def database(self) -> Path:
        return self.data_dir / "doorless.sqlite3"

    def db_dump(self) -> list[str]:
        """Every row, as SQL (a separate connection sees what was committed)."""
        conn = sqlite3.connect(self.database)
        try:
            return list(conn.iterdump())
        finally:
            conn.close()


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def run_cli(
    profile: Path | None,
    *args: str | Path,
    json_output: bool = False,
    passphrase: str | None = PASSPHRASE,
    stdin: str | None = None,
    timeout: float = 120,
    extra_env: dict[str, str] | None = None,
) -> CliResult:
    """``doorless [--profile P] [--json] ARGS`` as a separate process (``extra_env``: more
    ``DOORLESS_*`` variables)."""
    argv = [*doorless_command()]
    if profile is not None:
        argv += ["--profile", str(profile)]
    if json_output:
        argv.append("--json")
    argv += [str(a) for a in args]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOORLESS_")}
    if passphrase is not None:
        env["DOORLESS_PASSPHRASE"] = passphrase
    env.update(extra_env or {})
    done = subprocess.run(
        argv,
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    return CliResult(done.returncode, done.stdout, done.stderr)


def scan(paths: Sequence[Path], needles: Sequence[bytes]) -> list[tuple[str, bytes]]:
    """Every (file, needle) where a needle occurs in a file under one of ``paths``."""
    hits: list[tuple[str, bytes]] = []
    for root in paths:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            data = path.read_bytes()
            hits.extend((str(path), n) for n in needles if n in data)
    return hits


def options(**overrides: Any) -> ClientOptions:
    base = ClientOptions(push=False, argon2=FAST_ARGON2, key_package_target=6, backoff=0.05)
    return dataclasses.replace(base, **overrides)


class Devices:
    """Library clients of one test, by name, each with its profile folder, and every event
    each one emitted (kept across restarts of the client). A ``suffix`` is added to each
    username, for tests that share one server (a name is then free in each of them)."""

    def __init__(self, server_url: str, root: Path, *, suffix: str = "") -> None:
        self.server_url = server_url
        self.root = root
        self.suffix = suffix
        self.clients: dict[str, Client] = {}
        self.events: dict[str, list[Event]] = {}

    def profile(self, name: str) -> Path:
        return self.root / name

    def usernames(self, *names: str) -> list[str]:
        return [self.clients[n].username for n in names]

    def _add(self, name: str, client: Client) -> Client:
        self.clients[name] = client
        self.events.setdefault(name, [])
        return client

    async def account(self, name: str, username: str | None = None, **overrides: Any) -> Client:
        client = await Client.create_account(
            self.profile(name),
            PASSPHRASE,
            server_url=self.server_url,
            username=username or name + self.suffix,
            options=options(**overrides),
        )
        return self._add(name, client)

    async def link(self, owner: str, name: str) -> Client:
        """A new device of ``owner``'s account, approved by ``owner``."""
        link = await Client.begin_link(
            self.profile(name),
            PASSPHRASE,
            server_url=self.server_url,
            username=self.clients[owner].username,
            options=options(),
        )
        approver = self.clients[owner]
        pending = await approver.get_link(link.code)
        assert pending.fingerprint() == link.fingerprint()
        new, _ = await asyncio.gather(
            link.complete(timeout=30, poll_interval=0.1),
            approver.approve_link(pending, key_package_timeout=30),
        )
        return self._add(name, new)

    async def close(self, name: str) -> None:
        """Close a client and keep the events it still held."""
        client = self.clients.pop(name)
        await client.close()
        self.events[name].extend([e async for e in client.events()])

    async def restart(self, name: str) -> Client:
        await self.close(name)
        client = await Client.open(self.profile(name), PASSPHRASE, options=options())
        return self._add(name, client)

    async def sync_all(self, rounds: int = 2) -> None:
        for _ in range(rounds):
            for client in list(self.clients.values()):
                await client.sync()

    async def close_all(self) -> None:
        for name in list(self.clients):
            await self.close(name)
