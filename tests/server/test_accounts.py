"""Registration, challenge/response login, device linking and revocation."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from doorless.client.errors import (
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    Unauthorized,
)
from doorless.client.transport import DeviceIdentity, check_device_approvals
from doorless.errors import InvalidSignature, ValidationError
from doorless.server.auth import invite_hash
from doorless.server.config import Registration
from doorless.wire import protocol

from .helpers import FakeClock, Harness, make_config, running

pytestmark = pytest.mark.asyncio


# --- registration ----------------------------------------------------------------------------


async def test_open_registration_and_login(server: Harness) -> None:
    t = server.client()
    assert t.device is not None
    device_id = await t.register("alice")
    assert device_id == protocol.device_id_of(t.device.public_key)
    await t.authenticate()
    assert t.username == "alice"
    devices = await t.list_devices("alice")
    assert [d.device_id for d in devices] == [device_id]
    assert devices[0].approved_by is None


async def test_username_taken(server: Harness) -> None:
    await server.user("alice")
    with pytest.raises(Conflict) as e:
        await server.client().register("alice")
    assert e.value.code == "username_taken"


async def test_same_device_key_cannot_register_twice(server: Harness) -> None:
    device = DeviceIdentity.generate()
    await server.client(device).register("alice")
    with pytest.raises(Conflict) as e:
        await server.client(device).register("bob")
    assert e.value.code == "device_exists"


async def test_registration_signature_must_verify(server: Harness) -> None:
    device, other = DeviceIdentity.generate(), DeviceIdentity.generate()
    server_id = server.ctx.server_id
    before = server.db_dump()
    async with server.http() as http:
        for signature in (
            other.sign(protocol.register_content(server_id, "alice", device.public_key)),
            device.sign(protocol.register_content(server_id, "mallory", device.public_key)),
            device.sign(protocol.register_content("another-server", "alice", device.public_key)),
            b"\x00" * 64,
        ):
            r = await http.post(
                "/v1/accounts",
                json={
                    "username": "alice",
                    "device_key": protocol.b64encode(device.public_key),
                    "signature": protocol.b64encode(signature),
                },
            )
            assert r.status_code == 400
            assert r.json()["error"] == "invalid_signature"
    assert server.db_dump() == before


async def test_invite_registration(data_dir: Path, clock: FakeClock) -> None:
    config = make_config(data_dir, registration=Registration.invite)
    async with running(config, clock) as server:
        with pytest.raises(Forbidden) as e:
            await server.client().register("alice")
        assert e.value.code == "invite_required"
        with pytest.raises(Forbidden):
            await server.client().register("alice", invite_code="NOPE-NOPE")

        now = server.ctx.now()
        await server.ctx.storage.create_invite(invite_hash("ABCD-EFGH"), now, now + 60)
        before = server.db_dump()
        # A bad signature does not burn the invite.
        async with server.http() as http:
            r = await http.post(
                "/v1/accounts",
                json={
                    "username": "alice",
                    "device_key": protocol.b64encode(b"\x01" * 32),
                    "signature": protocol.b64encode(b"\x00" * 64),
                    "invite_code": "ABCD-EFGH",
                },
            )
            assert r.status_code == 400
        assert server.db_dump() == before
        # Codes are case/dash-insensitive, single use.
        await server.client().register("alice", invite_code="abcdefgh")
        with pytest.raises(Forbidden):
            await server.client().register("bob", invite_code="ABCD-EFGH")


async def test_expired_invite_is_refused(data_dir: Path, clock: FakeClock) -> None:
    config = make_config(data_dir, registration=Registration.invite)
    async with running(config, clock) as server:
        now = server.ctx.now()
        await server.ctx.storage.create_invite(invite_hash("WXYZ-2345"), now, now + 60)
        clock.advance(61)
        with pytest.raises(Forbidden):
            await server.client().register("alice", invite_code="WXYZ-2345")


@pytest.mark.parametrize(
    "username", ["A", "Alice", "a", "al ice", "alice!", "-alice", "é" * 3, "a" * 33, ""]
)
async def test_bad_usernames_are_refused(server: Harness, username: str) -> None:
    device = DeviceIdentity.generate()
    sig = device.sign(protocol.register_content(server.ctx.server_id, username, device.public_key))
    async with server.http() as http:
        r = await http.post(
            "/v1/accounts",
            json={
                "username": username,
                "device_key": protocol.b64encode(device.public_key),
                "signature": protocol.b64encode(sig),
            },
        )
    assert r.status_code == 422
    assert r.json()["error"] == "invalid_request"


# --- challenge / response --------------------------------------------------------------------


async def _challenge(server: Harness) -> bytes:
    async with server.http() as http:
        r = await http.post("/v1/auth/challenge")
        assert r.status_code == 200
        assert r.json()["server_id"] == server.ctx.server_id
        return protocol.b64decode(r.json()["nonce"])


async def _token(server: Harness, device_id: str, nonce: bytes, signature: bytes) -> int:
    async with server.http() as http:
        r = await http.post(
            "/v1/auth/token",
            json={
                "device_id": device_id,
                "nonce": protocol.b64encode(nonce),
                "signature": protocol.b64encode(signature),
            },
        )
        if r.status_code != 200:
            assert r.json()["error"] == "auth_failed"
        return r.status_code


async def test_challenge_response_login(server: Harness) -> None:
    t = await server.user("alice")
    assert t.device is not None
    nonce = await _challenge(server)
    sig = t.device.sign(protocol.auth_content(server.ctx.server_id, nonce, t.device.device_id))
    assert await _token(server, t.device.device_id, nonce, sig) == 200


async def test_challenge_replay_is_refused(server: Harness) -> None:
    t = await server.user("alice")
    assert t.device is not None
    nonce = await _challenge(server)
    sig = t.device.sign(protocol.auth_content(server.ctx.server_id, nonce, t.device.device_id))
    assert await _token(server, t.device.device_id, nonce, sig) == 200
    assert await _token(server, t.device.device_id, nonce, sig) == 401


async def test_expired_challenge_is_refused(server: Harness) -> None:
    t = await server.user("alice")
    assert t.device is not None
    nonce = await _challenge(server)
    sig = t.device.sign(protocol.auth_content(server.ctx.server_id, nonce, t.device.device_id))
    server.clock.advance(server.config.challenge_ttl + 1)
    assert await _token(server, t.device.device_id, nonce, sig) == 401


async def test_unknown_nonce_is_refused(server: Harness) -> None:
    t = await server.user("alice")
    assert t.device is not None
    nonce = b"\x07" * 32
    sig = t.device.sign(protocol.auth_content(server.ctx.server_id, nonce, t.device.device_id))
    assert await _token(server, t.device.device_id, nonce, sig) == 401


@pytest.mark.parametrize("forgery", ["other_key", "other_nonce", "other_device", "other_server"])
async def test_wrong_signature_is_refused(server: Harness, forgery: str) -> None:
    alice = await server.user("alice")
    bob = await server.user("bob")
    assert alice.device is not None and bob.device is not None
    nonce = await _challenge(server)
    sid, dev = server.ctx.server_id, alice.device.device_id
    signer, content = alice.device, protocol.auth_content(sid, nonce, dev)
    if forgery == "other_key":
        signer = bob.device
    elif forgery == "other_nonce":
        content = protocol.auth_content(sid, b"\x00" * 32, dev)
    elif forgery == "other_device":
        content = protocol.auth_content(sid, nonce, bob.device.device_id)
    else:
        content = protocol.auth_content("elsewhere", nonce, dev)
    assert await _token(server, dev, nonce, signer.sign(content)) == 401
    # The failed try consumed the challenge.
    good = alice.device.sign(protocol.auth_content(sid, nonce, dev))
    assert await _token(server, dev, nonce, good) == 401


async def test_unknown_device_cannot_log_in(server: Harness) -> None:
    with pytest.raises(Unauthorized) as e:
        await server.client().authenticate()
    assert e.value.code == "auth_failed"


async def test_requests_need_a_valid_token(server: Harness) -> None:
    async with server.http() as http:
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic x"}):
            r = await http.get("/v1/messages", headers=headers)
            assert r.status_code == 401
            assert r.json()["error"] == "unauthorized"
            assert r.headers["www-authenticate"] == "Bearer"


async def test_expired_token_is_renewed_by_the_transport(server: Harness) -> None:
    t = await server.user("alice")
    old = t._token
    server.clock.advance(server.config.token_ttl + 1)
    # The server refuses the old token; the transport logs in again and retries once.
    assert (await t.fetch()).messages == []
    assert t._token is not None and t._token != old


async def test_tokens_and_nonces_are_stored_hashed(server: Harness) -> None:
    from .helpers import scan

    t = await server.user("alice")
    assert t._token is not None
    nonce = await _challenge(server)
    assert scan(server.config.data_dir, [t._token.encode(), nonce]) == []


# --- device linking --------------------------------------------------------------------------


async def test_link_a_second_device(server: Harness) -> None:
    alice = await server.user("alice")
    laptop = server.client()
    assert laptop.device is not None
    ticket = await laptop.request_link("alice")
    assert ticket.device_id == laptop.device.device_id
    assert await laptop.link_status(ticket.code) == "pending"
    with pytest.raises(Unauthorized):  # not a device before approval
        await laptop.authenticate()

    pending = await alice.get_link(ticket.code.lower())
    assert pending.device_key == laptop.device.public_key
    assert not pending.approved
    info = await alice.approve_link(pending)
    assert info.approved_by == alice.device.device_id  # type: ignore[union-attr]

    await laptop.wait_for_link_approval(ticket.code, poll_interval=0, timeout=5)
    assert laptop.username == "alice"
    devices = await laptop.list_devices("alice")
    check_device_approvals(server.ctx.server_id, "alice", devices)
    assert {d.device_id for d in devices} == {alice.device.device_id, ticket.device_id}  # type: ignore[union-attr]


async def test_forged_approval_is_refused(server: Harness) -> None:
    alice = await server.user("alice")
    mallory = await server.user("mallory")
    assert alice.device is not None and mallory.device is not None
    new = DeviceIdentity.generate()
    ticket = await server.client(new).request_link("alice")
    pending = await alice.get_link(ticket.code)
    sid = server.ctx.server_id
    before = server.db_dump()
    forgeries = [
        # signed by a device of another account
        mallory.device.sign(
            protocol.device_approval_content(sid, "alice", new.device_id, new.public_key)
        ),
        # signed by the new device itself
        new.sign(protocol.device_approval_content(sid, "alice", new.device_id, new.public_key)),
        # alice's key, but over another account / another server
        alice.device.sign(
            protocol.device_approval_content(sid, "mallory", new.device_id, new.public_key)
        ),
        alice.device.sign(
            protocol.device_approval_content("other", "alice", new.device_id, new.public_key)
        ),
        b"\x00" * 64,
    ]
    async with server.http() as http:
        for signature in forgeries:
            r = await http.post(
                f"/v1/links/{pending.code}/approve",
                headers={"Authorization": f"Bearer {alice._token}"},
                json={
                    "device_id": new.device_id,
                    "device_key": protocol.b64encode(new.public_key),
                    "signature": protocol.b64encode(signature),
                },
            )
            assert r.status_code == 400, r.text
            assert r.json()["error"] == "invalid_signature"
    assert server.db_dump() == before
    assert await server.client(new).link_status(ticket.code) == "pending"


async def test_approval_must_name_the_pending_device(server: Harness) -> None:
    alice = await server.user("alice")
    new, swapped = DeviceIdentity.generate(), DeviceIdentity.generate()
    ticket = await server.client(new).request_link("alice")
    pending = await alice.get_link(ticket.code)
    with pytest.raises(InvalidRequest):
        await alice.approve_link(
            replace(pending, device_id=swapped.device_id, device_key=swapped.public_key)
        )


async def test_other_accounts_cannot_see_or_approve_a_link(server: Harness) -> None:
    await server.user("alice")
    mallory = await server.user("mallory")
    ticket = await server.client().request_link("alice")
    with pytest.raises(NotFound):
        await mallory.get_link(ticket.code)
    async with server.http() as http:
        r = await http.post(
            f"/v1/links/{ticket.code}/approve",
            headers={"Authorization": f"Bearer {mallory._token}"},
            json={
                "device_id": ticket.device_id,
                "device_key": protocol.b64encode(b"\x00" * 32),
                "signature": protocol.b64encode(b"\x00" * 64),
            },
        )
    assert r.status_code == 404


async def test_link_request_needs_possession_and_an_account(server: Harness) -> None:
    await server.user("alice")
    with pytest.raises(NotFound):
        await server.client().request_link("nobody")
    new, other = DeviceIdentity.generate(), DeviceIdentity.generate()
    async with server.http() as http:
        r = await http.post(
            "/v1/links",
            json={
                "username": "alice",
                "device_key": protocol.b64encode(new.public_key),
                "signature": protocol.b64encode(
                    other.sign(
                        protocol.link_request_content(server.ctx.server_id, "alice", new.public_key)
                    )
                ),
            },
        )
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_signature"


async def test_link_expires_and_cannot_be_approved_twice(server: Harness) -> None:
    alice = await server.user("alice")
    ticket = await server.client().request_link("alice")
    pending = await alice.get_link(ticket.code)
    await alice.approve_link(pending)
    with pytest.raises(NotFound):
        await alice.approve_link(pending)

    late = await server.client().request_link("alice")
    server.clock.advance(server.config.link_ttl + 1)
    with pytest.raises(NotFound):
        await alice.get_link(late.code)


async def test_existing_device_key_cannot_request_a_link(server: Harness) -> None:
    alice = await server.user("alice")
    assert alice.device is not None
    with pytest.raises(Conflict):
        await server.client(alice.device).request_link("alice")


# --- revocation ------------------------------------------------------------------------------


async def test_revoke_own_device(server: Harness) -> None:
    alice = await server.user("alice")
    laptop = await server.linked(alice)
    assert laptop.device is not None
    mallory = await server.user("mallory")
    with pytest.raises(Forbidden):
        await mallory.revoke_device(laptop.device.device_id)

    await alice.revoke_device(laptop.device.device_id)
    with pytest.raises(Unauthorized) as refused:  # its token is gone, it cannot log in again
        await laptop.fetch()
    assert refused.value.code == "device_revoked"  # and it is told why (it proved its key)
    # Without its key, nobody learns it: a wrong signature is the usual auth_failed.
    nonce = await _challenge(server)
    dev = laptop.device.device_id
    wrong = mallory.device.sign(protocol.auth_content(server.ctx.server_id, nonce, dev))  # type: ignore[union-attr]
    assert await _token(server, dev, nonce, wrong) == 401
    revoked = {d.device_id: d.revoked_at is not None for d in await alice.list_devices("alice")}
    assert revoked == {alice.device.device_id: False, laptop.device.device_id: True}  # type: ignore[union-attr]
    with pytest.raises(NotFound):
        await alice.revoke_device(laptop.device.device_id)


# --- client-side check of the approval chain (I3) -------------------------------------------


async def test_client_detects_a_device_nobody_approved(server: Harness) -> None:
    alice = await server.user("alice")
    await server.linked(alice)
    listed = await alice.list_devices("alice")
    sid = server.ctx.server_id
    check_device_approvals(sid, "alice", listed)
    root = next(d for d in listed if d.approved_by is None)
    second = next(d for d in listed if d.approved_by is not None)

    ghost = DeviceIdentity.generate()
    # A device the server slipped in, reusing the approval signature of a real one.
    forged = replace(second, device_id=ghost.device_id, device_key=ghost.public_key)
    with pytest.raises(InvalidSignature):
        check_device_approvals(sid, "alice", [root, forged])
    with pytest.raises(ValidationError):  # two "first" devices
        check_device_approvals(sid, "alice", [root, replace(second, approved_by=None)])
    with pytest.raises(ValidationError):  # approver not on the account
        check_device_approvals(sid, "alice", [root, replace(second, approved_by="0" * 32)])
    with pytest.raises(ValidationError):  # approver revoked before the approval
        revoked_root = replace(root, revoked_at=second.created_at - 1)
        check_device_approvals(sid, "alice", [revoked_root, second])
    with pytest.raises(InvalidSignature):  # signatures bind the account name
        check_device_approvals(sid, "bob", listed)
