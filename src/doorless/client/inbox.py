"""Receiving: fetching the device's queue, processing each queued message (Welcome,
commit, proposal, application message) in the server's order in one transaction each, and
acknowledging only what was committed (I5). Also reading the stored history and downloading
attachments."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from pathlib import Path

from doorless.client import (
    alarms,
    contact_safety,
    devices,
    maintenance,
    membership,
    outbox,
)
from doorless.client.conversations import device_ref_of, roster, safe_roster
from doorless.client.core import (
    MLS_CONFIG,
    NETWORK,
    TRANSIENT,
    Conv,
    Session,
    conversation_gid,
    sender_identity,
)
from doorless.client.events import (
    AlarmKind,
    ConversationJoined,
    DeviceRef,
    FailureReason,
    FileInfo,
    MessageInfo,
    TransparencyAlarm,
)
from doorless.client.inbox_payloads import Announce, Handling, Received, Unsupported, handling_of
from doorless.client.kt import GossipResult, KtViolation
from doorless.client.rich_view import rich_infos
from doorless.client.safety import FrankRejected, count_hidden, expires_at, open_franked
from doorless.client.store import GroupStatus, MessageRequest, Transaction
from doorless.client.transport import ProgressCallback
from doorless.codec import decode
from doorless.errors import (
    ConfigurationError,
    DecodeError,
    DoorlessError,
    StateError,
    ValidationError,
)
from doorless.franking import AttachmentDescriptor, open_attachment
from doorless.mls.framing import MLSMessage, PrivateMessage, PublicMessage
from doorless.mls.group import (
    ApplicationMessage,
    Group,
    KeyPackageBundle,
    ProposalMessage,
    StagedCommit,
    open_welcome,
)
from doorless.mls.key_package import KeyPackage
from doorless.mls.welcome import Welcome
from doorless.wire.messages import QueuedMessage
from doorless.wire.payload import Payload

log = logging.getLogger("doorless.client")

_FETCH_PAGE = 100


def _group_of(body: PrivateMessage | PublicMessage) -> tuple[bytes, int]:
    if isinstance(body, PrivateMessage):
        return body.group_id, body.epoch
    return body.content.group_id, body.content.epoch


def _drop_welcome(tx: Transaction, key: str, ref: bytes | None, now: int) -> None:
    tx.mark_processed(key, now)
    if ref is not None:
        tx.delete_key_package(ref)


async def sync(s: Session) -> int:
    """Process everything queued on the server for this device and retry pending sends.
    Returns how many queued messages were handled."""
    await contact_safety.sync_blocks(s)
    async with s.lock:
        count = await sync_locked(s)
        await outbox.flush_locked(s)
    await maintenance.purge_expired(s)
    return count


async def history(
    s: Session,
    conversation_id: str,
    *,
    limit: int | None = 100,
    before: int | None = None,
    after: int | None = None,
) -> list[MessageInfo]:
    """Messages of a conversation, oldest first (``before``/``after``: local ids)."""
    gid = conversation_gid(conversation_id)
    me = s.me.user

    def read(tx: Transaction) -> list[MessageInfo]:
        rows = tx.list_messages(gid, after=after, before=before, limit=limit)
        return rich_infos(tx, me, rows)

    return await s.tx(read)


async def download(
    s: Session, file: FileInfo | MessageInfo, *, progress: ProgressCallback | None = None
) -> bytes:
    """Download and decrypt a file; its size and SHA-256 are checked (FRANK-8)."""
    info = file.file if isinstance(file, MessageInfo) else file
    if info is None:
        raise ConfigurationError("this message has no file")
    ciphertext = await download_blob(s, info, progress=progress)
    descriptor: AttachmentDescriptor = info.descriptor
    return await asyncio.to_thread(open_attachment, descriptor, ciphertext)


# A restored backup keeps the encrypted blobs of its files here, by the ciphertext's SHA-256
# (`doorless.client.backup`); `open_attachment` checks the hash whichever way a blob came.
ATTACHMENTS_FOLDER = "attachments"


async def download_blob(
    s: Session, info: FileInfo, *, progress: ProgressCallback | None = None
) -> bytes:
    """A file's encrypted blob: the profile's own copy if it has one, else the server's."""
    local = s.store.profile / ATTACHMENTS_FOLDER / info.descriptor.ciphertext_sha256.hex()
    if await asyncio.to_thread(local.is_file):
        return await asyncio.to_thread(local.read_bytes)
    return await s.transport.download_attachment(info.attachment_id, progress=progress)


async def download_to(
    s: Session,
    file: FileInfo | MessageInfo,
    path: str | os.PathLike[str],
    *,
    progress: ProgressCallback | None = None,
) -> Path:
    """`download` into ``path`` (written under a temporary name, then renamed)."""
    data = await download(s, file, progress=progress)
    target = Path(path)
    tmp = target.with_name(target.name + ".part")

    def write() -> None:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)

    await asyncio.to_thread(write)
    return target


async def sync_locked(s: Session) -> int:
    """Settle pending commits, then fetch, process and acknowledge every queued message."""
    await membership.resolve_commits_locked(s)
    count, after = 0, 0
    while True:
        page = await s.transport.fetch(after=after, limit=_FETCH_PAGE)
        done: list[int] = []
        for message in page.messages:
            await handle_inbound_locked(s, message)
            done.append(message.seq)
            after = message.seq
        count += len(done)
        await s.transport.ack(done)
        if not page.more:
            return count


async def handle_inbound_locked(s: Session, inbound: QueuedMessage) -> None:
    """Process one queued message; afterwards it may be acknowledged (I5)."""
    key = str(inbound.seq)
    if await s.tx(lambda tx: tx.is_processed(key)):
        return  # a repeat delivery (e.g. the ack was lost)
    try:
        message = decode(MLSMessage, inbound.data)
    except DecodeError as e:
        await mark(s, key)
        s.fail(FailureReason.MALFORMED, str(e))
        return
    body = message.body
    if isinstance(body, Welcome):
        await on_welcome(s, key, message, body)
    elif isinstance(body, PrivateMessage | PublicMessage):
        await on_group_message(s, key, message, body, inbound.frank)
    else:
        await mark(s, key)
        s.fail(FailureReason.MALFORMED, f"a {message.wire_format.name} is not for devices")


async def mark(s: Session, key: str) -> None:
    """Mark a queued message processed (nothing else changes)."""
    now = s.now_ms()
    await s.tx(lambda tx: tx.mark_processed(key, now))


async def on_group_message(
    s: Session,
    key: str,
    message: MLSMessage,
    body: PrivateMessage | PublicMessage,
    frank: bytes | None = None,
) -> None:
    """A group's commit, proposal or application message."""
    gid, epoch = _group_of(body)
    await membership.resolve_commits_locked(s, gid)
    conv = await s.load(gid)
    if conv is None:
        await mark(s, key)
        s.fail(
            FailureReason.UNKNOWN_CONVERSATION,
            "a message for a conversation this device is not in",
            conversation=gid,
        )
        return
    if conv.status is not GroupStatus.ACTIVE:
        await mark(s, key)  # sent before our removal reached its senders
        return
    try:
        result = conv.mls.process(message, now=s.now_s())
    except DoorlessError as e:
        await mark(s, key)
        if epoch <= conv.mls.epoch:
            s.fail(FailureReason.UNDECRYPTABLE, str(e), conversation=gid)
            return
        # The group moved past our epoch (commits we missed or could not process): rejoin
        # by external commit from the GroupInfo the server keeps.
        s.fail(FailureReason.MISSED_COMMITS, str(e), conversation=gid)
        try:
            await membership.rejoin_locked(s, gid)
        except TRANSIENT:
            raise  # no verdict: a later message of the group triggers it again
        except DoorlessError as rejoin_error:
            s.fail(
                FailureReason.MISSED_COMMITS,
                f"could not rejoin ({rejoin_error}); ask a member to add this device again",
                conversation=gid,
            )
        return
    if isinstance(result, ApplicationMessage):
        await on_application(s, key, conv, result, frank)
    elif isinstance(result, StagedCommit):
        await on_commit(s, key, conv, result)
    else:
        await on_proposal(s, key, conv, result)


async def on_application(
    s: Session, key: str, conv: Conv, result: ApplicationMessage, frank: bytes | None
) -> None:
    """Store a received application message with the new group state (or count and
    report why it is not shown); what each payload kind does is in `inbox_payloads`."""
    now = s.now_ms()
    gid = conv.group_id
    new = conv.evolve(mls=result.group, updated_at=now)
    sender: DeviceRef | None = None
    payload: Payload | None = None
    handling: Handling | None = None
    failure: tuple[FailureReason, str] | None = None
    hidden: str | None = None  # the franking check that failed (counted)
    server_key = await s.franking_key()
    try:
        sender = device_ref_of(result.credential)
        opened = open_franked(
            result.data,
            result.authenticated_data,
            frank,
            server_public_key=server_key,
            sender=sender_identity(sender),
            group_id=gid,
        )
        payload = opened.payload
        received = Received(
            new, sender, payload, opened.franking, now, expires_at(result.group, now)
        )
        handling = await handling_of(s, received)
    except FrankRejected as e:
        # Not shown, counted (I7: no message is displayed that could not be reported).
        hidden = type(e.error).__name__
        failure = (FailureReason.INVALID_FRANK, str(e))
    except Unsupported as e:
        failure = (FailureReason.UNSUPPORTED, str(e))
    except (DecodeError, ValidationError) as e:
        failure = (FailureReason.INVALID_PAYLOAD, str(e))
    me = s.me.user
    alarm = None
    if payload is not None and payload.checkpoint and handling is not None and handling.shown:
        assert sender is not None
        alarm = await _gossip(s, payload.checkpoint, sender)  # NETWORK: stays queued

    def write(tx: Transaction) -> Announce | None:
        if not tx.mark_processed(key, now):
            raise StateError("a queued message was processed twice")
        tx.update_group(new.stored())  # the ratchet moved on, whatever the payload
        if sender is not None and sender.user != me:
            contact = tx.get_contact(sender.user)
            if contact is not None and contact.blocked:
                return None  # blocked: dropped, whatever it is
        if hidden is not None:
            count_hidden(tx, hidden)
        return handling.write(tx) if handling is not None else None

    announce = await s.save(new, write)
    if alarm is not None:
        await alarms.raise_alarm(s, alarm)
    if announce is not None:
        await announce(s)
    elif failure is not None and not await s.is_blocked(sender):
        s.fail(
            failure[0],
            failure[1],
            conversation=gid,
            message_id=payload.message_id.hex() if payload is not None else None,
            sender=sender,
        )


async def _gossip(s: Session, checkpoint: bytes, sender: DeviceRef) -> TransparencyAlarm | None:
    """Checkpoint gossip (rule 5 of `doorless.client.kt`): the log head the sender verified
    against this device's. A fork is an alarm (the message itself is authentic and shown);
    network failures propagate, so the message stays queued and is checked again. A fork
    already reported in this session is not reported again for every message."""
    if s.kt.known_fork(checkpoint):
        return None
    try:
        result = await s.kt.check_gossip(checkpoint)
    except KtViolation as e:
        return TransparencyAlarm(
            AlarmKind.FORK,
            f"a device of {sender.user} was shown another key-transparency log than this "
            f"device ({e}): the server is showing different people different logs. Devices "
            "and keys it showed may not be real: compare safety numbers in person "
            "('doorless verify') before sending anything sensitive",
        )
    if result is GossipResult.UNVERIFIABLE:
        log.warning(
            "a message from %s carried a log checkpoint that is not signed by this server's "
            "log key: it could not be compared",
            sender.user,
        )
    return None


async def on_proposal(s: Session, key: str, conv: Conv, result: ProposalMessage) -> None:
    # Cached in the new state; the next commit (anyone's) applies it.
    """Keep a proposal in the group state until a commit applies it."""
    now = s.now_ms()
    new = conv.evolve(mls=result.group, updated_at=now)

    def write(tx: Transaction) -> None:
        tx.mark_processed(key, now)
        tx.update_group(new.stored())

    await s.save(new, write)


async def on_commit(s: Session, key: str, conv: Conv, staged: StagedCommit) -> None:
    """Merge another member's commit once every device it brings in checked out (I3)."""
    gid = conv.group_id
    by: DeviceRef | None = None
    after: set[DeviceRef] | None = None
    alarm = await _commit_gossip(s, staged)  # NETWORK: the commit stays queued
    try:
        by = device_ref_of(staged.credential)
        if staged.self_removed:
            # We cannot follow the group further (RFC 9420 §12.4.2): keep the last state
            # for the history and record the removal.
            new_group = conv.mls
            after = set(safe_roster(conv.mls))
            after -= {device_ref_of(m.credential) for m in staged.removed}
            after |= {device_ref_of(m.credential) for m in staged.added}
        else:
            new_group = conv.mls.merge_staged_commit(staged)
            before = safe_roster(conv.mls)
            members = roster(new_group)
            await devices.check_devices(s, (e for ref, e in members.items() if ref not in before))
            # A contact's device leaving: read their list again, so that a revocation is
            # noticed once (`devices.check_confirmed`), also by a device that only sends.
            for user in sorted({r.user for r in set(before) - set(members)} - {s.me.user}):
                await devices.roster_changed(s, user)
    except NETWORK:
        raise  # cannot check now: the message stays queued and is processed again
    except DoorlessError as e:
        # Refusing the commit leaves this device behind the group, visibly; merging it
        # would accept a device nobody approved (I3).
        await mark(s, key)
        if alarm is not None:
            await alarms.raise_alarm(s, alarm)
        s.fail(FailureReason.INVALID_MEMBER, str(e), conversation=gid, sender=by)
        return
    now = s.now_ms()
    status = GroupStatus.REMOVED if staged.self_removed else GroupStatus.ACTIVE
    new = conv.evolve(mls=new_group, status=status, updated_at=now)

    def write(tx: Transaction) -> None:
        tx.mark_processed(key, now)
        tx.update_group(new.stored())

    await s.save(new, write)
    if alarm is not None:
        await alarms.raise_alarm(s, alarm)
    membership.membership_events(s, conv, new, by, after)


async def _commit_gossip(s: Session, staged: StagedCommit) -> TransparencyAlarm | None:
    """The log checkpoint a commit carries in its authenticated data (`_gossip`)."""
    if not staged.authenticated_data:
        return None
    try:
        by = device_ref_of(staged.credential)
    except DoorlessError:
        return None  # no device to name: `on_commit` refuses the commit itself
    return await _gossip(s, staged.authenticated_data, by)


async def on_welcome(s: Session, key: str, message: MLSMessage, welcome: Welcome) -> None:
    """Join a conversation from a Welcome addressed to one of our KeyPackages."""
    packages = await s.tx(lambda tx: tx.list_key_packages())
    match = next((kp for kp in packages if welcome.secrets_for(kp.ref) is not None), None)
    if match is None:
        await mark(s, key)
        s.fail(FailureReason.WELCOME_UNUSABLE, "addressed to no KeyPackage of ours")
        return
    try:
        bundle = KeyPackageBundle(
            decode(KeyPackage, match.key_package),
            match.init_private_key,
            match.encryption_private_key,
            s.signature_key,
        )
        signer = open_welcome(message, bundle.ref, bundle.init_private_key).group_info.signer
        # Lifetimes of the members' leaves are not checked here: a member who has not
        # committed for months still has its KeyPackage leaf (RFC 9420 §7.3 RECOMMENDED).
        group = Group.join_from_welcome(message, bundle, config=MLS_CONFIG)
        members = roster(group)
        if members.get(s.me) is None or members[s.me].leaf != group.own_leaf:
            raise ValidationError("the Welcome puts us in another leaf")
        await devices.check_devices(s, (e for ref, e in members.items() if ref != s.me))
        by = next((ref for ref, e in members.items() if e.leaf == signer), None)
    except NETWORK:
        raise
    except DoorlessError as e:
        await mark(s, key)
        s.fail(FailureReason.WELCOME_UNUSABLE, str(e))
        return
    gid = group.group_id
    existing = await s.load(gid)
    if existing is not None and existing.status is GroupStatus.ACTIVE:
        await mark(s, key)  # already in it (a second Welcome): keep what we have
        return
    now = s.now_ms()
    new = Conv(gid, group, GroupStatus.ACTIVE, existing.created_at if existing else now, now)
    ref_to_delete = None if match.last_resort else match.ref
    if await s.is_blocked(by):  # a blocked user's invitation is dropped, unseen
        await s.tx(functools.partial(_drop_welcome, key=key, ref=ref_to_delete, now=now))
        return
    request = await request_of(s, gid, by, now)

    def write(tx: Transaction) -> None:
        tx.mark_processed(key, now)
        if ref_to_delete is not None:
            tx.delete_key_package(ref_to_delete)  # I6: a used key is deleted
        if existing is None:
            tx.insert_group(new.stored())
        else:
            tx.update_group(new.stored())
        if request is not None:
            tx.put_request(request)

    await s.save(new, write)
    if request is not None:
        (await s.load_requests())[gid] = request.inviter
    s.check_key_packages.set()
    s.hub.emit(ConversationJoined(s.view(new), by))


async def request_of(
    s: Session, gid: bytes, by: DeviceRef | None, now: int
) -> MessageRequest | None:
    """The message request a Welcome from ``by`` makes, if ``by`` is not accepted: this
    user, a contact accepted explicitly, or a member of a conversation that is not a
    request."""
    if by is not None and by.user == s.me.user:
        return None
    if by is not None:
        contact = await s.tx(lambda tx: tx.get_contact(by.user))
        if contact is not None and contact.accepted:
            return None
        for conv in await membership.conversations(s):
            if not conv.is_request and by.user in conv.members and conv.id != gid.hex():
                return None
    return MessageRequest(group_id=gid, inviter=by.user if by else "", created_at=now)
