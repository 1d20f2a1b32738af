"""Fixtures for the scale-out tests: PostgreSQL, Redis, and server processes.

Services: `support.services` (``DOORLESS_TEST_POSTGRES``, ``DOORLESS_TEST_REDIS``); with
``CI=true`` a missing service FAILS every test that needs it, elsewhere those tests are skipped
with a message saying how to enable them. Every test gets its own PostgreSQL schema (dropped
afterwards), so parallel workers and runs never see each other's rows. Tests that restart Redis
start their own ``redis-server``.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio

from doorless.server.storage.base import Storage
from doorless.server.storage.postgres import PostgresStorage
from doorless.server.storage.sqlite import SQLiteStorage
from support.servers import free_port
from support.services import IN_CI, PG_DSN, REDIS_URL, require


@pytest.fixture
def postgres() -> None:
    require("postgres")


@pytest.fixture
def redis_url() -> str:
    require("redis")
    return REDIS_URL


@dataclass(frozen=True)
class PgSchema:
    dsn: str
    schema: str

    @property
    def url(self) -> str:
        """The ``--database`` URL of this schema."""
        separator = "&" if "?" in self.dsn else "?"
        return f"{self.dsn}{separator}schema={self.schema}"

    def storage(self, **kwargs: int) -> PostgresStorage:
        return PostgresStorage(self.dsn, schema=self.schema, **kwargs)


async def _drop_schema(schema: str) -> None:
    conn = await asyncpg.connect(PG_DSN)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await conn.close()


@pytest_asyncio.fixture
async def pg_schema(postgres: None) -> AsyncIterator[PgSchema]:
    """A fresh, empty PostgreSQL schema for this test (created on first use)."""
    schema = f"dl_test_{secrets.token_hex(6)}"
    try:
        yield PgSchema(PG_DSN, schema)
    finally:
        await _drop_schema(schema)


@pytest.fixture
def pg_schema_sync(postgres: None) -> Iterator[PgSchema]:
    """The same, for tests that run server processes (no event loop needed)."""
    schema = f"dl_test_{secrets.token_hex(6)}"
    try:
        yield PgSchema(PG_DSN, schema)
    finally:
        asyncio.run(_drop_schema(schema))


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "postgres":
        require("postgres")
    return str(request.param)


@pytest.fixture
def make_storage(backend: str, tmp_path: Path) -> Iterator[Callable[..., Storage]]:
    """``make_storage()`` -> a new (unopened) store over the same database for this test."""
    schema = f"dl_test_{secrets.token_hex(6)}"

    def make(**kwargs: int) -> Storage:
        if backend == "sqlite":
            return SQLiteStorage(tmp_path / "doorless.sqlite3")
        return PostgresStorage(PG_DSN, schema=schema, **kwargs)

    yield make
    if backend == "postgres":
        asyncio.run(_drop_schema(schema))


# --- a redis-server of our own (tests that stop and start Redis) -----------------------------


@dataclass
class OwnRedis:
    port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary is not None
        self.process = subprocess.Popen(
            [
                binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
                "--logfile",
                str(self.directory / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                out = subprocess.run(
                    ["redis-cli", "-p", str(self.port), "ping"],
                    capture_output=True,
                    text=True,
                    timeout=2,
                )
                if out.stdout.strip() == "PONG":
                    return
            except subprocess.TimeoutExpired:
                pass
            time.sleep(0.05)
        raise AssertionError("own redis-server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()  # like a crash: no goodbye to the subscribers
            self.process.wait(10)
        self.process = None


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        if IN_CI:
            pytest.fail("CI=true and redis-server is not installed", pytrace=False)
        pytest.skip("redis-server not installed (apt-get install redis-server)")
    directory = tmp_path / "redis"
    directory.mkdir()
    server = OwnRedis(free_port(), directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()
