"""The SFrame sender's counter, persisted before use (RFC 9605 §9.1).

Each (key, KID, CTR) encrypts at most one frame. This device's sender of a call reserves
counters in blocks of `COUNTER_BLOCK` and stores the block's end in the profile **before**
encrypting with any counter of it; a sender restarted in the same epoch (the program crashed
or the call was rejoined) resumes at the stored bound, so it never reuses a counter. The
stored value is one per conversation (``sframe-ctr:<group id>``: ``epoch:kid:bound``): a new
epoch has a new base key, so its counters start again at 0 and the old value is replaced.
"""

from __future__ import annotations

from dataclasses import dataclass

from doorless.client.calls.keys import EpochKeys
from doorless.client.core import Session
from doorless.errors import DecodeError
from doorless.sframe import MAX_VALUE, CounterExhausted, SFrameSender

COUNTER_BLOCK = 1024  # ~20 s of audio frames per store write
_SETTING_PREFIX = "sframe-ctr:"


@dataclass(frozen=True, slots=True)
class StoredCounter:
    epoch: int
    kid: int
    bound: int

    def text(self) -> str:
        return f"{self.epoch}:{self.kid}:{self.bound}"

    @classmethod
    def parse(cls, text: str) -> StoredCounter:
        try:
            epoch, kid, bound = (int(part) for part in text.split(":"))
        except ValueError:
            raise DecodeError("a stored SFrame counter is malformed") from None
        return cls(epoch, kid, bound)


def setting_key(group_id: bytes) -> str:
    return _SETTING_PREFIX + group_id.hex()


async def open_sender(s: Session, group_id: bytes, keys: EpochKeys) -> SFrameSender:
    """This device's sender for ``keys``' epoch, resuming after the last persisted bound."""
    key = setting_key(group_id)
    text = await s.tx(lambda tx: tx.get_setting(key))
    kid = keys.kid(keys.own_leaf)
    next_ctr = 0
    if text is not None:
        stored = StoredCounter.parse(text)
        if stored.epoch == keys.epoch and stored.kid == kid:
            next_ctr = stored.bound
    return keys.sender(next_ctr=next_ctr)


async def ensure_reserved(s: Session, group_id: bytes, epoch: int, sender: SFrameSender) -> None:
    """Make sure ``sender`` may encrypt one more frame: when its reservation is used up,
    persist the next block's end first, then reserve it (§9.1: store before use)."""
    if sender.next_ctr < sender.reserved_until:
        return
    bound = min(sender.reserved_until + COUNTER_BLOCK, MAX_VALUE + 1)
    if bound == sender.reserved_until:
        raise CounterExhausted("SFrame counter space of this KID is used up")
    value = StoredCounter(epoch, sender.kid, bound).text()
    key = setting_key(group_id)
    await s.tx(lambda tx: tx.set_setting(key, value))
    sender.reserve(bound - sender.reserved_until)


__all__ = ["COUNTER_BLOCK", "StoredCounter", "ensure_reserved", "open_sender", "setting_key"]
