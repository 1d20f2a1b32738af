"""Malformed MLS bytes posted by a logged-in device to the real server process are refused
with a 4xx and change nothing: the database is byte-for-byte the same dump before and after,
and the group they aimed at keeps working for its members (I4)."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from doorless.client.transport import DeviceIdentity, Transport
from doorless.codec import encode
from doorless.mls.framing import ContentType, MLSMessage, PrivateMessage

from .helpers import Devices, ServerProcess

pytestmark = pytest.mark.asyncio

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "mls"


def private(group_id: bytes, epoch: int, content_type: ContentType, body: bytes) -> bytes:
    """A well-framed MLSMessage(PrivateMessage) whose ciphertext is garbage."""
    return encode(
        MLSMessage(
            PrivateMessage(
                group_id=group_id,
                epoch=epoch,
                content_type=content_type,
                authenticated_data=b"",
                encrypted_sender_data=os.urandom(32),
                ciphertext=body,
            )
        )
    )


def key_package() -> bytes:
    """A valid MLSMessage(KeyPackage) from the official vectors."""
    cases = json.loads((VECTORS / "messages.json").read_text())
    return bytes.fromhex(cases[0]["mls_key_package"])


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def test_malformed_mls_bytes_are_refused_and_change_nothing(
    server: ServerProcess, tmp_path: Path
) -> None:
    net = Devices(server.url, tmp_path / "profiles")
    mallory = Transport(server.url, DeviceIdentity.generate(), retries=0)
    try:
        alice = await net.account("alice")
        bob = await net.account("bob")
        await mallory.register("mallory")
        await mallory.authenticate()
        chat = await alice.start_direct("bob")
        await alice.send_text(chat.id, "before")
        await bob.sync()
        gid = bytes.fromhex(chat.id)
        epoch = (await bob.conversation(chat.id)).epoch
        bob_id = bob.device_id
        real = private(gid, epoch, ContentType.application, os.urandom(64))

        bodies: dict[str, dict[str, Any]] = {
            "random bytes": {"data": b64(os.urandom(200)), "recipients": [bob_id]},
            "empty": {"data": "", "recipients": [bob_id]},
            "truncated MLSMessage": {"data": b64(real[:-20]), "recipients": [bob_id]},
            "trailing bytes": {"data": b64(real + b"\x00"), "recipients": [bob_id]},
            "unknown wire format": {
                "data": b64(real[:2] + b"\x00\x09" + real[4:]),
                "recipients": [bob_id],
            },
            "application message without franking tag": {
                "data": b64(real),
                "recipients": [bob_id],
            },
            "commit for a past epoch": {
                "data": b64(private(gid, epoch - 1, ContentType.commit, os.urandom(64))),
                "recipients": [bob_id],
            },
            "commit for a future epoch": {
                "data": b64(private(gid, epoch + 5, ContentType.commit, os.urandom(64))),
                "recipients": [bob_id],
            },
            "welcome without a commit": {
                "data": b64(real),
                "recipients": [bob_id],
                "welcome": {"data": b64(os.urandom(50)), "recipients": [bob_id]},
            },
            "a KeyPackage where a group message belongs": {
                "data": b64(key_package()),
                "recipients": [bob_id],
            },
            "not base64": {"data": "***", "recipients": [bob_id]},
            "unknown recipient": {"data": b64(real), "recipients": ["0" * 32]},
        }
        headers = {"Authorization": f"Bearer {mallory._token}"}
        before = server.db_dump()
        async with httpx.AsyncClient(base_url=server.url, headers=headers) as http:
            for i, (label, body) in enumerate(bodies.items()):
                r = await http.post(
                    "/v1/messages", json={"message_id": f"bad-input-{i:04d}", **body}
                )
                assert 400 <= r.status_code < 500, (label, r.status_code, r.text)
                error = r.json()
                assert set(error) >= {"error", "message"}, label
            r = await http.post("/v1/keypackages", json={"key_packages": [b64(os.urandom(100))]})
            assert r.status_code == 400 and r.json()["error"] == "malformed_message"
        assert server.db_dump() == before

        # Nothing reached bob, and the conversation goes on.
        assert await bob.sync() == 0
        await bob.send_text(chat.id, "after")
        await alice.sync()
        assert [m.text for m in await alice.history(chat.id)] == ["before", "after"]
    finally:
        await mallory.aclose()
        await net.close_all()
