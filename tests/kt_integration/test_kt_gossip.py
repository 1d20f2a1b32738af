"""Checkpoint gossip (`KtVerifier.check_gossip`, rule 5): a contact's verified log head against
this device's, over an honest server and a forked copy served to chosen clients."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from doorless.client.kt import GossipResult, KtFork, KtVerifier
from doorless.client.transport import DeviceIdentity, Transport
from doorless.kt.checkpoint import Checkpoint, sign_checkpoint
from doorless.wire.kt import KtHead, KtInfo, KtSearch

from .helpers import BASE_URL, forked, network

pytestmark = pytest.mark.asyncio


async def test_heads_of_one_log_are_consistent(tmp_path: Path) -> None:
    async with network(tmp_path) as net:
        alice = await net.user("alice")
        bob = await net.user("bob")
        assert alice.kt is not None and bob.kt is not None
        small = await alice.kt.refresh()
        await net.link(alice, "alice-phone")
        large = await bob.kt.refresh()
        assert large.size > small.size
        # Different sizes both ways (consistency proofs from the server), then the same size.
        assert await bob.kt.check_gossip(small.checkpoint) is GossipResult.CONSISTENT
        assert await alice.kt.check_gossip(large.checkpoint) is GossipResult.CONSISTENT
        await alice.kt.refresh()
        assert await alice.kt.check_gossip(large.checkpoint) is GossipResult.CONSISTENT


async def test_split_view_is_a_fork_for_both_sides(tmp_path: Path) -> None:
    async with network(tmp_path) as net:
        alice = await net.user("alice")
        await net.user("bob")
        assert alice.kt is not None
        behind = await alice.kt.refresh()  # alice stays at the common prefix for a while
        async with forked(net) as fork:
            # Each view gets its own new entry: carol exists only in the fork.
            async with Transport(
                BASE_URL,
                DeviceIdentity.generate(),
                http_transport=httpx.ASGITransport(app=fork.app),
                retries=0,
            ) as carol:
                await carol.register("carol")
            eve = net.transport("eve")
            eve.kt = net.verifier(eve, "eve", quorum=0)
            net.front.victims.add("eve")
            forked_head = await eve.kt.refresh()
            assert forked_head.size == behind.size + 1
            # Alice, behind: the server (honest for her) cannot extend eve's head.
            with pytest.raises(KtFork):
                await alice.kt.check_gossip(forked_head.checkpoint)
            await net.link(alice, "alice-phone")  # the honest log grows to the same size
            honest = await alice.kt.refresh()
            assert honest.size == forked_head.size
            with pytest.raises(KtFork, match="split view"):
                await alice.kt.check_gossip(forked_head.checkpoint)
            # Eve, served the fork, is told by alice's head.
            with pytest.raises(KtFork):
                await eve.kt.check_gossip(honest.checkpoint)
            # A head of the common prefix is consistent with both views.
            assert await eve.kt.check_gossip(behind.checkpoint) is GossipResult.CONSISTENT
            assert net.heads["eve"] == forked_head  # nothing was persisted by the checks


async def test_what_the_log_did_not_sign_proves_nothing(tmp_path: Path) -> None:
    async with network(tmp_path) as net:
        alice = await net.user("alice")
        assert alice.kt is not None
        head = await alice.kt.refresh()
        for junk in (b"", b"not a note", head.checkpoint.replace(b"\n\n", b"\nx\n\n", 1)):
            assert await alice.kt.check_gossip(junk) is GossipResult.UNVERIFIABLE
        # A checkpoint naming the same log, signed by another key (a contact's forgery).
        origin = head.checkpoint.split(b"\n", 1)[0].decode()
        other = sign_checkpoint(Checkpoint(origin, 99, bytes(32)), origin, bytes(32)).encode()
        assert await alice.kt.check_gossip(other) is GossipResult.UNVERIFIABLE


async def test_a_server_that_cannot_prove_consistency_is_a_fork(tmp_path: Path) -> None:
    """The server answers with a wrong consistency proof: the check fails as a fork."""
    async with network(tmp_path) as net:
        alice = await net.user("alice")
        bob = await net.user("bob")
        assert alice.kt is not None and bob.kt is not None
        small = await alice.kt.refresh()
        await net.link(alice, "alice-phone")
        await net.link(alice, "alice-laptop")

        class BadProofs:
            def __init__(self, inner: Transport) -> None:
                self.inner = inner

            async def kt_info(self) -> KtInfo:
                return await self.inner.kt_info()

            async def kt_head(self, since: int) -> KtHead:
                head = await self.inner.kt_head(since)
                return KtHead(
                    head.checkpoint,
                    head.since,
                    tuple(bytes(32) for _ in head.consistency),
                    head.last_entry,
                    head.last_entry_proof,
                )

            async def kt_search(self, label: bytes, since: int, from_version: int) -> KtSearch:
                return await self.inner.kt_search(label, since, from_version)

        honest = await bob.kt.refresh()
        checker = KtVerifier(BadProofs(bob), net.verifier(bob, "x", quorum=0).config)
        checker.trusted = honest
        assert await bob.kt.check_gossip(small.checkpoint) is GossipResult.CONSISTENT
        with pytest.raises(KtFork):
            await checker.check_gossip(small.checkpoint)
