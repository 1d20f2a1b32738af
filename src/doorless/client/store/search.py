"""Store transaction methods: full-text search over the text messages.

The index is the FTS5 table ``message_search`` (schema migration 3): an external-content
table over the view ``message_text`` (the text rows of ``messages``), kept in step by triggers
on every insert, update and delete of a message row, with FTS5's ``secure-delete`` on so that
a deleted message's terms leave the index at once. A query is FTS5's query syntax
(https://sqlite.org/fts5.html#full_text_query_syntax): words, ``"phrases"``, ``prefix*``,
``AND``/``OR``/``NOT``, ``NEAR(...)``; `literal_query` turns any text into words to match.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlcipher3

from doorless.client.store.base import TxBase
from doorless.client.store.errors import InvalidSearchQuery
from doorless.client.store.rows import Message
from doorless.client.store.schema import MESSAGE_COLUMNS, message_row

MAX_QUERY_CHARS = 1000
# Snippets mark a match with STX ... ETX; the index never holds these two characters
# (schema.SEARCH_TEXT), so every marker in a snippet is one of ours.
MATCH_START = "\x02"
MATCH_END = "\x03"
SNIPPET_ELLIPSIS = "…"
SNIPPET_TOKENS = 12

_COLUMNS = ", ".join(f"m.{c.strip()}" for c in MESSAGE_COLUMNS.split(","))


@dataclass(frozen=True, slots=True)
class SearchRow:
    """A message that matches a query, with a snippet of its text (matches marked by
    `MATCH_START` ... `MATCH_END`)."""

    message: Message
    snippet: str = field(repr=False)


def literal_query(text: str) -> str:
    """The FTS5 query that matches every word of ``text`` as written (each one a quoted
    string, so no character of it is query syntax)."""
    words = text.split()
    if not words:
        raise InvalidSearchQuery("the search text is empty")
    return " ".join('"' + w.replace('"', '""') + '"' for w in words)


def check_query(query: str) -> None:
    """`InvalidSearchQuery` unless ``query`` is a valid FTS5 query.

    It is parsed by an empty FTS5 table of the same tokenizer in a private in-memory
    database, so that a syntax error is told apart from a failure of the store itself.
    """
    if not query.strip():
        raise InvalidSearchQuery("the search text is empty")
    if len(query) > MAX_QUERY_CHARS:
        raise InvalidSearchQuery(f"the search text is longer than {MAX_QUERY_CHARS} characters")
    if "\x00" in query:
        raise InvalidSearchQuery("the search text contains a NUL character")
    probe = sqlcipher3.connect(":memory:")
    try:
        probe.execute(
            "CREATE VIRTUAL TABLE probe USING fts5 (body, "
            "tokenize = 'unicode61 remove_diacritics 2')"
        )
        probe.execute("SELECT rowid FROM probe WHERE probe MATCH ?", (query,)).fetchall()
    except sqlcipher3.OperationalError as e:
        raise InvalidSearchQuery(f"invalid search query: {e}") from None
    finally:
        probe.close()


class SearchRows(TxBase):
    """Full-text search over the text messages of every conversation."""

    __slots__ = ()

    def search_messages(
        self,
        query: str,
        *,
        now: int,
        group_id: bytes | None = None,
        limit: int = 20,
    ) -> list[SearchRow]:
        """The messages matching the FTS5 ``query``, best first (BM25 rank, then newest).

        ``group_id`` limits the search to one conversation; messages whose disappearing
        timer has run out (``expires_at <= now``) are left out even before they are purged.
        `InvalidSearchQuery` for a query that is not valid FTS5 syntax.
        """
        check_query(query)
        where = ["message_search MATCH ?", "(m.expires_at IS NULL OR m.expires_at > ?)"]
        params: list[object] = [query, now]
        if group_id is not None:
            where.append("m.group_id = ?")
            params.append(group_id)
        params.append(limit)
        sql = (
            f"SELECT {_COLUMNS}, snippet(message_search, 0, char(2), char(3), "
            f"'{SNIPPET_ELLIPSIS}', {SNIPPET_TOKENS}) "
            "FROM message_search JOIN messages AS m ON m.local_id = message_search.rowid "
            f"WHERE {' AND '.join(where)} "
            "ORDER BY message_search.rank, m.local_id DESC LIMIT ?"
        )
        rows = self._all(sql, params)
        return [SearchRow(message_row(r[:-1]), r[-1]) for r in rows]

    def search_index_check(self) -> None:
        """FTS5's own consistency check of the index against the messages (`StoreError`
        if they differ)."""
        self._x("INSERT INTO message_search (message_search, rank) VALUES ('integrity-check', 1)")


__all__ = [
    "MATCH_END",
    "MATCH_START",
    "MAX_QUERY_CHARS",
    "SearchRow",
    "SearchRows",
    "check_query",
    "literal_query",
]
