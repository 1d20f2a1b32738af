"""The delivery rules: what is checked and stamped before a message is queued, who receives it.

``POST /v1/messages`` (`doorless.server.routes.messages`) parses the HTTP request and calls
`send`; everything the server decides about a message is here, and the queues themselves are
`doorless.server.storage.base.Storage.deliver`. In order:

1. **Recipients** are named by the sender (the roster lives in MLS, not on the server): at most
   ``max_recipients``, no duplicates (`InvalidSend`). That each is a live device is checked by
   the storage, in the delivery transaction (``400 unknown_recipient``).
2. **Framing.** The server reads only the cleartext MLSMessage header
   (`doorless.mls.framing.peek_routing`): wire format, group id, epoch, content type. Empty,
   larger than ``max_message_size`` (`MessageTooLarge`) or unparsable (`MalformedMessage`) is
   refused; KeyPackages go to the directory, not to queues.
3. **Epochs.** Per group the server keeps only the current epoch (`EpochGate`, checked by the
   storage in the same transaction that enqueues): a commit for epoch ``e`` is accepted only if
   ``e`` is the group's current epoch, which then becomes ``e + 1`` (exactly one commit per
   epoch, so the group never forks; the loser gets ``409 epoch_conflict`` with
   ``current_epoch``); a proposal or application message must be for the current epoch; the
   first message seen for a group fixes its epoch.
   **Validation** (`doorless.server.groups`): for a group the server keeps the public state
   of, only member devices may post, handshakes must be PublicMessage commits valid for the
   stored state, each with the committer's GroupInfo of the new epoch (``group_info``); the
   new state is stored in the delivery transaction (``400 invalid_handshake``,
   ``403 not_group_member``).
4. **Franking** (``docs/franking.md`` §7). An application message must be a PrivateMessage
   carrying a franking tag in its ``authenticated_data`` (`MalformedMessage` otherwise). It is
   stamped (`doorless.server.franking.FrankingService.stamper`) with the device that sent it,
   the group id of its header, the server clock and the group's next sequence number; the
   frank is stored and fanned out with the ciphertext.
5. **Blocks.** Application messages and Welcomes are not queued for the devices of users who
   block the sender (`Storage.blocking_devices`, or read with the token by
   `Storage.send_context`). The sender is not told.
6. **Welcome.** A Welcome sent with its commit is delivered if and only if the commit is; it
   may only accompany a commit (`InvalidSend`).
7. **Durability and push.** ``(sender device, message id)`` is an idempotency key over the
   digest of the messages and their recipients. The answer comes after the transaction that
   enqueued every part to every recipient queue is durably committed (I5); then, unless it was
   a repeat, the recipients' sockets are woken (`Fanout.publish`, topic ``queue``), this
   process's own with the entries just committed (``DeliveryResult.queued``: no read to push).

Refusals are `DeliveryRefused` errors (nothing is queued); `doorless.server.errors` maps them
onto HTTP statuses and `doorless.wire.errors.ErrorCode` values, as it does for the storage's
`Rejected` errors.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass

from doorless.codec import Writer, decode
from doorless.errors import DecodeError, DoorlessError
from doorless.mls.framing import (
    ContentType,
    MLSMessage,
    PrivateMessage,
    Routing,
    WireFormat,
    peek_routing,
)
from doorless.server import groups
from doorless.server.context import ServerContext
from doorless.server.fanout.base import Topic
from doorless.server.franking import Unfranked, application_tag, sender_identity
from doorless.server.refusals import (
    DeliveryRefused,
    InvalidSend,
    MalformedMessage,
    MessageTooLarge,
    Sender,
)
from doorless.server.storage.base import Delivery, DeliveryResult, EpochGate, SendContext

# Epochs are stored in signed 64-bit columns; no real group gets near this.
MAX_EPOCH = 2**63 - 2
_GROUP_MESSAGES = (WireFormat.mls_public_message, WireFormat.mls_private_message)
_SENDABLE = (*_GROUP_MESSAGES, WireFormat.mls_welcome, WireFormat.mls_group_info)


# --- what a send is --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One encoded MLSMessage and the devices the sender names as its recipients."""

    data: bytes
    recipients: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Send:
    """One ``POST /v1/messages``: a message, and the Welcome of a commit if it has one."""

    message_id: str
    message: Outgoing
    welcome: Outgoing | None = None
    group_info: bytes | None = None  # a commit's GroupInfo of the new epoch (`groups`)


# --- the rules -------------------------------------------------------------------------------


def _peek(ctx: ServerContext, data: bytes, what: str) -> Routing:
    if not data:
        raise MalformedMessage(f"{what} is empty")
    if len(data) > ctx.config.max_message_size:
        raise MessageTooLarge(f"{what} is larger than {ctx.config.max_message_size} bytes")
    try:
        return peek_routing(data)
    except DoorlessError:
        raise MalformedMessage(f"{what} is not an encoded MLSMessage") from None


def _check_recipients(ctx: ServerContext, recipients: tuple[str, ...], what: str) -> None:
    if len(recipients) > ctx.config.max_recipients:
        raise InvalidSend(f"{what}: at most {ctx.config.max_recipients} recipients")
    if len(set(recipients)) != len(recipients):
        raise InvalidSend(f"{what}: duplicate recipients")


def _gate(routing: Routing) -> EpochGate | None:
    if routing.wire_format not in _SENDABLE:
        raise MalformedMessage(
            "KeyPackages go to the directory (POST /v1/keypackages), not to queues"
        )
    if routing.wire_format not in _GROUP_MESSAGES:
        return None
    assert routing.group_id is not None and routing.epoch is not None
    if routing.epoch > MAX_EPOCH:
        raise MalformedMessage("epoch out of range")
    return EpochGate(routing.group_id, routing.epoch, routing.content_type == ContentType.commit)


def digest(send: Send) -> bytes:
    """What the idempotency key protects: the messages and their recipients."""
    w = Writer()
    w.push_opaque(send.message.data)
    w.push_vector(send.message.recipients, lambda w, r: w.push_opaque(r.encode()))
    if send.welcome is not None:
        w.push_opaque(send.welcome.data)
        w.push_vector(send.welcome.recipients, lambda w, r: w.push_opaque(r.encode()))
    if send.group_info is not None:
        w.push_opaque(send.group_info)
    return hashlib.sha256(w.getvalue()).digest()


async def _unblocked(
    ctx: ServerContext, sender: Sender, recipients: tuple[str, ...], seen: SendContext | None
) -> tuple[str, ...]:
    if seen is not None and seen.checked.issuperset(recipients):
        blocked: set[str] | frozenset[str] = seen.blocked
    else:
        blocked = await ctx.storage.blocking_devices(sender.username, recipients)
    return tuple(r for r in recipients if r not in blocked)


async def group_message(
    ctx: ServerContext, sender: Sender, message: Outgoing, seen: SendContext | None = None
) -> Delivery:
    """The delivery of the main message: an application message must carry a franking tag
    (`MalformedMessage` otherwise); it is stamped at delivery with the device that sent it,
    and it is not queued for devices whose user blocks the sender. Any other message goes to
    every named recipient."""
    try:
        tag = application_tag(message.data)
    except (Unfranked, DecodeError) as exc:
        raise MalformedMessage(str(exc)) from None
    if tag is None:
        return Delivery(message.data, message.recipients)
    body = decode(MLSMessage, message.data).body
    assert isinstance(body, PrivateMessage)  # application_tag checked it
    recipients = await _unblocked(ctx, sender, message.recipients, seen)
    stamper = ctx.franking.stamper(
        tag,
        sender=sender_identity(sender.username, sender.device_id),
        group_id=body.group_id,
        accepted_at_ms=int(ctx.clock() * 1000),
    )
    return Delivery(message.data, recipients, stamper)


async def welcome_message(
    ctx: ServerContext, sender: Sender, welcome: Outgoing, seen: SendContext | None = None
) -> Delivery:
    """A Welcome is not queued for devices whose user blocks the sender."""
    return Delivery(welcome.data, await _unblocked(ctx, sender, welcome.recipients, seen))


async def send(
    ctx: ServerContext, sender: Sender, request: Send, seen: SendContext | None = None
) -> DeliveryResult:
    """Check, stamp and enqueue one send, then wake the recipients (see the module docstring).

    ``seen``: what `Storage.send_context` read for this send (``POST /v1/messages`` reads it
    with the token), used instead of reading group access, blocks and the group's franking
    number again. The delivery transaction re-checks whatever could have changed since.

    Raises `DeliveryRefused`, or the storage's `Rejected` errors (``EpochConflict``,
    ``IdempotencyConflict``, ``UnknownDevice``). ``duplicate`` in the result: the same message
    id and content was already accepted, nothing was enqueued again.
    """
    message, welcome = request.message, request.welcome
    _check_recipients(ctx, message.recipients, "recipients")
    routing = _peek(ctx, message.data, "data")
    gate = _gate(routing)
    if request.group_info is not None and (gate is None or not gate.is_commit):
        raise InvalidSend("a group_info can only accompany a commit")
    if gate is not None:
        checked = await groups.check(ctx, sender, routing, message.data, request.group_info, seen)
        if checked.update is not None:
            gate = dataclasses.replace(gate, update=checked.update)
        elif seen is not None and seen.group_id == gate.group_id:
            # No message yet: the first gets number 1.
            gate = dataclasses.replace(gate, next_seq=seen.next_seq or 1)
    parts = [await group_message(ctx, sender, message, seen)]
    if welcome is not None:
        if gate is None or not gate.is_commit:
            raise InvalidSend("a welcome can only accompany a commit")
        _check_recipients(ctx, welcome.recipients, "welcome.recipients")
        if _peek(ctx, welcome.data, "welcome.data").wire_format != WireFormat.mls_welcome:
            raise MalformedMessage("welcome.data is not an MLSMessage with wire format mls_welcome")
        parts.append(await welcome_message(ctx, sender, welcome, seen))
    result = await ctx.storage.deliver(
        sender.device_id, request.message_id, digest(request), parts, gate, ctx.now()
    )
    if not result.duplicate:
        recipients = {r for p in parts for r in p.recipients}
        await ctx.fanout.publish(recipients, Topic.queue, result.queued)
        if gate is not None and gate.update is not None and gate.update.removed and ctx.relay:
            # Devices left the group: the relay drops them from the group's calls (RFC 9605 5.2:
            # they must not receive media of the new epoch, not even its ciphertext).
            await ctx.relay.group_changed(gate.update.state.group_id)
    return result


__all__ = [
    "MAX_EPOCH",
    "DeliveryRefused",
    "InvalidSend",
    "MalformedMessage",
    "MessageTooLarge",
    "Outgoing",
    "Send",
    "Sender",
    "digest",
    "group_message",
    "send",
    "welcome_message",
]
