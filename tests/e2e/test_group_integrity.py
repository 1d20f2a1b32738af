"""Issue #12, group integrity, against the real server process: nobody can stall a group with a
handshake the server lets through. A removed member, a never-member who knows the group id, a
current member with a commit that is well-formed but invalid (bad signature, an UpdatePath
that does not match, a proposal that breaks a rule, a GroupInfo that does not match) and the
replay of an old commit are each refused with a typed 4xx, and the honest members go on:
messages and commits keep working (`doorless.server.groups`)."""

from __future__ import annotations

import dataclasses
import secrets
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from doorless.client import Client
from doorless.client.core import MLS_CONFIG
from doorless.client.errors import ServerError
from doorless.codec import decode, encode
from doorless.mls.framing import MLSMessage, PublicMessage
from doorless.mls.group import Group
from doorless.mls.message_protection import sign_framed_content
from doorless.mls.proposals import Commit, Remove
from doorless.mls.types import CommitOutput
from doorless.mls.welcome import GroupInfo

from .helpers import PASSPHRASE, Devices, ServerProcess, options

pytestmark = pytest.mark.asyncio


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server process for the module: each test has its own users (a username suffix) and
    its own group, and what is checked is the server's answer to them. The tests' accounts all
    come from one address: no per-address limit on logins (per-device limits as usual)."""
    root = tmp_path_factory.mktemp("integrity")
    s = ServerProcess(root / "server", root / "server.log", args=("--anon-rate-limit", "0"))
    s.start()
    try:
        yield s
    finally:
        s.stop()


@pytest_asyncio.fixture
async def net(server: ServerProcess, tmp_path: Path) -> AsyncIterator[Devices]:
    devices = Devices(server.url, tmp_path / "profiles", suffix="-" + secrets.token_hex(3))
    try:
        yield devices
    finally:
        await devices.close_all()


async def group_of(net: Devices, *others: str) -> str:
    """alice's group with ``others``, synced everywhere; returns its id."""
    alice = net.clients["alice"]
    group = await alice.create_group("integrity", net.usernames(*others))
    await net.sync_all()
    return group.id


async def goes_on(net: Devices, conversation_id: str, text: str) -> None:
    """The honest members still message and commit: alice sends, bob reads it; bob renames,
    alice sees the new name; everyone is at the same epoch."""
    alice, bob = net.clients["alice"], net.clients["bob"]
    await alice.send_text(conversation_id, text)
    await bob.sync()
    assert text in [m.text for m in await bob.history(conversation_id)]
    await bob.rename(conversation_id, f"renamed {text}")
    await alice.sync()
    a, b = await alice.conversation(conversation_id), await bob.conversation(conversation_id)
    assert a.name == b.name == f"renamed {text}"
    assert a.epoch == b.epoch


async def own_commit(client: Client, conversation_id: str) -> tuple[CommitOutput, tuple[str, ...]]:
    """A valid commit of ``client`` for its current epoch (not sent, not adopted)."""
    conv = await client._load(bytes.fromhex(conversation_id))
    assert conv is not None
    return conv.mls.commit([], now=None), client._recipients(conv)


def public(data: bytes) -> PublicMessage:
    body = decode(MLSMessage, data).body
    assert isinstance(body, PublicMessage)
    return body


def resigned(client: Client, message: PublicMessage, conv_mls: Group) -> bytes:
    """``message`` with a valid signature of ``client`` over its (changed) content."""
    signature = sign_framed_content(
        client._suite,
        client._core.signature_key.value,
        message.authenticated_content().wire_format,
        message.content,
        conv_mls.group_context,
    )
    auth = dataclasses.replace(message.auth, signature=signature)
    return encode(MLSMessage(dataclasses.replace(message, auth=auth)))


async def refused(
    client: Client,
    data: bytes,
    recipients: tuple[str, ...],
    group_info: bytes | None,
    status: int,
    code: str,
) -> None:
    with pytest.raises(ServerError) as info:
        await client._transport.send(data, recipients, group_info=group_info)
    assert (info.value.status, info.value.code) == (status, code), info.value


# --- outsiders ---------------------------------------------------------------------------------


async def test_removed_member_cannot_post_to_the_group(net: Devices) -> None:
    await net.account("alice")
    await net.account("bob")
    mallory = await net.account("mallory")
    gid = await group_of(net, "bob", "mallory")
    # mallory prepares a commit while still a member, then is removed.
    out, recipients = await own_commit(mallory, gid)
    await net.clients["alice"].remove_members(gid, net.usernames("mallory"))
    await net.sync_all()
    current = (await net.clients["alice"].conversation(gid)).epoch
    # Her commit relabelled for the current epoch (the server's epoch check alone let that in).
    forged = public(out.commit)
    forged = dataclasses.replace(forged, content=dataclasses.replace(forged.content, epoch=current))
    await refused(
        mallory, encode(MLSMessage(forged)), recipients, out.group_info, 403, "not_group_member"
    )
    # She left the server's member set: no GroupInfo (to rejoin by) for her either.
    with pytest.raises(ServerError) as info:
        await mallory._transport.group_info(bytes.fromhex(gid))
    assert (info.value.status, info.value.code) == (403, "not_group_member")
    await goes_on(net, gid, "after mallory")


async def test_never_member_who_knows_the_group_id_cannot_post(net: Devices) -> None:
    await net.account("alice")
    await net.account("bob")
    eve = await net.account("eve")
    gid = await group_of(net, "bob")
    current = (await net.clients["alice"].conversation(gid)).epoch
    # eve's own group's commit, relabelled with the victim group's id and epoch.
    own = await eve.create_group("eve's", [])
    out, _ = await own_commit(eve, own.id)
    forged = public(out.commit)
    forged = dataclasses.replace(
        forged,
        content=dataclasses.replace(forged.content, group_id=bytes.fromhex(gid), epoch=current),
    )
    recipients = (net.clients["alice"].device_id, net.clients["bob"].device_id)
    await refused(
        eve, encode(MLSMessage(forged)), recipients, out.group_info, 403, "not_group_member"
    )
    # She cannot read its GroupInfo; and with one leaked by a member, her (valid) external
    # commit is refused too: external commits are for members rejoining.
    with pytest.raises(ServerError) as info:
        await eve._transport.group_info(bytes.fromhex(gid))
    assert (info.value.status, info.value.code) == (403, "not_group_member")
    _, leaked, tree = await net.clients["alice"]._transport.group_info(bytes.fromhex(gid))
    joined, external = Group.join_external(
        leaked,
        eve._core.new_key_package().key_package.leaf_node,
        eve._core.signature_key,
        ratchet_tree=tree,
        config=MLS_CONFIG,
    )
    await refused(eve, external, recipients, joined.group_info(), 403, "not_group_member")
    await goes_on(net, gid, "after eve")


# --- a current member ------------------------------------------------------------------------


async def test_member_commit_with_a_bad_signature_is_refused(net: Devices) -> None:
    await net.account("alice")
    bob = await net.account("bob")
    gid = await group_of(net, "bob")
    out, recipients = await own_commit(bob, gid)
    msg = public(out.commit)
    bad = bytearray(msg.auth.signature)
    bad[0] ^= 1
    tampered = dataclasses.replace(msg, auth=dataclasses.replace(msg.auth, signature=bytes(bad)))
    await refused(
        bob, encode(MLSMessage(tampered)), recipients, out.group_info, 400, "invalid_handshake"
    )
    await goes_on(net, gid, "after a bad signature")


async def test_member_commit_whose_path_does_not_match_is_refused(net: Devices) -> None:
    """Signed correctly, but the UpdatePath's parent node key is not the one the leaf's
    parent hash commits to: the parent-hash check (§7.9.2) fails."""
    await net.account("alice")
    bob = await net.account("bob")
    await net.account("carol")
    gid = await group_of(net, "bob", "carol")
    conv = await bob._load(bytes.fromhex(gid))
    assert conv is not None
    out, recipients = await own_commit(bob, gid)
    msg = public(out.commit)
    commit = msg.content.content
    assert isinstance(commit, Commit) and commit.path is not None and commit.path.nodes
    node = commit.path.nodes[-1]
    other = bytearray(node.encryption_key)
    other[-1] ^= 1
    path = dataclasses.replace(
        commit.path,
        nodes=(*commit.path.nodes[:-1], dataclasses.replace(node, encryption_key=bytes(other))),
    )
    content = dataclasses.replace(msg.content, content=dataclasses.replace(commit, path=path))
    data = resigned(bob, dataclasses.replace(msg, content=content), conv.mls)
    await refused(bob, data, recipients, out.group_info, 400, "invalid_handshake")
    await goes_on(net, gid, "after a bad path")


async def test_member_commit_with_a_proposal_that_breaks_a_rule_is_refused(
    net: Devices,
) -> None:
    """Signed correctly, but it removes a leaf that does not exist (§12.2)."""
    await net.account("alice")
    bob = await net.account("bob")
    gid = await group_of(net, "bob")
    conv = await bob._load(bytes.fromhex(gid))
    assert conv is not None
    out, recipients = await own_commit(bob, gid)
    msg = public(out.commit)
    commit = msg.content.content
    assert isinstance(commit, Commit)
    content = dataclasses.replace(
        msg.content, content=dataclasses.replace(commit, proposals=(Remove(57),))
    )
    data = resigned(bob, dataclasses.replace(msg, content=content), conv.mls)
    await refused(bob, data, recipients, out.group_info, 400, "invalid_handshake")
    await goes_on(net, gid, "after a bad proposal")


async def test_member_commit_with_a_group_info_that_does_not_match_is_refused(
    net: Devices,
) -> None:
    """A valid commit, but the GroupInfo is the current epoch's, not the new one's (so a
    member rejoining from it would land in another state than the group's)."""
    await net.account("alice")
    bob = await net.account("bob")
    gid = await group_of(net, "bob")
    conv = await bob._load(bytes.fromhex(gid))
    assert conv is not None
    out, recipients = await own_commit(bob, gid)
    await refused(bob, out.commit, recipients, conv.mls.group_info(), 400, "invalid_handshake")
    await refused(bob, out.commit, recipients, None, 400, "invalid_handshake")
    await goes_on(net, gid, "after a wrong GroupInfo")


async def test_replayed_old_commit_is_refused(net: Devices) -> None:
    await net.account("alice")
    bob = await net.account("bob")
    gid = await group_of(net, "bob")
    seen: list[tuple[bytes, tuple[str, ...], bytes | None]] = []
    transport = bob._transport
    original = transport.send

    async def record(data: bytes, recipients: object, **kwargs: object) -> object:
        seen.append((data, tuple(recipients), kwargs.get("group_info")))  # type: ignore[arg-type]
        return await original(data, recipients, **kwargs)  # type: ignore[arg-type]

    transport.send = record  # type: ignore[method-assign,assignment]
    await bob.rename(gid, "first")
    transport.send = original  # type: ignore[method-assign]
    await net.sync_all()
    ((data, recipients, group_info),) = seen
    assert group_info is not None
    await refused(bob, data, recipients, group_info, 409, "epoch_conflict")
    await goes_on(net, gid, "after a replay")


# --- rejoin and catch-up -------------------------------------------------------------------------


async def reopen(net: Devices, name: str, restore_from: Path | None = None) -> Client:
    """Close ``name``'s client and open it again (from a copy of its profile, if given)."""
    await net.close(name)
    if restore_from is not None:
        shutil.rmtree(net.profile(name))
        shutil.copytree(restore_from, net.profile(name))
    client = await Client.open(net.profile(name), PASSPHRASE, options=options())
    net.clients[name] = client
    return client


async def test_member_restored_from_an_old_copy_rejoins_and_reads_new_messages(
    net: Devices, tmp_path: Path
) -> None:
    alice = await net.account("alice")
    await net.account("bob")
    gid = await group_of(net, "bob")
    backup = tmp_path / "bob-backup"
    await net.close("bob")
    shutil.copytree(net.profile("bob"), backup)
    bob = net.clients["bob"] = await Client.open(net.profile("bob"), PASSPHRASE, options=options())
    for n in range(3):  # the group moves on; bob follows, then loses it all
        await alice.rename(gid, f"name {n}")
        await alice.send_text(gid, f"before {n}")
    await bob.sync()
    bob = await reopen(net, "bob", restore_from=backup)
    old_epoch = (await bob.conversation(gid)).epoch
    assert old_epoch < (await alice.conversation(gid)).epoch
    # The next message shows bob's client that the group moved past it: it rejoins.
    await alice.send_text(gid, "lost to the old copy")
    await bob.sync()
    rejoined = await bob.conversation(gid)
    assert rejoined.epoch == (await alice.conversation(gid)).epoch + 1
    assert rejoined.name == "name 2"
    await alice.sync()  # alice sees bob's external commit as a roster event by bob
    assert (await alice.conversation(gid)).epoch == rejoined.epoch
    await goes_on(net, gid, "after the rejoin")


async def test_member_that_missed_many_epochs_catches_up(net: Devices) -> None:
    alice = await net.account("alice")
    await net.account("bob")
    await net.account("carol")
    gid = await group_of(net, "bob", "carol")
    for n in range(8):  # bob is offline for eight epochs
        await alice.rename(gid, f"name {n}")
        await alice.send_text(gid, f"while away {n}")
    await net.clients["carol"].sync()
    await goes_on(net, gid, "back")
    texts = [m.text for m in await net.clients["bob"].history(gid)]
    assert all(f"while away {n}" in texts for n in range(8))


async def test_commit_the_server_cannot_judge_members_rejoin_and_go_on(net: Devices) -> None:
    """The limit of validation: bob posts a commit with a wrong confirmation tag (it needs
    epoch secrets to check) and a GroupInfo to match. The server accepts it; alice and carol
    refuse it, and then, stuck behind the server's epoch, rejoin from that GroupInfo by
    external commit instead of failing for good. bob's client, which never adopted its
    commit, rejoins too."""
    alice = await net.account("alice")
    bob = await net.account("bob")
    carol = await net.account("carol")
    gid = await group_of(net, "bob", "carol")
    out, recipients = await own_commit(bob, gid)
    msg = public(out.commit)
    assert msg.auth.confirmation_tag is not None
    tag = bytearray(msg.auth.confirmation_tag)
    tag[0] ^= 1
    bad = dataclasses.replace(msg, auth=dataclasses.replace(msg.auth, confirmation_tag=bytes(tag)))
    gi = decode(MLSMessage, out.group_info).body
    assert isinstance(gi, GroupInfo)
    forged_info = GroupInfo.sign(
        bob._suite,
        bob._core.signature_key.value,
        gi.group_context,
        gi.extensions,
        bytes(tag),
        gi.signer,
    )
    await bob._transport.send(
        encode(MLSMessage(bad)), recipients, group_info=encode(MLSMessage(forged_info))
    )
    before = (await alice.conversation(gid)).epoch
    await carol.sync()  # refuses the commit (DeliveryFailed), stays behind
    assert (await carol.conversation(gid)).epoch == before
    # alice's next message conflicts with the server's epoch: her client rejoins and sends.
    await alice.send_text(gid, "still here")
    assert (await alice.conversation(gid)).epoch == before + 2  # bob's epoch + her rejoin
    await net.sync_all(rounds=3)
    epochs = {(await c.conversation(gid)).epoch for c in (alice, bob, carol)}
    assert len(epochs) == 1
    await goes_on(net, gid, "after the bad tag")
    await carol.sync()
    assert "after the bad tag" in [m.text for m in await carol.history(gid)]
