"""The delivery rules of `doorless.server.delivery`, pinned at the HTTP boundary.

Every refusal of ``POST /v1/messages`` with its exact status, error code and message (the
routes only parse HTTP; `doorless.server.errors` maps `DeliveryRefused` onto the answer), and
that a refused send changes nothing. Plus the layering the restructure promised: the rules
live in ``server/delivery.py``, not in the routes, and the server imports no client code.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from doorless.codec import encode
from doorless.mls.framing import ContentType, MLSMessage, PrivateMessage
from doorless.wire import protocol

from .helpers import (
    FakeClock,
    Harness,
    commit,
    key_package,
    make_config,
    private_message,
    running,
    welcome,
)

GROUP = b"group-rules"


def b64(data: bytes) -> str:
    return protocol.b64encode(data)


def unfranked() -> bytes:
    """An application message whose ``authenticated_data`` carries no franking tag."""
    return encode(
        MLSMessage(
            PrivateMessage(
                group_id=GROUP,
                epoch=0,
                content_type=ContentType.application,
                authenticated_data=b"",
                encrypted_sender_data=b"\x01" * 16,
                ciphertext=b"\x00" * 32,
            )
        )
    )


# (name, body builder taking bob's device id, status, code, message)
Case = tuple[str, Callable[[str], dict[str, Any]], int, str, str]
CASES: list[Case] = [
    (
        "empty data",
        lambda bob: {"data": "", "recipients": [bob]},
        400,
        "malformed_message",
        "data is empty",
    ),
    (
        "oversized data",
        lambda bob: {"data": b64(b"\x00" * 2001), "recipients": [bob]},
        413,
        "payload_too_large",
        "data is larger than 2000 bytes",
    ),
    (
        "not an MLSMessage",
        lambda bob: {"data": b64(b"\xff" * 40), "recipients": [bob]},
        400,
        "malformed_message",
        "data is not an encoded MLSMessage",
    ),
    (
        "a KeyPackage",
        lambda bob: {"data": b64(key_package(0)), "recipients": [bob]},
        400,
        "malformed_message",
        "KeyPackages go to the directory (POST /v1/keypackages), not to queues",
    ),
    (
        "epoch out of range",
        lambda bob: {"data": b64(commit(GROUP, 2**63)), "recipients": [bob]},
        400,
        "malformed_message",
        "epoch out of range",
    ),
    (
        "too many recipients",
        lambda bob: {"data": b64(commit(GROUP, 0)), "recipients": [bob, "a" * 32, "b" * 32]},
        400,
        "invalid_request",
        "recipients: at most 2 recipients",
    ),
    (
        "duplicate recipients",
        lambda bob: {"data": b64(commit(GROUP, 0)), "recipients": [bob, bob]},
        400,
        "invalid_request",
        "recipients: duplicate recipients",
    ),
    (
        "unfranked application message",
        lambda bob: {"data": b64(unfranked()), "recipients": [bob]},
        400,
        "malformed_message",
        "application message without a franking tag (frank_aad)",
    ),
    (
        "welcome without a commit",
        lambda bob: {
            "data": b64(private_message(GROUP, 0)),
            "recipients": [bob],
            "welcome": {"data": b64(welcome(0)), "recipients": [bob]},
        },
        400,
        "invalid_request",
        "a welcome can only accompany a commit",
    ),
    (
        "welcome with duplicate recipients",
        lambda bob: {
            "data": b64(commit(GROUP, 0)),
            "recipients": [bob],
            "welcome": {"data": b64(welcome(0)), "recipients": [bob, bob]},
        },
        400,
        "invalid_request",
        "welcome.recipients: duplicate recipients",
    ),
    (
        "welcome that is no Welcome",
        lambda bob: {
            "data": b64(commit(GROUP, 0)),
            "recipients": [bob],
            "welcome": {"data": b64(commit(GROUP, 0)), "recipients": [bob]},
        },
        400,
        "malformed_message",
        "welcome.data is not an MLSMessage with wire format mls_welcome",
    ),
    (
        "empty welcome",
        lambda bob: {
            "data": b64(commit(GROUP, 0)),
            "recipients": [bob],
            "welcome": {"data": "", "recipients": [bob]},
        },
        400,
        "malformed_message",
        "welcome.data is empty",
    ),
]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("name", "build", "status", "code", "message"), CASES, ids=[c[0] for c in CASES]
)
async def test_refusals_have_their_status_code_and_message(
    data_dir: Path,
    clock: FakeClock,
    name: str,
    build: Callable[[str], dict[str, Any]],
    status: int,
    code: str,
    message: str,
) -> None:
    config = make_config(data_dir, max_message_size=2000, max_recipients=2)
    async with running(config, clock) as server:
        alice = await server.user("alice")
        bob = await server.user("bob")
        assert bob.device is not None
        body = {"message_id": "m" * 10, **build(bob.device.device_id)}
        before = server.db_dump()
        async with server.http() as http:
            r = await http.post(
                "/v1/messages",
                json=body,
                headers={"Authorization": f"Bearer {alice._token}"},
            )
        assert (r.status_code, r.json()) == (status, {"error": code, "message": message}), name
        assert server.db_dump() == before


@pytest.mark.asyncio
async def test_an_accepted_application_message_is_stamped_and_pushed(server: Harness) -> None:
    alice = await server.user("alice")
    bob = await server.user("bob")
    assert bob.device is not None
    subscription = await server.ctx.fanout.subscribe(bob.device.device_id)
    try:
        result = await alice.send(private_message(GROUP, 0), [bob.device.device_id])
        assert (result.group_epoch, result.duplicate) == (0, False)
        topics = await subscription.wait(1.0)
    finally:
        await subscription.close()
    assert topics
    (queued,) = (await bob.fetch()).messages
    assert queued.frank is not None  # the server's stamp rides with the ciphertext
    await alice.send(commit(GROUP, 0), [bob.device.device_id])
    commits = [m for m in (await bob.fetch()).messages if m.frank is None]
    assert len(commits) == 1  # only application messages are stamped
