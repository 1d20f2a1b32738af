"""What the client keeps in its outbox (`doorless.client.store.OutboxItem.payload`).

Anything sent to the server is first written to the outbox in the same store transaction as
the state change that produced it, and removed in the transaction that records the server's
verdict. A crash in between leaves the item, and the next start sends it again with the same
idempotency key (the server answers "duplicate" if it had accepted it), so no send is lost or
applied twice (I4, I5)::

    struct {
        opaque message_id<V>;           // idempotency key of POST /v1/messages (ASCII)
        opaque data<V>;                 // the MLSMessage (PrivateMessage) to send
        opaque recipients<V><V>;        // device ids (ASCII)
    } OutgoingMessage;                  // outbox kind "application"

    struct {
        opaque message_id<V>;
        opaque commit<V>;               // the MLSMessage of the commit
        optional<opaque> welcome<V>;    // its Welcome, if it adds devices
        opaque recipients<V><V>;        // the members before the commit, but us
        opaque welcome_recipients<V><V>;
        opaque pending_state<V>;        // Group.to_bytes() of the new epoch (secret)
    } OutgoingCommit;                   // outbox kind "commit"

``pending_state`` is the whole MLS state of the epoch the commit creates. It is adopted only
when the server has accepted the commit; on a conflict it is dropped. A pending commit is never
merged otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Self

from doorless.codec import Reader, Writer, pull_opaque_item, push_opaque_item
from doorless.errors import DecodeError
from doorless.wire import protocol

KIND_APPLICATION = "application"
KIND_COMMIT = "commit"


def _push_ids(w: Writer, ids: Sequence[str]) -> None:
    w.push_vector([i.encode("ascii") for i in ids], push_opaque_item)


def _pull_ids(r: Reader) -> tuple[str, ...]:
    items = r.pull_vector(pull_opaque_item)
    try:
        ids = tuple(i.decode("ascii") for i in items)
    except UnicodeDecodeError:
        raise DecodeError("device id is not ASCII") from None
    if not all(protocol.is_device_id(i) for i in ids):
        raise DecodeError("invalid device id")
    return ids


def _pull_message_id(r: Reader) -> str:
    raw = r.pull_opaque()
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise DecodeError("message id is not ASCII") from None
    if not text:
        raise DecodeError("empty message id")
    return text


@dataclass(frozen=True, slots=True, repr=False)
class OutgoingMessage:
    message_id: str
    data: bytes
    recipients: tuple[str, ...]

    def __repr__(self) -> str:
        return f"OutgoingMessage({self.message_id}, recipients={len(self.recipients)})"

    def push(self, w: Writer) -> None:
        w.push_opaque(self.message_id.encode("ascii"))
        w.push_opaque(self.data)
        _push_ids(w, self.recipients)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        return cls(_pull_message_id(r), r.pull_opaque(), _pull_ids(r))


@dataclass(frozen=True, slots=True, repr=False)
class OutgoingCommit:
    message_id: str
    commit: bytes
    welcome: bytes | None
    recipients: tuple[str, ...]
    welcome_recipients: tuple[str, ...]
    pending_state: bytes = field(repr=False)

    def __repr__(self) -> str:
        return (
            f"OutgoingCommit({self.message_id}, recipients={len(self.recipients)}, "
            f"welcome_recipients={len(self.welcome_recipients)})"
        )

    def push(self, w: Writer) -> None:
        w.push_opaque(self.message_id.encode("ascii"))
        w.push_opaque(self.commit)
        w.push_optional(self.welcome, lambda w2, b: w2.push_opaque(b))
        _push_ids(w, self.recipients)
        _push_ids(w, self.welcome_recipients)
        w.push_opaque(self.pending_state)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        return cls(
            message_id=_pull_message_id(r),
            commit=r.pull_opaque(),
            welcome=r.pull_optional(lambda r2: r2.pull_opaque()),
            recipients=_pull_ids(r),
            welcome_recipients=_pull_ids(r),
            pending_state=r.pull_opaque(),
        )


__all__ = ["KIND_APPLICATION", "KIND_COMMIT", "OutgoingCommit", "OutgoingMessage"]
