"""``doorless export CONVERSATION [--format json|markdown] [--output FILE]``: a conversation's
complete local history as JSON (schema ``doorless.conversation-export`` version 1, in
``docs/local-history.md``) or Markdown, and the daemon method ``exportConversation``.

The Markdown export is meant to be read and rendered; what peers chose (texts, names, file
names) can add no structure to it: each line goes through the terminal escaping of
`doorless.cli.output.safe` and then has every ASCII punctuation character backslash-escaped
(CommonMark §2.4: any of them may be), so no heading, list, link, HTML, table or code span
can start inside it, and message text only ever sits in its own block quote.
"""

from __future__ import annotations

import json
import os
import string
import time
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from doorless import client as dl
from doorless.cli import rpc
from doorless.cli.common import state
from doorless.cli.output import (
    JSON,
    conversation_json,
    emit,
    emit_json,
    message_json,
    safe,
    size,
)
from doorless.cli.people import NICKNAME_MARK, resolve_conversation
from doorless.cli.session import checked, resolve, usage_error, with_client

if TYPE_CHECKING:
    from doorless.client import Client, Conversation, ConversationExport, MessageInfo

EXPORT_FORMAT = "doorless.conversation-export"
EXPORT_VERSION = 1
_PUNCTUATION = frozenset(string.punctuation)


class ExportFormat(StrEnum):
    JSON = "json"
    MARKDOWN = "markdown"


# --- JSON -------------------------------------------------------------------------------------


def export_json(e: ConversationExport) -> JSON:
    """The export as the JSON object of docs/local-history.md (keys in a fixed order)."""
    return {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "exported_at": e.exported_at,
        "exported_by": {"user": e.exported_by.user, "device_id": e.exported_by.device_id},
        "conversation": conversation_json(e.conversation),
        "nicknames": dict(sorted(e.nicknames.items())),
        "messages": [message_json(m) for m in e.messages],
    }


def json_document(e: ConversationExport) -> str:
    return json.dumps(export_json(e), ensure_ascii=False, indent=2) + "\n"


# --- Markdown ---------------------------------------------------------------------------------


def md_inline(text: str) -> str:
    """Peer text as literal Markdown on one line: terminal escaping (`safe`), then every
    ASCII punctuation character backslash-escaped; a leading space kept as an entity so that
    indentation cannot make a code block."""
    escaped = "".join("\\" + ch if ch in _PUNCTUATION else ch for ch in safe(text))
    stripped = escaped.lstrip(" ")
    return "&#32;" * (len(escaped) - len(stripped)) + stripped


def md_quote(text: str) -> str:
    """A message body as a block quote: one quoted line per line of the text, hard line
    breaks between them, blank lines kept as paragraph breaks."""
    lines = [md_inline(line) for line in text.replace("\r\n", "\n").split("\n")]
    out = []
    for i, line in enumerate(lines):
        more = i + 1 < len(lines) and lines[i + 1] != ""
        out.append(f"> {line}\\" if line and more else f"> {line}" if line else ">")
    return "\n".join(out)


def md_person(user: str, nicknames: dict[str, str]) -> str:
    nickname = nicknames.get(user)
    name = f"@{md_inline(user)}"
    # The mark escaped too: two ~ make a strikethrough in GitHub's Markdown.
    return f"\\{NICKNAME_MARK}{md_inline(nickname)} ({name})" if nickname else name


def utc(ms: int | None) -> str:
    if ms is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ms / 1000))


def _md_title(e: ConversationExport) -> str:
    c = e.conversation
    if c.kind is dl.ConversationKind.DIRECT:
        peers = [m for m in c.members if m != e.exported_by.user] or [e.exported_by.user]
        return f"Conversation with {md_person(peers[0], e.nicknames)}"
    return f"Group \\#{md_inline(c.name)}" if c.name else f"Group {c.id[:8]}"


def _md_message(m: MessageInfo, e: ConversationExport) -> str:
    who = md_person(m.sender.user, e.nicknames)
    head = f"**{who}** · {utc(m.sent_at)} · `{m.message_id}`"
    if m.file is not None:
        f = m.file
        body = md_quote(f"[file] {f.name} ({size(f.size)}, {f.media_type}, SHA-256 {f.sha256})")
    else:
        body = md_quote(m.text or "")
    return f"{head}\n\n{body}\n"


def markdown_document(e: ConversationExport) -> str:
    c = e.conversation
    members = ", ".join(md_person(u, e.nicknames) for u in c.members)
    header = [
        f"# {_md_title(e)}",
        "",
        f"- Conversation id: `{c.id}`",
        f"- Kind: {c.kind.value}",
        f"- Members: {members}",
        f"- Exported by {md_person(e.exported_by.user, {})} at {utc(e.exported_at)}, "
        f"{len(e.messages)} messages",
        "",
    ]
    if e.nicknames:
        header.insert(-1, f"- \\{NICKNAME_MARK}Name: a nickname given on this device, never sent")
    parts = ["\n".join(header)]
    parts.extend(_md_message(m, e) for m in e.messages)
    return "\n---\n\n".join(parts)


RENDER: dict[ExportFormat, Callable[[ConversationExport], str]] = {
    ExportFormat.JSON: json_document,
    ExportFormat.MARKDOWN: markdown_document,
}


# --- writing ----------------------------------------------------------------------------------


def write_private(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` (0600: it is plaintext history) under a temporary name,
    then rename it into place."""
    target = path.expanduser()
    if target.is_dir():
        raise usage_error(f"{safe(str(target))} is a directory; name a file")
    tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def _result(fmt: ExportFormat, snapshot: ConversationExport, text: str) -> JSON:
    """``{format, messages, export}``: the export as one JSON value (the object, or the
    Markdown text)."""
    export = export_json(snapshot) if fmt is ExportFormat.JSON else text
    return {"format": fmt.value, "messages": len(snapshot.messages), "export": export}


def _parse_format(value: str) -> ExportFormat:
    try:
        return ExportFormat(value.lower())
    except ValueError:
        raise usage_error(f"unknown export format {safe(value)!r} (json or markdown)") from None


async def _export(
    client: Client, conv: Conversation, fmt: ExportFormat
) -> tuple[ConversationExport, str]:
    await client.purge_expired()  # disappearing messages whose time has come are not exported
    snapshot = await client.export(conv.id)
    return snapshot, RENDER[fmt](snapshot)


def export(
    ctx: typer.Context,
    conversation: Annotated[
        str,
        typer.Argument(
            metavar="CONVERSATION", help="@USER, a group's name or id, or a conversation id."
        ),
    ],
    fmt: Annotated[
        str, typer.Option("--format", "-f", metavar="json|markdown", help="The format.")
    ] = "json",
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", metavar="FILE", help="Write to FILE (mode 0600), not stdout."
        ),
    ] = None,
) -> None:
    """Export a conversation's complete local history (JSON or Markdown; no network).

    The export is plaintext: keep the file as safe as the messages it holds."""
    st = state(ctx)
    with checked(st):
        chosen = _parse_format(fmt)

    async def main(client: Client) -> None:
        conv = await resolve_conversation(client, conversation)
        snapshot, text = await _export(client, conv, chosen)
        if output is None and st.json:  # one JSON object, as every command's --json output
            emit_json(_result(chosen, snapshot, text))
            return
        if output is None:
            typer.echo(text, nl=False)
            return
        path = write_private(output, text)
        emit(
            st.json,
            {"format": chosen.value, "path": str(path), "messages": len(snapshot.messages)},
            lambda: f"exported {len(snapshot.messages)} messages to {safe(str(path))}",
        )

    with_client(st, main)


@rpc.method("exportConversation")
async def rpc_export_conversation(client: Client, params: rpc.Params) -> JSON:
    """A conversation's complete local history. Params: the conversation, optional
    ``format`` (``json``, default, or ``markdown``), ``path`` (write there, mode 0600).
    Result ``{format, messages, export}`` (``export``: the JSON object or the Markdown
    text), or with ``path`` ``{format, messages, path}``."""
    target = params.target()
    chosen = _parse_format(params.opt_string("format") or "json")
    path = params.opt_string("path")
    params.done()
    snapshot, text = await _export(client, await resolve(client, target), chosen)
    if path is not None:
        written = write_private(Path(path), text)
        return {"format": chosen.value, "messages": len(snapshot.messages), "path": str(written)}
    return _result(chosen, snapshot, text)


__all__ = [
    "EXPORT_FORMAT",
    "EXPORT_VERSION",
    "ExportFormat",
    "export",
    "export_json",
    "markdown_document",
    "md_inline",
    "md_quote",
]
