"""Store transaction methods: conversations (MLS group states)."""

from __future__ import annotations

from doorless.client.store.base import TxBase
from doorless.client.store.rows import Group
from doorless.client.store.schema import group_row


class GroupRows(TxBase):
    """Conversations (MLS group states)."""

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


__all__ = ["GroupRows"]
