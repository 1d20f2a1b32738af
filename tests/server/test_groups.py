"""Validated groups (`doorless.server.groups`) at the HTTP boundary: registering a group, who
may read its GroupInfo, and the refusals of handshakes the server cannot or will not judge —
each with its status and code, and each leaving the database as it was (I4). The attacks on a
live group (removed member, never-member, invalid commits, replays) are end-to-end tests in
``tests/e2e/test_group_integrity.py``."""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

import pytest

from doorless.client.conversations import make_credential
from doorless.client.core import MLS_CONFIG
from doorless.client.transport import Transport
from doorless.client.transport.types import DeviceIdentity
from doorless.codec import decode, encode
from doorless.crypto import cipher_suite
from doorless.mls.framing import ContentType, MLSMessage
from doorless.mls.group import Group, generate_key_package
from doorless.mls.types import GroupConfig
from doorless.mls.welcome import GroupInfo
from doorless.wire import protocol

from .helpers import Harness, private_message

pytestmark = pytest.mark.asyncio
SUITE = cipher_suite(1)
NOW = int(time.time())


def new_group(username: str, device: DeviceIdentity, config: GroupConfig = MLS_CONFIG) -> Group:
    bundle = generate_key_package(
        SUITE, make_credential(username, device.device_id), device.private_key, now=NOW
    )
    return Group.create(
        SUITE,
        os.urandom(32),
        bundle.key_package.leaf_node,
        bundle.encryption_private_key,
        bundle.signature_private_key,
        config=config,
    )


async def post(server: Harness, who: Transport, path: str, body: dict[str, Any]) -> Any:
    async with server.http() as http:
        return await http.post(path, json=body, headers={"Authorization": f"Bearer {who._token}"})


def registration(group: Group) -> dict[str, str]:
    return {
        "group_info": protocol.b64encode(group.group_info()),
        "ratchet_tree": protocol.b64encode(group.ratchet_tree()),
    }


async def test_register_is_idempotent_and_an_id_is_taken_once(server: Harness) -> None:
    alice = await server.user("alice")
    assert alice.device is not None
    group = new_group("alice", alice.device)
    assert await alice.register_group(group.group_info(), group.ratchet_tree()) == 0
    # The answer was lost: the same registration is answered again.
    assert await alice.register_group(group.group_info(), group.ratchet_tree()) == 0
    epoch, info, tree = await alice.group_info(group.group_id)
    assert (epoch, info, tree) == (0, group.group_info(), group.ratchet_tree())
    # Another GroupInfo for the same id: the id is taken.
    before = server.db_dump()
    other = group.merge_pending_commit(group.commit([]).pending)
    r = await post(server, alice, "/v1/groups", registration(other))
    assert (r.status_code, r.json()["error"]) == (409, "group_exists")
    assert server.db_dump() == before


async def test_only_the_signing_device_registers_a_group(server: Harness) -> None:
    alice = await server.user("alice")
    mallory = await server.user("mallory")
    assert alice.device is not None
    before = server.db_dump()
    r = await post(server, mallory, "/v1/groups", registration(new_group("alice", alice.device)))
    assert (r.status_code, r.json()["error"]) == (400, "invalid_handshake")
    assert "not signed by this device" in r.json()["message"]
    assert server.db_dump() == before


async def test_a_group_that_does_not_verify_is_not_registered(server: Harness) -> None:
    alice = await server.user("alice")
    assert alice.device is not None
    group = new_group("alice", alice.device)
    gi = decode(MLSMessage, group.group_info()).body
    assert isinstance(gi, GroupInfo)
    forged = dataclasses.replace(gi, signature=bytes([gi.signature[0] ^ 1]) + gi.signature[1:])
    before = server.db_dump()
    body = registration(group) | {"group_info": protocol.b64encode(encode(MLSMessage(forged)))}
    r = await post(server, alice, "/v1/groups", body)
    assert (r.status_code, r.json().get("error")) == (400, "invalid_handshake"), r.json()
    r = await post(server, alice, "/v1/groups", {"group_info": "AAAA", "ratchet_tree": "AAAA"})
    assert (r.status_code, r.json().get("error")) == (400, "malformed_message"), r.json()
    assert server.db_dump() == before


async def test_a_group_seen_before_cannot_be_registered(server: Harness) -> None:
    """A group from before validation (an epoch on record, no state) keeps its old rules."""
    alice = await server.user("alice")
    assert alice.device is not None
    group = new_group("alice", alice.device)
    out = group.commit([])
    await alice.send(out.commit, [])  # not registered: the epoch-only rules
    r = await post(server, alice, "/v1/groups", registration(group))
    assert (r.status_code, r.json()["error"]) == (409, "group_exists")


async def test_group_info_is_for_members_only(server: Harness) -> None:
    alice = await server.user("alice")
    eve = await server.user("eve")
    assert alice.device is not None
    group = new_group("alice", alice.device)
    await alice.register_group(group.group_info(), group.ratchet_tree())
    async with server.http() as http:
        for who, gid, status in ((eve, group.group_id, 403), (alice, b"unknown", 404)):
            r = await http.get(
                f"/v1/groups/{gid.hex()}/info", headers={"Authorization": f"Bearer {who._token}"}
            )
            assert r.status_code == status


async def test_handshakes_the_server_cannot_judge_are_refused(server: Harness) -> None:
    alice = await server.user("alice")
    assert alice.device is not None
    group = new_group("alice", alice.device)
    await alice.register_group(group.group_info(), group.ratchet_tree())
    private = Group.from_bytes(group.to_bytes(), GroupConfig(private_handshakes=True))
    proposal = group.propose_update()
    cases = [
        ("a PrivateMessage commit", private.commit([]).commit, None),
        ("a standalone proposal", proposal[1], None),
        ("a commit without its GroupInfo", group.commit([]).commit, None),
    ]
    before = server.db_dump()
    for name, data, info in cases:
        body: dict[str, Any] = {"message_id": "m" * 10, "data": protocol.b64encode(data)}
        body["recipients"] = []
        if info is not None:
            body["group_info"] = protocol.b64encode(info)
        r = await post(server, alice, "/v1/messages", body)
        assert (r.status_code, r.json()["error"]) == (400, "invalid_handshake"), name
    assert server.db_dump() == before


async def test_only_member_devices_post_application_messages(server: Harness) -> None:
    alice = await server.user("alice")
    eve = await server.user("eve")
    assert alice.device is not None and eve.device is not None
    group = new_group("alice", alice.device)
    await alice.register_group(group.group_info(), group.ratchet_tree())
    message = private_message(group.group_id, 0)
    before = server.db_dump()
    for data in (message, private_message(group.group_id, 0, ContentType.commit)):
        body = {"message_id": "m" * 10, "data": protocol.b64encode(data), "recipients": []}
        r = await post(server, eve, "/v1/messages", body)
        assert (r.status_code, r.json()["error"]) == (403, "not_group_member")
    assert server.db_dump() == before
    await alice.send(message, [eve.device.device_id])  # a member may
