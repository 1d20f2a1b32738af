"""Contact safety in the client: franked messages, reports, message requests, blocks and
disappearing messages. The `Client` methods that use these are in ``client.py``
(section "safety"); this module holds the formats and the pure rules.

(Not to be confused with `doorless.client.safety_number`, the key-transparency safety
numbers.)

Franking (``docs/franking.md``)
    Every application message is a `doorless.franking.FrankedContent` wrapping the
    `doorless.wire.payload.Payload`, its tag in the MLS ``authenticated_data``. The server
    stamps it at delivery; `open_franked` checks everything a receiver can check (FRANK-1..5
    and that the franked fields agree with the payload). A message that fails is not shown:
    it is counted by error type (`Client.hidden_messages`) and reported as
    ``DeliveryFailed(invalid_frank)``, so a sender cannot make a message that is displayed but
    cannot be reported. What a receiver keeps for a report is ``ReceivedFrank`` (in the
    message row, encrypted like the message).

Message requests
    A conversation this user is added to by someone they have not accepted is a *request*
    (`Conversation.request_from`). Accepted are: the user themself, every member of a
    conversation that is not a request, and contacts accepted explicitly. A request is
    accepted by `Client.accept_request` or by sending in it (from any device of the user).
    Until then an application sends no read receipts or typing notices and downloads no
    attachment by itself.

Blocks
    Per user, for every device of the blocking user: the server stops queueing the blocked
    user's application messages and Welcomes to them, and each device drops those that still
    arrive (queued before the block, or from a server that does not enforce it). Commits are
    still processed, so shared groups stay in sync. Devices of the account learn of a block
    from the server's list (`Client.sync_blocks`, run by `sync` and in the background).

Disappearing messages
    The timer is a GroupContext extension (``0xF0D2``, private use, RFC 9420 §17.3), so every
    member has the same value and a change is a commit everyone sees::

        struct { uint8 version = 1; uint32 seconds; } DisappearingTimer;

    A message stored while the timer is set expires ``seconds`` after it was sent (outgoing)
    or received (incoming); the client deletes expired messages (`Client.purge_expired`),
    with ``secure_delete`` and a WAL checkpoint, and `vacuum` rebuilds the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Self

from doorless.codec import Reader, Writer, decode, encode
from doorless.errors import ConfigurationError, DecodeError, RemoteError
from doorless.franking import (
    DEFAULT_SIGNATURE_SUITE,
    ReceivedFrank,
    ReportReason,
    SenderIdentity,
    ServerFrank,
    verify_received,
)
from doorless.mls.extensions import Extension, find_extension
from doorless.mls.group import Group
from doorless.wire.payload import Payload, payload_of

from .store import Transaction

DISAPPEARING_EXTENSION = 0xF0D2  # RFC 9420 §17.3: 0xF000-0xFFFF is for private use
DISAPPEARING_VERSION = 1
MAX_DISAPPEARING_SECONDS = 0xFFFFFFFF
REPORT_REASONS = tuple(r.name for r in ReportReason)

_SETTING_HIDDEN = "franking_hidden"  # JSON {error class: count}


# --- disappearing messages ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DisappearingTimer:
    """See the module docstring."""

    seconds: int

    def __post_init__(self) -> None:
        if not 0 < self.seconds <= MAX_DISAPPEARING_SECONDS:
            raise ConfigurationError("a disappearing timer is 1 second .. 2^32-1 seconds")

    def push(self, w: Writer) -> None:
        w.push_uint8(DISAPPEARING_VERSION)
        w.push_uint32(self.seconds)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        version = r.pull_uint8()
        if version != DISAPPEARING_VERSION:
            raise DecodeError(f"unknown disappearing timer version {version}")
        seconds = r.pull_uint32()
        if seconds == 0:
            raise DecodeError("a disappearing timer of 0 seconds")
        return cls(seconds)

    def extension(self) -> Extension:
        return Extension(DISAPPEARING_EXTENSION, encode(self))


def disappearing_seconds(group: Group) -> int | None:
    """The group's agreed timer; None when off (or unreadable: then nothing expires)."""
    ext = find_extension(group.extensions, DISAPPEARING_EXTENSION)
    if ext is None:
        return None
    try:
        return decode(DisappearingTimer, ext.extension_data).seconds
    except DecodeError:
        return None


def with_disappearing(
    extensions: tuple[Extension, ...], seconds: int | None
) -> tuple[Extension, ...]:
    """``extensions`` with the timer set (or removed, for None)."""
    others = tuple(e for e in extensions if e.extension_type != DISAPPEARING_EXTENSION)
    if seconds is None:
        return others
    return (*others, DisappearingTimer(seconds).extension())


def expires_at(group: Group, start_ms: int) -> int | None:
    seconds = disappearing_seconds(group)
    return None if seconds is None else start_ms + seconds * 1000


# --- franking -----------------------------------------------------------------------------


class FrankRejected(RemoteError):
    """A received application message failed a franking check; ``error`` says which."""

    def __init__(self, error: RemoteError) -> None:
        super().__init__(f"{type(error).__name__}: {error}")
        self.error = error


@dataclass(frozen=True, slots=True)
class OpenedMessage:
    payload: Payload
    franking: bytes  # encode(ReceivedFrank): what a report needs


def open_franked(
    application_data: bytes,
    authenticated_data: bytes,
    frank: bytes | None,
    *,
    server_public_key: bytes,
    sender: SenderIdentity,
    group_id: bytes,
) -> OpenedMessage:
    """Check a decrypted application message (FRANK-1..5, plus the payload against the
    franked fields) and return its payload. Raises `FrankRejected` on any failure."""
    try:
        if frank is None:
            raise DecodeError("the server delivered no frank with this message")
        server_frank = decode(ServerFrank, frank)
        content = verify_received(
            application_data,
            authenticated_data,
            server_frank,
            server_public_key=server_public_key,
            mls_sender=sender,
            group_id=group_id,
            signature_suite=DEFAULT_SIGNATURE_SUITE,
        )
        payload = payload_of(content)
    except RemoteError as e:
        raise FrankRejected(e) from None
    received = ReceivedFrank(application_data, authenticated_data, server_frank)
    return OpenedMessage(payload, encode(received))


def count_hidden(tx: Transaction, error: str) -> None:
    """Count one hidden message by the name of the check that failed."""
    counts = hidden_counts(tx)
    counts[error] = counts.get(error, 0) + 1
    tx.set_setting(_SETTING_HIDDEN, json.dumps(counts, sort_keys=True))


def hidden_counts(tx: Transaction) -> dict[str, int]:
    raw = tx.get_setting(_SETTING_HIDDEN)
    if raw is None:
        return {}
    data = json.loads(raw)
    return {str(k): int(v) for k, v in data.items()} if isinstance(data, dict) else {}


def report_reason(reason: str | ReportReason) -> ReportReason:
    """A `ReportReason` from its name (``spam``, ``harassment``, ...)."""
    if isinstance(reason, ReportReason):
        return reason
    try:
        return ReportReason[reason]
    except KeyError:
        raise ConfigurationError(
            f"unknown report reason {reason!r} (one of: {', '.join(REPORT_REASONS)})"
        ) from None


@dataclass(frozen=True, slots=True)
class ReportReceipt:
    """The server filed a report of message ``message_id``."""

    message_id: str
    report_id: int
    sender: str  # whom the server's stamp names
    attachments: tuple[str, ...]  # per attachment: ok, mismatch or gone


__all__ = [
    "DISAPPEARING_EXTENSION",
    "REPORT_REASONS",
    "DisappearingTimer",
    "FrankRejected",
    "OpenedMessage",
    "ReportReceipt",
    "count_hidden",
    "disappearing_seconds",
    "expires_at",
    "hidden_counts",
    "open_franked",
    "report_reason",
    "with_disappearing",
]
