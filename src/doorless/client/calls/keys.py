"""SFrame keys of a call from the conversation's MLS group (RFC 9605 §5.2).

A call uses the conversation's own MLS group, not a group of its own (docs/calls.md says
why): for every epoch of the group,

* ``base_key = MLS-Exporter("SFrame 1.0 Base Key", "", 16)`` (`doorless.sframe.mls_base_key`,
  suite ``AES_128_GCM_SHA256_128``);
* each member sends under ``KID = (context << 24) | (leaf index << 8) | (epoch mod 256)``
  (`KID_LAYOUT`: S = 16 index bits, E = 8 epoch bits), so members never share a key or nonce;
* a receiver holds the keys of the current epoch and, for `GRACE_SECONDS` after the change
  (time, measured by the receiver from when it installed the new epoch), of the previous one,
  so frames in flight across a commit still play; older epochs and expired grace keys are
  removed. A member removed by a commit never learns the next exporter secret: frames sent
  after the commit are undecryptable for it (RFC 9420 §8.5, §12.4).

The call privacy code is a number both sides read out to check that they hold the same epoch
of the same call (a relay or server that split the call would show two numbers): 30 digits
of ``SHA-512("doorless call privacy code" || 0x00 || call_id || epoch_authenticator)``
formatted like a safety number (`doorless.client.safety_number.digits_of`). It changes with
every epoch (RFC 9420 §8.7: the epoch authenticator is equal for all members of an epoch).

No I/O and no clock: ``now`` (seconds, monotonic) comes in as an argument; counter
persistence is `doorless.client.calls.counters`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from doorless.client.conversations import roster
from doorless.client.events import DeviceRef
from doorless.client.safety_number import digits_of
from doorless.errors import StateError
from doorless.mls.group import Group
from doorless.sframe import (
    BaseKey,
    MlsKidLayout,
    SFrameReceiver,
    SFrameSender,
    SFrameSuite,
    UnknownKeyId,
    decode_header,
    mls_base_key,
)

CALL_SFRAME_SUITE = SFrameSuite.AES_128_GCM_SHA256_128
KID_LAYOUT = MlsKidLayout(epoch_bits=8, index_bits=16)
GRACE_SECONDS = 2.0  # previous-epoch frames accepted this long after the new epoch arrived
REPLAY_WINDOW = 256  # frames per KID (RFC 9605 §9.3); ~5 s of audio, ~8 s of 30 fps video
PRIVACY_CODE_LABEL = b"doorless call privacy code\x00"


def privacy_code(call_id: bytes, epoch_authenticator: bytes) -> str:
    """30 digits in six groups of five (see the module docstring)."""
    digest = hashlib.sha512(PRIVACY_CODE_LABEL + call_id + epoch_authenticator).digest()
    digits = digits_of(digest[:30])
    return " ".join(digits[i : i + 5] for i in range(0, 30, 5))


@dataclass(frozen=True, slots=True, repr=False)
class EpochKeys:
    """What a call needs from one epoch of the group: the base key, who sends under which
    leaf, this device's leaf, and the privacy code."""

    epoch: int
    base_key: BaseKey
    senders: Mapping[int, DeviceRef]  # leaf index -> device
    own_leaf: int
    privacy_code: str

    def __repr__(self) -> str:
        return f"EpochKeys(epoch={self.epoch}, members={len(self.senders)})"

    def kid(self, leaf: int, context: int = 0) -> int:
        return KID_LAYOUT.kid(leaf, self.epoch, context)

    def sender(self, *, next_ctr: int = 0, context: int = 0) -> SFrameSender:
        """This device's sender in this epoch, resuming at the persisted ``next_ctr``."""
        return SFrameSender(
            CALL_SFRAME_SUITE, self.kid(self.own_leaf, context), self.base_key, next_ctr=next_ctr
        )


def epoch_keys(group: Group, call_id: bytes) -> EpochKeys:
    """The call keys of ``group``'s current epoch; `ValidationError` if a leaf is not a
    Doorless device."""
    senders = {int(entry.leaf): ref for ref, entry in roster(group).items()}
    return EpochKeys(
        epoch=group.epoch,
        base_key=mls_base_key(group.export_secret, CALL_SFRAME_SUITE),
        senders=senders,
        own_leaf=int(group.own_leaf),
        privacy_code=privacy_code(call_id, group.epoch_authenticator),
    )


@dataclass(frozen=True, slots=True, repr=False)
class Opened:
    """A frame that decrypted: who sent it, in which epoch, its CTR and its plaintext."""

    sender: DeviceRef
    epoch: int
    ctr: int
    kid: int
    plaintext: bytes

    def __repr__(self) -> str:
        return f"Opened({self.sender}, epoch={self.epoch}, ctr={self.ctr})"


class CallKeyring:
    """The receiving keys of one call: the current epoch and, for a grace period, the
    previous one. `open` raises the SFrame errors (`UnknownKeyId`, `ReplayedFrame`,
    `FrameDecryptError`, `DecodeError`) and changes nothing when it does."""

    def __init__(self, *, grace: float = GRACE_SECONDS, window: int = REPLAY_WINDOW) -> None:
        self._grace = grace
        self._receiver = SFrameReceiver(CALL_SFRAME_SUITE, window=window)
        self._current: EpochKeys | None = None
        self._previous: EpochKeys | None = None
        self._previous_until = 0.0
        self._by_kid: dict[int, tuple[EpochKeys, DeviceRef]] = {}

    @property
    def current(self) -> EpochKeys:
        if self._current is None:
            raise StateError("the call has no keys yet")
        return self._current

    @property
    def previous_epoch(self) -> int | None:
        return None if self._previous is None else self._previous.epoch

    def install(self, keys: EpochKeys, now: float) -> bool:
        """Use ``keys`` from now on; the epoch before stays readable for the grace period.
        Returns False (and changes nothing) for an epoch already installed or older."""
        if self._current is not None and keys.epoch <= self._current.epoch:
            return False
        if self._previous is not None:
            self._drop(self._previous)
        self._previous = self._current
        self._previous_until = now + self._grace
        if self._previous is not None and self._previous.epoch % 256 == keys.epoch % 256:
            self._drop(self._previous)  # §5.2: same low epoch bits, the old keys go first
            self._previous = None
        self._current = keys
        for leaf, ref in keys.senders.items():
            if leaf == keys.own_leaf:
                continue  # a key is for sending or for receiving (§4.4.1)
            kid = keys.kid(leaf)
            self._receiver.add_key(kid, keys.base_key)
            self._by_kid[kid] = (keys, ref)
        return True

    def expire(self, now: float) -> None:
        """Drop the previous epoch's keys once its grace period is over."""
        if self._previous is not None and now >= self._previous_until:
            self._drop(self._previous)
            self._previous = None

    def _drop(self, keys: EpochKeys) -> None:
        for kid, (owner, _) in list(self._by_kid.items()):
            if owner is keys:
                self._receiver.remove_key(kid)
                del self._by_kid[kid]

    def sender_of(self, frame: bytes) -> DeviceRef | None:
        """The device a frame claims to come from (its KID), before any check."""
        header, _ = decode_header(frame)
        entry = self._by_kid.get(header.kid)
        return None if entry is None else entry[1]

    def open(self, frame: bytes, now: float, metadata: bytes = b"") -> Opened:
        self.expire(now)
        decrypted = self._receiver.decrypt(frame, metadata)
        entry = self._by_kid.get(decrypted.kid)
        if entry is None:  # cannot happen: keys and owners change together
            raise UnknownKeyId(f"no owner for KID {decrypted.kid}")
        keys, ref = entry
        return Opened(ref, keys.epoch, decrypted.ctr, decrypted.kid, decrypted.plaintext)


__all__ = [
    "CALL_SFRAME_SUITE",
    "GRACE_SECONDS",
    "KID_LAYOUT",
    "REPLAY_WINDOW",
    "CallKeyring",
    "EpochKeys",
    "Opened",
    "epoch_keys",
    "privacy_code",
]
