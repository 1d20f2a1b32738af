"""The conversation export formats (doorless.cli.export): the JSON schema, and Markdown that
peer text cannot add structure to (checked by rendering it with a CommonMark parser)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from doorless.cli.export import (
    EXPORT_FORMAT,
    export_json,
    json_document,
    markdown_document,
    md_inline,
    md_quote,
    write_private,
)
from doorless.client import (
    Conversation,
    ConversationExport,
    ConversationKind,
    ConversationStatus,
    DeviceRef,
    MessageInfo,
    MessageKind,
    MessageState,
)

ALICE = DeviceRef("alice", "a" * 32)
BOB = DeviceRef("bob", "b" * 32)
MESSAGE_KEYS = {
    "conversation_id",
    "message_id",
    "local_id",
    "sender",
    "outgoing",
    "kind",
    "text",
    "file",
    "sent_at",
    "received_at",
    "state",
    "transferred",
    "reply_to",
    "reply_text",
    "edited",
    "deleted",
    "mentions",
    "mentions_me",
    "reactions",
}

HOSTILE = [
    "# not a heading",
    "- not a list",
    "1. not a list",
    "> not a quote",
    "```\ncode fence\n```",
    "    indented code",
    "[link](http://evil.example)",
    "![img](http://evil.example/x.png)",
    "<script>alert(1)</script>",
    "<b>bold</b> &amp; entity",
    "| a | b |\n|---|---|\n| c | d |",
    "**bold** _em_ `code` ~~strike~~",
    "line\n\n# heading after a blank line",
    "---",
    "***",
    "text\n===",
    "\x1b[31mred\x1b[0m and \u202eoverride",
    "trailing backslash \\",
    "[ref]: http://evil.example",
]


def conversation(name: str = "team", kind: ConversationKind = ConversationKind.GROUP) -> Any:
    return Conversation(
        id="ab" * 32,
        kind=kind,
        name=name,
        members=("alice", "bob"),
        devices=(ALICE, BOB),
        epoch=3,
        status=ConversationStatus.ACTIVE,
        created_at=1_700_000_000_000,
        updated_at=1_700_000_000_000,
    )


def text_message(i: int, text: str, sender: DeviceRef = BOB) -> MessageInfo:
    return MessageInfo(
        conversation_id="ab" * 32,
        message_id=f"{i:032x}",
        local_id=i,
        sender=sender,
        outgoing=sender == ALICE,
        kind=MessageKind.TEXT,
        text=text,
        file=None,
        sent_at=1_700_000_000_000 + i * 1000,
        received_at=None if sender == ALICE else 1_700_000_000_500 + i * 1000,
        state=MessageState.SENT if sender == ALICE else MessageState.RECEIVED,
    )


def snapshot(
    texts: list[str], name: str = "team", nicknames: dict[str, str] | None = None
) -> ConversationExport:
    return ConversationExport(
        exported_at=1_700_000_100_000,
        exported_by=ALICE,
        conversation=conversation(name),
        messages=tuple(
            text_message(i + 1, t, ALICE if i % 2 else BOB) for i, t in enumerate(texts)
        ),
        nicknames=nicknames or {},
    )


def test_json_schema_and_stability() -> None:
    e = snapshot(["hello", "hi\nthere"], nicknames={"bob": "Bobby"})
    obj = export_json(e)
    assert list(obj) == [
        "format",
        "version",
        "exported_at",
        "exported_by",
        "conversation",
        "nicknames",
        "messages",
    ]
    assert obj["format"] == EXPORT_FORMAT and obj["version"] == 1
    assert obj["exported_by"] == {"user": "alice", "device_id": "a" * 32}
    assert obj["nicknames"] == {"bob": "Bobby"}
    assert obj["conversation"]["id"] == "ab" * 32 and obj["conversation"]["members"] == [
        "alice",
        "bob",
    ]
    assert [m["text"] for m in obj["messages"]] == ["hello", "hi\nthere"]
    assert all(set(m) == MESSAGE_KEYS for m in obj["messages"])
    assert obj["messages"][0]["sender"] == {"user": "bob", "device_id": "b" * 32}
    doc = json_document(e)
    assert doc == json_document(e) and doc.endswith("\n")
    assert json.loads(doc) == obj


def _structure(markdown: str) -> list[str]:
    """The block and inline token types a CommonMark parser finds (HTML enabled)."""
    md = MarkdownIt("commonmark", {"html": True}).enable("table").enable("strikethrough")
    types = []
    for token in md.parse(markdown):
        types.append(token.type)
        types.extend(child.type for child in token.children or [])
    return types


ALLOWED = {
    "paragraph_open",
    "paragraph_close",
    "inline",
    "text",
    "softbreak",
    "hardbreak",
    "blockquote_open",
    "blockquote_close",
}


@pytest.mark.parametrize("text", HOSTILE)
def test_peer_text_adds_no_markdown_structure(text: str) -> None:
    assert set(_structure(md_quote(text))) <= ALLOWED
    assert set(_structure(md_inline(text))) <= ALLOWED - {"blockquote_open", "blockquote_close"}


@given(st.text(max_size=60))
def test_any_text_stays_literal_in_a_quote(text: str) -> None:
    assert set(_structure(md_quote(text))) <= ALLOWED


@pytest.mark.parametrize("text", HOSTILE)
def test_markdown_export_has_only_its_own_structure(text: str) -> None:
    doc = markdown_document(snapshot([text, "second"], name=text, nicknames={"bob": text}))
    types = _structure(doc)
    # Ours: one heading, one list of header facts, a rule and a quote per message, bold names
    # and the message ids as code spans; nothing more, whatever the peer text.
    assert types.count("heading_open") == 1
    assert types.count("bullet_list_open") == 1
    assert types.count("hr") == 2
    assert types.count("blockquote_open") == 2
    assert types.count("strong_open") == 2
    assert types.count("code_inline") == 3  # conversation id + 2 message ids
    for forbidden in ("html_block", "html_inline", "link_open", "image", "fence", "code_block"):
        assert forbidden not in types, (forbidden, text)
    assert "\x1b" not in doc and "\u202e" not in doc


def test_markdown_shows_text_names_and_nicknames() -> None:
    doc = markdown_document(snapshot(["hello *world*"], nicknames={"bob": "Bobby"}))
    assert doc.startswith("# Group \\#team\n")
    assert "**\\~Bobby (@bob)**" in doc
    assert "> hello \\*world\\*" in doc
    assert "`00000000000000000000000000000001`" in doc
    assert "2023-11-14 22:13:21 UTC" in doc
    assert re.search(r"Exported by @alice at .* UTC, 1 messages", doc)


def test_write_private_is_0600_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "out.md"
    target.write_text("old")
    write_private(target, "new")
    assert target.read_text() == "new"
    assert target.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["out.md"]
