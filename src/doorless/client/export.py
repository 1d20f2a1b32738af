"""A conversation's complete local history as one snapshot, for an export (the programs write
it as JSON or Markdown: ``doorless.cli.export``, ``docs/local-history.md``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from doorless.client import contacts, inbox, membership
from doorless.client.core import Session
from doorless.client.events import Conversation, DeviceRef, MessageInfo


@dataclass(frozen=True, slots=True)
class ConversationExport:
    """Everything this profile stores of one conversation, at ``exported_at``.

    ``messages`` are all of its stored messages, oldest first (local order);
    ``nicknames`` the local nicknames of its members (username -> nickname).
    """

    exported_at: int
    exported_by: DeviceRef
    conversation: Conversation
    messages: tuple[MessageInfo, ...] = field(repr=False)
    nicknames: dict[str, str] = field(repr=False)


async def export(s: Session, conversation_id: str) -> ConversationExport:
    """The snapshot of one conversation (`UnknownConversation` if there is none)."""
    conversation = await membership.conversation(s, conversation_id)
    messages = await inbox.history(s, conversation.id, limit=None)
    nicknames = await contacts.nicknames(s)
    return ConversationExport(
        exported_at=s.now_ms(),
        exported_by=s.me,
        conversation=conversation,
        messages=tuple(messages),
        nicknames={u: n for u, n in nicknames.items() if u in conversation.members},
    )


__all__ = ["ConversationExport", "export"]
