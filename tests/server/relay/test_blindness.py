"""The relay cannot listen (issue #13, I1): frames SFrame-encrypted by the callers, each holding
a canary, go through the relay over QUIC and the WebSocket fallback while a recorder keeps every
byte it forwarded and the server logs at debug level. The canary and the plaintext are nowhere
in what it recorded, logged or wrote to disk, and without the key nothing it recorded decrypts;
with the key every recorded frame does (so the test would see a leak)."""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from doorless.errors import CryptoError
from doorless.server.log import configure_logging
from doorless.sframe import BaseKey, SFrameReceiver, SFrameSender, SFrameSuite
from doorless.wire.calls import CallId, StreamKind, frame_header
from support.relay import Recorder, account, group_with, relay_server, transport_of

pytestmark = pytest.mark.asyncio
SUITE = SFrameSuite.AES_128_GCM_SHA256_128


@pytest.fixture
def server_log() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging("debug", stream)
    try:
        yield stream
    finally:
        configure_logging("warning")


def scan_files(root: Path, needles: list[bytes]) -> list[str]:
    return [
        f"{p}: {n!r}"
        for p in sorted(root.rglob("*"))
        if p.is_file()
        for n in needles
        if n in p.read_bytes()
    ]


async def test_the_relay_forwards_only_what_it_cannot_read(
    tmp_path: Path, server_log: io.StringIO
) -> None:
    recorder = Recorder()
    key = BaseKey(os.urandom(16))
    canary = b"CANARY-" + os.urandom(8).hex().encode()
    plaintexts = [canary + b" frame %d " % i + os.urandom(50) for i in range(20)]
    async with relay_server(tmp_path / "server", forwarder=recorder) as server:
        alice = await account(server.url, tmp_path / "p", "alice")
        bob = await account(server.url, tmp_path / "p", "bob")
        alice_device, bob_device = alice.device_id, bob.device_id
        try:
            gid = await group_with(alice, bob)
            call = CallId.random()
            sender = SFrameSender(SUITE, 5, key)
            sender.reserve(len(plaintexts))
            a = await transport_of(alice).join_call(gid, call, transport="quic")
            b = await transport_of(bob).join_call(gid, call, transport="websocket")
            for i, pt in enumerate(plaintexts):
                kind = StreamKind.audio if i % 2 else StreamKind.video
                await a.send(kind, sender.encrypt(pt))
            received = [await asyncio.wait_for(b.__anext__(), 5) for _ in plaintexts]
            for c in (a, b):
                await c.close()
        finally:
            await alice.close()
            await bob.close()
        data_dir = server.data_dir

    # The receiver with the key reads every frame: the canary did travel.
    receiver = SFrameReceiver(SUITE)
    receiver.add_key(5, key)
    assert [receiver.decrypt(e.frame).plaintext for e in received] == plaintexts
    # The relay saw every frame, and none of it in the clear.
    assert len(recorder.frames) == len(plaintexts)
    recorded = b"".join(f.data for f in recorder.frames)
    assert canary not in recorded
    assert not any(pt[:24] in recorded for pt in plaintexts)
    # All it can parse is the envelope and the SFrame header (KID, CTR).
    assert [frame_header(f.data)[1].ctr for f in recorder.frames] == list(range(20))
    # Without the key, nothing decrypts.
    blind = SFrameReceiver(SUITE)
    blind.add_key(5, BaseKey(os.urandom(16)))
    for f in recorder.frames:
        with pytest.raises(CryptoError):
            blind.decrypt(f.data[2:])
    # Nothing in its logs or on its disk.
    log = server_log.getvalue()
    assert "call joined" in log  # the log was captured
    assert canary.decode() not in log
    for identifier in (gid.hex(), call.hex(), alice_device, bob_device):
        assert identifier not in log  # ids only hashed, group and call never
    assert scan_files(data_dir, [canary]) == []
