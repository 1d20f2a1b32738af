"""Conversations and their membership: creating groups and direct chats, adding and
removing users, renaming, and the commit protocol underneath (plan, commit, send with the
Welcome, adopt the new epoch only once the server accepted it; a commit left in the outbox by a
crash or a lost answer is settled before the group is used again). Emits the membership and
conversation-update events."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import os
from collections.abc import Sequence

from doorless.client import devices, inbox, suites
from doorless.client.conversations import (
    ConversationInfo,
    conversation_info,
    device_ref_of,
    roster,
    safe_roster,
    with_info,
)
from doorless.client.core import (
    MLS_CONFIG,
    TRANSIENT,
    Builder,
    Claimed,
    CommitFailed,
    Conv,
    Plan,
    Session,
    UnknownConversation,
    checked_users,
    conversation_gid,
    new_send_id,
)
from doorless.client.errors import EpochConflict, InvalidRequest, ServerError
from doorless.client.events import (
    Conversation,
    ConversationKind,
    ConversationStatus,
    ConversationUpdated,
    DeviceChange,
    DeviceChanged,
    DeviceRef,
    MembershipChanged,
)
from doorless.client.records import KIND_COMMIT, OutgoingCommit
from doorless.client.safety import disappearing_seconds
from doorless.client.store import GroupStatus, OutboxItem, Transaction
from doorless.codec import decode, encode
from doorless.crypto import CipherSuite
from doorless.errors import ConfigurationError, StateError, ValidationError
from doorless.mls.extensions import Extension
from doorless.mls.group import Group
from doorless.mls.proposals import Add, GroupContextExtensions, Remove
from doorless.mls.public_group import PublicGroup

log = logging.getLogger("doorless.client")

COMMIT_ATTEMPTS = 6


@dataclasses.dataclass(frozen=True, slots=True)
class _Conflict:
    """Verdict: another commit took the epoch (the server's epoch, if it said)."""

    current_epoch: int | None = None


async def conversations(s: Session) -> list[Conversation]:
    """Every conversation of this profile (message requests included)."""
    await s.load_requests()
    await s.load_upgrades()
    rows = await s.tx(lambda tx: tx.list_groups())
    return [s.view(s.cache.get(r.group_id) or Conv.from_row(r)) for r in rows]


async def conversation(s: Session, conversation_id: str) -> Conversation:
    """One conversation by its id (`UnknownConversation` if there is none)."""
    gid = conversation_gid(conversation_id)
    await s.load_requests()
    await s.load_upgrades()
    cached = s.cache.get(gid)
    if cached is not None:
        return s.view(cached)
    row = await s.tx(lambda tx: tx.get_group(gid))
    if row is None:
        raise UnknownConversation(f"no conversation {conversation_id}")
    return s.view(Conv.from_row(row))


async def start_direct(s: Session, username: str) -> Conversation:
    """The 1:1 conversation with ``username`` (all devices of both), created if needed."""
    (user,) = checked_users([username])
    if user == s.me.user:
        raise ConfigurationError("a direct conversation is with another user")
    for conv in await conversations(s):
        if (
            conv.kind is ConversationKind.DIRECT
            and conv.status is ConversationStatus.ACTIVE
            and conv.upgraded_to is None  # its successor is the one to use
            and set(conv.members) == {s.me.user, user}
        ):
            return conv
    return await create(s, ConversationInfo(ConversationKind.DIRECT, ""), [user])


async def create_group(s: Session, name: str, members: Sequence[str] = ()) -> Conversation:
    """A new group conversation with these users (all their devices) and this user."""
    return await create(s, ConversationInfo(ConversationKind.GROUP, name), members)


async def add_members(s: Session, conversation_id: str, usernames: Sequence[str]) -> Conversation:
    """Add users (every device of theirs that has a KeyPackage) to a group conversation."""
    gid = conversation_gid(conversation_id)
    users = [u for u in checked_users(usernames) if u != s.me.user]
    view = await conversation(s, conversation_id)
    if view.kind is ConversationKind.DIRECT:
        raise ConfigurationError("a direct conversation has two users; create a group")
    conv = await s.require_active(gid)
    claimed = await devices.claim_users(s, users, conv.mls.suite)
    async with s.lock:
        conv = await commit_locked(s, gid, adds(s, claimed))
    return s.view(conv)


async def remove_members(
    s: Session, conversation_id: str, usernames: Sequence[str]
) -> Conversation:
    """Remove users (all their devices) from a group conversation."""
    gid = conversation_gid(conversation_id)
    users = set(checked_users(usernames))
    if s.me.user in users:
        raise ConfigurationError("you cannot remove yourself from a conversation")

    async def build(conv: Conv, excluded: frozenset[str]) -> Plan | None:
        if conversation_info(conv.mls).kind is ConversationKind.DIRECT:
            raise ConfigurationError("a direct conversation has two users")
        removes = tuple(
            Remove(e.leaf) for ref, e in safe_roster(conv.mls).items() if ref.user in users
        )
        return Plan(removes) if removes else None

    async with s.lock:
        conv = await commit_locked(s, gid, build)
    return s.view(conv)


async def rename(s: Session, conversation_id: str, name: str) -> Conversation:
    """Change a group conversation's name (a commit: every member sees it)."""
    gid = conversation_gid(conversation_id)

    async def build(conv: Conv, excluded: frozenset[str]) -> Plan | None:
        info = conversation_info(conv.mls)
        if info.kind is ConversationKind.DIRECT:
            raise ConfigurationError("a direct conversation has no name")
        if info.name == name:
            return None
        new = dataclasses.replace(info, name=name)
        return Plan((GroupContextExtensions(with_info(conv.mls.extensions, new)),))

    async with s.lock:
        conv = await commit_locked(s, gid, build)
    return s.view(conv)


async def create(s: Session, info: ConversationInfo, members: Sequence[str]) -> Conversation:
    """Create a conversation with ``members`` (and this user's other devices) and commit
    their adds. A refused commit deletes the new group again; one whose fate is unknown keeps
    it (the outbox settles it)."""
    users = [u for u in checked_users(members) if u != s.me.user]
    suite, claimed = await suites.claim_for_new_group(s, users)
    return await create_with(s, suite, claimed, (info.extension(),))


async def create_with(
    s: Session, suite: CipherSuite, claimed: Claimed, extensions: Sequence[Extension]
) -> Conversation:
    """`create` with the suite, the devices' KeyPackages and the GroupContext extensions
    chosen by the caller."""
    bundle = await asyncio.to_thread(s.new_key_package, suite)
    gid = os.urandom(32)
    group = Group.create(
        suite,
        gid,
        bundle.key_package.leaf_node,
        bundle.encryption_private_key,
        s.signature_key,
        extensions=list(extensions),
        config=MLS_CONFIG,
    )
    # The server validates the group's handshakes from now on (doorless.server.groups).
    await s.transport.register_group(group.group_info(), group.ratchet_tree())
    now = s.now_ms()
    conv = Conv(gid, group, GroupStatus.ACTIVE, now, now)
    async with s.lock:
        await s.save(conv, lambda tx: tx.insert_group(conv.stored()))
        try:
            conv = await commit_locked(s, gid, adds(s, claimed))
        except TRANSIENT:
            raise  # the commit's fate is unknown: keep the group, the outbox settles it
        except BaseException:
            s.cache.pop(gid, None)
            await s.tx(lambda tx: tx.delete_group(gid))
            raise
    return s.view(conv)


def adds(s: Session, claimed: Claimed) -> Builder:
    """A plan adding the claimed devices that are not members yet."""

    async def build(conv: Conv, excluded: frozenset[str]) -> Plan | None:
        present = {r.device_id for r in safe_roster(conv.mls)}
        adds = tuple(
            Add(kp)
            for device_id, (_, kp) in sorted(claimed.items())
            if device_id not in present and device_id not in excluded
        )
        return Plan(adds) if adds else None

    return build


async def pending_commit_groups(s: Session) -> set[bytes]:
    """The groups with a commit in the outbox (read once, then kept in memory)."""
    if s.pending_commits is None:
        items = await s.tx(lambda tx: tx.list_outbox())
        s.pending_commits = {
            i.group_id for i in items if i.kind == KIND_COMMIT and i.group_id is not None
        }
    return s.pending_commits


async def commit_locked(s: Session, gid: bytes, build: Builder, *, force: bool = False) -> Conv:
    """Plan, commit and send until the server accepts (or there is nothing to do)."""
    excluded: set[str] = set()
    for _ in range(COMMIT_ATTEMPTS):
        await resolve_commits_locked(s, gid)
        conv = await s.require_active(gid)
        plan = await build(conv, frozenset(excluded))
        if plan is None and not force and not conv.mls.proposals:
            return conv
        proposals = plan.proposals if plan is not None else ()
        # Checkpoint gossip (docs/key-transparency.md): the latest verified log head rides
        # in the commit's authenticated data, which every member checks.
        gossip = s.kt.trusted.checkpoint if s.kt.trusted is not None else b""
        out = conv.mls.commit(proposals, now=s.now_s(), authenticated_data=gossip)
        record = OutgoingCommit(
            message_id=new_send_id(),
            commit=out.commit,
            welcome=out.welcome,
            recipients=tuple(d for d in s.recipients(conv) if d not in excluded),
            welcome_recipients=tuple(
                device_ref_of(p.key_package.leaf_node.credential).device_id
                for p in proposals
                if isinstance(p, Add)
            ),
            pending_state=out.pending.group.to_bytes(),
        )
        now = s.now_ms()
        item = await s.tx(
            functools.partial(
                Transaction.enqueue,
                item=OutboxItem(
                    group_id=gid,
                    kind=KIND_COMMIT,
                    payload=encode(record),
                    created_at=now,
                    next_attempt_at=now,
                ),
            )
        )
        (await pending_commit_groups(s)).add(gid)
        verdict = await deliver_commit_locked(s, conv, item, record, out.pending.group)
        if isinstance(verdict, Conv):
            return verdict
        if isinstance(verdict, _Conflict):
            await inbox.sync_locked(s)
            await rejoin_if_behind_locked(s, gid, verdict.current_epoch)
        else:
            excluded |= verdict
    raise CommitFailed(
        f"the change could not be committed in {COMMIT_ATTEMPTS} attempts (other members kept "
        "committing first): try again"
    )


async def deliver_commit_locked(
    s: Session, conv: Conv, item: OutboxItem, record: OutgoingCommit, pending: Group | None
) -> Conv | _Conflict | frozenset[str]:
    """Send a commit; adopt its epoch only if the server accepted it."""
    assert item.outbox_id is not None
    outbox_id = item.outbox_id

    async def drop() -> None:
        await s.tx(lambda tx: tx.dequeue(outbox_id))
        (await pending_commit_groups(s)).discard(conv.group_id)

    if pending is None:
        pending = Group.from_bytes(record.pending_state, MLS_CONFIG)
    try:
        await s.transport.send(
            record.commit,
            record.recipients,
            message_id=record.message_id,
            welcome=record.welcome,
            welcome_recipients=record.welcome_recipients,
            group_info=pending.group_info(),  # deterministic: a resend has the same digest
        )
    except EpochConflict as e:
        await drop()
        return _Conflict(e.current_epoch)
    except TRANSIENT:
        raise  # no verdict: the commit stays in the outbox and is sent again
    except InvalidRequest as e:
        await drop()
        if e.unknown_devices:  # revoked meanwhile: plan again without them
            return frozenset(e.unknown_devices)
        raise
    except ServerError:
        await drop()
        raise
    new_group = pending
    if new_group.group_id != conv.group_id or new_group.epoch != conv.mls.epoch + 1:
        raise StateError("the pending commit does not follow the stored group state")
    new = conv.evolve(mls=new_group, updated_at=s.now_ms())

    def write(tx: Transaction) -> None:
        tx.dequeue(outbox_id)
        tx.update_group(new.stored())

    await s.save(new, write)
    (await pending_commit_groups(s)).discard(conv.group_id)
    membership_events(s, conv, new, s.me)
    return new


async def resolve_commits_locked(s: Session, gid: bytes | None = None) -> None:
    """Settle commits left in the outbox (by a crash or a lost answer) before the group
    is used: the same commit is sent again; accepted -> merged, conflict -> dropped."""
    pending = await pending_commit_groups(s)
    if not pending or (gid is not None and gid not in pending):
        return
    items = await s.tx(lambda tx: tx.list_outbox())
    for item in items:
        if item.kind != KIND_COMMIT or item.group_id is None:
            continue
        if gid is not None and item.group_id != gid:
            continue
        conv = await s.load(item.group_id)
        assert item.outbox_id is not None
        outbox_id = item.outbox_id
        if conv is None:
            await s.tx(functools.partial(Transaction.dequeue, outbox_id=outbox_id))
            pending.discard(item.group_id)
            continue
        await deliver_commit_locked(s, conv, item, decode(OutgoingCommit, item.payload), None)


REJOIN_ATTEMPTS = 3


async def rejoin_if_behind_locked(s: Session, gid: bytes, current_epoch: int | None) -> None:
    """After a sync that followed an ``epoch_conflict``: if the server's epoch is still ahead
    of ours, this device cannot follow the group (it missed or refused commits): rejoin."""
    conv = await s.load(gid)
    if current_epoch is None or conv is None or conv.status is not GroupStatus.ACTIVE:
        return
    if conv.mls.epoch < current_epoch:
        await rejoin_locked(s, gid)


async def rejoin_locked(s: Session, gid: bytes) -> Conv:
    """Rejoin a conversation whose state is lost, corrupt or too far behind, by external
    commit (RFC 9420 §12.4.3.2) from the GroupInfo and ratchet tree the server keeps for its
    members (``GET /v1/groups/{id}/info``, `doorless.server.groups`). Every other member is
    checked against key transparency first, as for a Welcome (I3); our old leaf, if any, is
    replaced (resync). The others see it as a roster change by us. Raises `ServerError`
    (e.g. ``not_group_member``: we were removed; ``not_found``: a group from before
    validation, which cannot be rejoined), `ValidationError`, or `CommitFailed`."""
    conv = await s.require_active(gid)
    for _ in range(REJOIN_ATTEMPTS):
        _, group_info, tree = await s.transport.group_info(gid)
        public = PublicGroup.from_group_info(group_info, ratchet_tree=tree)
        if public.group_id != gid:
            raise ValidationError("the server's GroupInfo is for another group")
        members = roster(public)
        await devices.check_devices(s, (e for ref, e in members.items() if ref != s.me))
        old = members.get(s.me)
        bundle = await asyncio.to_thread(s.new_key_package)
        group, commit = Group.join_external(
            group_info,
            bundle.key_package.leaf_node,
            s.signature_key,
            ratchet_tree=tree,
            resync_leaf=None if old is None else old.leaf,
            config=MLS_CONFIG,
        )
        new = conv.evolve(mls=group, updated_at=s.now_ms())
        try:
            await s.transport.send(
                commit, s.recipients(new), message_id=new_send_id(), group_info=group.group_info()
            )
        except EpochConflict:
            continue  # a commit came first: read the new GroupInfo
        await s.save(new, functools.partial(Transaction.update_group, group=new.stored()))
        log.info("rejoined a conversation by external commit at epoch %d", group.epoch)
        membership_events(s, conv, new, s.me)
        return new
    raise CommitFailed(f"could not rejoin the conversation in {REJOIN_ATTEMPTS} attempts")


def membership_events(
    s: Session, old: Conv, new: Conv, by: DeviceRef | None, after: set[DeviceRef] | None = None
) -> None:
    """Report the roster change from ``old`` to ``new`` (``after``: the new roster, when
    ``new`` cannot tell it, i.e. after our own removal)."""
    old_roster = set(safe_roster(old.mls))
    new_roster = set(safe_roster(new.mls)) if after is None else after
    added = tuple(sorted(r for r in new_roster if r not in old_roster))
    removed = tuple(sorted(r for r in old_roster if r not in new_roster))
    view = s.view(new)
    if added or removed:
        old_users = {r.user for r in old_roster}
        new_users = {r.user for r in new_roster}
        s.hub.emit(
            MembershipChanged(
                view,
                added,
                removed,
                by,
                tuple(sorted(new_users - old_users)),
                tuple(sorted(old_users - new_users)),
            )
        )
        for ref in added:
            if ref.user in old_users:
                s.hub.emit(DeviceChanged(ref, DeviceChange.ADDED, view.id, by))
        for ref in removed:
            if ref.user in new_users:
                s.hub.emit(DeviceChanged(ref, DeviceChange.REMOVED, view.id, by))
    if conversation_info(old.mls) != conversation_info(new.mls) or disappearing_seconds(
        old.mls
    ) != disappearing_seconds(new.mls):
        s.hub.emit(ConversationUpdated(view, by))
