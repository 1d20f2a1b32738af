"""The seam between the shared SQL and a database driver.

Owns the `Executor` protocol (the four or five calls `SqlStorage` makes on a connection) and
`Tx`, what an operation declares about its transaction so each dialect can map it onto its own
transactions (SQLite: reads on a reader connection, a ``SNAPSHOT`` in a read transaction,
writes in a group-committed ``BEGIN IMMEDIATE`` on its one writer connection; PostgreSQL: an
explicit, retried transaction only when there is more than one statement).

Statements use ``$n`` placeholders (asyncpg's); the SQLite executor turns them into ``?n``.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Protocol, TypeAlias, TypeVar

T = TypeVar("T")

Row: TypeAlias = Sequence[Any]


class Executor(Protocol):
    """Runs statements on the connection of the current operation."""

    async def fetch(self, sql: str, *args: Any) -> list[Row]: ...

    async def fetchrow(self, sql: str, *args: Any) -> Row | None: ...

    async def fetchval(self, sql: str, *args: Any) -> Any:
        """The first column of the first row, or None if there is no row."""

    async def execute(self, sql: str, *args: Any) -> int:
        """Run a statement; returns how many rows it changed."""

    async def executemany(self, sql: str, args: Iterable[Sequence[Any]]) -> None: ...


class Tx(enum.Enum):
    """What an operation needs from its transaction; each dialect maps it in `_run`."""

    READ = "read"  # one read statement: no explicit transaction
    SNAPSHOT = "snapshot"  # several reads that must agree (a transaction where they can race)
    STATEMENT = "statement"  # one writing statement
    WRITE = "write"  # several statements that commit together or not at all


# An operation: ``op(executor, *args)``, run by a dialect's ``_run``.
Op: TypeAlias = Callable[..., Awaitable[T]]
