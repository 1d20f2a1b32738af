"""`doorless.server.relay.hub.Relay` without sockets: admission rules, forwarding to the others
of the same call only, envelopes that are not SFrame dropped and counted, and the `Forwarder`
seam a malicious-relay test uses (duplicate, tamper, drop)."""

from __future__ import annotations

import pytest

from doorless.server.relay import Deliver, ForwardedFrame, Relay, RelayRefusal
from doorless.server.storage.base import GroupAccess
from doorless.sframe import encode_header
from doorless.wire.calls import CallId, FrameEnvelope, JoinRequest, Refused, StreamKind
from doorless.wire.errors import ErrorCode

pytestmark = pytest.mark.asyncio
GROUP = b"g" * 32
CALL = CallId(b"c" * 16)


class Members:
    """The storage's answer to ``group_access``: a registered group and its member devices."""

    def __init__(self, *devices: str) -> None:
        self.devices = set(devices)

    async def group_access(self, group_id: bytes, device_id: str) -> GroupAccess | None:
        if group_id != GROUP:
            return None
        return GroupAccess(epoch=1, member=device_id in self.devices)


class FakeLink:
    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.dropped: Refused | None = None

    def send_frame(self, data: bytes) -> bool:
        self.frames.append(data)
        return True

    def drop(self, refused: Refused) -> None:
        self.dropped = refused


async def by_token(token: str) -> str:
    if not token.startswith("dev-"):
        raise RelayRefusal(ErrorCode.UNAUTHORIZED, "unknown or expired token")
    return token


def envelope(ctr: int) -> bytes:
    return FrameEnvelope(StreamKind.audio, encode_header(1, ctr) + b"x" * 20).to_bytes()


async def joined(relay: Relay, *devices: str, call: CallId = CALL) -> list[FakeLink]:
    links = []
    for d in devices:
        link = FakeLink()
        await relay.admit(JoinRequest(d, GROUP, call), link, "test")
        links.append(link)
    return links


async def test_admission_needs_a_token_a_registered_group_and_membership() -> None:
    relay = Relay(Members("dev-a"), by_token)  # type: ignore[arg-type]
    for request, code in [
        (JoinRequest("bad", GROUP, CALL), "unauthorized"),
        (JoinRequest("dev-a", b"other", CALL), "not_found"),
        (JoinRequest("dev-b", GROUP, CALL), "not_group_member"),
    ]:
        with pytest.raises(RelayRefusal) as refused:
            await relay.admit(request, FakeLink(), "test")
        assert refused.value.refused.code == code
    assert relay.call_count() == 0  # nothing was registered by a refusal


async def test_frames_go_to_the_others_of_the_same_call_only() -> None:
    relay = Relay(Members("dev-a", "dev-b", "dev-c"), by_token)  # type: ignore[arg-type]
    a, b = await joined(relay, "dev-a", "dev-b")
    (c,) = await joined(relay, "dev-c", call=CallId(b"d" * 16))  # another call, same group
    pa, pb = relay.participants(GROUP, CALL.value)
    relay.receive(pa, envelope(1))
    relay.receive(pa, b"\x04\x01")  # no SFrame header
    relay.receive(pa, b"\x01garbage")  # not a frame envelope
    assert (a.frames, b.frames, c.frames) == ([], [envelope(1)], [])
    assert (pa.counters.frames_in, pa.counters.rejected_in, pb.counters.frames_out) == (1, 2, 1)
    relay.leave(pb)
    relay.receive(pa, envelope(2))
    assert b.frames == [envelope(1)]


async def test_a_forwarder_can_duplicate_tamper_and_drop() -> None:
    class Malicious:
        def forward(self, frame: ForwardedFrame, deliver: Deliver) -> None:
            ctr = frame.data[2] & 0x07
            if ctr == 1:
                deliver(frame.data)
                deliver(frame.data)  # duplicate
            elif ctr == 2:
                deliver(frame.data[:-1] + bytes([frame.data[-1] ^ 1]))  # tamper
            # ctr 3: dropped

    relay = Relay(Members("dev-a", "dev-b"), by_token, forwarder=Malicious())  # type: ignore[arg-type]
    _, b = await joined(relay, "dev-a", "dev-b")
    pa = relay.participants(GROUP, CALL.value)[0]
    for ctr in (1, 2, 3):
        relay.receive(pa, envelope(ctr))
    assert b.frames[:2] == [envelope(1), envelope(1)]
    assert len(b.frames) == 3 and b.frames[2] != envelope(2)


async def test_a_device_that_left_the_group_is_dropped_from_its_calls() -> None:
    members = Members("dev-a", "dev-b")
    relay = Relay(members, by_token)  # type: ignore[arg-type]
    a, b = await joined(relay, "dev-a", "dev-b")
    members.devices.discard("dev-b")
    await relay.group_changed(GROUP)
    assert b.dropped is not None and b.dropped.code == "not_group_member"
    assert a.dropped is None
    assert [p.device_id for p in relay.participants(GROUP, CALL.value)] == ["dev-a"]


async def test_recheck_drops_an_expired_or_revoked_token() -> None:
    valid = {"dev-a", "dev-b"}

    async def tokens(token: str) -> str:
        if token not in valid:
            raise RelayRefusal(ErrorCode.DEVICE_REVOKED, "this device was revoked")
        return token

    relay = Relay(Members("dev-a", "dev-b"), tokens)  # type: ignore[arg-type]
    a, b = await joined(relay, "dev-a", "dev-b")
    await relay.recheck()
    assert a.dropped is None and b.dropped is None
    valid.discard("dev-b")
    await relay.recheck()
    assert b.dropped is not None and b.dropped.code == "device_revoked"
    assert a.dropped is None
    assert [p.device_id for p in relay.participants(GROUP, CALL.value)] == ["dev-a"]


async def test_the_malicious_relay_helpers_do_what_they_say() -> None:
    from support.relay import Lossy, Reordering, Scripted

    def replay_first(frame: ForwardedFrame, history: list[ForwardedFrame]) -> list[bytes]:
        return [frame.data, history[0].data]

    lossy, reordering = Lossy(0.05, seed=1), Reordering(3)
    scripted = Scripted(replay_first)
    for forwarder, count in ((lossy, 2000), (reordering, 6), (scripted, 3)):
        relay = Relay(Members("dev-a", "dev-b"), by_token, forwarder=forwarder)  # type: ignore[arg-type]
        _, b = await joined(relay, "dev-a", "dev-b")
        pa = relay.participants(GROUP, CALL.value)[0]
        sent = [envelope(ctr % 200) for ctr in range(count)]
        for data in sent:
            relay.receive(pa, data)
        if forwarder is lossy:
            assert 60 <= lossy.dropped <= 140 and lossy.dropped + len(b.frames) == count
        elif forwarder is reordering:
            assert b.frames == [*sent[2::-1], *sent[5:2:-1]]
        else:
            assert b.frames == [sent[0], sent[0], sent[1], sent[0], sent[2], sent[0]]
