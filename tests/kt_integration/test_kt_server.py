"""The server's transparency log: publishing device lists, head/search/audit answers."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from doorless.client.errors import Conflict, InvalidRequest
from doorless.client.kt import KeyNotInTransparencyLog, first_list, with_device
from doorless.client.transport import DeviceIdentity
from doorless.errors import ConfigurationError
from doorless.kt.checkpoint import (
    NoteVerifier,
    SignatureType,
    SignedCheckpoint,
    cosign_checkpoint,
    ed25519_public_key,
    verify_checkpoint,
)
from doorless.kt.combined import CombinedTree
from doorless.kt.device_list import next_device_list
from doorless.kt.merkle import verify_consistency
from doorless.wire import kt as kt_wire
from doorless.wire.kt import device_entry, user_label

from .helpers import BASE_URL, Net, network, running

pytestmark = pytest.mark.asyncio


async def _head(net: Net, since: int = 0) -> kt_wire.KtHead:
    return await net.witness_transport().kt_head(since)


async def test_registration_publishes_version_zero(tmp_path: Path) -> None:
    async with network(tmp_path) as net:
        alice = await net.user("alice")
        assert alice.device is not None
        assert alice.kt is not None
        verified = await alice.kt.device_list("alice")
        assert verified.version == 0
        assert verified.devices() == {alice.device.device_id: alice.device.public_key}
        entry = verified.device(alice.device.device_id)
        assert entry == device_entry("alice", alice.device.device_id, alice.device.public_key)
        assert verified.device_list.tbs.signer_device_id == alice.device.device_id.encode()


async def test_link_and_revoke_publish_signed_successors(tmp_path: Path) -> None:
    async with network(tmp_path) as net:
        alice = await net.user("alice")
        phone = await net.link(alice, "alice-phone")
        assert alice.device is not None and phone.device is not None
        bob = await net.user("bob")
        assert bob.kt is not None
        listed = await bob.kt.device_list("alice")
        assert listed.version == 1
        assert set(listed.devices()) == {alice.device.device_id, phone.device.device_id}
        assert listed.device_list.tbs.signer_device_id == alice.device.device_id.encode()

        await phone.revoke_device(alice.device.device_id)
        await net.witness.step()
        listed = await bob.kt.device_list("alice")
        assert listed.version == 2
        assert listed.devices() == {phone.device.device_id: phone.device.public_key}
        assert listed.device_list.tbs.signer_device_id == phone.device.device_id.encode()


async def test_head_is_consistent_across_appends(tmp_path: Path) -> None:
    async with network(tmp_path) as net:
        await net.user("alice")
        first = await _head(net)
        old = SignedCheckpoint.decode(first.checkpoint).checkpoint
        await net.user("bob")
        await net.user("carol")
        second = await _head(net, old.size)
        new = SignedCheckpoint.decode(second.checkpoint).checkpoint
        assert new.size == old.size + 2
        verify_consistency(old.size, new.size, old.root, new.root, second.consistency)
        # The checkpoint is the log's, and cosigned by the witness.
        log_key = NoteVerifier.from_vkey(net.server.ctx.kt.info().log_key)
        witness = NoteVerifier.from_vkey(net.witness.vkey)
        verified = verify_checkpoint(
            SignedCheckpoint.decode(second.checkpoint), log_key, [witness], 1
        )
        assert [name for name, _ in verified.witnesses] == ["test-witness"]


async def test_search_for_unknown_user_proves_absence(tmp_path: Path) -> None:
    async with network(tmp_path) as net:
        alice = await net.user("alice")
        assert alice.kt is not None
        with pytest.raises(KeyNotInTransparencyLog):
            await alice.kt.device_list("nobody")
        answer = await alice.kt_search(user_label("nobody"), 0, 0)
        assert answer.result is None and answer.absent is not None


async def test_audit_replays_to_the_checkpoint(tmp_path: Path) -> None:
    async with network(tmp_path) as net:
        alice = await net.user("alice")
        await net.link(alice, "alice-2")
        await net.user("bob")
        t = net.witness_transport()
        head = SignedCheckpoint.decode((await t.kt_head(0)).checkpoint).checkpoint
        audit = await t.kt_audit(0, 1000)
        assert audit.size == head.size
        tree = CombinedTree()
        for item in audit.entries:
            tree.replay(item.audit, item.log_entry)
        assert tree.log.root() == head.root


async def test_log_survives_a_restart(tmp_path: Path) -> None:
    async with network(tmp_path) as net:
        await net.user("alice")
        await net.user("bob")
        before = SignedCheckpoint.decode((await _head(net)).checkpoint).checkpoint
        config, clock = net.server.config, net.clock
    async with running(config, clock) as again:
        head = await again.ctx.kt.head(0)
        after = SignedCheckpoint.decode(head.checkpoint).checkpoint
        assert (after.size, after.root) == (before.size, before.root)


async def test_server_refuses_lists_no_device_signed(tmp_path: Path) -> None:
    async with network(tmp_path) as net:
        device, other = DeviceIdentity.generate(), DeviceIdentity.generate()
        t = net.transport("mallory", device)
        wrong_devices = first_list(
            "alice", other.device_id, other.public_key, other.private_key.value, 1
        )
        with pytest.raises(InvalidRequest):
            await t.register("alice", device_list=wrong_devices)
        wrong_user = first_list(
            "bob", device.device_id, device.public_key, device.private_key.value, 1
        )
        with pytest.raises(InvalidRequest):
            await t.register("alice", device_list=wrong_user)
        assert await net.server.ctx.storage.kt_latest_version(user_label("alice")) is None


async def test_link_needs_the_next_list_signed_by_the_approver(tmp_path: Path) -> None:
    async with network(tmp_path) as net:
        alice = await net.user("alice")
        assert alice.device is not None and alice.kt is not None
        new = DeviceIdentity.generate()
        newt = net.transport("new", new)
        ticket = await newt.request_link("alice")
        pending = await alice.get_link(ticket.code)
        current = (await alice.kt.device_list("alice")).device_list
        entry = device_entry("alice", new.device_id, new.public_key)
        # Signed by the new device itself (not a device of the previous version).
        with pytest.raises(ConfigurationError):  # the core refuses to even build it
            next_device_list(
                current, [*current.devices, entry], 2, new.device_id.encode(), new.private_key.value
            )
        # A list that adds a device the link is not about.
        stray = DeviceIdentity.generate()
        bad = next_device_list(
            current,
            [*current.devices, device_entry("alice", stray.device_id, stray.public_key)],
            2,
            alice.device.device_id.encode(),
            alice.device.private_key.value,
        )
        with pytest.raises(InvalidRequest):
            await alice.approve_link(pending, device_list=bad)
        # The honest one goes through.
        good = await alice.kt.next_list(
            "alice",
            alice.device.device_id,
            alice.device.private_key.value,
            with_device(entry),
            2,
        )
        await alice.approve_link(pending, device_list=good)
        await net.witness.step()
        assert (await alice.kt.device_list("alice")).version == 1


async def test_concurrent_change_is_a_kt_conflict(tmp_path: Path) -> None:
    async with network(tmp_path) as net:
        alice = await net.user("alice")
        assert alice.device is not None and alice.kt is not None
        new1, new2 = DeviceIdentity.generate(), DeviceIdentity.generate()
        t1, t2 = net.transport("n1", new1), net.transport("n2", new2)
        p1 = await alice.get_link((await t1.request_link("alice")).code)
        p2 = await alice.get_link((await t2.request_link("alice")).code)
        # Both successors of version 0: the second one to arrive must be refused.
        dl1 = await alice.kt.next_list(
            "alice",
            alice.device.device_id,
            alice.device.private_key.value,
            with_device(device_entry("alice", new1.device_id, new1.public_key)),
            2,
        )
        dl2 = await alice.kt.next_list(
            "alice",
            alice.device.device_id,
            alice.device.private_key.value,
            with_device(device_entry("alice", new2.device_id, new2.public_key)),
            2,
        )
        await alice.approve_link(p1, device_list=dl1)
        with pytest.raises((Conflict, InvalidRequest)):
            await alice.approve_link(p2, device_list=dl2)


async def test_cosignatures_only_from_configured_witnesses(tmp_path: Path) -> None:
    async with network(tmp_path) as net:
        await net.user("alice")
        t = net.witness_transport()
        served = SignedCheckpoint.decode((await t.kt_head(0)).checkpoint)
        # Only the log's own signature (the served note already carries the witness's).
        head = SignedCheckpoint(
            served.checkpoint,
            tuple(s for s in served.signatures if s.name == served.checkpoint.origin),
        )
        stranger = bytes(range(32))
        note = cosign_checkpoint(head, "stranger", stranger, 5).encode()
        with pytest.raises(InvalidRequest):
            await t.kt_cosign(note)
        # The configured witness's key, but a signature over another checkpoint's text.
        seed = net.witness.state.seed()
        other = cosign_checkpoint(head, "test-witness", seed, 5)
        tampered = other.signatures[-1]
        bad_sig = tampered.__class__(
            tampered.name,
            tampered.key_id,
            tampered.signature[:-1] + bytes([tampered.signature[-1] ^ 1]),
        )
        with pytest.raises(InvalidRequest):
            await t.kt_cosign(head.with_signature(bad_sig).encode())
        assert ed25519_public_key(seed) == NoteVerifier.from_vkey(net.witness.vkey).public_key
        assert (
            NoteVerifier.from_vkey(net.witness.vkey).signature_type == SignatureType.COSIGNATURE_V1
        )


async def test_kt_endpoints_shapes(tmp_path: Path) -> None:
    async with network(tmp_path) as net:
        alice = await net.user("alice")
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=net.server.app), base_url=BASE_URL
        ) as http:
            info = (await http.get("/v1/kt/info")).json()
            assert info["origin"] == "doorless-kt/" + net.server.ctx.server_id
            assert info["witnesses"] == [net.witness.vkey]
            r = await http.get("/v1/kt/search", params={"label": user_label("alice").hex()})
            assert r.status_code == 401  # searching is for logged-in devices, like the directory
            r = await http.get(
                "/v1/kt/search",
                params={"label": "zz"},
                headers={"Authorization": f"Bearer {alice._token}"},
            )
            assert r.status_code == 422
            r = await http.get("/v1/kt/head", params={"since": -1})
            assert r.status_code == 422
            r = await http.post("/v1/kt/cosignatures", json={"checkpoint": "not a note"})
            assert r.status_code == 400
