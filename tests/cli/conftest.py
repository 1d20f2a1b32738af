"""Fixtures for the CLI tests: a real server (uvicorn, in a thread, over loopback) and a runner
that invokes ``doorless`` commands in-process with cheap Argon2id profiles.

The server runs in this process (a thread with its own event loop) so that it can have
generous rate limits and a data directory in memory; ``tests/e2e`` runs the real ``doorless
server`` process and the real ``doorless`` program instead.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from doorless.cli import session
from doorless.cli.main import app
from doorless.client import Argon2Params, ClientOptions
from support.servers import ThreadServer

PASSPHRASE = "correct horse battery staple"
FAST_ARGON2 = Argon2Params(time_cost=1, memory_cost_kib=8, parallelism=1)
_SHM = Path("/dev/shm")


@pytest.fixture(scope="module")
def server() -> Iterator[ThreadServer]:
    root = Path(tempfile.mkdtemp(prefix="doorless-cli-", dir=_SHM if _SHM.is_dir() else None))
    s = ThreadServer(root / "data")
    s.start()
    try:
        yield s
    finally:
        s.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def cheap_profiles() -> Iterator[None]:
    """Profiles made by the commands use a cheap Argon2id (they are thrown away)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(session, "base_options", ClientOptions(argon2=FAST_ARGON2, key_package_target=5))
        yield


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def json(self) -> Any:
        """The one JSON object printed on stdout."""
        return json.loads(self.stdout)

    @property
    def lines(self) -> list[Any]:
        """Each line of stdout as JSON (streams such as ``receive``)."""
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]

    @property
    def error(self) -> Any:
        return json.loads(self.stderr)


@dataclass
class Doorless:
    """Runs ``doorless [--profile P] [--json] ...`` in-process."""

    root: Path
    server_url: str
    passphrase: str | None = PASSPHRASE

    def profile(self, name: str) -> Path:
        return self.root / name

    def __call__(
        self, profile: str | None, *args: str | Path, json_output: bool = True, stdin: str = ""
    ) -> Result:
        argv = ["--profile", str(self.profile(profile))] if profile is not None else []
        if json_output:
            argv.append("--json")
        argv.extend(str(a) for a in args)
        env = {"DOORLESS_PASSPHRASE": self.passphrase}
        r = CliRunner().invoke(app, argv, env=env, input=stdin, catch_exceptions=False)
        return Result(r.exit_code, r.stdout, r.stderr)

    def ok(self, profile: str | None, *args: str | Path, **kwargs: Any) -> Result:
        r = self(profile, *args, **kwargs)
        assert r.exit_code == 0, (args, r.stdout, r.stderr)
        return r

    def account(self, name: str) -> Result:
        return self.ok(name, "account", "create", "--server", self.server_url, name)

    def with_passphrase(self, passphrase: str | None) -> Doorless:
        return dataclasses.replace(self, passphrase=passphrase)


@pytest.fixture
def doorless(server: ThreadServer, tmp_path: Path) -> Doorless:
    return Doorless(tmp_path / "profiles", server.url)


@pytest.fixture(scope="module")
def shared(server: ThreadServer, tmp_path_factory: pytest.TempPathFactory) -> Doorless:
    """Profiles that live as long as the module (for tests that do not need fresh ones)."""
    return Doorless(tmp_path_factory.mktemp("shared") / "profiles", server.url)
