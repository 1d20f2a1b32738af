"""The delivery service: queues, ordering, acks, one commit per epoch, idempotency."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import httpx
import pytest

from doorless.client.errors import Conflict, EpochConflict, InvalidRequest, NotFound
from doorless.client.transport import Transport
from doorless.mls.framing import ContentType
from doorless.server.fanout.base import Topic

from .helpers import (
    FakeClock,
    Harness,
    commit,
    group_info,
    key_package,
    make_config,
    private_message,
    public_commit,
    running,
    welcome,
)

pytestmark = pytest.mark.asyncio

GROUP = b"group-one"


def device_id(t: Transport) -> str:
    assert t.device is not None
    return t.device.device_id


async def test_send_fetch_ack(server: Harness) -> None:
    alice = await server.user("alice")
    bob = await server.user("bob")
    messages = [private_message(GROUP, 0, ciphertext=bytes([i]) * 20) for i in range(3)]
    for m in messages:
        result = await alice.send(m, [device_id(bob)])
        assert (result.group_epoch, result.duplicate) == (0, False)

    page = await bob.fetch()
    assert [m.data for m in page.messages] == messages
    seqs = [m.seq for m in page.messages]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3
    assert not page.more
    assert (await bob.fetch(after=seqs[0])).messages == page.messages[1:]
    assert (await alice.fetch()).messages == []  # nothing for the sender

    assert await bob.ack(seqs[:2]) == 2
    assert await bob.ack(seqs[:2]) == 0  # already gone
    assert [m.data for m in (await bob.fetch()).messages] == messages[2:]


async def test_ack_deletes_the_ciphertext(server: Harness) -> None:
    alice = await server.user("alice")
    bob = await server.user("bob")
    carol = await server.user("carol")
    marker = os.urandom(24)
    await alice.send(
        private_message(GROUP, 0, ciphertext=marker), [device_id(bob), device_id(carol)]
    )
    dump = "\n".join(server.db_dump())
    assert marker.hex() in dump.lower()
    await bob.ack([m.seq for m in (await bob.fetch()).messages])
    assert marker.hex() in "\n".join(server.db_dump()).lower()  # carol has not acked yet
    await carol.ack([m.seq for m in (await carol.fetch()).messages])
    assert marker.hex() not in "\n".join(server.db_dump()).lower()


async def test_a_device_cannot_ack_another_devices_messages(server: Harness) -> None:
    alice = await server.user("alice")
    bob = await server.user("bob")
    await alice.send(private_message(GROUP, 0), [device_id(bob)])
    seq = (await bob.fetch()).messages[0].seq
    assert await alice.ack([seq]) == 0
    assert len((await bob.fetch()).messages) == 1


async def test_paging(server: Harness) -> None:
    alice = await server.user("alice")
    bob = await server.user("bob")
    for i in range(5):
        await alice.send(private_message(GROUP, 0, ciphertext=bytes([i])), [device_id(bob)])
    page = await bob.fetch(limit=2)
    assert len(page.messages) == 2 and page.more
    rest = await bob.fetch(after=page.messages[-1].seq, limit=10)
    assert len(rest.messages) == 3 and not rest.more


async def test_sequence_numbers_are_never_reused(server: Harness) -> None:
    alice = await server.user("alice")
    bob = await server.user("bob")
    await alice.send(private_message(GROUP, 0), [device_id(bob)])
    first = (await bob.fetch()).messages[0].seq
    await bob.ack([first])
    await alice.send(private_message(GROUP, 0), [device_id(bob)])
    assert (await bob.fetch()).messages[0].seq > first


# --- one commit per epoch --------------------------------------------------------------------


async def test_two_commits_for_one_epoch_one_wins(server: Harness) -> None:
    alice = await server.user("alice")
    bob = await server.user("bob")
    await alice.send(commit(GROUP, 0), [device_id(bob)])  # the server learns the group: epoch 1

    a_commit, b_commit = commit(GROUP, 1, b"a" * 32), commit(GROUP, 1, b"b" * 32)
    results = await asyncio.gather(
        alice.send(a_commit, [device_id(bob)]),
        bob.send(b_commit, [device_id(alice)]),
        return_exceptions=True,
    )
    wins = [r for r in results if not isinstance(r, BaseException)]
    losses = [r for r in results if isinstance(r, BaseException)]
    assert len(wins) == 1 and len(losses) == 1
    assert wins[0].group_epoch == 2
    loss = losses[0]
    assert isinstance(loss, EpochConflict)
    assert loss.status == 409 and loss.code == "epoch_conflict" and loss.current_epoch == 2
    # Only the winner was enqueued.
    queued = [m.data for m in (await alice.fetch()).messages + (await bob.fetch()).messages]
    assert queued.count(a_commit) + queued.count(b_commit) == 1

    # The loser processes the winner and retries on the new epoch.
    retry = await bob.send(commit(GROUP, 2, b"c" * 32), [device_id(alice)])
    assert retry.group_epoch == 3
    assert await bob.group_epoch(GROUP) == 3


async def test_commit_over_http_status_codes(server: Harness) -> None:
    alice = await server.user("alice")
    bob = await server.user("bob")
    await alice.send(commit(GROUP, 5), [device_id(bob)])
    async with server.http() as http:
        from doorless.wire import protocol

        statuses = []
        for i in range(2):
            r = await http.post(
                "/v1/messages",
                headers={"Authorization": f"Bearer {alice._token}"},
                json={
                    "message_id": f"commit-{i}-xyz",
                    "data": protocol.b64encode(commit(GROUP, 6, bytes([i]) * 8)),
                    "recipients": [device_id(bob)],
                },
            )
            statuses.append(r.status_code)
        assert statuses == [201, 409]
        assert r.json() == {
            "error": "epoch_conflict",
            "message": "commit is for epoch 6, the group is at epoch 7",
            "current_epoch": 7,
        }


async def test_messages_must_be_for_the_current_epoch(server: Harness) -> None:
    alice = await server.user("alice")
    bob = await server.user("bob")
    await alice.send(commit(GROUP, 0), [device_id(bob)])
    before = server.db_dump()
    for epoch in (0, 2):
        for content_type in (ContentType.application, ContentType.proposal, ContentType.commit):
            with pytest.raises(EpochConflict) as e:
                await alice.send(private_message(GROUP, epoch, content_type), [device_id(bob)])
            assert e.value.current_epoch == 1
    assert server.db_dump() == before
    await alice.send(private_message(GROUP, 1), [device_id(bob)])


async def test_public_message_commit_is_gated_too(server: Harness) -> None:
    alice = await server.user("alice")
    bob = await server.user("bob")
    data = public_commit(0)
    assert (await alice.send(data, [device_id(bob)])).group_epoch is not None
    with pytest.raises(EpochConflict):
        await bob.send(data, [device_id(alice)])


async def test_groups_are_independent(server: Harness) -> None:
    alice = await server.user("alice")
    bob = await server.user("bob")
    await alice.send(commit(b"g1", 0), [device_id(bob)])
    await alice.send(commit(b"g2", 0), [device_id(bob)])
    assert await alice.group_epoch(b"g1") == 1
    assert await alice.group_epoch(b"g2") == 1
    assert await alice.group_epoch(b"g3") is None


async def test_commit_to_an_empty_group_still_takes_the_epoch(server: Harness) -> None:
    alice = await server.user("alice")
    await alice.send(commit(GROUP, 0), [])
    assert await alice.group_epoch(GROUP) == 1
    with pytest.raises(EpochConflict):
        await alice.send(commit(GROUP, 0), [])


# --- welcome ---------------------------------------------------------------------------------


async def test_welcome_is_delivered_with_its_commit_only(server: Harness) -> None:
    alice = await server.user("alice")
    bob = await server.user("bob")
    carol = await server.user("carol")
    await alice.send(commit(GROUP, 0), [device_id(bob)])
    result = await alice.send(
        commit(GROUP, 1),
        [device_id(bob)],
        welcome=welcome(0),
        welcome_recipients=[device_id(carol)],
    )
    assert result.group_epoch == 2
    assert [m.data for m in (await carol.fetch()).messages] == [welcome(0)]

    # A losing commit's Welcome is not delivered (the new member would join a dead branch).
    dave = await server.user("dave")
    with pytest.raises(EpochConflict):
        await bob.send(
            commit(GROUP, 1),
            [device_id(alice)],
            welcome=welcome(1),
            welcome_recipients=[device_id(dave)],
        )
    assert (await dave.fetch()).messages == []


async def test_welcome_only_with_a_commit(server: Harness) -> None:
    alice = await server.user("alice")
    bob = await server.user("bob")
    with pytest.raises(InvalidRequest):
        await alice.send(
            private_message(GROUP, 0),
            [device_id(bob)],
            welcome=welcome(0),
            welcome_recipients=[device_id(bob)],
        )
    with pytest.raises(InvalidRequest):  # welcome.data must be a Welcome
        await alice.send(
            commit(GROUP, 0),
            [device_id(bob)],
            welcome=commit(GROUP, 0),
            welcome_recipients=[device_id(bob)],
        )


async def test_standalone_welcome_and_group_info(server: Harness) -> None:
    alice = await server.user("alice")
    bob = await server.user("bob")
    assert (await alice.send(welcome(0), [device_id(bob)])).group_epoch is None
    assert (await alice.send(group_info(0), [device_id(bob)])).group_epoch is None
    assert [m.data for m in (await bob.fetch()).messages] == [welcome(0), group_info(0)]


async def test_key_packages_are_not_messages(server: Harness) -> None:
    alice = await server.user("alice")
    bob = await server.user("bob")
    with pytest.raises(InvalidRequest) as e:
        await alice.send(key_package(0), [device_id(bob)])
    assert e.value.code == "malformed_message"


# --- recipients, idempotency -----------------------------------------------------------------


async def test_unknown_recipient_changes_nothing(server: Harness) -> None:
    alice = await server.user("alice")
    bob = await server.user("bob")
    before = server.db_dump()
    with pytest.raises(InvalidRequest) as e:
        await alice.send(commit(GROUP, 0), [device_id(bob), "f" * 32])
    assert e.value.code == "unknown_recipient"
    assert e.value.unknown_devices == ["f" * 32]
    assert server.db_dump() == before
    assert await alice.group_epoch(GROUP) is None  # the epoch did not move either


async def test_revoked_device_is_not_a_recipient(server: Harness) -> None:
    alice = await server.user("alice")
    laptop = await server.linked(alice)
    await alice.send(private_message(GROUP, 0), [device_id(laptop)])
    await alice.revoke_device(device_id(laptop))
    with pytest.raises(InvalidRequest):
        await alice.send(private_message(GROUP, 0), [device_id(laptop)])
    # Its queue went with it.
    assert await server.ctx.storage.fetch(device_id(laptop), 0, 10) == []


async def test_duplicate_recipients_are_refused(server: Harness) -> None:
    alice = await server.user("alice")
    bob = await server.user("bob")
    with pytest.raises(InvalidRequest):
        await alice.send(private_message(GROUP, 0), [device_id(bob), device_id(bob)])


async def test_retried_send_is_enqueued_once(server: Harness) -> None:
    alice = await server.user("alice")
    bob = await server.user("bob")
    data = commit(GROUP, 0)
    first = await alice.send(data, [device_id(bob)], message_id="retry-me-1")
    again = await alice.send(data, [device_id(bob)], message_id="retry-me-1")
    assert not first.duplicate and again.duplicate
    assert again.group_epoch == first.group_epoch == 1  # no epoch conflict with itself
    assert len((await bob.fetch()).messages) == 1
    with pytest.raises(Conflict) as e:
        await alice.send(commit(GROUP, 1), [device_id(bob)], message_id="retry-me-1")
    assert e.value.code == "idempotency_conflict"
    # Message ids are per sending device.
    await bob.send(private_message(GROUP, 1), [device_id(alice)], message_id="retry-me-1")


async def test_idempotency_records_expire(server: Harness) -> None:
    from doorless.server.app import sweep

    alice = await server.user("alice")
    bob = await server.user("bob")
    await alice.send(private_message(GROUP, 0), [device_id(bob)], message_id="old-message")
    server.clock.advance(server.config.idempotency_ttl + 1)
    await sweep(server.ctx)
    again = await alice.send(private_message(GROUP, 0), [device_id(bob)], message_id="old-message")
    assert not again.duplicate


async def test_send_wakes_the_recipients(server: Harness) -> None:
    alice = await server.user("alice")
    bob = await server.user("bob")
    subscription = await server.ctx.fanout.subscribe(device_id(bob))
    try:
        await alice.send(private_message(GROUP, 0), [device_id(bob)])
        assert await subscription.wait(1) == {Topic.queue}
    finally:
        await subscription.close()


# --- durability ------------------------------------------------------------------------------


async def test_queue_survives_a_restart(data_dir: Path, clock: FakeClock) -> None:
    config = make_config(data_dir)
    async with running(config, clock) as server:
        alice = await server.user("alice")
        bob = await server.user("bob")
        assert bob.device is not None
        await alice.send(commit(GROUP, 0), [device_id(bob)])
        await alice.send(private_message(GROUP, 1), [device_id(bob)])
        server_id = server.ctx.server_id
    async with running(config, clock) as server:
        assert server.ctx.server_id == server_id
        bob2 = server.client(bob.device)
        page = await bob2.fetch()
        assert [m.data for m in page.messages] == [commit(GROUP, 0), private_message(GROUP, 1)]
        assert await bob2.group_epoch(GROUP) == 1
        with pytest.raises(EpochConflict):
            await bob2.send(commit(GROUP, 0), [device_id(alice)])


async def test_group_epoch_of_unknown_group_is_404_over_http(server: Harness) -> None:
    alice = await server.user("alice")
    async with server.http() as http:
        r = await http.get(
            "/v1/groups/abcd/epoch", headers={"Authorization": f"Bearer {alice._token}"}
        )
        assert r.status_code == 404
        r = await http.get(
            "/v1/groups/xyz/epoch", headers={"Authorization": f"Bearer {alice._token}"}
        )
        assert r.status_code == 422
    with pytest.raises(NotFound):
        await alice.claim_key_package("0" * 32)


class _LoseFirstResponse(httpx.AsyncBaseTransport):
    """The request reaches the server, but its answer is lost on the way back (once)."""

    def __init__(self, app: object) -> None:
        self._inner = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        self.lost = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        if request.url.path == "/v1/messages" and request.method == "POST" and not self.lost:
            self.lost += 1
            await response.aclose()
            raise httpx.ReadError("connection reset", request=request)
        return response


async def test_a_send_whose_answer_was_lost_is_retried_once(server: Harness) -> None:
    alice = await server.user("alice")
    bob = await server.user("bob")
    assert alice.device is not None
    flaky = _LoseFirstResponse(server.app)
    alice2 = Transport(
        "http://testserver", alice.device, http_transport=flaky, retries=2, backoff=0
    )
    try:
        result = await alice2.send(commit(GROUP, 0), [device_id(bob)])
        assert flaky.lost == 1
        # The retry found the first attempt committed: no second copy, no epoch conflict.
        assert result.duplicate and result.group_epoch == 1
        assert [m.data for m in (await bob.fetch()).messages] == [commit(GROUP, 0)]
    finally:
        await alice2.aclose()
