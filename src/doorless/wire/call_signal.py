"""Call signalling: what travels inside an MLS application message of ``kind = call_signal``.

A call is announced and run by members of a conversation with encrypted signals in the
conversation itself (payload kind 4, `doorless.wire.payload`), so the server learns only that
a call exists for a group when a device joins its relay (docs/calls.md)::

    enum {
        ring(1), accept(2), decline(3), join(4), leave(5), end(6), (255)
    } CallSignalType;

    struct {
        CallSignalType type;
        opaque call_id[16];         // random, chosen by the caller; also the relay's call id
        uint8 media;                // bit 0: audio, bit 1: video (what the sender sends)
    } CallSignal;

* ``ring``: the caller started a call and invites the conversation's other members;
* ``accept`` / ``decline``: a callee's answer (``decline`` by any device of a user stops the
  ringing on that user's other devices);
* ``join`` / ``leave``: a device starts / stops sending and receiving media in the call;
* ``end``: the caller ended the call for everyone (a 1:1 call also ends when the other side
  leaves).

A signal for an unknown call id is ignored by the receiver (a late ``leave``); the signal's
sender is the MLS sender of the message that carries it, never a field of the signal.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import IntEnum, IntFlag
from typing import Self

from doorless.codec import Reader, Writer
from doorless.errors import ConfigurationError, DecodeError

CALL_ID_LENGTH = 16


class CallSignalType(IntEnum):
    ring = 1
    accept = 2
    decline = 3
    join = 4
    leave = 5
    end = 6


class CallMedia(IntFlag):
    """What a participant sends (bit 0: audio, bit 1: video)."""

    none = 0
    audio = 1
    video = 2


_ALL_MEDIA = int(CallMedia.audio | CallMedia.video)


def new_call_id() -> bytes:
    return os.urandom(CALL_ID_LENGTH)


@dataclass(frozen=True, slots=True)
class CallSignal:
    """See the module docstring."""

    type: CallSignalType
    call_id: bytes
    media: CallMedia = CallMedia.audio

    def __post_init__(self) -> None:
        if len(self.call_id) != CALL_ID_LENGTH:
            raise ConfigurationError(f"a call id is {CALL_ID_LENGTH} bytes")
        if int(self.media) & ~_ALL_MEDIA:
            raise ConfigurationError("unknown call media bits")

    def push(self, w: Writer) -> None:
        w.push_uint8(self.type)
        w.push_bytes(self.call_id)
        w.push_uint8(self.media)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        raw_type = r.pull_uint8()
        try:
            signal_type = CallSignalType(raw_type)
        except ValueError:
            raise DecodeError(f"unknown call signal type {raw_type}") from None
        call_id = r.pull_bytes(CALL_ID_LENGTH)
        media = r.pull_uint8()
        if media & ~_ALL_MEDIA:
            raise DecodeError(f"unknown call media bits {media:#x}")
        return cls(signal_type, call_id, CallMedia(media))


__all__ = [
    "CALL_ID_LENGTH",
    "CallMedia",
    "CallSignal",
    "CallSignalType",
    "new_call_id",
]
