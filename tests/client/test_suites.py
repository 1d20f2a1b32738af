"""Post-quantum by default (doorless.client.suites): every device publishes KeyPackages for the
hybrid X-Wing suite and the classic one; a new conversation is post-quantum when every member
device can be, else classic; a conversation keeps its suite."""

from __future__ import annotations

from pathlib import Path

import pytest

from doorless.client import UserUnavailable
from doorless.crypto import CLASSIC_SUITE, HYBRID_SUITE

from .harness import network

pytestmark = pytest.mark.asyncio

HYBRID = "MLS_128_MLKEM768X25519_AES128GCM_SHA256_Ed25519"
CLASSIC = "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519"


async def test_a_device_publishes_both_suites(tmp_path: Path) -> None:
    async with network(tmp_path) as net:
        alice = await net.user("alice")
        for suite in (HYBRID_SUITE, CLASSIC_SUITE):
            status = await alice._transport.key_package_status(int(suite))
            assert (status.count, status.last_resort) == (12, True)
        # A client that names no suite (one from before) sees the classic ones only.
        status = await alice._transport.key_package_status()
        assert (status.count, status.last_resort) == (12, True)


async def test_three_users_with_defaults_get_a_post_quantum_conversation(tmp_path: Path) -> None:
    async with network(tmp_path) as net:
        alice, bob, carol = [await net.user(u) for u in ("alice", "bob", "carol")]
        team = await alice.create_group("team", ["bob", "carol"])
        assert (team.cipher_suite, team.post_quantum) == (HYBRID, True)
        await net.sync_all()
        await alice.send_text(team.id, "harvest this")
        await net.sync_all()
        for c in (bob, carol):
            (seen,) = [v for v in await c.conversations() if v.id == team.id]
            assert (seen.cipher_suite, seen.post_quantum) == (HYBRID, True)
            assert [m.text for m in await c.history(team.id)] == ["harvest this"]
        # Each member used one hybrid KeyPackage, none of the classic ones.
        for c in (bob, carol):
            assert (await c._transport.key_package_status(int(HYBRID_SUITE))).count == 11
            assert (await c._transport.key_package_status(int(CLASSIC_SUITE))).count == 12


async def test_a_member_without_pq_key_packages_makes_it_classic(tmp_path: Path) -> None:
    async with network(tmp_path) as net:
        alice, bob = await net.user("alice"), await net.user("bob")
        old = await net.user("olga", post_quantum=False)  # publishes classic packages only
        mixed = await alice.create_group("mixed", ["bob", "olga"])
        assert (mixed.cipher_suite, mixed.post_quantum) == (CLASSIC, False)
        await net.sync_all()
        await old.send_text(mixed.id, "from the old client")
        await net.sync_all()
        assert [m.text for m in await bob.history(mixed.id)] == ["from the old client"]
        # Without olga the same two users get a post-quantum one.
        pair = await alice.start_direct("bob")
        assert pair.cipher_suite == HYBRID
        # The old client creates classic conversations; a new member is claimed in that suite.
        made = await old.create_group("old", ["alice"])
        assert made.cipher_suite == CLASSIC
        await net.sync_all()
        made = await old.add_members(made.id, ["bob"])
        assert made.cipher_suite == CLASSIC and set(made.members) == {"olga", "alice", "bob"}


async def test_a_post_quantum_conversation_cannot_add_a_classic_only_user(
    tmp_path: Path,
) -> None:
    async with network(tmp_path) as net:
        alice = await net.user("alice")
        await net.user("bob")
        await net.user("olga", post_quantum=False)
        team = await alice.create_group("team", ["bob"])
        assert team.post_quantum
        with pytest.raises(UserUnavailable):
            await alice.add_members(team.id, ["olga"])
        assert set((await alice.conversation(team.id)).members) == {"alice", "bob"}
