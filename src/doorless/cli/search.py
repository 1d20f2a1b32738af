"""``doorless search TEXT``: full-text search over this profile's own messages (in its
encrypted store, no network), and the daemon method ``search``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated

import typer

from doorless.cli import rpc
from doorless.cli.common import state
from doorless.cli.output import JSON, clock, emit, message_json, safe
from doorless.cli.people import label, person, resolve_conversation
from doorless.cli.session import Target, resolve, with_client

if TYPE_CHECKING:
    from doorless.client import Client, Conversation, SearchResult

DEFAULT_LIMIT = 20


def result_json(r: SearchResult) -> JSON:
    return {
        "message": message_json(r.message),
        "snippet": r.snippet,
        "matches": [list(m) for m in r.matches],
    }


def snippet_text(r: SearchResult) -> str:
    """The snippet on one line, every match in ``[...]``; peer text rendered `safe`."""
    parts, at = [], 0
    for start, end in r.matches:
        parts.append(safe(r.snippet[at:start]))
        parts.append(f"[{safe(r.snippet[start:end])}]")
        at = end
    parts.append(safe(r.snippet[at:]))
    return "".join(parts)


def result_text(
    r: SearchResult, me: str, conversations: Mapping[str, Conversation], nicks: Mapping[str, str]
) -> str:
    m = r.message
    where = label(conversations.get(m.conversation_id), me, nicks, m.conversation_id)
    who = "me" if m.outgoing else person(m.sender.user, nicks)
    return f"{clock(m.sent_at)}  {where}  {who}: {snippet_text(r)}  ({m.message_id[:12]})"


async def _search(
    client: Client, text: str, where: Target | None, limit: int, literal: bool
) -> list[SearchResult]:
    conversation_id = None
    if where is not None:
        conversation_id = (await resolve(client, where)).id
    await client.purge_expired()  # disappearing messages whose time has come (no network)
    return await client.search(text, conversation_id=conversation_id, limit=limit, literal=literal)


def search(
    ctx: typer.Context,
    words: Annotated[
        list[str],
        typer.Argument(
            metavar="TEXT...",
            help=(
                'What to find: words (all of them), "a phrase", prefix*, a OR b, a NOT b '
                "(SQLite FTS5 query syntax; --literal: the words as written)."
            ),
        ),
    ],
    in_conversation: Annotated[
        str | None,
        typer.Option(
            "--in", metavar="CONVERSATION", help="Only this conversation (@USER, group, id)."
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, max=1000, help="At most this many results.")
    ] = DEFAULT_LIMIT,
    literal: Annotated[
        bool, typer.Option("--literal", help="Match the words as written (no query syntax).")
    ] = False,
) -> None:
    """Search your own messages (in the encrypted profile; nothing is sent), best first."""
    st = state(ctx)
    text = " ".join(words)

    async def main(client: Client) -> None:
        where = None
        if in_conversation is not None:
            where = Target(conversation_id=(await resolve_conversation(client, in_conversation)).id)
        results = await _search(client, text, where, limit, literal)
        convs = {c.id: c for c in await client.conversations()}
        nicks = await client.nicknames()
        emit(
            st.json,
            {"query": text, "results": [result_json(r) for r in results]},
            lambda: (
                "\n".join(result_text(r, client.username, convs, nicks) for r in results)
                or "no messages match"
            ),
        )

    with_client(st, main)


@rpc.method("search")
async def rpc_search(client: Client, params: rpc.Params) -> JSON:
    """Search this profile's text messages. Params: ``text``, optionally one conversation
    (``user``, ``group`` or ``conversation_id``), ``limit`` (default 20), ``literal``. Result:
    ``{query, results: [{message, snippet, matches}]}``, best first."""
    text = params.string("text")
    user, group = params.opt_string("user"), params.opt_string("group")
    conversation_id = params.opt_string("conversation_id")
    limit = params.opt_int("limit")
    literal = params.flag("literal")
    params.done()
    where = None
    if (user, group, conversation_id) != (None, None, None):
        where = Target.of(user, group, conversation_id)
    results = await _search(client, text, where, DEFAULT_LIMIT if limit is None else limit, literal)
    return {"query": text, "results": [result_json(r) for r in results]}


__all__ = ["result_json", "result_text", "search", "snippet_text"]
