"""Reading the server's JSON answers into typed values (a malformed answer is `BadResponse`,
never a `KeyError`), and checking a device list's approval chain."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from doorless.client.errors import BadResponse
from doorless.client.transport.types import ClaimedKeyPackage, DeviceInfo, KeyPackageStatus
from doorless.errors import ConfigurationError, DecodeError, DoorlessError, ValidationError
from doorless.wire import protocol
from doorless.wire.messages import QueuedMessage


class Fields:
    def __init__(self, data: Any, what: str) -> None:
        if not isinstance(data, dict):
            raise BadResponse(f"{what}: expected a JSON object")
        self._d: dict[str, Any] = data
        self._what = what

    def _get(self, key: str, kind: type, optional: bool = False) -> Any:
        value = self._d.get(key)
        if value is None and optional:
            return None
        # JSON true/false are Python bools, which are also ints: keep them apart.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise BadResponse(f"{self._what}: field {key!r} is missing or has the wrong type")
        return value

    def text(self, key: str) -> str:
        return str(self._get(key, str))

    def opt_text(self, key: str) -> str | None:
        value = self._get(key, str, optional=True)
        return None if value is None else str(value)

    def integer(self, key: str) -> int:
        return int(self._get(key, int))

    def opt_integer(self, key: str) -> int | None:
        value = self._get(key, int, optional=True)
        return None if value is None else int(value)

    def flag(self, key: str) -> bool:
        return bool(self._get(key, bool))

    def blob(self, key: str) -> bytes:
        try:
            return protocol.b64decode(self.text(key))
        except DecodeError:
            raise BadResponse(f"{self._what}: field {key!r} is not base64") from None

    def items(self, key: str) -> list[Any]:
        return list(self._get(key, list))

    def obj(self, key: str) -> Fields:
        return Fields(self._d.get(key), f"{self._what}.{key}")

    def raw(self) -> dict[str, Any]:
        return self._d


def parse_device_info(f: Fields) -> DeviceInfo:
    return DeviceInfo(
        device_id=f.text("device_id"),
        device_key=f.blob("device_key"),
        approved_by=f.opt_text("approved_by"),
        approval_signature=f.blob("approval_signature"),
        created_at=f.integer("created_at"),
        revoked_at=f.opt_integer("revoked_at"),
    )


def parse_key_package_status(f: Fields) -> KeyPackageStatus:
    return KeyPackageStatus(f.integer("count"), f.flag("last_resort"), f.integer("low_watermark"))


def parse_claimed(f: Fields) -> ClaimedKeyPackage:
    return ClaimedKeyPackage(f.text("device_id"), f.blob("key_package"), f.flag("last_resort"))


def parse_inbound(f: Fields) -> QueuedMessage:
    frank = f.blob("frank") if f.opt_text("frank") is not None else None
    return QueuedMessage(f.integer("seq"), f.blob("data"), f.integer("received_at"), frank)


def _approval_problem(
    server_id: str, username: str, d: DeviceInfo, by_id: dict[str, DeviceInfo]
) -> str | None:
    """What is wrong with ``d``'s own admission (its approver's is checked separately)."""
    try:
        if protocol.device_id_of(d.device_key) != d.device_id:
            return "its id does not match its key"
        if d.approved_by is None:
            protocol.verify(
                d.device_key,
                protocol.register_content(server_id, username, d.device_key),
                d.approval_signature,
            )
            return None
        approver = by_id.get(d.approved_by)
        if approver is None:
            return "approved by a device that is not on the account"
        if approver.created_at > d.created_at or (
            approver.revoked_at is not None and approver.revoked_at <= d.created_at
        ):
            return "approved by a device that was not active then"
        protocol.verify(
            approver.device_key,
            protocol.device_approval_content(server_id, username, d.device_id, d.device_key),
            d.approval_signature,
        )
    except DoorlessError as e:
        return f"its approval does not verify ({e})"
    return None


def device_approval_problems(
    server_id: str, username: str, devices: Sequence[DeviceInfo]
) -> dict[str, str]:
    """`check_device_approvals` entry by entry: ``{device_id: what is wrong}`` for each device
    that was not admitted properly (empty when all are), so that one bad entry can be left
    out instead of making the whole list unusable. A device approved by a bad one is bad;
    several valid first devices are all bad (which one is genuine cannot be told here)."""
    by_id = {d.device_id: d for d in devices}
    problems: dict[str, str] = {}
    for d in devices:
        problem = _approval_problem(server_id, username, d, by_id)
        if problem is not None:
            problems[d.device_id] = problem
    roots = [d.device_id for d in devices if d.approved_by is None and d.device_id not in problems]
    if len(roots) > 1:
        for device_id in roots:
            problems[device_id] = "one of several first devices of the account"
    good = {roots[0]} if len(roots) == 1 else set()
    grown = True
    while grown:  # admitted: a chain of valid approvals back to the one first device
        grown = False
        for d in devices:
            if d.device_id not in problems and d.device_id not in good and d.approved_by in good:
                good.add(d.device_id)
                grown = True
    for d in devices:
        if d.device_id not in good and d.device_id not in problems:
            problems[d.device_id] = "not approved by a chain from the account's first device"
    return problems


def check_device_approvals(server_id: str, username: str, devices: Sequence[DeviceInfo]) -> None:
    """Re-verify, on the client, that every device of ``username`` was admitted properly.

    The first device proves possession of its key at registration; every later device carries
    the signature of an existing device of the account over its id and key, made before that
    device was revoked. Raises `doorless.errors.InvalidSignature` or `ValidationError`: a device
    the user did not approve (I3).
    """
    by_id = {d.device_id: d for d in devices}
    roots = [d for d in devices if d.approved_by is None]
    if len(roots) != 1:
        raise ValidationError(f"account must have exactly one first device, has {len(roots)}")
    for d in devices:
        if protocol.device_id_of(d.device_key) != d.device_id:
            raise ValidationError("device id does not match its key")
        if d.approved_by is None:
            protocol.verify(
                d.device_key,
                protocol.register_content(server_id, username, d.device_key),
                d.approval_signature,
            )
            continue
        approver = by_id.get(d.approved_by)
        if approver is None:
            raise ValidationError("device approved by a device that is not on the account")
        if approver.created_at > d.created_at or (
            approver.revoked_at is not None and approver.revoked_at <= d.created_at
        ):
            raise ValidationError("device approved by a device that was not active then")
        protocol.verify(
            approver.device_key,
            protocol.device_approval_content(server_id, username, d.device_id, d.device_key),
            d.approval_signature,
        )


def check_path_value(ok: bool, what: str) -> None:
    if not ok:
        raise ConfigurationError(f"invalid {what}")


__all__ = [
    "Fields",
    "check_device_approvals",
    "check_path_value",
    "device_approval_problems",
    "parse_claimed",
    "parse_device_info",
    "parse_inbound",
    "parse_key_package_status",
]
