"""The client's maintenance task: one failing step (a poisoned directory entry making the
device sync fail, say) stops none of the others."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from doorless.client import devices, maintenance
from doorless.client.core import Session
from doorless.errors import ValidationError

from .harness import network

pytestmark = pytest.mark.asyncio


async def test_a_failing_step_stops_no_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[str] = []

    async def poisoned(s: Session) -> None:
        ran.append("devices")
        raise ValidationError("signature does not verify")

    async def purge(s: Session, *, vacuum: bool = False) -> int:
        ran.append("expiry")
        return 0

    async def top_up(s: Session) -> None:
        ran.append("key packages")

    monkeypatch.setattr(devices, "sync_devices", poisoned)
    monkeypatch.setattr(devices, "top_up_key_packages", top_up)
    monkeypatch.setattr(maintenance, "purge_expired", purge)
    async with network(tmp_path) as net:
        alice = await net.user("alice")
        alice._core.check_key_packages.set()
        await alice.start()
        for _ in range(100):
            if {"devices", "expiry", "key packages"} <= set(ran):
                break
            await asyncio.sleep(0.05)
        assert {"devices", "expiry", "key packages"} <= set(ran), ran
