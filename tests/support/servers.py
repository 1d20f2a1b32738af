"""Servers for the tests of every folder: the real ``doorless server`` in a child process
(`ServerProcess`), the app under uvicorn in a thread (`ThreadServer`), a settable clock and a
configuration with the rate limits out of the way.

`ServerProcess` keeps its port across restarts and appends its log to one file, so a test can
``kill`` it (SIGKILL: no shutdown code runs), ``start`` it again and read what it wrote.
"""

from __future__ import annotations

import json
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from doorless.server.app import create_app
from doorless.server.config import ServerConfig

STARTUP_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def doorless_command() -> list[str]:
    """The installed ``doorless`` program (the console script next to this Python), or the
    module when the package is not installed as a program."""
    script = Path(sys.executable).with_name("doorless")
    return [str(script)] if script.exists() else [sys.executable, "-m", "doorless.cli.main"]


class FakeClock:
    """Wall-clock time that only moves when told to."""

    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def generous_config(data_dir: Path, **overrides: Any) -> ServerConfig:
    """A server configuration with rate limits no test reaches (tests make many calls in no
    time), unless overridden."""
    base = ServerConfig(
        data_dir=data_dir,
        rate_per_second=100_000.0,
        rate_burst=10_000_000,
        anon_rate_per_second=100_000.0,
        anon_rate_burst=10_000_000,
    )
    return replace(base, **overrides)


@dataclass(kw_only=True)
class ServerProcess:
    """``doorless server --data-dir DATA_DIR --port PORT [ARGS...]`` with its log in LOG_PATH."""

    data_dir: Path
    log_path: Path
    port: int = field(default_factory=free_port)
    args: tuple[str, ...] = ()  # more `doorless server` flags
    log_level: str | None = "warning"  # None: the server's default
    ssl_context: ssl.SSLContext | None = None  # given: the server speaks TLS, checked with it
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def program(self) -> list[str]:
        """The program whose ``server`` command runs (a test may run a launcher of its own
        that takes the same arguments)."""
        return doorless_command()

    def spawn(self) -> None:
        """Start the process without waiting for it to answer."""
        command = [
            *self.program(),
            "server",
            "--data-dir",
            str(self.data_dir),
            "--port",
            str(self.port),
            *(("--log-level", self.log_level) if self.log_level is not None else ()),
            *self.args,
        ]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=log, stdin=subprocess.DEVNULL
            )
        self.starts += 1

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT) -> None:
        verify: ssl.SSLContext | bool = self.ssl_context or False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive:
                raise AssertionError(f"the server exited:\n{self.log_text()[-4000:]}")
            try:
                if httpx.get(f"{self.url}/v1/info", verify=verify, timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"the server did not start:\n{self.log_text()[-4000:]}")

    def start(self) -> None:
        self.spawn()
        self.wait_ready()

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
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
        if crash:
            self.kill()
        else:
            self.stop()
        self.start()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_lines(self) -> list[dict[str, object]]:
        """The JSON log, one object per line."""
        return [json.loads(line) for line in self.log_text().splitlines() if line.strip()]


class ThreadServer:
    """The server app under uvicorn in a thread of this process (its own event loop), with
    `generous_config`'s rate limits."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = uvicorn.Server(
            uvicorn.Config(
                create_app(generous_config(data_dir)),
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
