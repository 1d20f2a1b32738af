"""Ctrl-C (SIGINT) on the real ``doorless receive`` process, at any moment (while Python
starts it, while it fetches, while it listens): one line ``error: interrupted``, exit status
130 (docs/cli.md), never a traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import PASSPHRASE, ServerProcess, doorless_command, run_cli


@pytest.fixture(scope="module")
def profile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("interrupt")
    server = ServerProcess(root / "server", root / "server.log")
    server.start()
    try:
        alice = root / "alice"
        r = run_cli(alice, "account", "create", "--server", server.url, "alice")
        assert r.returncode == 0, r.stderr
        yield alice
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("args", "delay"),
    [
        (["receive"], 0.3),  # while the program starts
        (["receive"], 1.5),
        (["receive", "--timeout", "-1"], 10.0),  # while it listens
        (["--json", "receive", "--timeout", "-1"], 10.0),
    ],
    ids=["starting", "early", "listening", "listening-json"],
)
def test_ctrl_c_on_receive_exits_130_without_a_traceback(
    profile: Path, args: list[str], delay: float
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOORLESS_")}
    env["DOORLESS_PASSPHRASE"] = PASSPHRASE
    proc = subprocess.Popen(
        [*doorless_command(), "--profile", str(profile), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    time.sleep(delay)
    assert proc.poll() is None, "it ended before the interrupt"
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    problems = [line for line in stderr.splitlines() if not line.startswith("warning: ")]
    assert problems in (
        ["error: interrupted"],
        ['{"error":"interrupted","message":"interrupted"}'],
    ), stderr
