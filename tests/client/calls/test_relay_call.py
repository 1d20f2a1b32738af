"""Calls through the real relay on loopback sockets (QUIC and the WebSocket fallback),
driven by ``client.calls`` and run by `MediaRunner`: two- and three-party audio and video
whose received output matches what was sent; the relay's record holds no decodable media.
(A malicious relay and 5 % loss: through a server process and ``doorless call`` processes, in
tests/e2e/test_malicious_relay.py.)"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
import pytest
import pytest_asyncio

from doorless.client import Client
from doorless.client.calls.channel import join_relay
from doorless.client.calls.engine import CallEngine
from doorless.client.calls.media import (
    OpusDecoder,
    VideoConfig,
    VideoFileSource,
    decode_frame,
)
from doorless.client.calls.runner import CALL_VIDEO, MediaRunner
from doorless.client.events import CallState, DeviceRef
from doorless.errors import DoorlessError
from doorless.sframe import decode_header
from support.media import (
    AUDIO_THRESHOLD,
    VIDEO_PSNR_THRESHOLD,
    audio_similarity,
    luma_of,
    moving_video,
    pcm_frames,
    psnr,
    speech_like,
)
from support.relay import Recorder, RelayServer, account, relay_server

pytestmark = pytest.mark.asyncio

SPEED = 1.0  # real time (the jitter buffers see real scheduling jitter)
# A late joiner's first picture, after it joined the relay: its first delta frame (at most
# 1/15 s), a request across the relay, the sender's next frame (at most 1/15 s) as a keyframe
# back. Measured 0.03-0.08 s on loopback with the machine's two cores loaded (load ~13).
FIRST_PICTURE_WITHIN = 0.5


@pytest_asyncio.fixture
async def server(tmp_path: Path) -> AsyncIterator[RelayServer]:
    async with relay_server(tmp_path / "server", forwarder=Recorder()) as s:
        yield s


@dataclass
class Sink:
    pcm: list[bytes] = field(default_factory=list)
    pictures: list[av.VideoFrame] = field(default_factory=list)
    tracks: dict[str, list[bytes]] = field(default_factory=dict)

    def track(self, ref: DeviceRef, pcm: bytes) -> None:
        self.tracks.setdefault(ref.user, []).append(pcm)

    def track_samples(self, user: str) -> np.ndarray:  # type: ignore[type-arg]
        return np.frombuffer(b"".join(self.tracks[user]), dtype="<i2")

    def write(self, item: bytes | av.VideoFrame) -> None:
        if isinstance(item, bytes):
            self.pcm.append(item)
        else:
            self.pictures.append(item)

    def samples(self) -> np.ndarray:  # type: ignore[type-arg]
        return np.frombuffer(b"".join(self.pcm), dtype="<i2")


async def ring(clients: list[Client]) -> tuple[str, str]:
    """The first client rings a group of all; the others answer. (group id, call id)."""
    owner, *others = clients
    chat = await owner.create_group("call", [c.username for c in others])
    for c in others:
        await c.sync()
    call = await owner.calls.start(chat.id)
    for c in others:
        await c.sync()
        ringing = await c.calls.incoming(timeout=2)
        await c.calls.answer(ringing.call_id)
    await owner.sync()
    await owner.calls.wait(call.call_id, CallState.ACTIVE, timeout=2)
    return chat.id, call.call_id


async def join(
    c: Client, ids: tuple[str, str], transport: str = "quic", video: VideoConfig = CALL_VIDEO
) -> tuple[CallEngine, Sink, MediaRunner]:
    """``c`` joins the call on the relay, with a runner recording into a `Sink`."""
    gid, cid = bytes.fromhex(ids[0]), bytes.fromhex(ids[1])
    channel = await join_relay(c._core, gid, cid, transport)  # type: ignore[arg-type]
    engine = await c.calls.connect(ids[1], channel)
    sink = Sink()
    runner = MediaRunner(
        engine,
        audio_out=sink,
        video_out=sink,
        speed=SPEED,
        track_out=sink.track,
        playout_delay=0.3,  # a recording, as doorless call makes with --audio-out FILE
        max_playout_delay=1.0,
        video_config=video,
    )
    return engine, sink, runner


async def group_call(
    clients: list[Client], transport: str = "quic"
) -> tuple[list[CallEngine], list[Sink], list[MediaRunner]]:
    """The first client rings a group of all; the others answer; all join the relay."""
    ids = await ring(clients)
    engines, sinks, runners = [], [], []
    for c in clients:
        engine, sink, runner = await join(c, ids, transport)
        engines.append(engine)
        sinks.append(sink)
        runners.append(runner)
    return engines, sinks, runners


async def run_media(runners: list[MediaRunner], sending: list[object]) -> None:
    """Every runner receives and plays; ``sending`` are the senders' coroutines."""
    background = [asyncio.create_task(r.receive()) for r in runners]
    background += [asyncio.create_task(r.play()) for r in runners]
    try:
        await asyncio.gather(*sending)  # type: ignore[arg-type]
        await asyncio.sleep(0.5 / SPEED + 0.2)
    finally:
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
    for r in runners:
        r.drain()


@pytest.mark.parametrize("transport", ["quic", "websocket"])
async def test_two_party_audio_and_the_relay_cannot_listen(
    server: RelayServer, tmp_path: Path, transport: str
) -> None:
    alice = await account(server.url, tmp_path / "p", "alice")
    bob = await account(server.url, tmp_path / "p", "bob")
    (ea, eb), (sa, sb), (ra, rb) = await group_call([alice, bob], transport)
    assert ea.channel.transport == eb.channel.transport == transport  # type: ignore[attr-defined]
    assert ea.privacy_code == eb.privacy_code
    speech_a, speech_b = speech_like("alice", 1.0), speech_like("bob", 1.0)
    await run_media(
        [ra, rb], [ra.send_audio(pcm_frames(speech_a)), rb.send_audio(pcm_frames(speech_b))]
    )
    assert audio_similarity(speech_a, sb.samples()) > AUDIO_THRESHOLD
    assert audio_similarity(speech_b, sa.samples()) > AUDIO_THRESHOLD
    assert audio_similarity(speech_b, sb.samples()) < AUDIO_THRESHOLD  # not its own voice
    (from_alice,) = [p for p in eb.stats() if p.user == "alice"]
    assert from_alice.frames_received == 50 and from_alice.frames_lost == 0
    assert from_alice.latency_p95_ms is not None and from_alice.bitrate_kbps > 0

    # The relay's record: every frame it forwarded. No media frame parses from any
    # ciphertext, no Opus packet sent appears in it, and Opus-decoding every ciphertext
    # yields nothing like either voice.
    recorder = server.forwarder
    assert isinstance(recorder, Recorder)
    assert len(recorder.frames) == 100
    decoder, decoded, parsed = OpusDecoder(), [], 0
    for forwarded in recorder.frames:
        sframe = forwarded.data[2:]
        _, header_len = decode_header(sframe)
        body = sframe[header_len:]
        with contextlib.suppress(DoorlessError):
            decode_frame(body)
            parsed += 1
        with contextlib.suppress(DoorlessError):
            decoded.append(decoder.decode(body[15:]))
    assert parsed == 0
    garbage = np.frombuffer(b"".join(decoded), dtype="<i2")
    assert audio_similarity(speech_a, garbage) < AUDIO_THRESHOLD
    assert audio_similarity(speech_b, garbage) < AUDIO_THRESHOLD

    await alice.calls.hang_up(ea.call_id.hex())
    await bob.sync()
    ended = await bob.calls.wait(ea.call_id.hex(), CallState.ENDED, timeout=2)
    assert ended.state is CallState.ENDED
    await alice.close()
    await bob.close()


async def test_three_party_audio(server: RelayServer, tmp_path: Path) -> None:
    clients = [await account(server.url, tmp_path / "p", n) for n in ("alice", "bob", "carol")]
    engines, sinks, runners = await group_call(clients)
    assert len({e.privacy_code for e in engines}) == 1
    voices = {n: speech_like(n, 1.0) for n in ("alice", "bob", "carol")}
    await run_media(
        runners,
        [
            r.send_audio(pcm_frames(voices[c.username]))
            for r, c in zip(runners, clients, strict=True)
        ],
    )
    # Each hears the two others (each one's track before the mix), not itself; the mix
    # holds both.
    for me, sink in zip(("alice", "bob", "carol"), sinks, strict=True):
        assert set(sink.tracks) == {n for n in voices if n != me}
        for other in sink.tracks:
            assert audio_similarity(voices[other], sink.track_samples(other)) > AUDIO_THRESHOLD
        assert len(sink.pcm) >= 50
    for engine, c in zip(engines, clients, strict=True):
        got = {p.user: p for p in engine.stats() if p.user != c.username}
        assert set(got) == {n for n in voices if n != c.username}
        for p in got.values():
            # Every frame arrives at most once; a loaded machine's loopback may drop a UDP
            # datagram (the kernel's receive buffer is full), never more than two of 50 here.
            assert 48 <= p.frames_received <= 50
    for c in clients:
        await c.close()


async def test_two_party_video(server: RelayServer, tmp_path: Path) -> None:
    alice = await account(server.url, tmp_path / "p", "alice")
    bob = await account(server.url, tmp_path / "p", "bob")
    _, (_, sb), (ra, rb) = await group_call([alice, bob])
    clip = moving_video(
        tmp_path / "alice.y4m", frames=15, width=CALL_VIDEO.width, height=CALL_VIDEO.height
    )
    await run_media([ra, rb], [ra.send_video(VideoFileSource(clip, CALL_VIDEO))])
    reference = [luma_of(f) for f in VideoFileSource(clip, CALL_VIDEO)]
    assert len(sb.pictures) == len(reference)
    mean = sum(psnr(a, luma_of(b)) for a, b in zip(reference, sb.pictures, strict=True))
    assert mean / len(reference) > VIDEO_PSNR_THRESHOLD
    await alice.close()
    await bob.close()


async def test_a_late_joiner_asks_for_a_keyframe_and_sees_video_at_once(
    server: RelayServer, tmp_path: Path
) -> None:
    """Bob joins the relay a second after alice started her video, long after her first
    keyframe and long before her next periodic one (a minute away here): his first delta
    frames make him ask, and he decodes a picture well before any periodic keyframe."""
    alice = await account(server.url, tmp_path / "p", "alice")
    bob = await account(server.url, tmp_path / "p", "bob")
    ids = await ring([alice, bob])
    video = VideoConfig(
        CALL_VIDEO.width, CALL_VIDEO.height, CALL_VIDEO.fps, CALL_VIDEO.bitrate, 60.0
    )
    ea, _, ra = await join(alice, ids, video=video)
    clip = moving_video(
        tmp_path / "alice.y4m", frames=45, width=CALL_VIDEO.width, height=CALL_VIDEO.height
    )
    background = [asyncio.create_task(ra.receive())]  # alice hears bob's requests
    sending = asyncio.create_task(ra.send_video(VideoFileSource(clip, CALL_VIDEO)))
    try:
        await asyncio.sleep(1.0)
        eb, sb, rb = await join(bob, ids)  # rb's media clock starts now
        background.append(asyncio.create_task(rb.receive()))
        assert await sending == 45
        await asyncio.sleep(0.3)
    finally:
        sending.cancel()
        for task in background:
            task.cancel()
        await asyncio.gather(sending, *background, return_exceptions=True)
    # Without a request bob would see nothing at all (the next keyframe is a minute away).
    assert rb.first_picture_at is not None and sb.pictures
    assert rb.first_picture_at < FIRST_PICTURE_WITHIN
    (alice_at_bob,) = [p for p in eb.stats() if p.user == "alice"]
    (bob_at_alice,) = [p for p in ea.stats() if p.user == "bob"]
    assert alice_at_bob.keyframe_requests_sent >= 1
    assert bob_at_alice.keyframe_requests_received == alice_at_bob.keyframe_requests_sent
    assert bob_at_alice.keyframe_requests_honoured >= 1
    await alice.close()
    await bob.close()
