"""End to end: the real ``doorless server`` process over loopback, with the transport client.

Covers what only a real process shows: the CLI (``doorless server``, ``doorless server
invite``), TLS, WebSocket push and its reconnection, and I5 across ``kill -9``.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from doorless.client.transport import (
    DeviceIdentity,
    KeyPackagesLow,
    PushStream,
    Transport,
)
from doorless.wire.messages import QueuedMessage
from support.servers import ServerProcess

from .helpers import commit, key_package, private_message

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

GROUP = b"e2e-group"


def _doorless(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "doorless.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=env,
    )


@pytest.fixture
def processes() -> Iterator[list[ServerProcess]]:
    started: list[ServerProcess] = []
    yield started
    for p in started:
        p.stop()


def _id(t: Transport) -> str:
    assert t.device is not None
    return t.device.device_id


async def _next(stream: PushStream, timeout: float = 20.0) -> QueuedMessage | KeyPackagesLow:
    async with asyncio.timeout(timeout):
        return await anext(stream)


async def test_tls_push_and_key_package_top_up(
    tmp_path: Path, processes: list[ServerProcess]
) -> None:
    import trustme  # a dev dependency: its absence is a failure, not a skip

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    client_ssl = ssl.create_default_context()
    ca.configure_trust(client_ssl)

    server = ServerProcess(
        data_dir=tmp_path / "data",
        log_path=tmp_path / "server.log",
        args=("--tls-cert", str(cert_file), "--tls-key", str(key_file)),
        log_level=None,
        ssl_context=client_ssl,
    )
    processes.append(server)
    server.start()

    async with (
        Transport(server.url, DeviceIdentity.generate(), ssl_context=client_ssl) as alice,
        Transport(server.url, DeviceIdentity.generate(), ssl_context=client_ssl) as bob,
    ):
        await alice.register("alice")
        await bob.register("bob")
        n = 10
        await bob.upload_key_packages([key_package(i) for i in range(n)], key_package(n))
        async with bob.push() as stream:
            # Something queued before the socket opens arrives first.
            await alice.send(commit(GROUP, 0), [_id(bob)])
            first = await _next(stream)
            assert isinstance(first, QueuedMessage) and first.data == commit(GROUP, 0)
            # Then live pushes, in order.
            for i in range(3):
                await alice.send(private_message(GROUP, 1, ciphertext=bytes([i]) * 40), [_id(bob)])
            live = [await _next(stream) for _ in range(3)]
            assert [m.data for m in live if isinstance(m, QueuedMessage)] == [
                private_message(GROUP, 1, ciphertext=bytes([i]) * 40) for i in range(3)
            ]
            await stream.ack([first.seq] + [m.seq for m in live if isinstance(m, QueuedMessage)])
            # The ack went over the socket; the queue empties.
            async with asyncio.timeout(10):
                while (await bob.fetch()).messages:
                    await asyncio.sleep(0.05)

            # Claims drain bob's KeyPackages; below the watermark he is told to top up.
            claimed = await alice.claim_key_packages("bob")
            assert len(claimed.key_packages) == 1
            low = await _next(stream)
            assert isinstance(low, KeyPackagesLow)
            assert (low.count, low.low_watermark) == (n - 1, 10)

    server.stop()  # the socket's log line is written when its session ends: let it end
    lines = server.log_lines()
    assert any(line.get("route") == "/v1/ws" and line.get("status") == 101 for line in lines)
    text = server.log_text()
    assert alice._token is not None and alice._token not in text
    assert "127.0.0.1:" not in text.replace(f"127.0.0.1:{server.port}", "")  # no client address
    assert "?after=" not in text


async def test_invite_restart_kill9_and_push_reconnect(
    tmp_path: Path, processes: list[ServerProcess]
) -> None:
    data_dir = tmp_path / "data"
    minted = _doorless("--json", "server", "invite", "--data-dir", str(data_dir), "--count", "2")
    codes = [json.loads(line)["invite_code"] for line in minted.stdout.splitlines()]
    assert len(codes) == 2

    server = ServerProcess(
        data_dir=data_dir,
        log_path=tmp_path / "server.log",
        args=("--registration", "invite"),
        log_level=None,
    )
    processes.append(server)
    server.start()

    bob_device = DeviceIdentity.generate()
    async with (
        Transport(server.url, DeviceIdentity.generate(), retries=5) as alice,
        Transport(server.url, bob_device, retries=5, backoff=0.05, max_backoff=0.5) as bob,
    ):
        await alice.register("alice", invite_code=codes[0])
        await bob.register("bob", invite_code=codes[1].lower())
        sent = [private_message(GROUP, 0, ciphertext=os.urandom(32)) for _ in range(5)]
        for data in sent:
            await alice.send(data, [_id(bob)])  # acknowledged to the sender ...

        server.kill()  # ... then the server dies without any chance to flush
        server.start()

        page = await bob.fetch()  # same token: the server's state is on disk
        assert [m.data for m in page.messages] == sent

        # A push stream survives a server restart: it reconnects and resumes after its seq.
        async with bob.push(after=page.messages[-1].seq) as stream:
            await alice.send(commit(GROUP, 0), [_id(bob)])
            m1 = await _next(stream)
            assert isinstance(m1, QueuedMessage) and m1.data == commit(GROUP, 0)

            server.kill()
            server.start()
            await alice.send(private_message(GROUP, 1), [_id(bob)])
            m2 = await _next(stream, timeout=30)
            assert isinstance(m2, QueuedMessage) and m2.data == private_message(GROUP, 1)
            assert m2.seq > m1.seq
        assert await alice.group_epoch(GROUP) == 1

        # A handshake with a bad token is an HTTP 401 with the JSON error body.
        ws_url = server.url.replace("http", "ws") + "/v1/ws"
        with pytest.raises(InvalidStatus) as refused:
            await connect(ws_url, additional_headers={"Authorization": "Bearer nope"}, proxy=None)
        assert refused.value.response.status_code == 401
        assert json.loads(refused.value.response.body or b"")["error"] == "unauthorized"

        # Revoking a device closes its open socket (its token is gone).
        laptop = Transport(server.url, DeviceIdentity.generate())
        try:
            ticket = await laptop.request_link("alice")
            await alice.approve_link(await alice.get_link(ticket.code))
            await laptop.authenticate()
            socket_ = await laptop._open_socket(0)
            await alice.revoke_device(_id(laptop))
            async with asyncio.timeout(10):
                with pytest.raises(ConnectionClosed) as closed:
                    while True:
                        await socket_.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
        finally:
            await laptop.aclose()
