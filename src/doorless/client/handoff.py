"""History handoff: when a device approves a newly linked device of the account, it can send
it the conversation history (none, the last N days, or all), encrypted to that device alone.

Sender (`send_history`)
    The chosen messages become a history file (the records of `doorless.client.backup`'s
    snapshot: one ``messages`` table), encrypted like any attachment (a fresh AES-256-GCM key,
    `doorless.franking.seal_attachment`) and uploaded: the server stores an opaque blob of the
    same kind as any file. Its descriptor (locator, key, hashes) is sealed with HPKE
    (RFC 9180 base mode, the conversation suite's KEM) to the init key of a KeyPackage claimed
    for the new device (checked against key transparency like any claimed KeyPackage), and
    travels as a ``history`` payload (kind 3)::

        struct {
            uint8 version = 1;
            opaque key_package_ref<V>;    // which KeyPackage of the new device it is sealed to
            opaque kem_output<V>;
            opaque sealed_descriptor<V>;  // HPKE(init_key, info, AttachmentDescriptor)
            uint64 since_ms;              // 0: all history
        } HistoryOffer;                   // info = "doorless history handoff v1" || device id

    inside an MLS application message of a conversation both devices are in, queued by the
    server for the new device only. Other members' devices get nothing; even a server that
    forwarded the message elsewhere gives away no key of the file, which only the new device's
    KeyPackage private key opens.

Receiver (`open_offer`, then `store_history` in the inbox's transaction)
    Only an offer from another device of this account is accepted. The KeyPackage's private
    key opens the descriptor; the file is downloaded, checked (hashes, size) and decoded; each
    message is stored marked ``transferred`` in its conversation if this device is in it and
    does not have it yet (same message id), so the history is imported exactly once; the
    one-time KeyPackage key is deleted in the same transaction (I6).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import os
from dataclasses import dataclass
from typing import Self

from doorless.client import devices, inbox
from doorless.client.backup.errors import BackupError
from doorless.client.backup.snapshot import (
    Meta,
    decode_snapshot,
    encode_end,
    encode_meta,
    encode_row,
    encode_table,
)
from doorless.client.conversations import safe_roster
from doorless.client.core import Session
from doorless.client.errors import EpochConflict, NotFound
from doorless.client.events import DeviceRef, MessageKind
from doorless.client.store import (
    SCHEMA_VERSION,
    DeviceStatus,
    GroupStatus,
    Message,
    MessageState,
    Transaction,
)
from doorless.client.store.snapshot import SqlValue
from doorless.codec import Reader, Writer, decode, encode
from doorless.errors import (
    ConfigurationError,
    CryptoError,
    DecodeError,
    StateError,
    ValidationError,
)
from doorless.franking import AttachmentDescriptor, open_attachment, seal_attachment
from doorless.mls.key_package import make_key_package_ref
from doorless.wire.payload import Payload, PayloadKind

log = logging.getLogger("doorless.client")

HISTORY_MEDIA_TYPE = b"application/vnd.doorless.history"
OFFER_VERSION = 1
_INFO = b"doorless history handoff v1"
_DAY_MS = 86_400_000
_SEND_ATTEMPTS = 3
# What a handed-over message carries (the receiver builds its own rows from these).
COLUMNS = (
    "server_id",
    "group_id",
    "sender_user",
    "sender_device",
    "content_type",
    "body",
    "sent_at",
    "expires_at",
)
_SHOWN = frozenset(
    {MessageState.SENT, MessageState.DELIVERED, MessageState.RECEIVED, MessageState.READ}
)


@dataclass(frozen=True, slots=True)
class HistoryChoice:
    """How much history a new device gets: none, the last ``days`` days, or all."""

    days: int | None = None  # None with everything=False: none
    everything: bool = False

    @classmethod
    def parse(cls, text: str) -> HistoryChoice:
        """``none``, ``all`` or ``days:N`` (N >= 1)."""
        if text == "none":
            return cls()
        if text == "all":
            return cls(everything=True)
        if text.startswith("days:") and text[5:].isdigit() and int(text[5:]) >= 1:
            return cls(days=int(text[5:]))
        raise ConfigurationError(f"history is none, all or days:N, not {text!r}")

    @property
    def none(self) -> bool:
        return not self.everything and self.days is None

    def since(self, now_ms: int) -> int:
        return 0 if self.everything or self.days is None else max(0, now_ms - self.days * _DAY_MS)

    def __str__(self) -> str:
        return "all" if self.everything else "none" if self.days is None else f"days:{self.days}"


@dataclass(frozen=True, slots=True)
class HistorySent:
    """What `send_history` sent to ``device_id``."""

    device_id: str
    messages: int
    conversations: int
    since_ms: int


@dataclass(frozen=True, slots=True)
class HistoryOffer:
    key_package_ref: bytes
    kem_output: bytes
    sealed_descriptor: bytes
    since_ms: int

    def push(self, w: Writer) -> None:
        w.push_uint8(OFFER_VERSION)
        w.push_opaque(self.key_package_ref)
        w.push_opaque(self.kem_output)
        w.push_opaque(self.sealed_descriptor)
        w.push_uint64(self.since_ms)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        version = r.pull_uint8()
        if version != OFFER_VERSION:
            raise DecodeError(f"unknown history offer version {version}")
        return cls(r.pull_opaque(), r.pull_opaque(), r.pull_opaque(), r.pull_uint64())


def _info(device_id: str) -> bytes:
    return _INFO + device_id.encode("ascii")


# --- sending ------------------------------------------------------------------------------


def _collect(since: int, tx: Transaction) -> tuple[list[tuple[SqlValue, ...]], int]:
    rows: list[tuple[SqlValue, ...]] = []
    conversations = 0
    for group in tx.list_groups():
        chosen = [
            m
            for m in tx.list_messages(group.group_id)
            if m.sent_at >= since and m.state in _SHOWN and m.server_id is not None
        ]
        conversations += bool(chosen)
        rows += [
            (
                m.server_id,
                m.group_id,
                m.sender_user,
                m.sender_device,
                m.content_type,
                m.body,
                m.sent_at,
                m.expires_at,
            )
            for m in chosen
        ]
    return rows, conversations


def _history_file(s: Session, rows: list[tuple[SqlValue, ...]]) -> bytes:
    meta = Meta(s.now_ms(), SCHEMA_VERSION, s.me.user, s.me.device_id, s.account.server_url)
    parts = [encode_meta(meta), encode_table("messages", COLUMNS)]
    parts += [encode_row(r) for r in rows]
    parts.append(encode_end())
    return b"".join(parts)


async def send_history(
    s: Session, device_id: str, choice: HistoryChoice, *, key_package_timeout: float = 30.0
) -> HistorySent:
    """Send the chosen history to ``device_id``, another approved device of this account that
    is already in at least one of this device's conversations (see the module docstring)."""
    own = await s.tx(lambda tx: tx.get_device(device_id))
    if own is None or own.status is not DeviceStatus.APPROVED or device_id == s.me.device_id:
        raise ConfigurationError("history goes only to another approved device of this account")
    since = choice.since(s.now_ms())
    if choice.none:
        return HistorySent(device_id, 0, 0, since)
    rows, conversations = await s.tx(lambda tx: _collect(since, tx))
    if not rows:
        return HistorySent(device_id, 0, 0, since)  # nothing to hand over: nothing is sent
    ref = DeviceRef(s.me.user, device_id)
    carrier = await _carrier(s, ref)
    key_package = await devices.claim_device(s, ref, key_package_timeout)
    if key_package is None:
        raise StateError("the new device has no usable KeyPackage: history not sent")
    plaintext = _history_file(s, rows)
    descriptor, ciphertext = await asyncio.to_thread(
        seal_attachment,
        plaintext,
        key=os.urandom(32),
        nonce=os.urandom(12),
        media_type=HISTORY_MEDIA_TYPE,
    )
    uploaded = await s.transport.upload_attachment(ciphertext)
    descriptor = dataclasses.replace(descriptor, locator=uploaded.attachment_id.encode())
    kem_output, sealed = s.suite.seal_base(
        key_package.init_key, _info(device_id), encode(descriptor)
    )
    offer = HistoryOffer(make_key_package_ref(s.suite, key_package), kem_output, sealed, since)
    payload = Payload(os.urandom(16), s.now_ms(), PayloadKind.history, encode(offer))
    await _send_to_one(s, carrier, payload, device_id)
    log.info("history handed over to a new device: %d messages", len(rows))
    return HistorySent(device_id, len(rows), conversations, since)


async def _carrier(s: Session, ref: DeviceRef) -> bytes:
    for group in await s.tx(lambda tx: tx.list_groups()):
        conv = await s.load(group.group_id)
        if (
            conv is not None
            and conv.status is GroupStatus.ACTIVE
            and conv.mls.usable
            and ref in safe_roster(conv.mls)
        ):
            return conv.group_id
    raise StateError(
        "the new device is in none of this device's conversations yet (its KeyPackages did "
        "not come in time?): history not sent"
    )


async def _send_to_one(s: Session, gid: bytes, payload: Payload, device_id: str) -> None:
    """Encrypt in the conversation and queue it for ``device_id`` alone. The new ratchet
    state is stored before sending (a key is never used twice)."""
    async with s.lock:
        for _ in range(_SEND_ATTEMPTS):
            conv = await s.require_active(gid)
            new_group, data = s.encrypt_payload(conv, payload)
            new = conv.evolve(mls=new_group, updated_at=s.now_ms())
            await s.save(new, functools.partial(Transaction.update_group, group=new.stored()))
            try:
                await s.transport.send(data, (device_id,), message_id=payload.message_id.hex())
            except EpochConflict:
                await inbox.sync_locked(s)  # catch up, encrypt again in the new epoch
                continue
            return
    raise StateError("the history could not be sent: the conversation kept moving on")


# --- receiving ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReceivedHistory:
    """An opened offer: the messages to store and the one-time KeyPackage key to delete."""

    messages: tuple[Message, ...]
    key_package_ref: bytes | None


async def open_offer(s: Session, sender: DeviceRef, payload: Payload) -> ReceivedHistory:
    """Open a history offer and fetch its file. `ValidationError` or `DecodeError` if it is
    not for this device or not intact; network errors propagate (it stays queued)."""
    if sender.user != s.me.user or sender == s.me:
        raise ValidationError("a history handoff comes only from another device of this account")
    offer = decode(HistoryOffer, payload.body)
    stored = await s.tx(lambda tx: tx.get_key_package(offer.key_package_ref))
    if stored is None:
        raise ValidationError("a history handoff sealed to no KeyPackage of this device")
    try:
        raw = s.suite.open_base(
            stored.init_private_key.value,
            offer.kem_output,
            _info(s.me.device_id),
            offer.sealed_descriptor,
        )
        descriptor = decode(AttachmentDescriptor, raw)
        ciphertext = await s.transport.download_attachment(descriptor.locator.decode("ascii"))
        plaintext = await asyncio.to_thread(open_attachment, descriptor, ciphertext)
        snapshot = decode_snapshot(plaintext)
    except NotFound:
        raise ValidationError("the history file is no longer on the server") from None
    except (CryptoError, BackupError, UnicodeDecodeError) as e:
        raise ValidationError(f"the history handoff does not open: {e}") from None
    table = snapshot.table("messages")
    if table is None or table.columns != COLUMNS:
        raise ValidationError("the history file has no messages in the expected form")
    now = s.now_ms()
    messages = tuple(_message(row, now) for row in table.rows)
    return ReceivedHistory(messages, None if stored.last_resort else stored.ref)


def _message(row: tuple[SqlValue, ...], now: int) -> Message:
    server_id, gid, user, device, kind, body, sent_at, expires = row
    if not (
        isinstance(server_id, str)
        and isinstance(gid, bytes)
        and isinstance(user, str)
        and isinstance(device, str)
        and kind in {k.value for k in MessageKind}
        and isinstance(body, bytes)
        and isinstance(sent_at, int)
        and (expires is None or isinstance(expires, int))
    ):
        raise ValidationError("a message of the history file is malformed")
    assert isinstance(kind, str)
    return Message(
        group_id=gid,
        sender_user=user,
        sender_device=device,
        outgoing=False,
        content_type=kind,
        body=body,
        sent_at=sent_at,
        received_at=now,
        expires_at=expires,
        state=MessageState.RECEIVED,
        server_id=server_id,
        transferred=True,
    )


def store_history(tx: Transaction, history: ReceivedHistory) -> int:
    """Store the handed-over messages this device does not have, in conversations it is in;
    delete the KeyPackage key. Returns how many were stored."""
    stored = 0
    groups = {g.group_id for g in tx.list_groups()}
    for m in history.messages:
        if m.group_id in groups and tx.get_message_by_server_id(m.server_id or "") is None:
            tx.insert_message(m)
            stored += 1
    if history.key_package_ref is not None:
        tx.delete_key_package(history.key_package_ref)
    return stored


__all__ = [
    "HISTORY_MEDIA_TYPE",
    "HistoryChoice",
    "HistoryOffer",
    "HistorySent",
    "ReceivedHistory",
    "open_offer",
    "send_history",
    "store_history",
]
