"""End-to-end helpers: the real ``doorless server`` process, the real ``doorless`` program, and
clients of the library, all over loopback; the canary scan of invariants I1 and I6."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from doorless.client import Argon2Params, Client, ClientOptions, Event

PASSPHRASE = "e2e passphrase"
FAST_ARGON2 = Argon2Params(time_cost=1, memory_cost_kib=8, parallelism=1)
STARTUP_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def doorless_command() -> list[str]:
    """The installed ``doorless`` program (the console script next to this Python), or the
    module when the package is not installed as a program."""
    script = Path(sys.executable).with_name("doorless")
    return [str(script)] if script.exists() else [sys.executable, "-m", "doorless.cli.main"]


@dataclass
class ServerProcess:
    """``doorless server`` in a child process; the port stays the same across restarts and
    the log (debug level: the most it ever writes) accumulates in one file."""

    data_dir: Path
    log_path: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    extra_args: tuple[str, ...] = ()  # more ``doorless server`` options

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def database(self) -> Path:
        return self.data_dir / "doorless.sqlite3"

    def start(self) -> None:
        args = ["server", "--data-dir", str(self.data_dir), "--port", str(self.port)]
        args += self.extra_args
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [*doorless_command(), *args, "--log-level", "debug"],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited: {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/v1/info", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError("server did not start")

    def kill(self) -> None:
        """``kill -9``: no shutdown code runs."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def restart(self, *, crash: bool = False) -> None:
        self.kill() if crash else self.stop()
        self.start()

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
) -> CliResult:
    """``doorless [--profile P] [--json] ARGS`` as a separate process."""
    argv = [*doorless_command()]
    if profile is not None:
        argv += ["--profile", str(profile)]
    if json_output:
        argv.append("--json")
    argv += [str(a) for a in args]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOORLESS_")}
    if passphrase is not None:
        env["DOORLESS_PASSPHRASE"] = passphrase
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
    each one emitted (kept across restarts of the client)."""

    def __init__(self, server_url: str, root: Path) -> None:
        self.server_url = server_url
        self.root = root
        self.clients: dict[str, Client] = {}
        self.events: dict[str, list[Event]] = {}

    def profile(self, name: str) -> Path:
        return self.root / name

    def _add(self, name: str, client: Client) -> Client:
        self.clients[name] = client
        self.events.setdefault(name, [])
        return client

    async def account(self, name: str, username: str | None = None) -> Client:
        client = await Client.create_account(
            self.profile(name),
            PASSPHRASE,
            server_url=self.server_url,
            username=username or name,
            options=options(),
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


class ThreadServer:
    """The server app under uvicorn in a thread of this process, with rate limits out of the
    way (for fuzzing, where the real process's limits would answer 429 to most requests)."""

    def __init__(self, data_dir: Path) -> None:
        import uvicorn

        from doorless.server.app import create_app
        from doorless.server.config import ServerConfig

        config = ServerConfig(
            data_dir=data_dir,
            rate_per_second=100_000.0,
            rate_burst=10_000_000,
            anon_rate_per_second=100_000.0,
            anon_rate_burst=10_000_000,
        )
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = uvicorn.Server(
            uvicorn.Config(
                create_app(config),
                host="127.0.0.1",
                port=self.port,
                log_config=None,
                access_log=False,
                lifespan="on",
            )
        )
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise AssertionError("the in-process server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(30)
