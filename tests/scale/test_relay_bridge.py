"""`RedisBridge` between two relays in this process (one Redis): a frame that enters one relay
reaches the participants of the same call on the other (and only them, never its sender), and a
membership change announced on one relay drops the removed device on the other."""

from __future__ import annotations

import asyncio
import secrets

import pytest

from doorless.server.relay import RedisBridge, Relay
from doorless.server.storage.base import GroupAccess
from doorless.sframe import encode_header
from doorless.wire.calls import CallId, FrameEnvelope, JoinRequest, Refused, StreamKind

pytestmark = pytest.mark.asyncio
GROUP = b"g" * 32


class Members:
    def __init__(self, *devices: str) -> None:
        self.devices = set(devices)

    async def group_access(self, group_id: bytes, device_id: str) -> GroupAccess | None:
        return GroupAccess(1, device_id in self.devices) if group_id == GROUP else None


class Link:
    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.dropped: Refused | None = None

    def send_frame(self, data: bytes) -> bool:
        self.frames.append(data)
        return True

    def drop(self, refused: Refused) -> None:
        self.dropped = refused


async def device(token: str) -> str:
    return token


async def eventually(predicate: object, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_two_relays_share_a_call_through_redis(redis_url: str) -> None:
    prefix = f"test-{secrets.token_hex(4)}:"
    members = Members("a", "b", "c")
    one = Relay(members, device, bridge=RedisBridge(redis_url, channel_prefix=prefix))  # type: ignore[arg-type]
    two = Relay(members, device, bridge=RedisBridge(redis_url, channel_prefix=prefix))  # type: ignore[arg-type]
    await one.start()
    await two.start()
    try:
        call, other_call = CallId.random(), CallId.random()
        la, lb, lc = Link(), Link(), Link()
        pa = await one.admit(JoinRequest("a", GROUP, call), la, "test")
        await two.admit(JoinRequest("b", GROUP, call), lb, "test")
        await two.admit(JoinRequest("c", GROUP, other_call), lc, "test")
        # Subscribing is asynchronous (frames before it are lost, as media may be): warm up.
        warm = FrameEnvelope(StreamKind.audio, encode_header(1, 0) + b"w").to_bytes()
        for _ in range(100):
            one.receive(pa, warm)
            await asyncio.sleep(0.05)
            if lb.frames:
                break
        await asyncio.sleep(0.2)
        lb.frames.clear()
        frames = [
            FrameEnvelope(StreamKind.audio, encode_header(1, i) + b"x" * 50).to_bytes()
            for i in range(1, 21)
        ]
        for f in frames:
            one.receive(pa, f)
        await eventually(lambda: len(lb.frames) == len(frames))
        assert lb.frames == frames  # one publisher, one channel: in order
        assert la.frames == [] and lc.frames == []

        members.devices.discard("b")
        await one.group_changed(GROUP)
        await eventually(lambda: lb.dropped is not None)
        assert lb.dropped is not None and lb.dropped.code == "not_group_member"
        assert two.participants(GROUP, call.value) == []
    finally:
        await one.close()
        await two.close()
