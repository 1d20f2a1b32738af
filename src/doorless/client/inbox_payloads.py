"""What each kind of application payload does when it is received: one reader per
`PayloadKind` (table-driven). A reader checks and decodes the payload before the receiving
transaction (it may use the network: history handoffs fetch their blob); the `Handling` it
returns writes inside that transaction and says what to announce once it committed.

`doorless.client.inbox.on_application` does what every kind shares: the franking check,
the new group state, blocked senders, checkpoint gossip, failures."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import ClassVar, Protocol

from doorless.client import handoff, rich_inbox
from doorless.client.calls.signalling import signal_of
from doorless.client.core import MESSAGE_KIND, Conv, Session, message_info, store_upgrade
from doorless.client.events import (
    CallSignalReceived,
    ChangeKind,
    ConversationUpdated,
    DeviceRef,
    MessageChanged,
    MessageKind,
    MessageReceived,
)
from doorless.client.store import Message, MessageState, Transaction
from doorless.codec import decode
from doorless.errors import DecodeError, RemoteError
from doorless.wire.call_signal import CallSignal
from doorless.wire.payload import Payload, PayloadKind, file_of, text_of
from doorless.wire.upgrade import UpgradeNotice

log = logging.getLogger("doorless.client")

Announce = Callable[[Session], Awaitable[None]]
"""What to tell the application after the receiving transaction committed."""


class Unsupported(RemoteError):
    """A payload kind this version does not know (a newer sender)."""

    def __init__(self, kind: int) -> None:
        super().__init__(f"message kind {kind} is not supported by this version")


@dataclass(frozen=True)
class Received:
    """A received application message whose franking verified (its repr shows no content)."""

    conv: Conv  # the conversation with the group state after this message
    sender: DeviceRef
    payload: Payload
    franking: bytes  # encode(ReceivedFrank): what a report needs
    now: int
    expires_at: int | None

    def __repr__(self) -> str:
        return f"Received(kind={self.payload.kind!r}, sender={self.sender})"


class Handling(Protocol):
    shown: ClassVar[bool]  # a message for the history: its checkpoint gossip is checked

    def write(self, tx: Transaction) -> Announce | None:
        """Store what the payload says (the sender is not blocked); what to announce."""
        ...


async def handling_of(s: Session, received: Received) -> Handling:
    """The payload's `Handling`; `DecodeError`/`ValidationError` if it is malformed,
    `Unsupported` if its kind is unknown, network errors propagate (it stays queued)."""
    reader = _READERS.get(received.payload.kind)
    if reader is None:
        raise Unsupported(int(received.payload.kind))
    return await reader(s, received)


# --- text and file (payload kinds 1 and 2, from senders before MIMI content) ----------------


@dataclass(frozen=True)
class _Stored:
    shown: ClassVar[bool] = True
    message: Message
    mine: bool  # sent by another device of this account

    def write(self, tx: Transaction) -> Announce | None:
        message, mine = self.message, self.mine
        if tx.get_message_by_server_id(message.server_id or "") is not None:
            return None  # a duplicate of a message already shown
        if mine:
            tx.delete_request(message.group_id)  # we wrote in it (another device): accepted
        stored = tx.insert_message(message)

        async def announce(s: Session) -> None:
            if mine:
                s.forget_request(message.group_id)
            s.hub.emit(MessageReceived(message_info(stored)))

        return announce


async def _text_or_file(s: Session, r: Received) -> Handling:
    kind = MESSAGE_KIND[int(r.payload.kind)]
    if kind is MessageKind.TEXT:
        text_of(r.payload)
    else:
        file_of(r.payload)
    return _Stored(
        Message(
            group_id=r.conv.group_id,
            sender_user=r.sender.user,
            sender_device=r.sender.device_id,
            outgoing=False,
            content_type=kind.value,
            body=r.payload.body,
            sent_at=r.payload.sent_at_ms,
            received_at=r.now,
            expires_at=r.expires_at,
            state=MessageState.RECEIVED,
            server_id=r.payload.message_id.hex(),
            franking=r.franking,
        ),
        mine=r.sender.user == s.me.user,
    )


# --- MIMI content (kind 3): messages, replies, reactions, edits, deletes, receipts ----------


@dataclass(frozen=True)
class _Content:
    shown: ClassVar[bool] = True
    received: rich_inbox.Received
    group_id: bytes
    payload: Payload
    sender: DeviceRef

    def write(self, tx: Transaction) -> Announce | None:
        outcome = self.received.apply(tx)

        async def announce(s: Session) -> None:
            await self._announce(s, outcome)

        return announce

    async def _announce(self, s: Session, outcome: rich_inbox.Outcome) -> None:
        """Emit what the container did, or report why it was refused."""
        event = outcome.event
        if isinstance(event, MessageReceived) and event.sender.user == s.me.user:
            s.forget_request(self.group_id)
        if isinstance(event, MessageChanged) and event.change is ChangeKind.DELETED:
            # secure_delete overwrote the text; the checkpoint drops its old page images (WAL)
            await s.store.run(s.store.checkpoint)
        if event is not None:
            s.hub.emit(event)
        if outcome.refused is not None:
            log.warning("a change from %s was refused: %s", self.sender, outcome.refused)
            s.fail(
                outcome.reason,
                str(outcome.refused),
                conversation=self.group_id,
                message_id=self.payload.message_id.hex(),
                sender=self.sender,
            )


async def _content(s: Session, r: Received) -> Handling:
    received = rich_inbox.read(
        r.payload,
        r.franking,
        sender=r.sender,
        group_id=r.conv.group_id,
        now=r.now,
        expires_at=r.expires_at,
        me=s.me.user,
    )
    return _Content(received, r.conv.group_id, r.payload, r.sender)


# --- call signals (kind 4): for the calls, never stored --------------------------------------


@dataclass(frozen=True)
class _Signal:
    shown: ClassVar[bool] = False
    signal: CallSignal
    group_id: bytes
    sender: DeviceRef

    def write(self, tx: Transaction) -> Announce | None:
        async def announce(s: Session) -> None:
            s.hub.emit(CallSignalReceived(self.group_id.hex(), self.sender, self.signal))

        return announce


async def _call_signal(s: Session, r: Received) -> Handling:
    signal = signal_of(r.payload)
    if signal is None:  # cannot be: the table sends only call_signal payloads here
        raise DecodeError("not a call signal")
    return _Signal(signal, r.conv.group_id, r.sender)


# --- history handoff (kind 5): another device of ours hands over its history ---------------


@dataclass(frozen=True)
class _History:
    shown: ClassVar[bool] = False
    history: handoff.ReceivedHistory

    def write(self, tx: Transaction) -> Announce | None:
        imported = handoff.store_history(tx, self.history)
        log.info("history handed over by another device: %d messages", imported)
        return None


async def _history(s: Session, r: Received) -> Handling:
    return _History(await handoff.open_offer(s, r.sender, r.payload))  # NETWORK: stays queued


# --- upgrade (kind 6): a member moved the conversation to a successor group ---------------


@dataclass(frozen=True)
class _Upgrade:
    shown: ClassVar[bool] = False
    notice: UpgradeNotice
    conv: Conv
    sender: DeviceRef

    def write(self, tx: Transaction) -> Announce | None:
        store_upgrade(tx, self.conv.group_id, self.notice.new_group_id)

        async def announce(s: Session) -> None:
            s.upgrades = None  # read again: the old conversation now names its successor
            if (await s.load_upgrades()).get(self.conv.group_id) == self.notice.new_group_id:
                s.hub.emit(ConversationUpdated(s.view(self.conv), self.sender))

        return announce


async def _upgrade(s: Session, r: Received) -> Handling:
    return _Upgrade(decode(UpgradeNotice, r.payload.body), r.conv, r.sender)


_READERS: dict[PayloadKind | int, Callable[[Session, Received], Awaitable[Handling]]] = {
    PayloadKind.text: _text_or_file,
    PayloadKind.file: _text_or_file,
    PayloadKind.content: _content,
    PayloadKind.call_signal: _call_signal,
    PayloadKind.history: _history,
    PayloadKind.upgrade: _upgrade,
}
