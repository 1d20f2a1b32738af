"""Store transaction methods: the outbox (what waits to be sent, with its attempts)."""

from __future__ import annotations

import dataclasses
from typing import Any

from doorless.client.store.base import TxBase
from doorless.client.store.rows import OutboxItem
from doorless.client.store.schema import OUTBOX_COLUMNS, outbox_row
from doorless.errors import ConfigurationError


class OutboxRows(TxBase):
    """What waits to be sent, with its attempts."""

    __slots__ = ()

    def enqueue(self, item: OutboxItem) -> OutboxItem:
        """Queue a ciphertext for sending; returns it with its ``outbox_id``."""
        if item.outbox_id is not None:
            raise ConfigurationError("a new outbox item has no outbox_id yet")
        cursor = self._x(
            "INSERT INTO outbox (group_id, kind, payload, message_local_id, created_at, "
            "next_attempt_at, attempts, last_error) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                item.group_id,
                item.kind,
                item.payload,
                item.message_local_id,
                item.created_at,
                item.next_attempt_at,
                item.attempts,
                item.last_error,
            ),
        )
        outbox_id: int = cursor.lastrowid
        return dataclasses.replace(item, outbox_id=outbox_id)

    def list_outbox(
        self, *, due_at: int | None = None, limit: int | None = None
    ) -> list[OutboxItem]:
        """Pending sends in queue order (FIFO); only those due at ``due_at`` if given."""
        sql = f"SELECT {OUTBOX_COLUMNS} FROM outbox"
        params: list[Any] = []
        if due_at is not None:
            sql += " WHERE next_attempt_at <= ?"
            params.append(due_at)
        sql += " ORDER BY outbox_id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [outbox_row(r) for r in self._all(sql, params)]

    def get_outbox(self, outbox_id: int) -> OutboxItem | None:
        row = self._one(f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE outbox_id = ?", (outbox_id,))
        return None if row is None else outbox_row(row)

    def record_attempt(self, outbox_id: int, next_attempt_at: int, error: str | None) -> None:
        """Count a failed send attempt and schedule the next one."""
        self._changed(
            self._x(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ? "
                "WHERE outbox_id = ?",
                (next_attempt_at, error, outbox_id),
            ),
            "the outbox item",
        )

    def dequeue(self, outbox_id: int) -> None:
        """Remove a sent (or abandoned) item."""
        self._changed(
            self._x("DELETE FROM outbox WHERE outbox_id = ?", (outbox_id,)), "the outbox item"
        )


__all__ = ["OutboxRows"]
