"""Rows to records: the column lists the statements select and the mappers of their rows.

Owns the correspondence between table columns and the record types of `base`. A row is any
indexable sequence (an ``sqlite3`` tuple or an ``asyncpg.Record``); blobs come back as
``bytes`` or ``memoryview`` and integers may be booleans, so every mapper normalizes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from doorless.server.storage.base import (
    AttachmentRecord,
    DeviceRecord,
    FrankingKeyRecord,
    KtLogEntry,
    KtVersion,
    LinkRecord,
    ReportRecord,
)
from doorless.server.storage.executor import Row
from doorless.wire.messages import QueuedMessage

DEVICE_COLUMNS = (
    "device_id, username, device_key, approved_by, approval_signature, created_at, revoked_at"
)
LINK_COLUMNS = "code, username, device_id, device_key, created_at, expires_at, approved_at"
ATTACHMENT_COLUMNS = "attachment_id, size, created_at, expires_at"
FRANKING_KEY_COLUMNS = "key_id, hmac_key, created_at_ms, retired_at_ms"
REPORT_COLUMNS = (
    "reporter_username, reporter_device_id, sender_username, sender_device_id, group_id, "
    "server_seq, reason, report, attachments, created_at"
)
KT_VERSION_COLUMNS = "label, version, value, opening, search_key, commitment, log_index"
KT_LOG_COLUMNS = "idx, timestamp_ms, prefix_root, checkpoint"


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def _bytes_or_none(value: Any) -> bytes | None:
    return None if value is None else bytes(value)


def device(row: Row) -> DeviceRecord:
    return DeviceRecord(
        device_id=row[0],
        username=row[1],
        device_key=bytes(row[2]),
        approved_by=row[3],
        approval_signature=bytes(row[4]),
        created_at=row[5],
        revoked_at=row[6],
    )


def device_values(d: DeviceRecord) -> tuple[Any, ...]:
    """The values of `DEVICE_COLUMNS`."""
    return (
        d.device_id,
        d.username,
        d.device_key,
        d.approved_by,
        d.approval_signature,
        d.created_at,
        d.revoked_at,
    )


def link(row: Row) -> LinkRecord:
    return LinkRecord(row[0], row[1], row[2], bytes(row[3]), row[4], row[5], row[6])


def attachment(row: Row) -> AttachmentRecord:
    return AttachmentRecord(row[0], row[1], row[2], row[3])


def queued(row: Row) -> QueuedMessage:
    """``q.seq, p.data, q.received_at, p.frank``."""
    return QueuedMessage(int(row[0]), bytes(row[1]), int(row[2]), _bytes_or_none(row[3]))


def franking_key(row: Row) -> FrankingKeyRecord:
    return FrankingKeyRecord(int(row[0]), bytes(row[1]), int(row[2]), _int_or_none(row[3]))


def franking_key_values(k: FrankingKeyRecord) -> tuple[Any, ...]:
    """The values of `FRANKING_KEY_COLUMNS`."""
    return (k.key_id, k.key, k.created_at_ms, k.retired_at_ms)


def report(row: Row) -> ReportRecord:
    """``report_id`` followed by `REPORT_COLUMNS`."""
    return ReportRecord(
        report_id=int(row[0]),
        reporter_username=row[1],
        reporter_device_id=row[2],
        sender_username=row[3],
        sender_device_id=row[4],
        group_id=bytes(row[5]),
        server_seq=int(row[6]),
        reason=row[7],
        report=bytes(row[8]),
        attachments=tuple(a for a in str(row[9]).split(",") if a),
        created_at=int(row[10]),
    )


def report_values(r: ReportRecord) -> tuple[Any, ...]:
    """The values of `REPORT_COLUMNS` (attachment verdicts joined by commas)."""
    return (
        r.reporter_username,
        r.reporter_device_id,
        r.sender_username,
        r.sender_device_id,
        r.group_id,
        r.server_seq,
        r.reason,
        r.report,
        ",".join(r.attachments),
        r.created_at,
    )


def kt_version(row: Row) -> KtVersion:
    return KtVersion(
        label=bytes(row[0]),
        version=int(row[1]),
        value=bytes(row[2]),
        opening=bytes(row[3]),
        search_key=bytes(row[4]),
        commitment=bytes(row[5]),
        log_index=_int_or_none(row[6]),
    )


def kt_entry(row: Row, added: Sequence[tuple[bytes, bytes]]) -> KtLogEntry:
    """A `KT_LOG_COLUMNS` row and the ``(search_key, commitment)`` pairs it added."""
    return KtLogEntry(
        index=int(row[0]),
        timestamp=int(row[1]),
        prefix_root=bytes(row[2]),
        checkpoint=bytes(row[3]),
        added=tuple(added),
    )
