"""PostgreSQL and Redis for the tests that need them.

Defaults match the development machines and CI; override with the variables:

* ``DOORLESS_TEST_POSTGRES`` = ``postgresql://postgres@127.0.0.1:5432/test``
* ``DOORLESS_TEST_REDIS`` = ``redis://127.0.0.1:6379/0``

With ``CI=true`` a missing service FAILS every test that needs it (those tests are mandatory
there); elsewhere they are skipped with a message saying how to enable them.
"""

from __future__ import annotations

import asyncio
import os
from functools import cache

import asyncpg
import pytest
import redis.asyncio as aioredis

PG_DSN = os.environ.get("DOORLESS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("DOORLESS_TEST_REDIS", "redis://127.0.0.1:6379/0")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


async def _postgres_error() -> str | None:
    try:
        conn = await asyncpg.connect(PG_DSN, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return f"{type(exc).__name__}: {exc}"
    await conn.close()
    return None


async def _redis_error() -> str | None:
    client = aioredis.Redis.from_url(REDIS_URL, socket_connect_timeout=5, socket_timeout=5)
    try:
        await client.ping()
    except (OSError, aioredis.RedisError) as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        await client.aclose()
    return None


_PROBES = {"postgres": _postgres_error, "redis": _redis_error}


@cache
def _service_error(name: str) -> str | None:
    return asyncio.run(_PROBES[name]())


def require(name: str) -> None:
    """Fail (CI) or skip (elsewhere) unless the service ``name`` ("postgres"/"redis") answers.

    For synchronous code (a fixture or a test's start): it runs its own event loop.
    """
    _verdict(name, _service_error(name))


async def require_async(name: str) -> None:
    """`require` for code already inside an event loop (async fixtures)."""
    _verdict(name, await _PROBES[name]())


def _verdict(name: str, error: str | None) -> None:
    if error is None:
        return
    where = PG_DSN if name == "postgres" else REDIS_URL
    variable = "DOORLESS_TEST_POSTGRES" if name == "postgres" else "DOORLESS_TEST_REDIS"
    if IN_CI:
        pytest.fail(
            f"CI=true and {name} is not reachable at {where} ({error}): the PostgreSQL/Redis "
            "tests are mandatory in CI",
            pytrace=False,
        )
    pytest.skip(f"{name} not reachable at {where} ({error}); start it or set {variable} to run it")
