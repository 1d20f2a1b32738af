"""Full-text search over this profile's own messages, inside the encrypted store.

The index lives in the SQLCipher database with the messages (`doorless.client.store.search`):
nothing about a search leaves the device, and the index is encrypted at rest like the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from doorless.client.core import Session, conversation_gid, message_info
from doorless.client.events import MessageInfo
from doorless.client.store import InvalidSearchQuery, Transaction
from doorless.client.store.search import MATCH_END, MATCH_START, check_query, literal_query

MAX_RESULTS = 1000


@dataclass(frozen=True, slots=True)
class SearchResult:
    """A message that matches a search, with a snippet of its text around the matches.

    ``matches`` are the ``(start, end)`` character offsets of the matched words in
    ``snippet``; the snippet is peer text (render it as such).
    """

    message: MessageInfo
    snippet: str = field(repr=False)
    matches: tuple[tuple[int, int], ...]


def split_snippet(marked: str) -> tuple[str, tuple[tuple[int, int], ...]]:
    """A snippet with its matches marked (STX ... ETX) as plain text and match offsets."""
    text: list[str] = []
    matches: list[tuple[int, int]] = []
    length = 0
    start: int | None = None
    for ch in marked:
        if ch == MATCH_START:
            start = length
        elif ch == MATCH_END:
            if start is not None and start < length:
                matches.append((start, length))
            start = None
        else:
            text.append(ch)
            length += 1
    return "".join(text), tuple(matches)


def fts_query(text: str, *, literal: bool) -> str:
    """The FTS5 query for a user's search text (``literal``: every word as written)."""
    query = literal_query(text) if literal else text
    check_query(query)
    return query


async def search(
    s: Session,
    text: str,
    *,
    conversation_id: str | None = None,
    limit: int = 20,
    literal: bool = False,
) -> list[SearchResult]:
    """Messages whose text matches ``text``, best first (see `Client.search`)."""
    if not 1 <= limit <= MAX_RESULTS:
        raise InvalidSearchQuery(f"the number of results must be 1 to {MAX_RESULTS}")
    query = fts_query(text, literal=literal)
    gid = conversation_gid(conversation_id) if conversation_id is not None else None
    now = s.now_ms()

    def find(tx: Transaction) -> list[SearchResult]:
        results = []
        for row in tx.search_messages(query, now=now, group_id=gid, limit=limit):
            snippet, matches = split_snippet(row.snippet)
            results.append(SearchResult(message_info(row.message), snippet, matches))
        return results

    return await s.tx(find)


__all__ = ["MAX_RESULTS", "SearchResult", "fts_query", "search", "split_snippet"]
