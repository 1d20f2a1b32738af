"""Which storage and fan-out a server process uses, from the ``--database``/``--redis`` URLs.

* no ``--database`` (or ``sqlite:///path``): SQLite in the data directory (or at ``path``), the
  embedded default for a single process;
* ``--database postgresql://user:password@host:5432/dbname``: PostgreSQL, which any number of
  server processes may share. An optional ``?schema=name`` query parameter keeps the tables in
  that PostgreSQL schema (created if missing); other query parameters go to asyncpg (e.g.
  ``sslmode=verify-full``);
* no ``--redis``: in-process fan-out (one process only);
* ``--redis redis://host:6379/0`` (or ``rediss://`` for TLS): Redis pub/sub between processes.

Several processes need both a shared database and Redis; one process over PostgreSQL alone is
fine. The drivers are imported only when asked for, so a SQLite server needs neither installed.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from doorless.errors import ConfigurationError
from doorless.server.config import ServerConfig
from doorless.server.fanout.base import Fanout
from doorless.server.storage.base import Storage

POSTGRES_SCHEMES = ("postgresql", "postgres")
REDIS_SCHEMES = ("redis", "rediss", "unix")


def split_schema(url: str) -> tuple[str, str | None]:
    """``(dsn_without_schema_parameter, schema or None)``."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schemas = [v for k, v in query if k == "schema"]
    if len(schemas) > 1:
        raise ConfigurationError("--database: give 'schema' once")
    rest = urlencode([(k, v) for k, v in query if k != "schema"])
    return urlunsplit(parts._replace(query=rest)), (schemas[0] if schemas else None)


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
        dsn, schema = split_schema(database)
        return PostgresStorage(dsn, schema=schema)
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
