"""Sending: application messages are encrypted, stored with their ciphertext in the
outbox in one transaction, then sent; a server that cannot be reached leaves them ``pending``
(sent later, in creation order, encrypted again if the group moved on), a refusal fails them
for good. Also the file upload that precedes a file message."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import mimetypes
import os
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from doorless.client import inbox, membership, rich_inbox
from doorless.client.core import (
    MAX_BACKOFF,
    MESSAGE_KIND,
    PAYLOAD_KIND,
    QUEUE_BEHIND,
    TRANSIENT,
    Conv,
    NotAMember,
    Plan,
    SendFailed,
    Session,
    conversation_gid,
    message_info,
)
from doorless.client.errors import EpochConflict, InvalidRequest, ServerError
from doorless.client.events import (
    ConversationStatus,
    FailureReason,
    MessageInfo,
    MessageKind,
    MessageSent,
)
from doorless.client.records import KIND_APPLICATION, OutgoingMessage
from doorless.client.rich_view import content_text, find_target, rich_info, rich_target
from doorless.client.safety import disappearing_seconds, expires_at
from doorless.client.store import (
    GroupStatus,
    Message,
    MessageState,
    OutboxItem,
    RichMeta,
    Transaction,
)
from doorless.client.transport import ProgressCallback
from doorless.codec import decode, encode
from doorless.content import SALT_SIZE, MimiContent
from doorless.errors import ConfigurationError, StateError
from doorless.franking import seal_attachment
from doorless.wire import rich
from doorless.wire.payload import (
    MAX_TEXT_BYTES,
    FileBody,
    Payload,
    PayloadKind,
    check_file_name,
    content_payload,
)

log = logging.getLogger("doorless.client")

SEND_ATTEMPTS = 6


async def send_text(
    s: Session, conversation_id: str, text: str, *, reply_to: str | None = None
) -> MessageInfo:
    """Send a text (a MIMI container, `doorless.wire.rich`) to every other device of the
    conversation; ``reply_to``: the id of the message it answers; ``@member`` is a mention.

    The returned message is ``sent`` once the server accepted it, or ``pending`` if the
    server could not be reached (it is sent later; `MessageSent` tells when).
    """
    gid = conversation_gid(conversation_id)
    if len(text.encode("utf-8")) > MAX_TEXT_BYTES:
        raise ConfigurationError(f"a text message is at most {MAX_TEXT_BYTES} bytes")
    conv = await s.require_active(gid)
    target = await rich_target(s, gid, reply_to) if reply_to is not None else None
    members = frozenset(s.view(conv).members)
    content = rich.post(
        text,
        salt=os.urandom(SALT_SIZE),
        members=members,
        in_reply_to=target.mimi_id if target is not None else None,
        expires_s=disappearing_seconds(conv.mls),
    )
    shown, mentions = rich.displayed(content_text(content))
    return await send_content(
        s, gid, content, MessageKind.TEXT, shown.encode("utf-8"), mentions=mentions
    )


async def send_reply(s: Session, message_id: str, text: str) -> MessageInfo:
    """Answer a stored message in its conversation (`UnknownMessage` if there is none)."""
    message, _ = await s.tx(lambda tx: find_target(tx, message_id))
    return await send_text(s, message.group_id.hex(), text, reply_to=message_id)


async def send_file(
    s: Session,
    conversation_id: str,
    source: bytes | str | os.PathLike[str],
    *,
    name: str | None = None,
    media_type: str | None = None,
    progress: ProgressCallback | None = None,
) -> MessageInfo:
    """Encrypt a file (fresh AES-256-GCM key), upload it, and send its descriptor."""
    gid = conversation_gid(conversation_id)
    if isinstance(source, bytes):
        data, name = source, name or "file"
    else:
        path = Path(source)
        data = await asyncio.to_thread(path.read_bytes)
        name = name or path.name
    check_file_name(name)
    media_type = media_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
    view = await membership.conversation(s, conversation_id)  # fail before uploading
    if view.status is not ConversationStatus.ACTIVE:
        raise NotAMember("this device is no longer in the conversation")
    descriptor, ciphertext = await asyncio.to_thread(
        seal_attachment,
        data,
        key=os.urandom(32),
        nonce=os.urandom(12),
        media_type=media_type.encode("utf-8"),
    )
    uploaded = await s.transport.upload_attachment(ciphertext, progress=progress)
    descriptor = dataclasses.replace(descriptor, locator=uploaded.attachment_id.encode())
    content = rich.attachment(
        name,
        descriptor,
        salt=os.urandom(SALT_SIZE),
        expires_s=view.disappearing_seconds,
    )
    body = encode(FileBody(name, descriptor))
    return await send_content(s, gid, content, MessageKind.FILE, body)


async def send_content(
    s: Session,
    gid: bytes,
    content: MimiContent,
    kind: MessageKind,
    body: bytes,
    *,
    mentions: tuple[str, ...] = (),
) -> MessageInfo:
    """Send a MIMI container that is shown as a message (text or file): the ``messages``
    row holds ``body`` (the displayed text, or the file's descriptor), `RichMeta` its MIMI id,
    reply target and mentions."""
    payload = content_payload(content, s.now_ms())
    mimi_id = rich.message_id_of(content, s.me.user, gid)

    def meta(tx: Transaction, local_id: int | None) -> None:
        assert local_id is not None
        target = content.in_reply_to
        tx.put_rich(
            RichMeta(local_id=local_id, mimi_id=mimi_id, in_reply_to=target, mentions=mentions)
        )

    info = await send_payload(s, gid, payload, shown=(kind, body), extra=meta)
    assert info is not None
    me = s.me.user

    def view(tx: Transaction) -> MessageInfo:
        stored = tx.get_message(info.local_id)
        return info if stored is None else rich_info(tx, me, stored)

    return await s.tx(view)  # with its reply target and mentions


async def send_control(s: Session, gid: bytes, content: MimiContent) -> None:
    """Send a MIMI container that changes what is shown (reaction, edit, delete) through
    the outbox: it is sent in order with this device's messages, and again after a crash.
    It is applied to this device's store in the same transaction, as receivers apply it."""
    payload = content_payload(content, s.now_ms())
    received = rich_inbox.Received(
        content=content,
        action=rich.classify(content),
        mimi_id=rich.message_id_of(content, s.me.user, gid),
        sender=s.me,
        group_id=gid,
        payload=payload,
        franking=None,
        now=s.now_ms(),
        expires_at=None,
        me=s.me.user,
    )

    def apply(tx: Transaction, local_id: int | None) -> None:
        outcome = received.apply(tx)
        if outcome.refused is not None:
            raise StateError(str(outcome.refused))  # rolls the send back

    await send_payload(s, gid, payload, shown=None, extra=apply)


async def send_payload(
    s: Session,
    gid: bytes,
    payload: Payload,
    *,
    shown: tuple[MessageKind, bytes] | Literal[False] | None = False,
    extra: Callable[[Transaction, int | None], None] | None = None,
) -> MessageInfo | None:
    """Under the lock: send older outbox messages first, then encrypt the payload, store
    the message with its outbox item in one transaction, and send it.

    ``shown``: the kind and body of the stored message; False: the payload's own (kinds text
    and file); None: no message is stored (a control message, which returns None).
    ``extra`` writes more rows for the stored message in the same transaction."""
    async with s.lock:
        # Older messages still in the outbox go first, so that receivers see this
        # device's messages in the order they were written.
        try:
            await flush_locked(s)
            offline = False
        except QUEUE_BEHIND:
            offline = True
        conv = await s.require_active(gid)
        if conv.mls.proposals:  # §12.4: proposals must be committed before sending data
            conv = await membership.commit_locked(s, gid, no_plan, force=True)
        if shown is False:
            shown = (MESSAGE_KIND[int(payload.kind)], payload.body)
        now = s.now_ms()
        message = None
        if shown is not None:
            message = Message(
                group_id=gid,
                sender_user=s.me.user,
                sender_device=s.me.device_id,
                outgoing=True,
                content_type=shown[0].value,
                body=shown[1],
                sent_at=payload.sent_at_ms,
                expires_at=expires_at(conv.mls, now),
                state=MessageState.PENDING,
                server_id=payload.message_id.hex(),
            )
        new_group, data = s.encrypt_payload(conv, payload)
        record = OutgoingMessage(payload.message_id.hex(), data, s.recipients(conv))
        new = conv.evolve(mls=new_group, updated_at=now)

        def write(tx: Transaction) -> tuple[Message | None, OutboxItem]:
            tx.update_group(new.stored())
            tx.delete_request(gid)  # writing in a message request accepts it
            stored = None if message is None else tx.insert_message(message)
            if extra is not None:
                extra(tx, None if stored is None else stored.local_id)
            if payload.kind == PayloadKind.content:  # encrypted again from it if need be
                tx.put_pending_payload(record.message_id, encode(payload))
            item = tx.enqueue(
                OutboxItem(
                    group_id=gid,
                    kind=KIND_APPLICATION,
                    payload=encode(record),
                    message_local_id=None if stored is None else stored.local_id,
                    created_at=now,
                    next_attempt_at=now,
                )
            )
            return stored, item

        stored, item = await s.save(new, write)
        s.forget_request(gid)
        queued = None if stored is None else message_info(stored)
        if offline:
            return queued  # queued behind the older ones
        try:
            return await deliver_application_locked(s, item)
        except TRANSIENT as e:
            log.info("message queued, the server is not reachable: %s", type(e).__name__)
            return queued


async def no_plan(conv: Conv, excluded: frozenset[str]) -> Plan | None:
    """A plan builder that adds nothing (the commit carries the pending proposals)."""
    return None


async def deliver_application_locked(s: Session, item: OutboxItem) -> MessageInfo | None:
    """Send an outbox message until the server accepts it or refuses it for good (None
    for a control message, which has no stored message)."""
    assert item.outbox_id is not None and item.group_id is not None
    record = decode(OutgoingMessage, item.payload)
    for _ in range(SEND_ATTEMPTS):
        try:
            await s.transport.send(record.data, record.recipients, message_id=record.message_id)
        except EpochConflict as e:
            # The group moved to a new epoch we have not processed: catch up (or rejoin, if
            # we cannot follow it), encrypt again.
            await inbox.sync_locked(s)
            await membership.rejoin_if_behind_locked(s, item.group_id, e.current_epoch)
            replaced = await reencrypt_locked(s, item)
            if not isinstance(replaced, tuple):
                return replaced
            item, record = replaced
            continue
        except TRANSIENT as e:
            delay = min(MAX_BACKOFF, 2.0 ** min(item.attempts, 6))
            await s.tx(
                functools.partial(
                    Transaction.record_attempt,
                    outbox_id=item.outbox_id or 0,
                    next_attempt_at=s.now_ms() + int(1000 * delay),
                    error=type(e).__name__,
                )
            )
            raise
        except InvalidRequest as e:
            if not e.unknown_devices:
                return await fail_outgoing(s, item, FailureReason.REJECTED, str(e))
            gone = set(e.unknown_devices)  # revoked devices: send to the others
            record = dataclasses.replace(
                record, recipients=tuple(r for r in record.recipients if r not in gone)
            )
            item = await replace_outbox(s, item, record)
            continue
        except ServerError as e:
            return await fail_outgoing(s, item, FailureReason.REJECTED, str(e))
        return await sent(s, item)
    raise SendFailed(
        f"the message could not be sent in {SEND_ATTEMPTS} attempts (the group kept moving "
        "on): it stays in the outbox and is sent again with the next sync"
    )


async def sent(s: Session, item: OutboxItem) -> MessageInfo | None:
    """The server accepted an outbox message: dequeue it, mark it sent, emit `MessageSent`."""
    info = await _settle(s, item, MessageState.SENT)
    if info is not None:
        s.hub.emit(MessageSent(info))
    return info


async def fail_outgoing(
    s: Session, item: OutboxItem, reason: FailureReason, detail: str
) -> MessageInfo | None:
    """The server refused an outbox message for good: dequeue it, mark it failed, emit
    `DeliveryFailed`."""
    info = await _settle(s, item, MessageState.FAILED)
    s.fail(
        reason,
        detail,
        conversation=item.group_id,
        message_id=decode(OutgoingMessage, item.payload).message_id,
        sender=s.me,
        outgoing=True,
    )
    return info


async def _settle(s: Session, item: OutboxItem, state: MessageState) -> MessageInfo | None:
    """Dequeue an outbox message and give its stored message its final ``state`` (one
    transaction); None for a control message."""
    outbox_id, local_id = item.outbox_id, item.message_local_id
    assert outbox_id is not None
    message_id = decode(OutgoingMessage, item.payload).message_id

    def write(tx: Transaction) -> Message | None:
        tx.dequeue(outbox_id)
        control = tx.get_pending_payload(message_id) is not None and local_id is None
        tx.drop_pending_payload(message_id)
        if local_id is None:
            if control:
                return None
            raise StateError(f"the {state.value} message is no longer in the store")
        tx.update_message_state(local_id, state)
        return tx.get_message(local_id)

    message = await s.tx(write)
    return None if message is None else message_info(message)


async def replace_outbox(s: Session, item: OutboxItem, record: OutgoingMessage) -> OutboxItem:
    """Replace an outbox item by one holding ``record`` (one transaction)."""
    old_id = item.outbox_id
    assert old_id is not None
    new_item = dataclasses.replace(item, payload=encode(record), outbox_id=None)

    def write(tx: Transaction) -> OutboxItem:
        tx.dequeue(old_id)
        return tx.enqueue(new_item)

    return await s.tx(write)


async def reencrypt_locked(
    s: Session, item: OutboxItem
) -> tuple[OutboxItem, OutgoingMessage] | MessageInfo | None:
    """Encrypt an outbox message again in the group's current epoch (same message id)."""
    assert item.group_id is not None
    gid, local_id = item.group_id, item.message_local_id
    old_record = decode(OutgoingMessage, item.payload)
    pending = await s.tx(lambda tx: tx.get_pending_payload(old_record.message_id))
    message = await s.tx(lambda tx: tx.get_message(local_id)) if local_id is not None else None
    if pending is None and (message is None or message.server_id is None):
        raise StateError("an outbox message without its stored message")
    conv = await s.load(gid)
    if conv is None or conv.status is not GroupStatus.ACTIVE:
        return await fail_outgoing(
            s, item, FailureReason.NOT_A_MEMBER, "no longer a member of the conversation"
        )
    if conv.mls.proposals:
        conv = await membership.commit_locked(s, gid, no_plan, force=True)
    if pending is not None:  # a MIMI container: its payload was kept
        payload = decode(Payload, pending)
    else:
        assert message is not None and message.server_id is not None
        payload = Payload(
            bytes.fromhex(message.server_id),
            message.sent_at,
            PAYLOAD_KIND[MessageKind(message.content_type)],
            message.body,
        )
    new_group, data = s.encrypt_payload(conv, payload)
    record = OutgoingMessage(old_record.message_id, data, s.recipients(conv))
    new = conv.evolve(mls=new_group, updated_at=s.now_ms())
    old_id = item.outbox_id
    assert old_id is not None
    new_item = dataclasses.replace(item, payload=encode(record), outbox_id=None)

    def write(tx: Transaction) -> OutboxItem:
        tx.update_group(new.stored())
        tx.dequeue(old_id)
        return tx.enqueue(new_item)

    return await s.save(new, write), record


async def flush_locked(s: Session, *, due_only: bool = False) -> None:
    """Send what the outbox holds: commits first, then messages in creation order."""
    await membership.resolve_commits_locked(s)
    now = s.now_ms()
    items = await s.tx(lambda tx: tx.list_outbox(due_at=now if due_only else None))
    # Messages in creation order; a control message (no stored message) after the messages
    # created in the same millisecond, since it may refer to one of them.
    messages = sorted(
        (i for i in items if i.kind == KIND_APPLICATION),
        key=lambda i: (
            i.created_at,
            i.message_local_id if i.message_local_id is not None else 2**63,
            i.outbox_id or 0,
        ),
    )
    for item in messages:
        await deliver_application_locked(s, item)
