"""``doorless server --relay-port`` (and the same key in a ``--config`` file): the real server
process listens for QUIC, makes its certificate in ``DATA_DIR/relay/`` once, and announces the
port and the certificate's fingerprint on ``GET /v1/calls/relay``; a device joins a call over
QUIC with it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from doorless.wire.calls import CallId
from support.relay import account, group_with, transport_of
from support.servers import ServerProcess, free_port

pytestmark = pytest.mark.asyncio


def fingerprint(cert_pem: Path) -> str:
    cert = x509.load_pem_x509_certificate(cert_pem.read_bytes())
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


async def test_relay_port_option_and_config_key(tmp_path: Path) -> None:
    udp = free_port()
    config = tmp_path / "server.toml"
    config.write_text(f"relay-port = {udp}\nanon-rate-limit = 0\n", encoding="utf-8")
    server = ServerProcess(
        data_dir=tmp_path / "data", log_path=tmp_path / "log", args=("--config", str(config))
    )
    server.start()
    try:
        cert = tmp_path / "data" / "relay" / "cert.pem"
        assert (tmp_path / "data" / "relay" / "key.pem").stat().st_mode & 0o077 == 0
        alice = await account(server.url, tmp_path / "p", "alice")
        bob = await account(server.url, tmp_path / "p", "bob")
        try:
            info = await transport_of(alice).relay_info()
            assert (info.host, info.port, info.fingerprint) == ("127.0.0.1", udp, fingerprint(cert))
            gid = await group_with(alice, bob)
            conn = await transport_of(bob).join_call(gid, CallId.random(), transport="quic")
            assert conn.transport == "quic"
            await conn.close()
        finally:
            await alice.close()
            await bob.close()
        # A restart keeps the certificate: clients' pins stay valid.
        server.restart()
        assert fingerprint(cert) == info.fingerprint
        server.stop()
        server.args = (*server.args, "--relay-public-host", "relay.example")
        server.start()
        alice = await account(server.url, tmp_path / "p2", "alice2")
        try:
            announced = await transport_of(alice).relay_info()
            assert (announced.host, announced.port) == ("relay.example", udp)
        finally:
            await alice.close()
    finally:
        server.stop()
