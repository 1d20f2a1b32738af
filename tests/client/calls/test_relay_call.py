"""A call through the real relay on loopback sockets (QUIC and the WebSocket fallback),
driven by ``client.calls``: both sides hear each other, and a recorder of everything the
relay forwarded finds no media frame and no audio canary in it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio

from doorless.client import Client
from doorless.client.calls.channel import join_relay
from doorless.client.calls.media import OpusDecoder, decode_frame
from doorless.client.calls.runner import AudioMix, frames_of, receive_audio, send_audio
from doorless.client.events import CallState
from doorless.errors import DoorlessError
from doorless.sframe import decode_header
from support.media import AUDIO_THRESHOLD, audio_similarity, speech_like
from support.relay import Recorder, RelayServer, account, relay_server

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def server(tmp_path: Path) -> AsyncIterator[RelayServer]:
    async with relay_server(tmp_path / "server", forwarder=Recorder()) as s:
        yield s


async def answered_call(alice: Client, bob: Client) -> str:
    chat = await alice.start_direct("bob")
    await bob.sync()
    call = await alice.calls.start(chat.id)
    await bob.sync()
    ringing = await bob.calls.incoming(timeout=2)
    await bob.calls.answer(ringing.call_id)
    await alice.sync()
    await alice.calls.wait(call.call_id, CallState.ACTIVE, timeout=2)
    return call.call_id


@pytest.mark.parametrize("transport", ["quic", "websocket"])
async def test_two_party_call_through_the_relay(
    server: RelayServer, tmp_path: Path, transport: str
) -> None:
    alice = await account(server.url, tmp_path / "p", "alice")
    bob = await account(server.url, tmp_path / "p", "bob")
    call_id = await answered_call(alice, bob)
    gid = bytes.fromhex(alice.calls.get(call_id).conversation_id)
    ea = await alice.calls.connect(
        call_id, await join_relay(alice._core, gid, bytes.fromhex(call_id), transport)
    )
    eb = await bob.calls.connect(
        call_id, await join_relay(bob._core, gid, bytes.fromhex(call_id), transport)
    )
    assert ea.channel.transport == eb.channel.transport == transport  # type: ignore[attr-defined]
    assert ea.privacy_code == eb.privacy_code

    speech_a, speech_b = speech_like("alice", 1.0), speech_like("bob", 1.0)
    mix_a, mix_b = AudioMix(), AudioMix()
    receivers = [
        asyncio.create_task(receive_audio(ea, mix_a)),
        asyncio.create_task(receive_audio(eb, mix_b)),
    ]
    await asyncio.gather(
        send_audio(ea, frames_of(speech_a.astype("<i2").tobytes()), speed=4.0),
        send_audio(eb, frames_of(speech_b.astype("<i2").tobytes()), speed=4.0),
    )
    await asyncio.sleep(0.3)
    for task in receivers:
        task.cancel()
    heard_by_bob = np.frombuffer(mix_b.mixed(), dtype="<i2")
    heard_by_alice = np.frombuffer(mix_a.mixed(), dtype="<i2")
    assert audio_similarity(speech_a, heard_by_bob) > AUDIO_THRESHOLD
    assert audio_similarity(speech_b, heard_by_alice) > AUDIO_THRESHOLD
    assert audio_similarity(speech_b, heard_by_bob) < AUDIO_THRESHOLD  # not its own voice
    (from_alice,) = [p for p in eb.stats() if p.user == "alice"]
    assert from_alice.frames_received == 50 and from_alice.latency_p95_ms is not None

    # The relay's record: envelopes of SFrame frames only. No media frame parses from any
    # ciphertext, and Opus-decoding every ciphertext yields nothing like either voice.
    recorder = server.forwarder
    assert isinstance(recorder, Recorder)
    assert len(recorder.frames) == 100
    decoder, decoded, parsed = OpusDecoder(), [], 0
    for forwarded in recorder.frames:
        sframe = forwarded.data[2:]
        _, header_len = decode_header(sframe)
        body = sframe[header_len:]
        try:
            decode_frame(body)
            parsed += 1
        except DoorlessError:
            pass
        with contextlib.suppress(DoorlessError):
            decoded.append(decoder.decode(body[15:]))
    assert parsed == 0
    garbage = np.frombuffer(b"".join(decoded), dtype="<i2")
    assert audio_similarity(speech_a, garbage) < AUDIO_THRESHOLD
    assert audio_similarity(speech_b, garbage) < AUDIO_THRESHOLD

    await alice.calls.hang_up(call_id)
    await bob.sync()
    assert (await bob.calls.wait(call_id, CallState.ENDED, timeout=2)).state is CallState.ENDED
    await alice.close()
    await bob.close()
