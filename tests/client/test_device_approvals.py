"""The approval chain of an account's devices, entry by entry: one poisoned directory entry
(junk approval, unknown approver, a second first device, a cycle) is singled out, and the
genuine devices stay usable."""

from __future__ import annotations

import pytest

from doorless.client.transport import (
    DeviceIdentity,
    DeviceInfo,
    check_device_approvals,
    device_approval_problems,
)
from doorless.errors import DoorlessError
from doorless.wire import protocol

SERVER = "server-id"
USER = "bob"


def first(d: DeviceIdentity, at: int = 1) -> DeviceInfo:
    sig = d.sign(protocol.register_content(SERVER, USER, d.public_key))
    return DeviceInfo(d.device_id, d.public_key, None, sig, at, None)


def approved(d: DeviceIdentity, by: DeviceIdentity, at: int = 2) -> DeviceInfo:
    sig = by.sign(protocol.device_approval_content(SERVER, USER, d.device_id, d.public_key))
    return DeviceInfo(d.device_id, d.public_key, by.device_id, sig, at, None)


def junk(d: DeviceIdentity, by: str | None, at: int = 3) -> DeviceInfo:
    return DeviceInfo(d.device_id, d.public_key, by, b"\0" * 64, at, None)


def test_a_genuine_chain_has_no_problem() -> None:
    phone, laptop = DeviceIdentity.generate(), DeviceIdentity.generate()
    devices = [first(phone), approved(laptop, phone)]
    assert device_approval_problems(SERVER, USER, devices) == {}
    check_device_approvals(SERVER, USER, devices)


@pytest.mark.parametrize("kind", ["junk approval", "unknown approver", "second root"])
def test_one_poisoned_entry_is_singled_out(kind: str) -> None:
    phone, laptop, ghost = (DeviceIdentity.generate() for _ in range(3))
    bad = {
        "junk approval": junk(ghost, phone.device_id),
        "unknown approver": junk(ghost, DeviceIdentity.generate().device_id),
        "second root": junk(ghost, None),
    }[kind]
    devices = [first(phone), approved(laptop, phone), bad]
    with pytest.raises(DoorlessError):
        check_device_approvals(SERVER, USER, devices)  # the whole list, as before
    assert list(device_approval_problems(SERVER, USER, devices)) == [ghost.device_id]


def test_devices_approved_by_a_bad_one_or_in_a_cycle_are_bad() -> None:
    phone, ghost, child, a, b = (DeviceIdentity.generate() for _ in range(5))
    devices = [
        first(phone),
        junk(ghost, phone.device_id),
        approved(child, ghost, at=4),
        approved(a, b, at=5),
        approved(b, a, at=5),
    ]
    problems = device_approval_problems(SERVER, USER, devices)
    assert set(problems) == {ghost.device_id, child.device_id, a.device_id, b.device_id}


def test_two_valid_first_devices_are_both_suspect() -> None:
    one, two = DeviceIdentity.generate(), DeviceIdentity.generate()
    problems = device_approval_problems(SERVER, USER, [first(one), first(two)])
    assert set(problems) == {one.device_id, two.device_id}
