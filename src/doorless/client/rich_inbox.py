"""Receiving MIMI content (docs/content.md): what a verified ``content`` payload does to the
store, decided in the receiving transaction.

A text or file becomes a message (with its MIMI id, reply target and mentions); a reaction
is stored with the message it reacts to; an un-reaction, an edit or a delete is applied only
if its sender is the sender of what it replaces (draft-ietf-mimi-content-08 "Rendering and
authorization of edits and deletes"): otherwise it is refused (`NotAuthor`, counted in the
``rich_refused`` setting, logged, nothing stored). A delete empties the message's text, its
edit history, its franking evidence and its reactions in place (``secure_delete`` overwrites
the freed bytes). A receipt moves the sender's "read up to" mark; a typing notice is only an
event. Every change is applied once: its MIMI id joins the dedupe set.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

from doorless.client.events import (
    ChangeKind,
    DeviceRef,
    Event,
    FailureReason,
    MessageChanged,
    MessageKind,
    MessageReceived,
    ReadUpTo,
    Typing,
)
from doorless.client.rich_view import rich_info
from doorless.client.store import Message, MessageState, RichMeta, StoredReaction, Transaction
from doorless.codec import encode
from doorless.content import MimiContent
from doorless.errors import ConfigurationError, RemoteError, ValidationError
from doorless.wire import rich
from doorless.wire.payload import FileBody, Payload, check_file_name, content_of

log = logging.getLogger("doorless.client")

_SETTING_REFUSED = "rich_refused"  # JSON {reason: count}


class NotAuthor(RemoteError):
    """An edit, delete or un-reaction from someone other than the original sender."""


class UnknownTarget(RemoteError):
    """A reaction, edit, delete or receipt of a message this device does not have."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What applying a received container did: the event to emit, or why it was refused."""

    event: Event | None = None
    refused: RemoteError | None = None

    @property
    def reason(self) -> FailureReason:
        if isinstance(self.refused, NotAuthor):
            return FailureReason.NOT_AUTHOR
        return FailureReason.UNKNOWN_TARGET


Apply = Callable[[Transaction], Outcome]


@dataclass(frozen=True, slots=True, repr=False)
class Received:
    """A verified container, ready to be applied in the receiving transaction (its repr
    shows no content)."""

    content: MimiContent
    action: rich.Rich
    mimi_id: bytes
    sender: DeviceRef
    group_id: bytes
    payload: Payload
    franking: bytes | None  # None: sent by this device
    now: int
    expires_at: int | None
    me: str

    def __repr__(self) -> str:
        return f"Received({type(self.action).__name__}, from={self.sender})"

    def apply(self, tx: Transaction) -> Outcome:
        """Apply it (inside the receiving transaction); never raises for a peer's mistake."""
        if not tx.mark_processed("mimi:" + self.mimi_id.hex(), self.now):
            return Outcome()  # applied before
        handler = _HANDLERS[type(self.action)]
        outcome = handler(self, tx)
        if outcome.refused is not None:
            _count(tx, type(outcome.refused).__name__)
        return outcome

    def message(self, kind: MessageKind, body: bytes) -> Message:
        return Message(
            group_id=self.group_id,
            sender_user=self.sender.user,
            sender_device=self.sender.device_id,
            outgoing=False,
            content_type=kind.value,
            body=body,
            sent_at=self.payload.sent_at_ms,
            received_at=self.now,
            expires_at=_expiry(self.content, self.now, self.expires_at),
            state=MessageState.RECEIVED,
            server_id=self.payload.message_id.hex(),
            franking=self.franking,
        )


def read(
    payload: Payload,
    franking: bytes,
    *,
    sender: DeviceRef,
    group_id: bytes,
    now: int,
    expires_at: int | None,
    me: str,
) -> Received:
    """Decode and classify a ``content`` payload (`DecodeError` / `ValidationError` if it is
    not one Doorless understands); nothing is stored yet."""
    content = content_of(payload)
    action = rich.classify(content)
    if isinstance(action, rich.Post) and action.file_name is not None:
        try:
            check_file_name(action.file_name)
        except ConfigurationError as e:
            raise ValidationError(str(e), rule="doorless file names") from None
    return Received(
        content=content,
        action=action,
        mimi_id=rich.message_id_of(content, sender.user, group_id),
        sender=sender,
        group_id=group_id,
        payload=payload,
        franking=franking,
        now=now,
        expires_at=expires_at,
        me=me,
    )


def _expiry(content: MimiContent, now: int, group_expiry: int | None) -> int | None:
    """The earlier of the group's timer and the container's ``expires`` (draft 4.1)."""
    expires = content.expires
    if expires is None:
        return group_expiry
    own = now + 1000 * expires.time if expires.relative else 1000 * expires.time
    return own if group_expiry is None else min(own, group_expiry)


def _count(tx: Transaction, reason: str) -> None:
    raw = tx.get_setting(_SETTING_REFUSED)
    counts = json.loads(raw) if raw is not None else {}
    counts[reason] = int(counts.get(reason, 0)) + 1
    tx.set_setting(_SETTING_REFUSED, json.dumps(counts, sort_keys=True))


def refused_counts(tx: Transaction) -> dict[str, int]:
    """How many received changes were refused, by reason."""
    raw = tx.get_setting(_SETTING_REFUSED)
    data = json.loads(raw) if raw is not None else {}
    return {str(k): int(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _target(r: Received, tx: Transaction, target: bytes) -> tuple[Message, RichMeta] | None:
    meta = tx.rich_by_mimi_id(target)
    message = None if meta is None else tx.get_message(meta.local_id)
    if meta is None or message is None or message.group_id != r.group_id:
        return None
    return message, meta


def _unknown(what: str) -> Outcome:
    return Outcome(refused=UnknownTarget(f"a {what} of a message this device does not have"))


def _post(r: Received, tx: Transaction) -> Outcome:
    action = r.action
    assert isinstance(action, rich.Post)
    if tx.get_message_by_server_id(r.payload.message_id.hex()) is not None:
        return Outcome()  # a duplicate of a message already shown
    if action.attachment is not None and action.file_name is not None:
        body = encode(FileBody(action.file_name, action.attachment))
        stored = tx.insert_message(r.message(MessageKind.FILE, body))
    else:
        stored = tx.insert_message(r.message(MessageKind.TEXT, (action.text or "").encode()))
    assert stored.local_id is not None
    tx.put_rich(
        RichMeta(
            local_id=stored.local_id,
            mimi_id=r.mimi_id,
            in_reply_to=action.in_reply_to,
            mentions=action.mentions,
        )
    )
    if stored.sender_user == r.me:
        tx.delete_request(r.group_id)  # we wrote in it (another device): accepted
    return Outcome(MessageReceived(rich_info(tx, r.me, stored)))


def _reaction(r: Received, tx: Transaction) -> Outcome:
    action = r.action
    assert isinstance(action, rich.Reaction)
    found = _target(r, tx, action.target)
    if found is None:
        return _unknown("reaction")
    if found[1].deleted:
        return Outcome()  # deleted here meanwhile (e.g. by its sender on this device)
    message, meta = found
    tx.put_reaction(
        StoredReaction(
            mimi_id=r.mimi_id,
            local_id=meta.local_id,
            sender_user=r.sender.user,
            emoji=action.emoji,
            sent_at=r.payload.sent_at_ms,
        )
    )
    info = rich_info(tx, r.me, message)
    return Outcome(MessageChanged(info, ChangeKind.REACTED, r.sender, action.emoji))


def _unreaction(r: Received, tx: Transaction) -> Outcome:
    action = r.action
    assert isinstance(action, rich.Unreaction)
    reaction = tx.get_reaction(action.reaction_id)
    message = None if reaction is None else tx.get_message(reaction.local_id)
    if reaction is None or message is None or message.group_id != r.group_id:
        target = r.content.in_reply_to
        found = None if target is None else _target(r, tx, target)
        if found is not None and found[1].deleted:
            return Outcome()  # its message was deleted, with its reactions
        return _unknown("reaction removal")
    if reaction.sender_user != r.sender.user:
        return Outcome(refused=NotAuthor("a reaction can only be taken back by its sender"))
    tx.delete_reaction(action.reaction_id)
    info = rich_info(tx, r.me, message)
    return Outcome(MessageChanged(info, ChangeKind.UNREACTED, r.sender, reaction.emoji))


def _replaced(r: Received, tx: Transaction, target: bytes, what: str) -> Outcome | Message:
    found = _target(r, tx, target)
    if found is None:
        return _unknown(what)
    message = found[0]
    if message.sender_user != r.sender.user:
        return Outcome(refused=NotAuthor(f"only its sender can {what} a message"))
    if found[1].deleted:
        return Outcome()  # its sender deleted it already: nothing left to change
    return message


def _edit(r: Received, tx: Transaction) -> Outcome:
    action = r.action
    assert isinstance(action, rich.Edit)
    message = _replaced(r, tx, action.target, "edit")
    if isinstance(message, Outcome):
        return message
    if message.content_type != MessageKind.TEXT.value or message.local_id is None:
        return Outcome(refused=UnknownTarget("only a text message can be edited"))
    tx.edit_message(message.local_id, action.text.encode(), action.mentions, r.now)
    if r.franking is not None:
        # A report of the message now reveals what is shown: the edit's franked content.
        tx.set_message_franking(message.local_id, r.franking)
    info = rich_info(tx, r.me, tx.get_message(message.local_id) or message)
    return Outcome(MessageChanged(info, ChangeKind.EDITED, r.sender))


def _delete(r: Received, tx: Transaction) -> Outcome:
    action = r.action
    assert isinstance(action, rich.Delete)
    message = _replaced(r, tx, action.target, "delete")
    if isinstance(message, Outcome):
        return message
    assert message.local_id is not None and message.server_id is not None
    tx.erase_message(message.local_id)
    tx.drop_pending_payload(message.server_id)
    info = rich_info(tx, r.me, tx.get_message(message.local_id) or message)
    return Outcome(MessageChanged(info, ChangeKind.DELETED, r.sender))


def _read(r: Received, tx: Transaction) -> Outcome:
    action = r.action
    assert isinstance(action, rich.ReadUpTo)
    found = _target(r, tx, action.target)
    if found is None:
        return _unknown("read receipt")
    message, meta = found
    if not tx.put_read_up_to(r.group_id, r.sender.user, meta.local_id, r.now):
        return Outcome()  # not further than before
    return Outcome(ReadUpTo(r.group_id.hex(), r.sender, message.server_id or ""))


def _typing(r: Received, tx: Transaction) -> Outcome:
    action = r.action
    assert isinstance(action, rich.Typing)
    return Outcome(Typing(r.group_id.hex(), r.sender, action.active))


_HANDLERS: dict[type, Callable[[Received, Transaction], Outcome]] = {
    rich.Post: _post,
    rich.Reaction: _reaction,
    rich.Unreaction: _unreaction,
    rich.Edit: _edit,
    rich.Delete: _delete,
    rich.ReadUpTo: _read,
    rich.Typing: _typing,
}


__all__ = ["NotAuthor", "Outcome", "Received", "UnknownTarget", "read", "refused_counts"]
