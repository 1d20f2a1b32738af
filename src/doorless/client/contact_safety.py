"""Contact safety: reports of franked messages, message requests, blocking, the
disappearing-message timer and the hidden-message counts (primitives in
`doorless.client.safety`, design in ``docs/franking.md``)."""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Sequence

from doorless.client import membership
from doorless.client.core import Conv, Plan, Session, checked_users, conversation_gid
from doorless.client.events import Conversation
from doorless.client.safety import (
    DisappearingTimer,
    ReportReceipt,
    disappearing_seconds,
    hidden_counts,
    report_reason,
    with_disappearing,
)
from doorless.client.store import Contact, Message, Transaction
from doorless.codec import decode, encode
from doorless.errors import ConfigurationError
from doorless.franking import ReceivedFrank, ReportReason
from doorless.mls.proposals import GroupContextExtensions

log = logging.getLogger("doorless.client")


def _message_by_id(tx: Transaction, message_id: str) -> Message | None:
    return tx.get_message_by_server_id(message_id.lower())


def _set_contact(
    tx: Transaction,
    username: str,
    now: int,
    *,
    blocked: bool | None = None,
    accepted: bool | None = None,
) -> None:
    contact = tx.get_contact(username) or Contact(username=username, created_at=now, updated_at=now)
    tx.put_contact(
        dataclasses.replace(
            contact,
            updated_at=now,
            blocked=contact.blocked if blocked is None else blocked,
            accepted=contact.accepted if accepted is None else accepted,
        )
    )


async def report(
    s: Session, message_ids: str | Sequence[str], reason: str | ReportReason, note: str = ""
) -> list[ReportReceipt]:
    """Report received messages (by ``message_id``) to the server's moderators.

    Each report holds that one message's franked content and the server's frank, nothing
    else; the server checks it was really sent so. Raises `ConfigurationError` for an id
    that is not a message this device received, and the server's `InvalidRequest` with
    code ``report_expired`` once its franking key is gone (``invalid_report``: forged).
    """
    ids = [message_ids] if isinstance(message_ids, str) else list(message_ids)
    why = report_reason(reason)
    reports: list[tuple[str, bytes]] = []
    for message_id in ids:
        row = await s.tx(functools.partial(_message_by_id, message_id=message_id))
        if row is None or row.franking is None:
            raise ConfigurationError(f"no received message {message_id} to report")
        report = decode(ReceivedFrank, row.franking).report(why, note)
        reports.append((message_id, encode(report)))
    receipts = []
    for message_id, data in reports:
        filed = await s.transport.report(data)
        receipts.append(
            ReportReceipt(message_id, filed.report_id, filed.sender, tuple(filed.attachments))
        )
    return receipts


async def requests(s: Session) -> list[Conversation]:
    """Message requests: conversations someone not accepted added this user to (not those
    of a user this account blocks)."""
    hidden = await hidden_requests(s)
    return [c for c in await membership.conversations(s) if c.is_request and c.id not in hidden]


async def accept_request(s: Session, conversation_id: str) -> Conversation:
    """Accept a message request: its inviter becomes an accepted contact. (Sending in
    the conversation accepts it too, on every device of this user.)"""
    gid = conversation_gid(conversation_id)
    now = s.now_ms()

    def write(tx: Transaction) -> None:
        request = tx.get_request(gid)
        if request is None:
            raise ConfigurationError(f"conversation {conversation_id} is not a request")
        tx.delete_request(gid)
        if request.inviter:
            _set_contact(tx, request.inviter, now, accepted=True, blocked=False)

    await s.tx(write)
    s.forget_request(gid)
    return await membership.conversation(s, conversation_id)


async def block_request(s: Session, conversation_id: str) -> str:
    """Decline a message request: block its inviter (every device of this user); its
    messages are deleted and it is hidden while they stay blocked (`apply_blocks`). Returns
    the blocked user."""
    gid = conversation_gid(conversation_id)
    request = await s.tx(lambda tx: tx.get_request(gid))
    if request is None:
        raise ConfigurationError(f"conversation {conversation_id} is not a request")
    if not request.inviter:  # an invitation whose sender is not in the roster
        async with s.lock:
            s.cache.pop(gid, None)
            await s.tx(lambda tx: tx.delete_group(gid))
            s.forget_request(gid)
        return ""
    await block(s, request.inviter)
    return request.inviter


async def report_request(
    s: Session, conversation_id: str, reason: str | ReportReason, note: str = ""
) -> list[ReportReceipt]:
    """Report the inviter's messages in a message request, then `block_request` it."""
    gid = conversation_gid(conversation_id)
    request = await s.tx(lambda tx: tx.get_request(gid))
    if request is None:
        raise ConfigurationError(f"conversation {conversation_id} is not a request")
    rows = await s.tx(lambda tx: tx.list_messages(gid))
    ids = [
        m.server_id
        for m in rows
        if m.server_id and m.franking is not None and m.sender_user == request.inviter
    ]
    receipts = await report(s, ids, reason, note) if ids else []
    await block_request(s, conversation_id)
    return receipts


async def block(s: Session, username: str) -> None:
    """Block a user for every device of this account: the server stops delivering their
    messages and invitations, and this client drops those still on the way. Message
    requests from them are deleted. They are not told."""
    (user,) = checked_users([username])
    if user == s.me.user:
        raise ConfigurationError("you cannot block yourself")
    await s.transport.block(user)
    await apply_blocks(s, {user}, adding=True)


async def unblock(s: Session, username: str) -> None:
    """Unblock a user for every device of this account."""
    (user,) = checked_users([username])
    await s.transport.unblock(user)
    now = s.now_ms()
    await s.tx(lambda tx: _set_contact(tx, user, now, blocked=False))


async def blocked_users(s: Session) -> list[str]:
    """The users this account blocks, as this device last learnt them."""
    contacts = await s.tx(lambda tx: tx.list_contacts())
    return [c.username for c in contacts if c.blocked]


async def sync_blocks(s: Session) -> list[str]:
    """Take the account's block list from the server (another device may have changed
    it); returns it."""
    blocked = set(await s.transport.list_blocks())
    await apply_blocks(s, blocked, adding=False)
    return sorted(blocked)


async def set_disappearing(s: Session, conversation_id: str, seconds: int | None) -> Conversation:
    """Set (or, with None, turn off) the conversation's disappearing-message timer. It is
    agreed group state (a commit): every member's devices apply the same value to the
    messages that follow."""
    gid = conversation_gid(conversation_id)
    if seconds is not None:
        DisappearingTimer(seconds)  # ConfigurationError if out of range

    async def build(conv: Conv, excluded: frozenset[str]) -> Plan | None:
        if disappearing_seconds(conv.mls) == seconds:
            return None
        extensions = with_disappearing(conv.mls.extensions, seconds)
        return Plan((GroupContextExtensions(extensions),))

    async with s.lock:
        conv = await membership.commit_locked(s, gid, build)
    return s.view(conv)


async def hidden_messages(s: Session) -> dict[str, int]:
    """How many received messages were hidden because a franking check failed, by check
    (``FrankingTagMismatch``, ``InvalidFrankSignature``, ``DecodeError``, ...)."""
    return await s.tx(hidden_counts)


async def apply_blocks(s: Session, blocked: set[str], *, adding: bool) -> None:
    """Record ``blocked`` locally (``adding``: these users too; else exactly these); the
    message requests they sent lose their messages and are hidden until an unblock."""
    now = s.now_ms()

    def write(tx: Transaction) -> None:
        for known in tx.list_contacts():
            if known.blocked and not adding and known.username not in blocked:
                _set_contact(tx, known.username, now, blocked=False)
        for user in blocked:
            contact = tx.get_contact(user)
            if contact is None or not contact.blocked:
                _set_contact(tx, user, now, blocked=True, accepted=False)
        # Their requests lose every message and are hidden while they are blocked, but the
        # group itself is kept: this device is still in it for the other members, so after an
        # unblock their next message arrives in the same conversation (a deleted group would
        # turn it into an unknown_conversation failure, and a second conversation with them).
        for request in tx.list_requests():
            if request.inviter in blocked:
                for message in tx.list_messages(request.group_id):
                    if message.local_id is not None:
                        tx.delete_message(message.local_id)

    async with s.lock:
        await s.tx(write)


async def hidden_requests(s: Session) -> set[str]:
    """The conversation ids of message requests from users this account blocks (kept, not
    shown: `apply_blocks`)."""
    blocked = set(await blocked_users(s))
    requests = await s.load_requests()
    return {gid.hex() for gid, inviter in requests.items() if inviter in blocked}
