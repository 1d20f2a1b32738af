"""A server that misbehaves on purpose, seen by honest devices (transport + `KtVerifier`).

Scenario numbers are the issue's: (1) ghost device in the directory, (2) ghost member brought
in by a commit or Welcome, (3) a key swapped in the directory, (4) split view, (5) rolled-back
head, (6) a device-list version removed from the log. (7), the witness refusing, is in
``test_witness.py``. The same scenarios through the `Client` are in ``test_kt_client.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from doorless.client.kt import (
    DirectoryDevice,
    KeyNotInTransparencyLog,
    KtFork,
    KtRollback,
    KtUnavailable,
    KtVerifier,
    KtViolation,
)
from doorless.client.transport import DeviceIdentity, DeviceInfo, Transport
from doorless.codec import decode
from doorless.kt.commitment import search_key
from doorless.kt.ladder import BinaryLadderStep, SearchResponse
from doorless.mls.framing import MLSMessage
from doorless.mls.key_package import KeyPackage
from doorless.server.config import ServerConfig
from doorless.wire.kt import KtHead, KtInfo, KtSearch, user_label
from doorless.witness import WitnessRefused

from .helpers import BASE_URL, add_ghost_device, forked, key_package, network, sql

pytestmark = pytest.mark.asyncio


def _leaf(kp: bytes) -> KeyPackage:
    body = decode(MLSMessage, kp).body
    assert isinstance(body, KeyPackage)
    return body


def _directory(devices: list[DeviceInfo]) -> list[DirectoryDevice]:
    return [DirectoryDevice(d.device_id, d.device_key, d.revoked_at) for d in devices]


# --- (1) a ghost device in the directory ------------------------------------------------------


async def test_1_ghost_device_in_directory(tmp_path: Path) -> None:
    async with network(tmp_path) as net:
        alice = await net.user("alice")
        bob = await net.user("bob")
        assert alice.kt is not None and bob.kt is not None
        ghost = await add_ghost_device(net.server, "alice", now=int(net.clock()))
        ghost_t = net.transport("ghost", ghost)
        await ghost_t.authenticate()  # the server lets its own device in
        await ghost_t.upload_key_packages([key_package("alice", ghost, int(net.clock()))])

        # Bob claims Alice's devices: the ghost's KeyPackage is refused.
        claimed = await bob.claim_key_packages("alice")
        ghost_kp = next(k for k in claimed.key_packages if k.device_id == ghost.device_id)
        with pytest.raises(KeyNotInTransparencyLog) as refused:
            await bob.kt.check_leaf(_leaf(ghost_kp.key_package).leaf_node)
        assert refused.value.username == "alice"
        assert refused.value.device_id == ghost.device_id

        # Alice's own monitor raises the alarm.
        directory = _directory(await alice.list_devices("alice", verify=False))
        assert alice.device is not None
        alarms = await alice.kt.monitor_own("alice", alice.device.device_id, directory)
        assert [a.device_id for a in alarms] == [ghost.device_id]
        assert "ghost" in alarms[0].reason


# --- (2) a ghost member in a Welcome or a commit ----------------------------------------------


async def test_2_ghost_member_leaf_is_refused(tmp_path: Path) -> None:
    """Every leaf a Welcome tree, an Add or a commit path brings must be in KT: a leaf signed
    by a key the log does not have for that (user, device) is refused, whoever committed."""
    async with network(tmp_path) as net:
        alice = await net.user("alice")
        bob = await net.user("bob")
        assert alice.device is not None and bob.kt is not None
        ghost = await add_ghost_device(net.server, "alice", now=int(net.clock()))
        leaf = _leaf(key_package("alice", ghost)).leaf_node
        with pytest.raises(KeyNotInTransparencyLog):
            await bob.kt.check_leaf(leaf)
        # Alice's real device passes; the same credential with the ghost's key does not.
        real = _leaf(key_package("alice", alice.device)).leaf_node
        await bob.kt.check_leaf(real)
        swapped = replace(real, signature_key=ghost.public_key)
        with pytest.raises(KeyNotInTransparencyLog):
            await bob.kt.check_leaf(swapped)
        # A user with no device list at all (registered around KT) is refused too.
        with pytest.raises(KeyNotInTransparencyLog):
            await bob.kt.check_leaf(_leaf(key_package("nobody", ghost)).leaf_node)


# --- (3) a key swapped in the directory --------------------------------------------------------


async def test_3_key_swapped_in_directory(tmp_path: Path) -> None:
    async with network(tmp_path) as net:
        alice = await net.user("alice")
        bob = await net.user("bob")
        assert alice.kt is not None and bob.kt is not None and bob.device is not None
        # The server replaces Bob's device by its own, self-approved "first device": the
        # directory's approval chain alone cannot tell (one root, valid signature).
        fake = await add_ghost_device(net.server, "bob", root=True, now=int(net.clock()))
        (row,) = sql(
            net.server.config, "SELECT * FROM devices WHERE device_id = ?", bob.device.device_id
        )
        sql(net.server.config, "DELETE FROM devices WHERE device_id = ?", bob.device.device_id)
        devices = await alice.list_devices("bob")  # the approval chain verifies...
        assert [d.device_id for d in devices] == [fake.device_id]
        fake_t = net.transport("fake-bob", fake)
        await fake_t.authenticate()
        await fake_t.upload_key_packages([key_package("bob", fake, int(net.clock()))])
        claimed = await alice.claim_key_packages("bob")
        (only,) = claimed.key_packages
        with pytest.raises(KeyNotInTransparencyLog):  # ...but the log does not have that key
            await alice.kt.check_leaf(_leaf(only.key_package).leaf_node)
        # Bob's monitor, over the directory the server showed Alice: a device he never
        # approved. (The server put Bob's row back so that Bob himself notices nothing.)
        marks = ", ".join("?" * len(row))
        sql(net.server.config, f"INSERT INTO devices VALUES ({marks})", *row)
        alarms = await bob.kt.monitor_own("bob", bob.device.device_id, _directory(devices))
        assert [a.device_id for a in alarms] == [fake.device_id]


# --- (4) split view ---------------------------------------------------------------------------


async def test_4_split_view_is_not_witnessed(tmp_path: Path) -> None:
    async with network(tmp_path) as net:
        alice = await net.user("alice")
        bob = await net.user("bob")
        assert alice.kt is not None and bob.kt is not None
        await bob.kt.device_list("alice")
        async with forked(net) as fork:
            # Each view gets its own new entry: carol exists only in the fork.
            await net.link(alice, "alice-phone")
            async with Transport(
                BASE_URL,
                DeviceIdentity.generate(),
                http_transport=httpx.ASGITransport(app=fork.app),
                retries=0,
            ) as carol:
                await carol.register("carol")
            net.front.victims.add("bob")
            # Bob, who requires the witness, is shown the fork: its head is not cosigned.
            with pytest.raises(KtUnavailable):
                await bob.kt.refresh()
            # An insecure client (quorum 0) that took the fork ...
            eve = net.transport("eve")
            eve.kt = net.verifier(eve, "eve", quorum=0)
            net.front.victims.add("eve")
            await eve.kt.refresh()
            assert eve.kt.trusted is not None
            forked_size = eve.kt.trusted.size
            # ... is caught as soon as it sees the honest log of the same size.
            net.front.victims.discard("eve")
            with pytest.raises(KtFork):
                await eve.kt.refresh()
            assert net.heads["eve"].size == forked_size  # nothing newer was persisted


# --- (5) rolled-back head ----------------------------------------------------------------------


async def test_5_rolled_back_head(tmp_path: Path) -> None:
    async with network(tmp_path) as net:
        alice = await net.user("alice")
        bob = await net.user("bob")
        assert bob.kt is not None and alice.kt is not None
        # A snapshot of the log now, then the log grows and Bob sees the new head.
        async with forked(net, name="old") as old:
            net.front.fork = None
            await net.link(alice, "alice-phone")
            assert (await bob.kt.device_list("alice")).version == 1
            # The server now answers Bob from the old snapshot.
            net.front.fork = old.app
            net.front.victims.add("bob")
            with pytest.raises(KtRollback):
                await bob.kt.refresh()
            with pytest.raises(KtRollback):
                await bob.kt.device_list("alice")
            assert bob.kt.trusted is not None and bob.kt.trusted.size == net.heads["bob"].size


# --- (6) a device-list version removed from the log ------------------------------------------


def drop_latest_version(label: bytes) -> Callable[[ServerConfig], None]:
    """Tamper: delete the label's latest version and rebuild the log without it."""

    def tamper(config: ServerConfig) -> None:
        ((version, index),) = sql(
            config,
            "SELECT version, log_index FROM kt_versions WHERE label = ? "
            "ORDER BY version DESC LIMIT 1",
            label,
        )
        sql(config, "DELETE FROM kt_versions WHERE label = ? AND version = ?", label, version)
        sql(config, "UPDATE kt_versions SET log_index = NULL WHERE log_index >= ?", index)
        sql(config, "DELETE FROM kt_log WHERE idx >= ?", index)
        sql(config, "DELETE FROM kt_cosignatures")

    return tamper


async def test_6_removed_version_is_detected(tmp_path: Path) -> None:
    async with network(tmp_path) as net:
        alice = await net.user("alice")
        await net.link(alice, "alice-phone")  # version 1: the phone
        bob = await net.user("bob")  # logged after it: the fork re-logs bob
        assert bob.kt is not None
        assert (await bob.kt.device_list("alice")).version == 1
        async with forked(net, drop_latest_version(user_label("alice"))):
            net.front.victims.update({"bob", "carol"})
            # Bob verified a head that had version 1: the rebuilt log is not an extension.
            with pytest.raises((KtFork, KtRollback)):
                await bob.kt.device_list("alice")
            # A device that never saw the log before requires the witness, who never
            # cosigned this history.
            carol = net.transport("carol")
            assert carol.kt is not None
            with pytest.raises(KtUnavailable):
                await carol.kt.refresh()
            # And the witness refuses to cosign it (7).
            net.front.victims.add("witness")
            with pytest.raises(WitnessRefused):
                await net.witness.step()


async def test_6_search_hiding_the_greatest_version_fails(tmp_path: Path) -> None:
    """The server claims an older version is Alice's greatest: the binary ladder exposes it."""
    async with network(tmp_path) as net:
        alice = await net.user("alice")
        await net.link(alice, "alice-phone")
        bob = await net.user("bob")
        label = user_label("alice")
        kt = net.server.ctx.kt
        stored = await net.server.ctx.storage.kt_versions(label, 0)

        class Lying:
            """A wrapper around the honest answers that hides version 1."""

            def __init__(self, inner: Transport) -> None:
                self.inner = inner

            async def kt_info(self) -> KtInfo:
                return await self.inner.kt_info()

            async def kt_head(self, since: int) -> KtHead:
                return await self.inner.kt_head(since)

            async def kt_search(self, label: bytes, since: int, from_version: int) -> KtSearch:
                honest = await self.inner.kt_search(label, since, from_version)
                tree = kt._tree.tree(kt.size - 1)
                keys = [search_key(label, 0), search_key(label, 1)]
                fake = SearchResponse(
                    0,
                    stored[0].opening,
                    stored[0].value,
                    (BinaryLadderStep(None), BinaryLadderStep(None)),
                    tree.prove(keys),
                )
                return KtSearch(honest.head, label, fake, None, ())

        verifier = KtVerifier(Lying(bob), net.verifier(bob, "x").config)
        with pytest.raises(KtViolation):
            await verifier.device_list("alice")
