"""Store transaction methods: messages, their expiry, and the processed-message dedupe set."""

from __future__ import annotations

import dataclasses
from typing import Any

from doorless.client.store.base import TxBase
from doorless.client.store.rows import Message, MessageState
from doorless.client.store.schema import MESSAGE_COLUMNS, message_row
from doorless.errors import ConfigurationError


class MessageRows(TxBase):
    """Messages, their expiry, and the dedupe set of processed server messages."""

    __slots__ = ()

    def insert_message(self, message: Message) -> Message:
        """Store a message; returns it with its new ``local_id``."""
        if message.local_id is not None:
            raise ConfigurationError("a new message has no local_id yet")
        cursor = self._x(
            "INSERT INTO messages (server_id, group_id, sender_user, sender_device, outgoing, "
            "content_type, body, sent_at, received_at, expires_at, state, franking, transferred) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                message.server_id,
                message.group_id,
                message.sender_user,
                message.sender_device,
                int(message.outgoing),
                message.content_type,
                message.body,
                message.sent_at,
                message.received_at,
                message.expires_at,
                message.state.value,
                message.franking,
                int(message.transferred),
            ),
        )
        local_id: int = cursor.lastrowid
        return dataclasses.replace(message, local_id=local_id)

    def get_message(self, local_id: int) -> Message | None:
        row = self._one(f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE local_id = ?", (local_id,))
        return None if row is None else message_row(row)

    def get_message_by_server_id(self, server_id: str) -> Message | None:
        row = self._one(f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE server_id = ?", (server_id,))
        return None if row is None else message_row(row)

    def list_messages(
        self,
        group_id: bytes,
        *,
        after: int | None = None,
        before: int | None = None,
        limit: int | None = None,
    ) -> list[Message]:
        """Messages of a group in local order, oldest first.

        ``after``/``before`` bound the local_id (exclusive). With ``limit``, the newest
        ``limit`` messages before ``before`` (or the oldest after ``after`` if only ``after``
        is given).
        """
        where = ["group_id = ?"]
        params: list[Any] = [group_id]
        if after is not None:
            where.append("local_id > ?")
            params.append(after)
        if before is not None:
            where.append("local_id < ?")
            params.append(before)
        newest_first = limit is not None and after is None
        order = "DESC" if newest_first else "ASC"
        sql = f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE {' AND '.join(where)} "
        sql += f"ORDER BY local_id {order}"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        messages = [message_row(r) for r in self._all(sql, params)]
        if newest_first:
            messages.reverse()
        return messages

    def update_message_state(
        self, local_id: int, state: MessageState, *, expires_at: int | None = None
    ) -> None:
        """Set a message's state (and, if given, its expiry, e.g. when a timer starts on read)."""
        if expires_at is None:
            cursor = self._x(
                "UPDATE messages SET state = ? WHERE local_id = ?", (state.value, local_id)
            )
        else:
            cursor = self._x(
                "UPDATE messages SET state = ?, expires_at = ? WHERE local_id = ?",
                (state.value, expires_at, local_id),
            )
        self._changed(cursor, "the message")

    def set_message_server_id(self, local_id: int, server_id: str) -> None:
        self._changed(
            self._x("UPDATE messages SET server_id = ? WHERE local_id = ?", (server_id, local_id)),
            "the message",
        )

    def delete_message(self, local_id: int) -> None:
        self._changed(
            self._x("DELETE FROM messages WHERE local_id = ?", (local_id,)), "the message"
        )

    def delete_expired(self, now: int) -> int:
        """Delete messages whose ``expires_at`` has passed; returns how many."""
        cursor = self._x(
            "DELETE FROM messages WHERE expires_at IS NOT NULL AND expires_at <= ?", (now,)
        )
        deleted: int = cursor.rowcount
        return deleted

    # processed server messages (dedupe)

    def mark_processed(self, server_id: str, now: int) -> bool:
        """Record a server message as processed; False if it already was (a duplicate)."""
        cursor = self._x(
            "INSERT OR IGNORE INTO processed (server_id, processed_at) VALUES (?, ?)",
            (server_id, now),
        )
        return bool(cursor.rowcount == 1)

    def is_processed(self, server_id: str) -> bool:
        return self._one("SELECT 1 FROM processed WHERE server_id = ?", (server_id,)) is not None

    def prune_processed(self, before: int) -> int:
        """Forget dedupe entries processed before ``before`` (the server no longer resends)."""
        deleted: int = self._x("DELETE FROM processed WHERE processed_at < ?", (before,)).rowcount
        return deleted


__all__ = ["MessageRows"]
