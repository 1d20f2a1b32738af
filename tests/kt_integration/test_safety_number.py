"""Safety numbers (`doorless.client.safety_number`): pure functions, checked independently."""

from __future__ import annotations

import hashlib

import pytest

from doorless.client.safety_number import (
    ITERATIONS,
    matches_scanned,
    qr_text,
    safety_number,
    user_fingerprint,
)
from doorless.codec import Writer
from doorless.errors import ConfigurationError

ALICE = {"a" * 32: b"\x01" * 32, "b" * 32: b"\x02" * 32}
BOB = {"c" * 32: b"\x03" * 32}


def _reference_half(username: str, devices: dict[str, bytes]) -> str:
    """The module docstring's recipe, written out again (not using the module)."""
    w = Writer()
    for device_id in sorted(devices):
        w.push_opaque(device_id.encode())
        w.push_opaque(devices[device_id])
    material = w.getvalue()
    h = hashlib.sha512(b"\x00\x00" + material + username.encode()).digest()
    for _ in range(ITERATIONS):
        h = hashlib.sha512(h + material).digest()
    return "".join(f"{int.from_bytes(h[i : i + 5], 'big') % 100000:05d}" for i in range(0, 30, 5))


def test_both_sides_see_the_same_60_digits() -> None:
    ours = safety_number("alice", ALICE, "bob", BOB)
    theirs = safety_number("bob", BOB, "alice", ALICE)
    assert ours.digits == theirs.digits
    assert len(ours.digits) == 60 and ours.digits.isdigit()
    halves = sorted([_reference_half("alice", ALICE), _reference_half("bob", BOB)])
    assert ours.digits == "".join(halves)
    assert ours.display().count("\n") == 2 and len(ours.display().split()) == 12


@pytest.mark.parametrize(
    "changed",
    [
        {**ALICE, "d" * 32: b"\x04" * 32},  # a device added
        {"a" * 32: b"\x01" * 32},  # a device removed
        {"a" * 32: b"\x01" * 32, "b" * 32: b"\x09" * 32},  # a key swapped
    ],
    ids=["added", "removed", "swapped"],
)
def test_any_change_of_a_key_set_changes_the_number(changed: dict[str, bytes]) -> None:
    before = safety_number("alice", ALICE, "bob", BOB)
    after = safety_number("alice", changed, "bob", BOB)
    assert after.digits != before.digits


def test_the_username_is_bound() -> None:
    assert user_fingerprint("alice", BOB) != user_fingerprint("bob", BOB)


def test_qr_payload_matches_only_the_same_pair() -> None:
    ours = safety_number("alice", ALICE, "bob", BOB)
    theirs = safety_number("bob", BOB, "alice", ALICE)
    assert matches_scanned(ours, theirs.qr_payload())
    other = safety_number("bob", {"c" * 32: b"\x05" * 32}, "alice", ALICE)
    assert not matches_scanned(ours, other.qr_payload())
    assert not matches_scanned(ours, ours.qr_payload()[:-1])


def test_qr_renders_as_text() -> None:
    text = qr_text(safety_number("alice", ALICE, "bob", BOB).qr_payload())
    lines = text.splitlines()
    assert len(lines) > 10 and len({len(line) for line in lines}) == 1


def test_one_user_has_no_safety_number_with_themself() -> None:
    with pytest.raises(ConfigurationError):
        safety_number("alice", ALICE, "alice", ALICE)
