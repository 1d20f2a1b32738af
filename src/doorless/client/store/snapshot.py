"""Store transaction methods for backups: whole tables as rows of plain values.

A backup (`doorless.client.backup`) copies named tables column by column, so that a table
other migrations extend keeps working: a restore inserts the columns the backup has, and the
current schema fills the rest with its defaults. Table names are never taken from input here
unchecked: the caller gives them from its own list, and `insert_rows` checks every column
against the current schema.
"""

from __future__ import annotations

from collections.abc import Sequence

from doorless.client.store.base import TxBase
from doorless.errors import StateError

# A value as SQLite returns it from these STRICT tables.
SqlValue = int | str | bytes | None


class SnapshotRows(TxBase):
    """Whole-table reads and inserts (backup and restore)."""

    __slots__ = ()

    def table_columns(self, table: str) -> tuple[str, ...]:
        """The columns of ``table`` in the current schema (empty if there is no such table)."""
        rows = self._all("SELECT name FROM pragma_table_info(?)", (table,))
        return tuple(str(r[0]) for r in rows)

    def dump_rows(self, table: str, columns: Sequence[str]) -> list[tuple[SqlValue, ...]]:
        """Every row of ``table`` (these ``columns``, in rowid order)."""
        known = self.table_columns(table)
        if not columns or any(c not in known for c in columns):
            raise StateError(f"no such columns in the store table {table}")
        names = ", ".join(f'"{c}"' for c in columns)
        return [tuple(r) for r in self._all(f'SELECT {names} FROM "{table}" ORDER BY rowid')]

    def insert_rows(
        self, table: str, columns: Sequence[str], rows: Sequence[Sequence[SqlValue]]
    ) -> None:
        """Insert ``rows`` into ``table``; `StateError` for an unknown column or a constraint
        the rows break (the caller's transaction then rolls back)."""
        known = self.table_columns(table)
        if not columns or any(c not in known for c in columns):
            raise StateError(f"the backup's columns do not fit the store table {table}")
        names = ", ".join(f'"{c}"' for c in columns)
        marks = ", ".join("?" for _ in columns)
        sql = f'INSERT INTO "{table}" ({names}) VALUES ({marks})'
        for row in rows:
            if len(row) != len(columns):
                raise StateError(f"a backup row of {table} has the wrong number of values")
            self._x(sql, row)


__all__ = ["SnapshotRows", "SqlValue"]
