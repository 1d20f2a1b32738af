"""Store transaction methods: what rich messages add to a message (its MIMI id, the message
it replies to, mentions, the edited and deleted flags), the edit history, reactions, "read up
to" receipts, and the encoded payloads of outgoing messages not yet sent (to encrypt them
again). The displayed text stays in ``messages.body``; a delete empties it in place."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from doorless.client.store.base import TxBase

# The migration that adds these tables (appended to `schema.MIGRATIONS`).
RICH_MIGRATION: tuple[str, ...] = (
    """CREATE TABLE rich_messages (
        local_id INTEGER PRIMARY KEY REFERENCES messages(local_id) ON DELETE CASCADE,
        mimi_id BLOB NOT NULL UNIQUE,
        in_reply_to BLOB,
        mentions TEXT NOT NULL,
        edited INTEGER NOT NULL,
        deleted INTEGER NOT NULL
    ) STRICT""",
    """CREATE TABLE message_edits (
        local_id INTEGER NOT NULL REFERENCES messages(local_id) ON DELETE CASCADE,
        version INTEGER NOT NULL,
        body BLOB NOT NULL,
        replaced_at INTEGER NOT NULL,
        PRIMARY KEY (local_id, version)
    ) STRICT""",
    """CREATE TABLE reactions (
        mimi_id BLOB PRIMARY KEY,
        local_id INTEGER NOT NULL REFERENCES messages(local_id) ON DELETE CASCADE,
        sender_user TEXT NOT NULL,
        emoji TEXT NOT NULL,
        sent_at INTEGER NOT NULL
    ) STRICT""",
    "CREATE INDEX reactions_by_message ON reactions(local_id)",
    """CREATE TABLE read_receipts (
        group_id BLOB NOT NULL REFERENCES mls_groups(group_id) ON DELETE CASCADE,
        reader TEXT NOT NULL,
        local_id INTEGER NOT NULL,
        read_at INTEGER NOT NULL,
        PRIMARY KEY (group_id, reader)
    ) STRICT""",
    """CREATE TABLE pending_payloads (
        message_id TEXT PRIMARY KEY,
        payload BLOB NOT NULL
    ) STRICT""",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class RichMeta:
    """What a MIMI message adds to its ``messages`` row."""

    local_id: int
    mimi_id: bytes
    in_reply_to: bytes | None = None
    mentions: tuple[str, ...] = ()
    edited: bool = False
    deleted: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredReaction:
    mimi_id: bytes
    local_id: int  # the message reacted to
    sender_user: str
    emoji: str = field(repr=False)
    sent_at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class EditVersion:
    """A replaced text of a message (``version`` 0 is the original)."""

    version: int
    body: bytes = field(repr=False)
    replaced_at: int


_META = "local_id, mimi_id, in_reply_to, mentions, edited, deleted"


def _meta(row: Sequence[Any]) -> RichMeta:
    return RichMeta(
        local_id=row[0],
        mimi_id=row[1],
        in_reply_to=row[2],
        mentions=tuple(json.loads(row[3])),
        edited=bool(row[4]),
        deleted=bool(row[5]),
    )


class RichRows(TxBase):
    """Rich message metadata, edits, reactions, receipts and pending payloads."""

    __slots__ = ()

    def put_rich(self, meta: RichMeta) -> None:
        self._x(
            f"INSERT INTO rich_messages ({_META}) VALUES (?, ?, ?, ?, ?, ?)",
            (
                meta.local_id,
                meta.mimi_id,
                meta.in_reply_to,
                json.dumps(list(meta.mentions)),
                int(meta.edited),
                int(meta.deleted),
            ),
        )

    def get_rich(self, local_id: int) -> RichMeta | None:
        row = self._one(f"SELECT {_META} FROM rich_messages WHERE local_id = ?", (local_id,))
        return None if row is None else _meta(row)

    def rich_by_mimi_id(self, mimi_id: bytes) -> RichMeta | None:
        row = self._one(f"SELECT {_META} FROM rich_messages WHERE mimi_id = ?", (mimi_id,))
        return None if row is None else _meta(row)

    def rich_of(self, local_ids: Sequence[int]) -> dict[int, RichMeta]:
        """The metadata of these messages (those that have some)."""
        found: dict[int, RichMeta] = {}
        for start in range(0, len(local_ids), 500):
            chunk = list(local_ids[start : start + 500])
            marks = ", ".join("?" * len(chunk))
            for row in self._all(
                f"SELECT {_META} FROM rich_messages WHERE local_id IN ({marks})", chunk
            ):
                found[row[0]] = _meta(row)
        return found

    def edit_message(self, local_id: int, body: bytes, mentions: tuple[str, ...], now: int) -> None:
        """Replace a message's text, keeping the replaced one in its edit history."""
        version = self._one("SELECT count(*) FROM message_edits WHERE local_id = ?", (local_id,))[0]
        self._x(
            "INSERT INTO message_edits (local_id, version, body, replaced_at) "
            "SELECT local_id, ?, body, ? FROM messages WHERE local_id = ?",
            (version, now, local_id),
        )
        self._changed(
            self._x("UPDATE messages SET body = ? WHERE local_id = ?", (body, local_id)),
            "the message",
        )
        self._x(
            "UPDATE rich_messages SET edited = 1, mentions = ? WHERE local_id = ?",
            (json.dumps(list(mentions)), local_id),
        )

    def set_message_franking(self, local_id: int, franking: bytes) -> None:
        self._x("UPDATE messages SET franking = ? WHERE local_id = ?", (franking, local_id))

    def edit_history(self, local_id: int) -> list[EditVersion]:
        return [
            EditVersion(version=r[0], body=r[1], replaced_at=r[2])
            for r in self._all(
                "SELECT version, body, replaced_at FROM message_edits WHERE local_id = ? "
                "ORDER BY version",
                (local_id,),
            )
        ]

    def erase_message(self, local_id: int) -> None:
        """Delete for everyone: the text, its edit history, its franking evidence (which holds
        the text) and its reactions go; the row stays as a "deleted" placeholder."""
        self._changed(
            self._x(
                "UPDATE messages SET body = x'', franking = NULL WHERE local_id = ?", (local_id,)
            ),
            "the message",
        )
        self._x("DELETE FROM message_edits WHERE local_id = ?", (local_id,))
        self._x("DELETE FROM reactions WHERE local_id = ?", (local_id,))
        self._x(
            "UPDATE rich_messages SET deleted = 1, mentions = '[]' WHERE local_id = ?",
            (local_id,),
        )

    # reactions

    def put_reaction(self, reaction: StoredReaction) -> None:
        self._x(
            "INSERT INTO reactions (mimi_id, local_id, sender_user, emoji, sent_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (
                reaction.mimi_id,
                reaction.local_id,
                reaction.sender_user,
                reaction.emoji,
                reaction.sent_at,
            ),
        )

    def get_reaction(self, mimi_id: bytes) -> StoredReaction | None:
        row = self._one(
            "SELECT mimi_id, local_id, sender_user, emoji, sent_at FROM reactions "
            "WHERE mimi_id = ?",
            (mimi_id,),
        )
        if row is None:
            return None
        return StoredReaction(
            mimi_id=row[0], local_id=row[1], sender_user=row[2], emoji=row[3], sent_at=row[4]
        )

    def delete_reaction(self, mimi_id: bytes) -> None:
        self._changed(
            self._x("DELETE FROM reactions WHERE mimi_id = ?", (mimi_id,)), "the reaction"
        )

    def reactions_of(self, local_ids: Sequence[int]) -> list[StoredReaction]:
        """The reactions to these messages, oldest first."""
        out: list[StoredReaction] = []
        for start in range(0, len(local_ids), 500):
            chunk = list(local_ids[start : start + 500])
            marks = ", ".join("?" * len(chunk))
            out.extend(
                StoredReaction(
                    mimi_id=r[0], local_id=r[1], sender_user=r[2], emoji=r[3], sent_at=r[4]
                )
                for r in self._all(
                    "SELECT mimi_id, local_id, sender_user, emoji, sent_at FROM reactions "
                    f"WHERE local_id IN ({marks}) ORDER BY sent_at, mimi_id",
                    chunk,
                )
            )
        return out

    # read receipts ("read up to")

    def put_read_up_to(self, group_id: bytes, reader: str, local_id: int, now: int) -> bool:
        """Record that ``reader`` read up to ``local_id``; False if it already had read as far."""
        cursor = self._x(
            "INSERT INTO read_receipts (group_id, reader, local_id, read_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (group_id, reader) DO UPDATE SET local_id = excluded.local_id, "
            "read_at = excluded.read_at WHERE excluded.local_id > read_receipts.local_id",
            (group_id, reader, local_id, now),
        )
        return bool(cursor.rowcount == 1)

    def read_up_to(self, group_id: bytes) -> dict[str, int]:
        """reader -> the newest local message id they read."""
        return {
            r[0]: r[1]
            for r in self._all(
                "SELECT reader, local_id FROM read_receipts WHERE group_id = ?", (group_id,)
            )
        }

    # payloads of outgoing messages not yet accepted by the server

    def put_pending_payload(self, message_id: str, payload: bytes) -> None:
        self._x(
            "INSERT OR REPLACE INTO pending_payloads (message_id, payload) VALUES (?, ?)",
            (message_id, payload),
        )

    def get_pending_payload(self, message_id: str) -> bytes | None:
        row = self._one("SELECT payload FROM pending_payloads WHERE message_id = ?", (message_id,))
        return None if row is None else bytes(row[0])

    def drop_pending_payload(self, message_id: str) -> None:
        self._x("DELETE FROM pending_payloads WHERE message_id = ?", (message_id,))


__all__ = ["RICH_MIGRATION", "EditVersion", "RichMeta", "RichRows", "StoredReaction"]
