"""The call engine in process: real clients and server app, an in-memory relay. Audio
through Opus and SFrame keyed by the conversation's epochs; a member removed mid-call is cut
off after the grace window; a malicious relay's tampered, replayed, reordered, duplicated
and forged-KID frames are rejected and counted while the call goes on; the relay's record
holds no decodable media."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from doorless.client import Client
from doorless.client.calls.engine import CallEngine
from doorless.client.calls.keys import GRACE_SECONDS, KID_LAYOUT
from doorless.client.calls.media import (
    CodecDecodeError,
    MediaFrame,
    OpusDecoder,
    OpusEncoder,
    StreamKind,
    decode_frame,
)
from doorless.client.calls.stats import FailureKind
from doorless.errors import DoorlessError
from doorless.sframe import decode_header, encode_header
from doorless.wire.call_signal import new_call_id
from support.call_relay import MemoryRelay
from support.media import AUDIO_THRESHOLD, audio_similarity, from_pcm, pcm_frames, speech_like

from ..harness import Network, network

pytestmark = pytest.mark.asyncio


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


async def call_of(
    net: Network, relay: MemoryRelay, clock: Clock, names: tuple[str, ...]
) -> tuple[list[Client], list[CallEngine], str]:
    clients = [await net.user(n) for n in names]
    chat = await clients[0].create_group("team", list(names[1:]))
    await net.sync_all(*clients[1:])
    call_id = new_call_id()
    engines = []
    for c, name in zip(clients, names, strict=True):
        engine = CallEngine(
            c._core, bytes.fromhex(chat.id), call_id, relay.channel(name), monotonic=clock
        )
        await engine.start()
        engines.append(engine)
    return clients, engines, chat.id


async def send_audio(engine: CallEngine, pcm: list[bytes], start_seq: int = 0) -> None:
    encoder = OpusEncoder()
    for i, frame in enumerate(pcm):
        media = MediaFrame(
            StreamKind.audio, start_seq + i, engine.timestamp(), encoder.encode(frame)
        )
        await engine.send(media)


async def receive_all(engine: CallEngine, frames: list[bytes]) -> list[MediaFrame]:
    out = []
    for data in frames:
        got = await engine.open(data)
        if got is not None:
            out.append(got.frame)
    return out


async def test_three_party_audio_matches_and_relay_learns_nothing(tmp_path: Path) -> None:
    relay, clock = MemoryRelay(), Clock()
    async with network(tmp_path) as net:
        _, (ea, eb, ec), _ = await call_of(net, relay, clock, ("alice", "bob", "carol"))
        assert ea.privacy_code == eb.privacy_code == ec.privacy_code
        speech = speech_like("alice", seconds=1.0)
        pcm = pcm_frames(speech)
        await send_audio(ea, pcm)
        for engine in (eb, ec):
            frames = await receive_all(
                engine, relay.channels[("bob", "carol")[engine is ec]].pending()
            )
            assert [f.sequence for f in frames] == list(range(len(pcm)))
            decoder = OpusDecoder()
            received = from_pcm([decoder.decode(f.payload) for f in frames])
            assert audio_similarity(speech, received) > AUDIO_THRESHOLD
            (alice_stats,) = [p for p in engine.stats() if p.user == "alice"]
            assert alice_stats.frames_received == len(pcm) and alice_stats.frames_lost == 0
            assert alice_stats.latency_p95_ms is not None
        assert [p.frames_sent for p in ea.stats() if p.user == "alice"] == [len(pcm)]

        # The relay forwarded ciphertext only: no media frame parses, no Opus packet decodes
        # from what it saw, and the plaintext packets appear nowhere in it.
        encoder = OpusEncoder()
        packets = [encoder.encode(f) for f in pcm]
        blob = b"".join(f for _, f in relay.recorded)
        assert len(relay.recorded) == len(pcm)
        assert not any(p[4:20] in blob for p in packets if len(p) > 20)
        decodable = 0
        for _, frame in relay.recorded:
            _, header_len = decode_header(frame)
            try:
                decode_frame(frame[header_len:])
                decodable += 1
            except DoorlessError:
                pass
        assert decodable == 0


async def test_removed_member_stops_receiving_within_the_grace_window(tmp_path: Path) -> None:
    relay, clock = MemoryRelay(), Clock()
    async with network(tmp_path) as net:
        (alice, bob, carol), (ea, eb, ec), chat = await call_of(
            net, relay, clock, ("alice", "bob", "carol")
        )
        pcm = pcm_frames(speech_like("alice", seconds=0.2))
        await send_audio(ea, pcm[:5])
        assert len(await receive_all(ec, relay.channels["carol"].pending())) == 5
        assert len(await receive_all(eb, relay.channels["bob"].pending())) == 5
        old_code, in_flight_epoch = ea.privacy_code, ea.keys.epoch
        encoder = OpusEncoder()
        in_flight = [
            await ea.seal(MediaFrame(StreamKind.audio, 100 + i, 0, encoder.encode(pcm[i])))
            for i in range(4)
        ]

        await alice.remove_members(chat, ["carol"])
        await net.sync_all(bob, carol)
        await send_audio(ea, pcm[5:10], start_seq=5)  # alice's engine follows the new epoch
        assert ea.epoch_changes == 1 and ea.privacy_code != old_code
        assert len(await receive_all(eb, relay.channels["bob"].pending())) == 5
        assert eb.privacy_code == ea.privacy_code
        assert await receive_all(ec, relay.channels["carol"].pending()) == []
        assert ec.cut_off
        (from_alice,) = [p for p in ec.stats() if p.user == "alice"]
        assert (
            from_alice.decrypt_failures.get(FailureKind.UNKNOWN_KID, 0)
            + ec.failures().get(FailureKind.UNKNOWN_KID, 0)
            >= 5
        )

        # Carol, cut off, sends nothing more.
        assert not await ec.send(MediaFrame(StreamKind.audio, 99, ec.timestamp(), b"x"))
        # Alice's frames of the old epoch still in flight: bob (on the new epoch) plays them
        # within the grace window only.
        assert eb.keys.epoch == in_flight_epoch + 1
        assert len(await receive_all(eb, in_flight[:2])) == 2
        clock.t += GRACE_SECONDS
        assert await receive_all(eb, in_flight[2:]) == []
        assert eb.failures()[FailureKind.UNKNOWN_KID] == 2


async def test_frames_of_the_next_epoch_wait_for_the_commit(tmp_path: Path) -> None:
    relay, clock = MemoryRelay(), Clock()
    async with network(tmp_path) as net:
        (alice, bob, _), (ea, eb, _), chat = await call_of(
            net, relay, clock, ("alice", "bob", "carol")
        )
        await alice.remove_members(chat, ["carol"])
        pcm = pcm_frames(speech_like("alice", seconds=0.1))
        await send_audio(ea, pcm[:3])  # in the new epoch, which bob has not processed yet
        assert await receive_all(eb, relay.channels["bob"].pending()) == []
        assert eb.failures() == {} and eb.released() == []
        await bob.sync()  # the commit arrives: the held frames decrypt
        await send_audio(ea, pcm[3:4], start_seq=3)
        (latest,) = relay.channels["bob"].pending()
        got = await eb.open(latest)
        assert got is not None and [r.frame.sequence for r in eb.released()] == [0, 1, 2]
        assert eb.failures() == {}


async def test_malicious_relay_frames_are_rejected_and_counted(tmp_path: Path) -> None:
    relay, clock = MemoryRelay(), Clock()
    async with network(tmp_path) as net:
        _, (ea, eb), _ = await call_of(net, relay, clock, ("alice", "bob"))
        pcm = pcm_frames(speech_like("alice", seconds=0.4))

        def meddle(sender: str, frame: bytes) -> list[bytes]:
            tampered = frame[:-1] + bytes([frame[-1] ^ 0x40])
            return [tampered, frame, frame]  # a tampered copy first, then a duplicate (replay)

        relay.meddle = meddle
        await send_audio(ea, pcm[:10])
        relay.meddle = None
        frames = relay.channels["bob"].pending()
        # Reorder what follows: within the replay window, out-of-order frames still play.
        await send_audio(ea, pcm[10:20], start_seq=10)
        later = relay.channels["bob"].pending()
        later.reverse()
        # A forged KID: alice's header with another leaf, and a key nobody has.
        header, hl = decode_header(later[0])
        _, leaf, epoch_bits = KID_LAYOUT.split(header.kid)
        forged = encode_header(KID_LAYOUT.kid(leaf + 7, 0) | epoch_bits, header.ctr) + later[0][hl:]
        garbage = b"\xff\x01"  # a header announcing 8-byte KID and CTR, truncated
        played = await receive_all(eb, [*frames, *later, forged, garbage])
        assert sorted(f.sequence for f in played) == list(range(20))
        failures = eb.failures()
        assert failures == {
            FailureKind.TAMPERED: 10,
            FailureKind.REPLAYED: 10,
            FailureKind.UNKNOWN_KID: 1,
            FailureKind.MALFORMED: 1,
        }
        # The call goes on afterwards.
        await send_audio(ea, pcm[:3], start_seq=20)
        assert len(await receive_all(eb, relay.channels["bob"].pending())) == 3


async def test_a_frame_restamped_with_another_members_kid_is_rejected(tmp_path: Path) -> None:
    """RFC 9605 §5.2: the KID names the sender. A relay that re-stamps alice's frame with
    carol's KID makes bob use carol's key (the tag fails: ``tampered``, counted under carol,
    whom the KID names) and carol her own, which she only sends with (``unknown_kid``,
    §4.4.1); neither takes it as anyone's media."""
    relay, clock = MemoryRelay(), Clock()
    async with network(tmp_path) as net:
        _, (ea, eb, ec), _ = await call_of(net, relay, clock, ("alice", "bob", "carol"))
        await send_audio(ea, pcm_frames(speech_like("alice", seconds=0.02)))
        (genuine,) = relay.channels["bob"].pending()
        relay.channels["carol"].pending()
        header, n = decode_header(genuine)
        carol_kid = ec.keys.kid(ec.keys.own_leaf)
        assert carol_kid != header.kid
        forged = encode_header(carol_kid, header.ctr) + genuine[n:]
        assert await eb.open(forged) is None and await ec.open(forged) is None
        assert eb.failures() == {FailureKind.TAMPERED: 1}
        (carol_at_bob,) = [p for p in eb.stats() if p.user == "carol"]
        assert carol_at_bob.decrypt_failures == {FailureKind.TAMPERED: 1}
        assert ec.failures() == {FailureKind.UNKNOWN_KID: 1}
        # The genuine frame still plays for bob: the forged copy changed nothing.
        assert len(await receive_all(eb, [genuine])) == 1


async def test_opus_packets_are_not_decodable_from_ciphertext() -> None:
    # The canary the relay-blindness check relies on: a plaintext Opus packet decodes.
    packet = OpusEncoder().encode(pcm_frames(speech_like("alice", seconds=0.04))[0])
    assert OpusDecoder().decode(packet)
    with pytest.raises((CodecDecodeError, DoorlessError)):
        decode_frame(os.urandom(60))
