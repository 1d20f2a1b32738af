"""How rich messages look to the application: a stored message with what MIMI content adds
(reply target, edited / deleted flags, mentions, reactions), and finding the message an
action refers to. Reading only; sending is in `doorless.client.outbox` and
`doorless.client.rich`, receiving in `doorless.client.rich_inbox`."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from doorless.client.core import Session, message_info
from doorless.client.events import MessageInfo, ReactionInfo
from doorless.client.store import Message, RichMeta, Transaction
from doorless.content import MimiContent, SinglePart
from doorless.errors import ConfigurationError, StateError


class UnknownMessage(StateError):
    """No stored message with this id (or it cannot be replied to, reacted to, edited...)."""


def content_text(content: MimiContent) -> str:
    """The Markdown text of a container built by `doorless.wire.rich.post` / ``edit``."""
    part = content.body.part
    if not isinstance(part, SinglePart):
        raise ConfigurationError("not a text container")
    return part.content.decode("utf-8")


def rich_infos(tx: Transaction, me: str, messages: Sequence[Message]) -> list[MessageInfo]:
    """The application's views of stored messages, with their rich metadata."""
    ids = [m.local_id for m in messages if m.local_id is not None]
    metas = tx.rich_of(ids)
    reactions: dict[int, list[ReactionInfo]] = {}
    for r in tx.reactions_of(ids):
        reactions.setdefault(r.local_id, []).append(ReactionInfo(r.sender_user, r.emoji))
    out = []
    for m in messages:
        info = message_info(m)
        meta = metas.get(m.local_id or 0)
        if meta is not None:
            reply = _reply_to(tx, meta)
            info = dataclasses.replace(
                info,
                text=None if meta.deleted else info.text,
                file=None if meta.deleted else info.file,
                reply_to=reply[0] if reply else None,
                reply_text=reply[1] if reply else None,
                edited=meta.edited,
                deleted=meta.deleted,
                mentions=meta.mentions,
                mentions_me=me in meta.mentions,
                reactions=tuple(reactions.get(m.local_id or 0, ())),
            )
        out.append(info)
    return out


def rich_info(tx: Transaction, me: str, message: Message) -> MessageInfo:
    return rich_infos(tx, me, [message])[0]


def _reply_to(tx: Transaction, meta: RichMeta) -> tuple[str, str | None] | None:
    """The id and text (None if deleted or not a text) of the message ``meta`` answers."""
    if meta.in_reply_to is None:
        return None
    target = tx.rich_by_mimi_id(meta.in_reply_to)
    message = None if target is None else tx.get_message(target.local_id)
    if target is None or message is None or message.server_id is None:
        return None
    shown = message.content_type == "text" and not target.deleted
    return message.server_id, message.body.decode("utf-8", "replace") if shown else None


def find_target(
    tx: Transaction, message_id: str, *, deleted: bool = False
) -> tuple[Message, RichMeta]:
    """A stored message by its full id, with its MIMI id (`UnknownMessage` if none, or if
    it was deleted and ``deleted`` is False)."""
    message = tx.get_message_by_server_id(message_id.lower())
    meta = None if message is None or message.local_id is None else tx.get_rich(message.local_id)
    if message is None:
        raise UnknownMessage(f"no message {message_id} in this profile")
    if meta is None:
        raise UnknownMessage(
            f"message {message_id} was sent by an older version (no MIMI id): it cannot be "
            "replied to, reacted to, edited or deleted"
        )
    if meta.deleted and not deleted:
        raise UnknownMessage(f"message {message_id} was deleted")
    return message, meta


async def rich_target(s: Session, gid: bytes, message_id: str) -> RichMeta:
    """The MIMI metadata of a stored message of conversation ``gid``."""
    message, meta = await s.tx(lambda tx: find_target(tx, message_id))
    if message.group_id != gid:
        raise UnknownMessage(f"message {message_id} is not in this conversation")
    return meta


__all__ = [
    "UnknownMessage",
    "content_text",
    "find_target",
    "rich_info",
    "rich_infos",
    "rich_target",
]
