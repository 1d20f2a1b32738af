"""Which storage and fan-out a server process uses, from the ``--database``/``--redis`` URLs.

* no ``--database`` (or ``sqlite:///path``): SQLite in the data directory (or at ``path``), the
  embedded default for a single process;
* ``--database postgresql://user:password@host:5432/dbname``: PostgreSQL, which any number of
  server processes may share. Optional query parameters: ``schema=name`` keeps the tables in
  that PostgreSQL schema (created if missing), ``pool_size=N`` caps this process's
  connections (default 20); others go to asyncpg (e.g. ``sslmode=verify-full``);
* no ``--redis``: in-process fan-out (one process only);
* ``--redis redis://host:6379/0`` (or ``rediss://`` for TLS): Redis pub/sub between processes
  (wake-ups of push sockets, and the media relay's frames between nodes).

Several processes need both a shared database and Redis; one process over PostgreSQL alone is
fine. The drivers are imported only when asked for, so a SQLite server needs neither installed.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from doorless.errors import ConfigurationError
from doorless.server.config import ServerConfig
from doorless.server.fanout.base import Fanout
from doorless.server.relay.bridge import Bridge
from doorless.server.storage.base import Storage

POSTGRES_SCHEMES = ("postgresql", "postgres")
REDIS_SCHEMES = ("redis", "rediss", "unix")


_OURS = ("schema", "pool_size")


def split_options(url: str) -> tuple[str, dict[str, str]]:
    """``(dsn without our parameters, {"schema": ..., "pool_size": ...})`` (those given)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    ours: dict[str, str] = {}
    for key, value in query:
        if key in _OURS:
            if key in ours:
                raise ConfigurationError(f"--database: give '{key}' once")
            ours[key] = value
    rest = urlencode([(k, v) for k, v in query if k not in _OURS])
    return urlunsplit(parts._replace(query=rest)), ours


def make_storage(config: ServerConfig, database: str | None = None) -> Storage:
    if database is None:
        from doorless.server.storage.sqlite import SQLiteStorage

        return SQLiteStorage(config.database_path)
    scheme = urlsplit(database).scheme.lower()
    if scheme == "sqlite":
        from doorless.server.storage.sqlite import SQLiteStorage

        path = database.partition("://")[2]
        if not path.startswith("/") or path == "/":
            raise ConfigurationError("--database: use sqlite:///absolute/path")
        return SQLiteStorage(Path(path))
    if scheme in POSTGRES_SCHEMES:
        try:
            from doorless.server.storage.postgres import PostgresStorage
        except ImportError:
            raise ConfigurationError(
                "PostgreSQL needs the 'postgres' extra: pip install 'doorless[postgres]'"
            ) from None
        dsn, options = split_options(database)
        pool_size = options.get("pool_size", "20")
        if not pool_size.isdigit() or not 1 <= int(pool_size) <= 1000:
            raise ConfigurationError("--database: pool_size must be 1 to 1000")
        return PostgresStorage(
            dsn,
            schema=options.get("schema"),
            min_connections=min(2, int(pool_size)),
            max_connections=int(pool_size),
        )
    raise ConfigurationError("--database: expected a postgresql:// or sqlite:/// URL")


def make_fanout(redis: str | None = None) -> Fanout:
    if redis is None:
        from doorless.server.fanout.memory import MemoryFanout

        return MemoryFanout()
    if urlsplit(redis).scheme.lower() not in REDIS_SCHEMES:
        raise ConfigurationError("--redis: expected a redis://, rediss:// or unix:// URL")
    try:
        from doorless.server.fanout.redis import RedisFanout
    except ImportError:
        raise ConfigurationError(
            "Redis fan-out needs the 'postgres' extra: pip install 'doorless[postgres]'"
        ) from None
    return RedisFanout(redis)


def make_relay_bridge(redis: str | None = None) -> Bridge | None:
    """The media relay's link to the other nodes: Redis pub/sub with ``--redis`` (calls whose
    participants are on different nodes), else none (one process holds every call)."""
    if redis is None:
        return None
    from doorless.server.relay.bridge import RedisBridge

    return RedisBridge(redis)
