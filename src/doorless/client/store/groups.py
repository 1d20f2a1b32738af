"""Store transaction methods: conversations (MLS group states) and message requests."""

from __future__ import annotations

from doorless.client.store.base import TxBase
from doorless.client.store.rows import Group, MessageRequest
from doorless.client.store.schema import group_row


class GroupRows(TxBase):
    """Conversations (MLS group states) and the message requests among them."""

    __slots__ = ()

    def insert_group(self, group: Group) -> None:
        """Add a new group; `StateError` if one with this group_id exists."""
        self._x(
            "INSERT INTO mls_groups (group_id, name, mls_state, epoch, disappearing_timer_ms, "
            "status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                group.group_id,
                group.name,
                group.mls_state,
                group.epoch,
                group.disappearing_timer_ms,
                group.status.value,
                group.created_at,
                group.updated_at,
            ),
        )

    def update_group(self, group: Group) -> None:
        """Replace every field of an existing group (created_at is kept)."""
        self._changed(
            self._x(
                "UPDATE mls_groups SET name = ?, mls_state = ?, epoch = ?, "
                "disappearing_timer_ms = ?, status = ?, updated_at = ? WHERE group_id = ?",
                (
                    group.name,
                    group.mls_state,
                    group.epoch,
                    group.disappearing_timer_ms,
                    group.status.value,
                    group.updated_at,
                    group.group_id,
                ),
            ),
            "the group",
        )

    def update_group_state(self, group_id: bytes, mls_state: bytes, epoch: int, now: int) -> None:
        """Store a group's new MLS state (after a merge or a ratchet step)."""
        self._changed(
            self._x(
                "UPDATE mls_groups SET mls_state = ?, epoch = ?, updated_at = ? WHERE group_id = ?",
                (mls_state, epoch, now, group_id),
            ),
            "the group",
        )

    def get_group(self, group_id: bytes) -> Group | None:
        row = self._one(
            "SELECT group_id, name, mls_state, epoch, disappearing_timer_ms, status, "
            "created_at, updated_at FROM mls_groups WHERE group_id = ?",
            (group_id,),
        )
        return None if row is None else group_row(row)

    def list_groups(self) -> list[Group]:
        rows = self._all(
            "SELECT group_id, name, mls_state, epoch, disappearing_timer_ms, status, "
            "created_at, updated_at FROM mls_groups ORDER BY created_at, group_id"
        )
        return [group_row(r) for r in rows]

    def delete_group(self, group_id: bytes) -> None:
        """Delete a group with its messages and pending sends."""
        self._changed(
            self._x("DELETE FROM mls_groups WHERE group_id = ?", (group_id,)), "the group"
        )

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


__all__ = ["GroupRows"]
