"""PostgreSQL's send path in two round trips: one read before, one statement that commits.

Owns the two statements `PostgresStorage` runs for a send (``POST /v1/messages``):

1. `send_context`: the bearer token's device, the registered group's epoch and membership,
   the group's next franking number and the blocked recipients, in one query (what
   `SqlStorage.send_context` reads in four statements on one connection).
2. `DeliverCall`: the delivery transaction of `PostgresStorage._deliver` (idempotency row,
   epoch gate, recipient row locks, payloads and queue entries) as one call of the
   ``doorless_deliver`` function installed by migration 6 (`doorless.server.storage.schema`;
   since migration 8 it also returns the seqs it gave, for `DeliveryResult.queued`).
   One statement outside an explicit transaction is one implicit transaction: the row comes
   back only once it is committed (asyncpg returns on ReadyForQuery, after the commit), so I5
   holds exactly as with ``BEGIN ... COMMIT``, in one round trip instead of six.

Franking stamps are made in Python (the signing key never reaches the database) with the
group's next number *before* the call; the function takes the numbers under the group's row
lock and refuses (``DL004``, nothing written) if they are not the ones stamped, so a stamp
always carries the number its message got, in commit order. The caller then stamps again with
the number the refusal names and retries (`SeqMoved`).

A commit that carries a validated group update (`doorless.server.groups`) also writes the
group's new state and member set: it keeps the multi-statement transaction of `_deliver`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import asyncpg

from doorless.errors import DoorlessError
from doorless.server.storage import rows
from doorless.server.storage.base import (
    Delivery,
    DeliveryResult,
    EpochConflict,
    EpochGate,
    GroupAccess,
    IdempotencyConflict,
    SendContext,
    UnknownDevice,
    queued_per_device,
)
from doorless.server.storage.executor import Executor
from doorless.wire.messages import QueuedMessage

_DEVICE_COLUMNS_D = ", ".join(f"d.{c.strip()}" for c in rows.DEVICE_COLUMNS.split(","))

# One row, or none for an unknown or expired token. Columns 0-6 the device, 7 the token's
# expiry, 8 the registered group's epoch (NULL: not registered), 9 membership, 10 the group's
# next franking number (NULL: no message yet), 11 the blocked recipients.
_SEND_CONTEXT = (
    f"SELECT {_DEVICE_COLUMNS_D}, t.expires_at, s.epoch, "
    "EXISTS (SELECT 1 FROM group_members m WHERE m.group_id = $3 AND m.device_id = d.device_id), "
    "(SELECT e.next_seq FROM group_epochs e WHERE e.group_id = $3), "
    "ARRAY(SELECT r.device_id FROM devices r JOIN blocks b ON b.blocker = r.username "
    "      WHERE b.blocked = d.username AND r.device_id = ANY($4::text[])) "
    "FROM tokens t JOIN devices d ON d.device_id = t.device_id "
    "LEFT JOIN group_states s ON s.group_id = $3 "
    "WHERE t.token_hash = $1 AND t.expires_at > $2"
)

_DELIVER = (
    "SELECT o_duplicate, o_epoch, o_devices, o_bases FROM doorless_deliver("
    "$1, $2, $3, $4, $5, $6, $7, $8, $9, $10::text[], $11::int[], $12::bytea[], $13::bytea[], "
    "$14::int[], $15::int[], $16::text[], $17::int[])"
)

# SQLSTATEs the function raises (see `doorless.server.storage.schema.DELIVER_FUNCTION`).
_EPOCH_CONFLICT = "DL001"
_IDEMPOTENCY_CONFLICT = "DL002"
_UNKNOWN_DEVICE = "DL003"
_SEQ_MOVED = "DL004"


async def send_context(
    ex: Executor, token_hash: bytes, now: int, group_id: bytes | None, recipients: frozenset[str]
) -> SendContext | None:
    row = await ex.fetchrow(_SEND_CONTEXT, token_hash, now, group_id, sorted(recipients))
    if row is None:
        return None
    access = None if row[8] is None else GroupAccess(int(row[8]), bool(row[9]))
    return SendContext(
        device=rows.device(row),
        token_expires_at=int(row[7]),
        group_id=group_id,
        access=access if group_id is not None else None,
        next_seq=None if row[10] is None or group_id is None else int(row[10]),
        checked=recipients,
        blocked=frozenset(str(d) for d in row[11]),
    )


class SeqMoved(DoorlessError):
    """The group's next franking number is not the one stamped with; nothing was written."""

    def __init__(self, next_seq: int) -> None:
        super().__init__(f"the group's next franking number is {next_seq}")
        self.next_seq = next_seq


@dataclass(frozen=True, slots=True)
class DeliverCall:
    """One send's arguments to ``doorless_deliver``, computed once for its retries."""

    sender: str
    message_id: str
    digest: bytes
    parts: tuple[Delivery, ...]
    gate: EpochGate | None
    now: int

    def plan(self) -> tuple[list[bool], list[int], list[str], list[int], list[int]]:
        """Which parts are stamped, each part's recipient count, and the queue entries as
        (part number, device, how many earlier parts of this send the device receives)."""
        per_part = [tuple(dict.fromkeys(p.recipients)) for p in self.parts]
        # Like `_deliver`: a part without recipients gets no franking number.
        stamped = [
            p.stamp is not None and bool(r) for p, r in zip(self.parts, per_part, strict=True)
        ]
        seen: Counter[str] = Counter()
        part_no: list[int] = []
        devices: list[str] = []
        offsets: list[int] = []
        for i, recipients in enumerate(per_part, start=1):
            for d in recipients:
                part_no.append(i)
                devices.append(d)
                offsets.append(seen[d])
                seen[d] += 1
        return stamped, [len(r) for r in per_part], devices, part_no, offsets

    async def run(self, ex: Executor, first_seq: int | None) -> DeliveryResult:
        """Call the function once, stamping with ``first_seq`` (None: learn it, `SeqMoved`).
        Raises the `Rejected` errors of `Storage.deliver`, or `SeqMoved`."""
        stamped, remaining, devices, part_no, offsets = self.plan()
        counts = Counter(devices)
        wanted = sorted(counts)
        franks: list[bytes | None] = []
        seq = first_seq
        for part, is_stamped in zip(self.parts, stamped, strict=True):
            if is_stamped and seq is not None:
                assert part.stamp is not None
                franks.append(part.stamp(seq))
                seq += 1
            else:
                franks.append(None)
        gate = self.gate
        try:
            row = await ex.fetchrow(
                _DELIVER,
                self.sender,
                self.message_id,
                self.digest,
                self.now,
                None if gate is None else gate.group_id,
                None if gate is None else gate.epoch,
                gate is not None and gate.is_commit,
                sum(stamped),
                first_seq,
                wanted,
                [counts[d] for d in wanted],
                [p.data for p in self.parts],
                franks,
                remaining,
                part_no,
                devices,
                offsets,
            )
        except asyncpg.PostgresError as exc:
            raise _refusal(exc) from None
        assert row is not None  # the function returns one row
        epoch = None if row[1] is None else int(row[1])
        if row[0]:
            return DeliveryResult(self.message_id, epoch, duplicate=True)
        base = dict(zip(row[2] or (), row[3] or (), strict=True))
        queued = queued_per_device(
            (d, QueuedMessage(int(base[d]) + o, self.parts[i - 1].data, self.now, franks[i - 1]))
            for i, d, o in zip(part_no, devices, offsets, strict=True)
        )
        return DeliveryResult(self.message_id, epoch, duplicate=False, queued=queued)


def _refusal(exc: Exception) -> Exception:
    """The `Rejected` error (or `SeqMoved`) a refusal of ``doorless_deliver`` stands for;
    any other database error is returned as it is (to be raised again)."""
    state = str(getattr(exc, "sqlstate", ""))
    detail = str(getattr(exc, "detail", "") or "")
    message = str(getattr(exc, "message", "") or "")
    if state == _EPOCH_CONFLICT:
        return EpochConflict(int(detail), message)
    if state == _IDEMPOTENCY_CONFLICT:
        return IdempotencyConflict(message)
    if state == _UNKNOWN_DEVICE:
        return UnknownDevice(detail.split())
    if state == _SEQ_MOVED:
        return SeqMoved(int(detail))
    return exc
