"""The KeyPackage directory: upload, count, claim consumes, last resort stays."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest

from doorless.client.errors import Conflict, InvalidRequest, NotFound, PayloadTooLarge
from doorless.codec import encode
from doorless.crypto import HYBRID_SUITE, cipher_suite
from doorless.mls.credential import BasicCredential
from doorless.mls.framing import MLSMessage
from doorless.mls.key_packages import generate_key_package
from doorless.secret import PrivateKeyBytes
from doorless.server.fanout.base import Topic
from doorless.wire import protocol

from .helpers import FakeClock, Harness, key_package, make_config, private_message, running, welcome

pytestmark = pytest.mark.asyncio


async def test_claim_consumes_and_last_resort_stays(server: Harness) -> None:
    alice = await server.user("alice")
    bob = await server.user("bob")
    assert alice.device is not None
    status = await alice.upload_key_packages([key_package(1), key_package(2)], key_package(3))
    assert (status.count, status.last_resort) == (2, True)

    first = await bob.claim_key_package(alice.device.device_id)
    second = await bob.claim_key_package(alice.device.device_id)
    assert (first.key_package, first.last_resort) == (key_package(1), False)
    assert (second.key_package, second.last_resort) == (key_package(2), False)
    assert (await alice.key_package_status()).count == 0
    for _ in range(2):  # the last-resort package is handed out and kept
        last = await bob.claim_key_package(alice.device.device_id)
        assert (last.key_package, last.last_resort) == (key_package(3), True)
    assert (await alice.key_package_status()).last_resort


async def test_no_key_package_at_all(server: Harness) -> None:
    alice = await server.user("alice")
    bob = await server.user("bob")
    assert alice.device is not None
    with pytest.raises(NotFound):
        await bob.claim_key_package(alice.device.device_id)
    with pytest.raises(NotFound):
        await bob.claim_key_package("0" * 32)


async def test_last_resort_is_replaced(server: Harness) -> None:
    alice = await server.user("alice")
    bob = await server.user("bob")
    assert alice.device is not None
    await alice.upload_key_packages([], key_package(1))
    await alice.upload_key_packages([], key_package(2))
    claimed = await bob.claim_key_package(alice.device.device_id)
    assert claimed.key_package == key_package(2)


async def test_claim_for_every_device_of_a_user(server: Harness) -> None:
    alice = await server.user("alice")
    laptop = await server.linked(alice)
    bob = await server.user("bob")
    await alice.upload_key_packages([key_package(1)])
    result = await bob.claim_key_packages("alice")
    assert [k.device_id for k in result.key_packages] == [alice.device.device_id]  # type: ignore[union-attr]
    assert result.missing == [laptop.device.device_id]  # type: ignore[union-attr]
    # A device claiming for its own account skips itself.
    own = await laptop.claim_key_packages("alice")
    assert own.key_packages == [] and own.missing == [alice.device.device_id]  # type: ignore[union-attr]
    with pytest.raises(NotFound):
        await bob.claim_key_packages("nobody")


async def test_low_watermark_wakes_the_device(server: Harness) -> None:
    alice = await server.user("alice")
    bob = await server.user("bob")
    assert alice.device is not None
    n = server.config.key_package_low_watermark
    await alice.upload_key_packages([key_package(i) for i in range(n + 1)])
    subscription = await server.ctx.fanout.subscribe(alice.device.device_id)
    try:
        await bob.claim_key_package(alice.device.device_id)  # n left: not low yet
        assert await subscription.wait(0) == frozenset()
        await bob.claim_key_package(alice.device.device_id)  # n - 1 left
        assert await subscription.wait(0) == {Topic.keypackages}
        status = await alice.key_package_status()
        assert status.needs_top_up and status.count == n - 1
    finally:
        await subscription.close()


@pytest.mark.parametrize(
    "bad",
    [
        b"",
        b"\x00\x01garbage",
        welcome(0),  # a real MLSMessage, but not a KeyPackage
        private_message(b"g", 0),
        key_package(0) + b"\x00",  # trailing byte
    ],
    ids=["empty", "garbage", "welcome", "private-message", "trailing-byte"],
)
async def test_malformed_key_packages_change_nothing(server: Harness, bad: bytes) -> None:
    alice = await server.user("alice")
    before = server.db_dump()
    with pytest.raises(InvalidRequest) as e:
        await alice.upload_key_packages([key_package(1), bad])
    assert e.value.code == "malformed_message"
    with pytest.raises(InvalidRequest):
        await alice.upload_key_packages([], last_resort=bad)
    assert server.db_dump() == before


async def test_key_package_limits(data_dir: Path, clock: FakeClock) -> None:
    config = make_config(
        data_dir,
        max_key_packages_per_upload=3,
        max_key_packages_stored=4,
        max_key_package_size=400,
    )
    async with running(config, clock) as server:
        alice = await server.user("alice")
        with pytest.raises(PayloadTooLarge):
            await alice.upload_key_packages([key_package(i) for i in range(4)])
        await alice.upload_key_packages([key_package(i) for i in range(3)])
        before = server.db_dump()
        with pytest.raises(Conflict) as e:
            await alice.upload_key_packages([key_package(i) for i in range(3, 5)])
        assert e.value.code == "too_many_key_packages"
        big = next(key_package(i) for i in range(300) if len(key_package(i)) > 400)
        with pytest.raises(PayloadTooLarge):
            await alice.upload_key_packages([big])
        assert server.db_dump() == before


async def test_upload_response_matches_schema(server: Harness) -> None:
    alice = await server.user("alice")
    async with server.http() as http:
        r = await http.post(
            "/v1/keypackages",
            headers={"Authorization": f"Bearer {alice._token}"},
            json={"key_packages": [protocol.b64encode(key_package(5))]},
        )
    assert r.status_code == 200
    assert r.json() == {
        "count": 1,
        "last_resort": False,
        "low_watermark": server.config.key_package_low_watermark,
    }


@cache
def hybrid_key_package(i: int) -> bytes:
    """A well-formed MLSMessage(mls_key_package) of the post-quantum hybrid suite."""
    suite = cipher_suite(HYBRID_SUITE)
    bundle = generate_key_package(
        suite,
        BasicCredential(b"pq %d" % i),
        PrivateKeyBytes(suite.generate_signature_key_pair().private_key),
        now=1_700_000_000,
    )
    return encode(MLSMessage(bundle.key_package))


async def test_key_packages_are_kept_and_claimed_per_suite(server: Harness) -> None:
    alice = await server.user("alice")
    laptop = await server.linked(alice)
    bob = await server.user("bob")
    assert alice.device is not None and laptop.device is not None
    hybrid = int(HYBRID_SUITE)
    status = await alice.upload_key_packages([hybrid_key_package(1)], hybrid_key_package(2))
    assert (status.count, status.last_resort) == (1, True)
    status = await alice.upload_key_packages([key_package(1), key_package(2)], key_package(3))
    assert (status.count, status.last_resort) == (2, True)  # the classic suite's count
    await laptop.upload_key_packages([key_package(4)])
    assert (await alice.key_package_status(hybrid)).count == 1
    assert (await alice.key_package_status(1)).count == 2
    assert (await alice.key_package_status()).count == 2  # no suite named: RFC 9420 ones

    # A claim without a suite (an older client) never gets a post-quantum package.
    first = await bob.claim_key_package(alice.device.device_id)
    assert first.key_package == key_package(1)
    got = await bob.claim_key_package(alice.device.device_id, hybrid)
    assert (got.key_package, got.last_resort) == (hybrid_key_package(1), False)
    got = await bob.claim_key_package(alice.device.device_id, hybrid)  # the last resort
    assert (got.key_package, got.last_resort) == (hybrid_key_package(2), True)
    # Per user: the laptop has no hybrid package, so it is missing in that suite only.
    result = await bob.claim_key_packages("alice", hybrid)
    assert [k.key_package for k in result.key_packages] == [hybrid_key_package(2)]
    assert result.missing == [laptop.device.device_id]
    result = await bob.claim_key_packages("alice", 1)
    assert sorted(k.key_package for k in result.key_packages) == sorted(
        [key_package(2), key_package(4)]
    )
    with pytest.raises(NotFound):
        await bob.claim_key_package(laptop.device.device_id, int(HYBRID_SUITE))


async def test_an_upload_mixing_suites_changes_nothing(server: Harness) -> None:
    alice = await server.user("alice")
    before = server.db_dump()
    with pytest.raises(InvalidRequest, match="one cipher suite"):
        await alice.upload_key_packages([key_package(1), hybrid_key_package(1)])
    with pytest.raises(InvalidRequest, match="one cipher suite"):
        await alice.upload_key_packages([key_package(1)], last_resort=hybrid_key_package(1))
    assert server.db_dump() == before
