"""Choosing the backends from ``--database``/``--redis``, and what the two stores share."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from doorless.errors import ConfigurationError
from doorless.server.backends import make_fanout, make_storage, split_options
from doorless.server.config import ServerConfig
from doorless.server.fanout.memory import MemoryFanout
from doorless.server.fanout.redis import RedisFanout
from doorless.server.storage import postgres, sqlite
from doorless.server.storage.postgres import PostgresStorage
from doorless.server.storage.sqlite import SQLiteStorage

from .conftest import PgSchema


def test_migrations_mirror_sqlite() -> None:
    """Same versions and descriptions on both stores: a new SQLite migration needs its
    PostgreSQL twin (and the reverse)."""
    assert [(v, d) for v, d, _ in postgres.MIGRATIONS] == [(v, d) for v, d, _ in sqlite.MIGRATIONS]
    assert postgres.SCHEMA_VERSION == sqlite.SCHEMA_VERSION


def test_default_is_sqlite_in_the_data_dir_and_memory_fanout(tmp_path: Path) -> None:
    storage = make_storage(ServerConfig(tmp_path))
    assert isinstance(storage, SQLiteStorage)
    assert storage._path == ServerConfig(tmp_path).database_path
    assert isinstance(make_fanout(None), MemoryFanout)


def test_urls_pick_the_implementations(tmp_path: Path) -> None:
    config = ServerConfig(tmp_path)
    pg = make_storage(config, "postgresql://u@db.example:5432/doorless?schema=chat&sslmode=require")
    assert isinstance(pg, PostgresStorage)
    assert (
        pg._schema == "chat"
        and pg._dsn == "postgresql://u@db.example:5432/doorless?sslmode=require"
    )
    assert isinstance(make_storage(config, "postgres://u@h/d"), PostgresStorage)
    lite = make_storage(config, f"sqlite://{tmp_path}/x.db")
    assert isinstance(lite, SQLiteStorage) and lite._path == tmp_path / "x.db"
    assert isinstance(make_fanout("redis://127.0.0.1:6379/0"), RedisFanout)


@pytest.mark.parametrize(
    "url",
    [
        "mysql://h/d",
        "sqlite://relative.db",
        "sqlite:///",
        "postgresql://h/d?schema=a&schema=b",
        "postgresql://h/d?schema=Bad-Name",
    ],
)
def test_bad_database_urls_are_configuration_errors(tmp_path: Path, url: str) -> None:
    with pytest.raises(ConfigurationError):
        make_storage(ServerConfig(tmp_path), url)


@pytest.mark.parametrize("url", ["http://h", "127.0.0.1:6379", "memcached://h"])
def test_bad_redis_urls_are_configuration_errors(url: str) -> None:
    with pytest.raises(ConfigurationError):
        make_fanout(url)


def test_split_options_keeps_other_parameters() -> None:
    assert split_options("postgresql://h/d") == ("postgresql://h/d", {})
    assert split_options("postgresql://h/d?a=1&schema=s&b=2&pool_size=3") == (
        "postgresql://h/d?a=1&b=2",
        {"schema": "s", "pool_size": "3"},
    )
    store = make_storage(ServerConfig(Path(".")), "postgresql://h/d?pool_size=3")
    assert isinstance(store, PostgresStorage) and store._max == 3


def test_cli_invite_mints_codes_in_postgres(pg_schema_sync: PgSchema) -> None:
    from typer.testing import CliRunner

    from doorless.cli.main import app

    result = CliRunner().invoke(
        app, ["server", "invite", "--database", pg_schema_sync.url, "--count", "3"]
    )
    assert result.exit_code == 0, result.output
    codes = result.output.split()
    assert len(codes) == 3

    async def count() -> int:
        conn = await asyncpg.connect(pg_schema_sync.dsn)
        try:
            return int(await conn.fetchval(f"SELECT COUNT(*) FROM {pg_schema_sync.schema}.invites"))
        finally:
            await conn.close()

    assert asyncio.run(count()) == 3


def test_cli_refuses_a_bad_database_url(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from doorless.cli.main import app

    result = CliRunner().invoke(
        app, ["server", "--data-dir", str(tmp_path), "--database", "mysql://h/d"]
    )
    assert result.exit_code == 2
    assert "postgresql://" in result.output
