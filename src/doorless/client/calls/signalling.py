"""Call signals inside the conversation: sent as MLS application messages of payload kind
``call_signal`` (`doorless.wire.call_signal`), received by the inbox as `CallSignalReceived`.

A signal is real-time: it is not stored in the history nor kept in the outbox (a ring that
could not be sent is an error for the caller now, not a ring delivered an hour later). It is
franked and encrypted like any message, so the server sees an application message of the
group and nothing of what it says.
"""

from __future__ import annotations

import functools

from doorless.client import inbox, membership, outbox
from doorless.client.core import SendFailed, Session
from doorless.client.errors import EpochConflict
from doorless.client.store import Group as StoredGroup
from doorless.client.store import Transaction
from doorless.codec import decode, encode
from doorless.errors import DecodeError
from doorless.wire.call_signal import CallSignal
from doorless.wire.payload import Payload, PayloadKind, new_message_id


def signal_payload(signal: CallSignal, sent_at_ms: int) -> Payload:
    return Payload(new_message_id(), sent_at_ms, PayloadKind.call_signal, encode(signal))


def signal_of(payload: Payload) -> CallSignal | None:
    """The `CallSignal` of a ``call_signal`` payload (None for other kinds); `DecodeError`
    if malformed."""
    if payload.kind != PayloadKind.call_signal:
        return None
    try:
        return decode(CallSignal, payload.body)
    except DecodeError as e:
        raise DecodeError(f"malformed call signal: {e}") from None


def _store_group(tx: Transaction, stored: StoredGroup) -> None:
    tx.update_group(stored)


async def send_signal(s: Session, gid: bytes, signal: CallSignal) -> None:
    """Encrypt ``signal`` for the conversation and send it now (a new epoch on the server:
    catch up and encrypt again, as `outbox.deliver_application_locked` does)."""
    payload = signal_payload(signal, s.now_ms())
    async with s.lock:
        for _ in range(outbox.SEND_ATTEMPTS):
            conv = await s.require_active(gid)
            if conv.mls.proposals:  # RFC 9420 §12.4: commit proposals before sending data
                conv = await membership.commit_locked(s, gid, outbox.no_plan, force=True)
            recipients = s.recipients(conv)
            if not recipients:
                return  # alone in the conversation
            new_group, data = s.encrypt_payload(conv, payload)
            new = conv.evolve(mls=new_group, updated_at=s.now_ms())
            await s.save(new, functools.partial(_store_group, stored=new.stored()))
            try:
                await s.transport.send(data, recipients, message_id=payload.message_id.hex())
            except EpochConflict as e:
                await inbox.sync_locked(s)
                await membership.rejoin_if_behind_locked(s, gid, e.current_epoch)
                continue
            return
    raise SendFailed("the call signal could not be sent: the group kept moving on")


__all__ = ["send_signal", "signal_of", "signal_payload"]
