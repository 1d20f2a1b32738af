"""``doorless call``'s daemon methods over in-process clients (the server app through
``httpx.ASGITransport``): ring, list, answer, decline, hang up, stats, and their errors; and
the command's argument checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import doorless.cli.call  # noqa: F401 - registers the call methods
from client.harness import network
from doorless.cli import rpc
from doorless.cli.call import MediaSpec
from doorless.client import Client
from doorless.errors import DoorlessError

pytestmark = pytest.mark.asyncio


async def ask(client: Client, method: str, **params: Any) -> Any:
    line = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
    answer = json.loads(await rpc.dispatch(client, line) or "null")
    return answer


async def test_call_methods(tmp_path: Path) -> None:
    async with network(tmp_path) as net:
        alice, bob = await net.user("alice"), await net.user("bob")
        chat = await alice.start_direct("bob")
        await bob.sync()
        started = (await ask(alice, "startCall", user="bob"))["result"]
        assert started["state"] == "calling" and started["conversation_id"] == chat.id
        assert started["caller"] == {"user": "alice", "device_id": alice.device_id}
        await bob.sync()
        (ringing,) = (await ask(bob, "listCalls"))["result"]
        assert ringing["state"] == "ringing" and ringing["call_id"] == started["call_id"]
        answered = (await ask(bob, "answerCall", call_id=ringing["call_id"]))["result"]
        assert answered["state"] == "active"
        again = await ask(bob, "answerCall", call_id=ringing["call_id"])
        assert again["error"]["data"]["error"] == "invalid_state"
        stats = (await ask(bob, "callStats", call_id=ringing["call_id"]))["result"]
        assert stats["stats"] == [] and stats["privacy_code"] is None  # no media yet
        await alice.sync()
        assert (await ask(alice, "listCalls"))["result"][0]["state"] == "active"
        ended = (await ask(bob, "hangUp", call_id=ringing["call_id"]))["result"]
        assert ended["state"] == "ended"
        await alice.sync()
        assert (await ask(alice, "listCalls"))["result"][0]["state"] == "ended"

        # Decline, and what is refused.
        second = (await ask(alice, "startCall", conversation_id=chat.id, video=True))["result"]
        await bob.sync()
        declined = (await ask(bob, "declineCall", call_id=second["call_id"]))["result"]
        assert declined["state"] == "ended" and declined["reason"] == "declined"
        unknown = await ask(bob, "hangUp", call_id="00" * 16)
        assert unknown["error"]["data"]["error"] == "invalid_state"
        bad = await ask(bob, "startCall", user="bob", group="team")
        assert bad["error"]["code"] == rpc.INVALID_PARAMS
        extra = await ask(bob, "listCalls", loud=True)
        assert extra["error"]["code"] == rpc.INVALID_PARAMS


async def test_media_options_are_checked_before_anything_happens(tmp_path: Path) -> None:
    with pytest.raises(DoorlessError, match="nothing to send"):
        MediaSpec().check()
    with pytest.raises(DoorlessError, match="no such file"):
        MediaSpec(audio_in=str(tmp_path / "missing.wav")).check()
    with pytest.raises(DoorlessError, match="--transport"):
        MediaSpec(seconds=1, transport="carrier-pigeon").check()
    with pytest.raises(DoorlessError, match="--seconds"):
        MediaSpec(seconds=-1).check()
    assert MediaSpec(seconds=1).check().seconds == 1


async def test_no_audio_device_is_a_typed_error_before_ringing() -> None:
    from doorless.cli.call import OpenMedia
    from doorless.client.calls.media import AudioDeviceUnavailable

    try:
        import sounddevice  # noqa: F401
    except OSError:
        pass  # no PortAudio: the case under test
    else:
        pytest.skip("this machine has PortAudio")
    with pytest.raises(AudioDeviceUnavailable):
        OpenMedia.open(MediaSpec(audio_in="mic", seconds=1).check())
    with pytest.raises(AudioDeviceUnavailable):
        OpenMedia.open(MediaSpec(audio_out="speaker", seconds=1).check())


async def test_final_text_and_json() -> None:
    from doorless.cli.call import _final_text, call_json
    from doorless.client.calls.manager import CallInfo
    from doorless.client.calls.stats import ParticipantStats
    from doorless.client.events import CallState, DeviceRef

    alice = DeviceRef("alice", "a" * 32)
    info = CallInfo("c" * 32, "d" * 64, CallState.ENDED, False, alice, (alice,), True, "1 2", "x")
    stats = (
        ParticipantStats("alice", "a" * 32, frames_sent=10),
        ParticipantStats(
            "bob\x1b[2J",
            "b" * 32,
            frames_received=9,
            frames_lost=1,
            frames_concealed=3,
            decrypt_failures={"tampered": 2},
        ),
    )
    text = _final_text(info, stats, "alice")
    assert "\x1b" not in text  # a peer's name is untrusted text
    assert "you: sent 10" in text and "failed to decrypt 2" in text and "lost 1" in text
    data = call_json(info, stats)
    assert data["stats"][1]["failed_to_decrypt"] == 2 and data["privacy_code"] == "1 2"
    assert "concealed 3" in text and data["stats"][1]["frames_concealed"] == 3
    assert data["participants"] == [{"user": "alice", "device_id": "a" * 32}]
