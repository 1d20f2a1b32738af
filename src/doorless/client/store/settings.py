"""Store transaction methods: message requests and settings (small named values)."""

from __future__ import annotations

from doorless.client.store.base import TxBase
from doorless.client.store.rows import MessageRequest


class SettingRows(TxBase):
    """Message requests and settings (small named values)."""

    __slots__ = ()

    def put_request(self, request: MessageRequest) -> None:
        """Record a message request (replacing one of the same group)."""
        self._x(
            "INSERT OR REPLACE INTO message_requests (group_id, inviter, created_at) "
            "VALUES (?, ?, ?)",
            (request.group_id, request.inviter, request.created_at),
        )

    def get_request(self, group_id: bytes) -> MessageRequest | None:
        row = self._one(
            "SELECT group_id, inviter, created_at FROM message_requests WHERE group_id = ?",
            (group_id,),
        )
        if row is None:
            return None
        return MessageRequest(group_id=row[0], inviter=row[1], created_at=row[2])

    def list_requests(self) -> list[MessageRequest]:
        rows = self._all(
            "SELECT group_id, inviter, created_at FROM message_requests "
            "ORDER BY created_at, group_id"
        )
        return [MessageRequest(group_id=r[0], inviter=r[1], created_at=r[2]) for r in rows]

    def delete_request(self, group_id: bytes) -> bool:
        """Forget a request (accepted, or its conversation deleted); False if there was none."""
        cursor = self._x("DELETE FROM message_requests WHERE group_id = ?", (group_id,))
        return bool(cursor.rowcount)

    # settings

    def get_setting(self, key: str) -> str | None:
        row = self._one("SELECT value FROM settings WHERE key = ?", (key,))
        return None if row is None else str(row[0])

    def set_setting(self, key: str, value: str) -> None:
        self._x("INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)", (key, value))

    def delete_setting(self, key: str) -> None:
        self._x("DELETE FROM settings WHERE key = ?", (key,))


__all__ = ["SettingRows"]
