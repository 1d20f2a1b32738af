"""What key transparency found, kept in the profile until the user has seen it.

* **Alarms** (`TransparencyAlarm`: what proves misbehaviour) are stored once per finding (the
  same finding raised again is not stored or emitted again) and stay listed until acknowledged
  (`ack`). A stored alarm is also *shown* once: `pending` returns what no program has shown.
* **Notices** (`DeviceChanged` of a peer's account, a roster change; `DeviceSkipped`, a peer
  device left out) are emitted as events and stored until a program marks them shown, so a
  command that does not print events (``send``) loses none. Each finding is noticed once.
* **Rosters**: the device set of each peer's verified device list last noticed, so that a
  change is noticed once whichever command verifies the new list first.

Everything lives in settings of the encrypted profile store, each change its own transaction:
``kt.alarms`` and ``kt.notices`` (JSON lists), ``kt.noticed`` (keys of findings already
noticed) and ``kt.roster.<username>`` (JSON: version and sorted device ids).
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Sequence
from typing import Any

from doorless.client.core import Session
from doorless.client.events import (
    AlarmKind,
    DeviceChange,
    DeviceChanged,
    DeviceRef,
    DeviceSkipped,
    TransparencyAlarm,
)
from doorless.client.store import Transaction
from doorless.errors import ConfigurationError

log = logging.getLogger("doorless.client")

SETTING_ALARMS = "kt.alarms"
SETTING_NOTICES = "kt.notices"
SETTING_NOTICED = "kt.noticed"
SETTING_ROSTER = "kt.roster."

Notice = DeviceChanged | DeviceSkipped

_MAX_NOTICED = 10_000  # keys of findings already noticed (oldest forgotten first)


def _load(tx: Transaction, key: str) -> list[dict[str, Any]]:
    raw = tx.get_setting(key)
    value = json.loads(raw) if raw else []
    return value if isinstance(value, list) else []


def _save(tx: Transaction, key: str, value: list[Any]) -> None:
    tx.set_setting(key, json.dumps(value, separators=(",", ":")))


def _ref(value: Any) -> DeviceRef | None:
    return DeviceRef(value[0], value[1]) if value else None


def _alarm_key(alarm: TransparencyAlarm) -> str:
    what = str(alarm.device) if alarm.device is not None else alarm.detail
    return f"{alarm.kind.value}:{what}"


def _alarm_of(row: dict[str, Any]) -> TransparencyAlarm:
    return TransparencyAlarm(
        AlarmKind(row["kind"]),
        row["detail"],
        _ref(row.get("device")),
        id=row["id"],
        raised_at=row["raised_at"],
    )


# --- alarms --------------------------------------------------------------------------------


async def raise_alarm(s: Session, alarm: TransparencyAlarm) -> TransparencyAlarm:
    """Store ``alarm`` and emit it, unless the same finding is stored already (acknowledged
    or not): then nothing is emitted. Returns the stored alarm (with its id)."""
    key = _alarm_key(alarm)
    now = s.now_ms()

    def write(tx: Transaction) -> tuple[TransparencyAlarm, bool]:
        rows = _load(tx, SETTING_ALARMS)
        for row in rows:
            if row["key"] == key:
                return _alarm_of(row), False
        row = {
            "id": secrets.token_hex(4),
            "key": key,
            "kind": alarm.kind.value,
            "detail": alarm.detail,
            "device": [alarm.device.user, alarm.device.device_id] if alarm.device else None,
            "raised_at": now,
            "acked": False,
            "shown": False,
        }
        _save(tx, SETTING_ALARMS, [*rows, row])
        return _alarm_of(row), True

    stored, new = await s.tx(write)
    if new:
        log.warning("KEY TRANSPARENCY ALARM: %s", stored.detail)
        s.hub.emit(stored)
    return stored


async def list_alarms(s: Session, *, acknowledged: bool = False) -> list[TransparencyAlarm]:
    """The stored alarms not acknowledged yet (with ``acknowledged``: all of them)."""
    rows = await s.tx(lambda tx: _load(tx, SETTING_ALARMS))
    return [_alarm_of(r) for r in rows if acknowledged or not r["acked"]]


async def ack_alarms(s: Session, ids: Sequence[str] | None) -> list[str]:
    """Acknowledge the alarms ``ids`` (None: every one); they are no longer listed, and the
    same finding raises no new alarm. An unknown id is a `ConfigurationError` (nothing
    changes). Returns the ids acknowledged."""

    def write(tx: Transaction) -> list[str]:
        rows = _load(tx, SETTING_ALARMS)
        known = {r["id"] for r in rows}
        unknown = sorted(set(ids or ()) - known)
        if unknown:
            raise ConfigurationError(f"no alarm with id {', '.join(unknown)}")
        done = [r["id"] for r in rows if not r["acked"] and (ids is None or r["id"] in ids)]
        for r in rows:
            if r["id"] in done:
                r["acked"] = r["shown"] = True
        _save(tx, SETTING_ALARMS, rows)
        return done

    return await s.tx(write)


# --- notices -------------------------------------------------------------------------------


def _notice_row(notice: Notice) -> dict[str, Any]:
    d = notice.device
    if isinstance(notice, DeviceChanged):
        by = [notice.by.user, notice.by.device_id] if notice.by else None
        return {
            "id": notice.notice,
            "type": "device_changed",
            "device": [d.user, d.device_id],
            "change": notice.change.value,
            "by": by,
        }
    return {
        "id": notice.notice,
        "type": "device_skipped",
        "device": [d.user, d.device_id],
        "detail": notice.detail,
    }


def _notice_of(row: dict[str, Any]) -> Notice:
    device = _ref(row["device"])
    assert device is not None
    if row["type"] == "device_changed":
        return DeviceChanged(
            device, DeviceChange(row["change"]), by=_ref(row.get("by")), notice=row["id"]
        )
    return DeviceSkipped(device, row["detail"], notice=row["id"])


def _remember(tx: Transaction, key: str) -> bool:
    """Record that ``key`` was noticed; False if it was already."""
    raw = tx.get_setting(SETTING_NOTICED)
    keys: list[str] = json.loads(raw) if raw else []
    if key in keys:
        return False
    _save(tx, SETTING_NOTICED, [*keys, key][-_MAX_NOTICED:])
    return True


async def skipped(s: Session, device: DeviceRef, detail: str) -> None:
    """A peer device (or its KeyPackage) was left out: a warning, noticed once per device."""
    notice = DeviceSkipped(device, detail, notice=secrets.token_hex(4))

    def write(tx: Transaction) -> bool:
        if not _remember(tx, f"skipped:{device.user}/{device.device_id}"):
            return False
        _save(tx, SETTING_NOTICES, [*_load(tx, SETTING_NOTICES), _notice_row(notice)])
        return True

    if await s.tx(write):
        log.warning("device %s was left out: %s", device, detail)
        s.hub.emit(notice)
    else:
        log.info("device %s was left out again: %s", device, detail)


async def roster_seen(
    s: Session, username: str, version: int, devices: Sequence[str]
) -> list[DeviceChanged]:
    """The verified device list ``version`` of peer ``username`` was seen: notice each device
    linked or revoked since the list noticed before (none the first time: that is the
    roster the user starts from). Every list in the log was signed by a device of its
    previous version, so these are changes the account made itself: notices, not alarms."""
    key = SETTING_ROSTER + username

    def write(tx: Transaction) -> list[DeviceChanged]:
        raw = tx.get_setting(key)
        before = json.loads(raw) if raw else None
        if before is not None and before["version"] >= version:
            return []
        tx.set_setting(key, json.dumps({"version": version, "devices": sorted(devices)}))
        if before is None:
            return []
        old, new = set(before["devices"]), set(devices)
        notices = [
            DeviceChanged(DeviceRef(username, d), DeviceChange.LINKED, notice=secrets.token_hex(4))
            for d in sorted(new - old)
        ] + [
            DeviceChanged(DeviceRef(username, d), DeviceChange.REVOKED, notice=secrets.token_hex(4))
            for d in sorted(old - new)
        ]
        if notices:
            rows = _load(tx, SETTING_NOTICES)
            _save(tx, SETTING_NOTICES, [*rows, *(_notice_row(n) for n in notices)])
        return notices

    notices = await s.tx(write)
    for notice in notices:
        s.hub.emit(notice)
    return notices


async def pending(s: Session) -> list[TransparencyAlarm | Notice]:
    """Alarms and notices no program has shown yet, oldest first within each kind (alarms
    first)."""

    def read(tx: Transaction) -> list[TransparencyAlarm | Notice]:
        alarms: list[TransparencyAlarm | Notice] = [
            _alarm_of(r) for r in _load(tx, SETTING_ALARMS) if not r["shown"]
        ]
        return alarms + [_notice_of(r) for r in _load(tx, SETTING_NOTICES)]

    return await s.tx(read)


async def mark_shown(s: Session, ids: Sequence[str]) -> None:
    """These alarms and notices were shown to the user: notices are forgotten, alarms stay
    listed (until acknowledged) but are not pending any more. Unknown ids are ignored (a
    notice shown by two programs at once)."""
    wanted = set(ids)
    if not wanted:
        return

    def write(tx: Transaction) -> None:
        rows = _load(tx, SETTING_ALARMS)
        if any(r["id"] in wanted and not r["shown"] for r in rows):
            for r in rows:
                r["shown"] = r["shown"] or r["id"] in wanted
            _save(tx, SETTING_ALARMS, rows)
        notices = _load(tx, SETTING_NOTICES)
        kept = [r for r in notices if r["id"] not in wanted]
        if len(kept) != len(notices):
            _save(tx, SETTING_NOTICES, kept)

    await s.tx(write)


def shown_id(event: object) -> str | None:
    """The id to pass to `mark_shown` once ``event`` was shown, if it is a stored one."""
    if isinstance(event, TransparencyAlarm):
        return event.id or None
    if isinstance(event, DeviceChanged | DeviceSkipped):
        return event.notice
    return None


__all__ = [
    "Notice",
    "ack_alarms",
    "list_alarms",
    "mark_shown",
    "pending",
    "raise_alarm",
    "roster_seen",
    "shown_id",
    "skipped",
]
