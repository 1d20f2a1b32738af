"""Acting on messages with MIMI content (docs/content.md): reactions and un-reactions, edits,
deletes for everyone, "read up to" receipts and typing notices. Replies and mentions are part
of `doorless.client.outbox.send_text`.

Reactions, edits and deletes go through the outbox like messages (in order, again after a
crash); receipts and typing notices are sent once, at most, and never stored: losing one is
harmless. Each user can switch receipts and typing notices off (`ClientOptions`).
"""

from __future__ import annotations

import logging
import os

from doorless.client import membership, outbox
from doorless.client.core import TRANSIENT, Session, conversation_gid
from doorless.client.errors import ServerError
from doorless.client.records import OutgoingMessage
from doorless.client.rich_view import UnknownMessage, find_target
from doorless.client.store import EditVersion, Message, RichMeta, StoredReaction, Transaction
from doorless.content import SALT_SIZE, MimiContent
from doorless.errors import RemoteError, StateError
from doorless.wire import rich
from doorless.wire.payload import content_payload

log = logging.getLogger("doorless.client")

# A receipt or typing notice that meets these is dropped (the next one says the same).
_NOT_SENT: tuple[type[RemoteError], ...] = (*TRANSIENT, ServerError)


class NotYourMessage(StateError):
    """Only a message's sender may edit or delete it."""


def _salt() -> bytes:
    return os.urandom(SALT_SIZE)


async def _target(s: Session, message_id: str) -> tuple[Message, RichMeta]:
    return await s.tx(lambda tx: find_target(tx, message_id))


async def react(s: Session, message_id: str, emoji: str) -> None:
    """React to a message with ``emoji``."""
    message, meta = await _target(s, message_id)
    await outbox.send_control(s, message.group_id, rich.reaction(meta.mimi_id, emoji, salt=_salt()))


async def unreact(s: Session, message_id: str, emoji: str) -> None:
    """Take back this user's reaction ``emoji`` to a message (`UnknownMessage` if none)."""
    message, meta = await _target(s, message_id)
    me = s.me.user

    def mine(tx: Transaction) -> list[StoredReaction]:
        return [
            r for r in tx.reactions_of([meta.local_id]) if r.sender_user == me and r.emoji == emoji
        ]

    reactions = await s.tx(mine)
    if not reactions:
        raise UnknownMessage(f"you did not react with {emoji!r} to message {message_id}")
    for r in reactions:
        content = rich.unreaction(r.mimi_id, meta.mimi_id, salt=_salt())
        await outbox.send_control(s, message.group_id, content)


def _own(message: Message, me: str, what: str) -> None:
    if message.sender_user != me:
        raise NotYourMessage(f"only its sender can {what} a message")


async def edit(s: Session, message_id: str, text: str) -> None:
    """Replace the text of one of this user's messages (every member keeps the old text in
    its edit history and shows "edited")."""
    message, meta = await _target(s, message_id)
    _own(message, s.me.user, "edit")
    if message.content_type != "text":
        raise NotYourMessage("only a text message can be edited")
    conv = await s.require_active(message.group_id)
    members = frozenset(s.view(conv).members)
    content = rich.edit(meta.mimi_id, text, salt=_salt(), members=members)
    await outbox.send_control(s, message.group_id, content)


async def delete(s: Session, message_id: str) -> None:
    """Delete one of this user's messages for everyone: its text goes from every member's
    store (docs/content.md; a report must precede it, docs/franking.md)."""
    message, meta = await _target(s, message_id)
    _own(message, s.me.user, "delete")
    await outbox.send_control(s, message.group_id, rich.delete(meta.mimi_id, salt=_salt()))
    await s.store.run(s.store.checkpoint)  # drop the old page images of the text (WAL)


async def edit_history(s: Session, message_id: str) -> list[EditVersion]:
    """The replaced texts of a message, oldest first (its current text is not included)."""
    _, meta = await s.tx(lambda tx: find_target(tx, message_id, deleted=True))
    return await s.tx(lambda tx: tx.edit_history(meta.local_id))


async def mark_read(s: Session, message_id: str) -> bool:
    """Tell the conversation this user read up to ``message_id`` (nothing if receipts are
    off). Returns whether a receipt was sent."""
    if not s.options.read_receipts:
        return False
    message, meta = await _target(s, message_id)
    return await _send_once(s, message.group_id, rich.read_up_to(meta.mimi_id, salt=_salt()))


async def typing(s: Session, conversation_id: str, active: bool) -> bool:
    """Tell the conversation this user started or stopped typing (nothing if typing notices
    are off). Returns whether a notice was sent."""
    if not s.options.typing_notices:
        return False
    gid = conversation_gid(conversation_id)
    return await _send_once(s, gid, rich.typing(active, salt=_salt()))


async def read_marks(s: Session, conversation_id: str) -> dict[str, str]:
    """user -> the id of the newest message they read (from their receipts)."""
    gid = conversation_gid(conversation_id)

    def read(tx: Transaction) -> dict[str, str]:
        marks = {}
        for user, local_id in tx.read_up_to(gid).items():
            message = tx.get_message(local_id)
            if message is not None and message.server_id is not None:
                marks[user] = message.server_id
        return marks

    return await s.tx(read)


async def _send_once(s: Session, gid: bytes, content: MimiContent) -> bool:
    """Encrypt and send an ephemeral container once (not stored, not retried)."""
    payload = content_payload(content, s.now_ms())
    async with s.lock:
        conv = await s.require_active(gid)
        if conv.mls.proposals:
            conv = await membership.commit_locked(s, gid, outbox.no_plan, force=True)
        new_group, data = s.encrypt_payload(conv, payload)
        record = OutgoingMessage(payload.message_id.hex(), data, s.recipients(conv))
        new = conv.evolve(mls=new_group, updated_at=s.now_ms())
        await s.save(new, lambda tx: tx.update_group(new.stored()))
        try:
            await s.transport.send(record.data, record.recipients, message_id=record.message_id)
        except _NOT_SENT as e:
            log.info("a receipt or typing notice was not sent: %s", type(e).__name__)
            return False
    return True


__all__ = [
    "NotYourMessage",
    "delete",
    "edit",
    "edit_history",
    "mark_read",
    "react",
    "read_marks",
    "typing",
    "unreact",
]
