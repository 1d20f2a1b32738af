"""The server's own test suite (``tests/server``), run again over PostgreSQL and Redis.

Every async test of the HTTP/WebSocket suites is collected here a second time (as
``test_<module>__<name>``) with the app's default backends swapped for `PostgresStorage` (a fresh
schema per test) and `RedisFanout` (its own channel prefix): the same assertions must hold on
the scale-out backends. The helpers that read the database directly (``db_dump``, the canary
``scan`` of I1) are pointed at the PostgreSQL schema.

Left out: ``test_storage`` (SQLite's files and pragmas; the shared contract is
``test_storage_contract``), ``test_fuzz`` (a module-wide server; decoding does not depend on
the store), ``test_real_server`` (processes; see ``test_multinode``) and
``test_hot_routes_contract`` and ``test_ws_contract`` (two apps side by side, which would
share one schema here; they compare the HTTP and WebSocket layers of the plain endpoints and
their FastAPI twins, which do not depend on the store; the PostgreSQL send and ack paths are
``test_send_round_trips``).
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import secrets
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

import doorless.server.app as app_module
from doorless.server.fanout.redis import RedisFanout
from doorless.server.storage.postgres import PostgresStorage

from .conftest import PgSchema

pytestmark = pytest.mark.asyncio

SUITE_DIR = Path(__file__).resolve().parents[1] / "server"
LEFT_OUT = {
    "test_storage",
    "test_fuzz",
    "test_real_server",
    "test_hot_routes_contract",
    "test_ws_contract",
}
_MODULES = sorted(p.stem for p in SUITE_DIR.glob("test_*.py") if p.stem not in LEFT_OUT)
helpers: Any = importlib.import_module("server.helpers")
_suite = [importlib.import_module(f"server.{name}") for name in _MODULES]

for _module in _suite:
    _short = _module.__name__.rpartition(".")[2].removeprefix("test_")
    for _name, _obj in vars(_module).items():
        if _name.startswith("test_") and inspect.iscoroutinefunction(_obj):
            globals()[f"test_{_short}__{_name.removeprefix('test_')}"] = _obj


# --- the database as the suite's helpers see it ---------------------------------------------


def _in_thread(coro: Any) -> Any:
    """Run a coroutine to completion from synchronous code inside a running event loop."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def _rows(schema: PgSchema) -> list[tuple[str, tuple[Any, ...]]]:
    conn = await asyncpg.connect(schema.dsn, server_settings={"search_path": schema.schema})
    try:
        tables = await conn.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = $1 "
            "ORDER BY table_name",
            schema.schema,
        )
        out = []
        for (table,) in tables:
            for row in await conn.fetch(f'SELECT * FROM "{table}"'):
                out.append((str(table), tuple(row.values())))
        return out
    finally:
        await conn.close()


def _text(value: Any) -> str:
    return value.hex() if isinstance(value, bytes) else repr(value)


def pg_dump(schema: PgSchema) -> list[str]:
    """Every row, one line each, sorted; bytes in hex (as SQLite's dump writes blobs)."""
    rows = _in_thread(_rows(schema))
    return sorted(f"{table}|" + "|".join(_text(v) for v in row) for table, row in rows)


def pg_scan(schema: PgSchema, original: Any) -> Any:
    def scan(root: Path, needles: list[bytes]) -> list[tuple[str, bytes]]:
        hits: list[tuple[str, bytes]] = list(original(root, needles))
        for table, row in _in_thread(_rows(schema)):
            for value in row:
                raw = value if isinstance(value, bytes) else str(value).encode()
                hits.extend((f"postgres:{table}", n) for n in needles if n in raw)
        return hits

    return scan


# --- fixtures the suite expects (its conftest is not in this directory) ----------------------


@pytest.fixture(autouse=True)
def on_postgres_and_redis(
    pg_schema: PgSchema, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[list[Any]]:
    """Make ``create_app``'s defaults PostgreSQL and Redis for this test."""
    made: list[Any] = []
    prefix = f"dltest:{secrets.token_hex(4)}:"

    def storage(_path: Path) -> PostgresStorage:
        # Durability is not what these tests check (test_storage_contract and test_faults
        # run with it): skip the commit fsync to keep the suite fast.
        dsn = pg_schema.dsn + ("&" if "?" in pg_schema.dsn else "?") + "synchronous_commit=off"
        store = PostgresStorage(dsn, schema=pg_schema.schema, min_connections=1, max_connections=5)
        made.append(store)
        return store

    def fanout() -> RedisFanout:
        node = RedisFanout(redis_url, channel_prefix=prefix)
        made.append(node)
        return node

    monkeypatch.setattr(app_module, "SQLiteStorage", storage)
    monkeypatch.setattr(app_module, "MemoryFanout", fanout)
    monkeypatch.setattr(helpers, "db_dump", lambda _path: pg_dump(pg_schema))
    original_scan = helpers.scan
    for module in (helpers, *_suite):
        if hasattr(module, "scan"):
            monkeypatch.setattr(module, "scan", pg_scan(pg_schema, original_scan))
    yield made


@pytest.fixture
def clock() -> Any:
    return helpers.FakeClock()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest_asyncio.fixture
async def server(
    data_dir: Path, clock: Any, on_postgres_and_redis: list[Any]
) -> AsyncIterator[Any]:
    async with helpers.running(helpers.make_config(data_dir), clock) as h:
        # Guard: the swap above really took effect (else this would be SQLite again).
        assert isinstance(h.ctx.storage, PostgresStorage)
        assert isinstance(h.ctx.fanout, RedisFanout)
        yield h
