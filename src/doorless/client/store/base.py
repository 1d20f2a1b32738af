"""The statement plumbing of a store transaction: execution with errors mapped into the
`doorless.errors` tree (`StateError` for constraints, `StoreError` for the rest)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlcipher3

from doorless.client.store.errors import StoreError
from doorless.errors import StateError


class TxBase:
    """Statement helpers shared by the record families of `Transaction`."""

    __slots__ = ("_conn", "_live")

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self._live = True

    def _x(self, sql: str, params: Sequence[Any] = ()) -> Any:
        if not self._live:
            raise StateError("the transaction has ended")
        try:
            return self._conn.execute(sql, params)
        except sqlcipher3.IntegrityError as e:
            # SQLite's message names the constraint and columns only, never values.
            raise StateError(f"store constraint violated: {e}") from e
        except sqlcipher3.Error as e:
            raise StoreError(f"store operation failed: {e}") from e

    def _one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._x(sql, params).fetchone()

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return list(self._x(sql, params).fetchall())

    def _changed(self, cursor: Any, what: str) -> None:
        if cursor.rowcount == 0:
            raise StateError(f"{what} does not exist")


__all__ = ["TxBase"]
