"""Devices and key-transparency checks: this account's device list (linking, revoking,
reconciling the conversations with it), the KeyPackages this device publishes, claiming and
checking other users' KeyPackages, and checking every peer device against the transparency log
and the server's approval chain (I3); safety numbers."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Iterable, Sequence

from doorless.client import alarms, kt_profile, membership
from doorless.client.conversations import (
    CONVERSATION_INFO_EXTENSION,
    RosterEntry,
    check_binding,
    device_ref_of,
    safe_roster,
)
from doorless.client.core import (
    KEY_PACKAGE_LIFETIME_MS,
    NETWORK,
    Claimed,
    Conv,
    Plan,
    Session,
    UserUnavailable,
)
from doorless.client.errors import BadResponse, NotFound
from doorless.client.events import (
    AlarmKind,
    DeviceChange,
    DeviceChanged,
    DeviceRef,
    TransparencyAlarm,
)
from doorless.client.kt import KeyNotInTransparencyLog, KtFork, KtRollback, KtViolation
from doorless.client.store import (
    DeviceStatus,
    GroupStatus,
    OwnDevice,
    StoredKeyPackage,
    Transaction,
)
from doorless.client.transport import (
    ClaimedKeyPackage,
    DeviceInfo,
    PendingLink,
    device_approval_problems,
)
from doorless.codec import decode, encode
from doorless.crypto import CipherSuite
from doorless.errors import ConfigurationError, DoorlessError, ValidationError
from doorless.mls.framing import MLSMessage
from doorless.mls.group import KeyPackageBundle
from doorless.mls.key_package import KeyPackage, make_key_package_ref
from doorless.mls.proposals import Remove
from doorless.mls.tree_math import LeafIndex
from doorless.wire import protocol

log = logging.getLogger("doorless.client")

_RECLAIMS = 3


def _forget_key_package(tx: Transaction, ref: bytes) -> None:
    if tx.get_key_package(ref) is not None:
        tx.delete_key_package(ref)


async def list_devices(s: Session, names: dict[str, str] | None = None) -> list[DeviceInfo]:
    """This account's devices on the server (revoked ones too) whose approval chain checks
    out. An entry that does not (a ghost row written into the server's database, a junk
    approval) is left out and raised once as an `AlarmKind.UNAPPROVED_DEVICE` alarm: one
    poisoned entry never stops the account's own work."""
    devices = await s.transport.list_devices(s.me.user, verify=False)
    problems = device_approval_problems(await s.transport.server_id(), s.me.user, devices)
    for device_id, problem in sorted(problems.items()):
        await alarms.raise_alarm(
            s,
            TransparencyAlarm(
                AlarmKind.UNAPPROVED_DEVICE,
                f"device {device_id[:8]} of your account: {problem}",
                DeviceRef(s.me.user, device_id),
            ),
        )
    good = [d for d in devices if d.device_id not in problems]
    await record_own_devices(s, good, names)
    return good


async def get_link(s: Session, code: str) -> PendingLink:
    """The pending request of a new device (show its fingerprint before approving)."""
    return await s.transport.get_link(code)


async def approve_link(
    s: Session, link: PendingLink, *, key_package_timeout: float = 30.0
) -> DeviceRef:
    """Admit a new device to this account and add it to every conversation.

    Waits up to ``key_package_timeout`` seconds for the new device's KeyPackages; if they
    do not come, the device is added later by `sync_devices` (run by `start`).
    """
    info = await s.transport.approve_link(link)
    ref = DeviceRef(s.me.user, info.device_id)
    s.devices.pop(s.me.user, None)
    now = s.now_ms()
    await s.tx(
        lambda tx: tx.put_device(
            OwnDevice(
                device_id=info.device_id,
                signature_public_key=info.device_key,
                name="",
                status=DeviceStatus.APPROVED,
                first_seen_at=now,
            )
        )
    )
    s.hub.emit(DeviceChanged(ref, DeviceChange.LINKED, by=s.me))
    await add_own_device(s, info.device_id, wait=key_package_timeout)
    return ref


async def revoke_device(s: Session, device_id: str) -> None:
    """Revoke another device of this account and remove it from every conversation."""
    if device_id == s.me.device_id:
        raise ConfigurationError("a device cannot revoke itself; use another device")
    await s.transport.revoke_device(device_id)
    s.devices.pop(s.me.user, None)
    await list_devices(s)
    await remove_devices_everywhere(s, {device_id})


async def sync_devices(s: Session) -> list[DeviceInfo]:
    """Reconcile this account's devices with the conversations: add our devices that are
    missing (if they have KeyPackages), remove revoked ones, and report devices this
    device has not seen before (`DeviceChange.LINKED`: check it was you, I3). Checks the
    account's device list in the transparency log first (`check_transparency`)."""
    await check_transparency(s)
    devices = await list_devices(s)
    live = {d.device_id for d in devices if d.revoked_at is None}
    revoked = {d.device_id for d in devices if d.revoked_at is not None}
    for device_id in sorted(live - {s.me.device_id}):
        await add_own_device(s, device_id, wait=0.0)
    await remove_devices_everywhere(s, revoked)
    return devices


async def check_transparency(s: Session) -> list[TransparencyAlarm]:
    """Check this account's own device list in the transparency log against the
    server's directory: every device nobody of this account approved, and a log that
    contradicts itself, is emitted as a `TransparencyAlarm` (and returned)."""
    directory = await s.transport.list_devices(s.me.user, verify=False)
    try:
        found = await kt_profile.monitor(s.kt, s.me, directory)
    except (KtViolation, KeyNotInTransparencyLog) as e:
        # No list at all is proven absence in a witnessed log: an account registered
        # without one, whose devices no peer will accept. Loud either way.
        found = [violation_alarm(e)]
    return [await alarms.raise_alarm(s, alarm) for alarm in found]


def violation_alarm(e: Exception) -> TransparencyAlarm:
    """The alarm a `KtViolation` (or a missing own list) is."""
    if isinstance(e, KtRollback):
        return TransparencyAlarm(AlarmKind.ROLLBACK, str(e))
    if isinstance(e, KtFork):
        return TransparencyAlarm(AlarmKind.FORK, str(e))
    return kt_profile.violation(str(e))


async def safety_number(s: Session, username: str) -> kt_profile.Verification:
    """The safety number with ``username`` (from both users' verified device lists) and
    whether it is the one confirmed with `confirm_safety_number`."""
    return await kt_profile.verification(s.store, s.kt, s.me.user, username)


async def confirm_safety_number(s: Session, username: str) -> kt_profile.Verification:
    """Record that the safety number with ``username`` was compared (in person, or by
    scanning their QR code); after a later change `safety_number` says CHANGED (and the
    roster notice of the change is emitted once, by `check_confirmed`)."""
    s.kt_checked.pop(username, None)
    return await kt_profile.confirm(s.store, s.kt, s.me.user, username)


async def check_confirmed(s: Session, username: str) -> None:
    """Once per version of a peer's verified device list: notice, once, each device the
    peer linked or revoked since the version noticed before (`alarms.roster_seen`). Every
    version in the log is signed by a device of the one before, so a change there is the
    account's own doing: a roster notice, not an alarm (a device the log does not have is
    refused and reported by `check_devices`)."""
    verified = s.kt.cached(username)
    if username == s.me.user or verified is None:
        return
    if s.kt_checked.get(username) == verified.version:
        return
    await alarms.roster_seen(s, username, verified.version, list(verified.devices()))
    s.kt_checked[username] = verified.version


async def roster_changed(s: Session, username: str) -> None:
    """A device of ``username`` left a conversation: verify their current device list and
    notice what changed (`check_confirmed`). A user with no list any more is `KtRollback`."""
    try:
        await s.kt.device_list(username)
    except KtViolation as e:
        await alarms.raise_alarm(s, violation_alarm(e))
        raise
    await check_confirmed(s, username)


async def top_up_key_packages(s: Session) -> None:
    """Keep ``key_package_target`` one-time KeyPackages and a last-resort one uploaded, for
    each suite this device publishes (the classic one, and the PQ hybrid one by default)."""
    for suite in s.publish_suites:
        await _top_up(s, suite)


def _of_suite(local: Sequence[StoredKeyPackage], suite: CipherSuite) -> list[StoredKeyPackage]:
    return [k for k in local if decode(KeyPackage, k.key_package).cipher_suite == suite.id]


async def _top_up(s: Session, suite: CipherSuite) -> None:
    """`top_up_key_packages` for one suite.

    The private keys are stored before the upload, so a crash can only leave keys that
    were never published (harmless), never a published package we cannot open.
    """
    sid = int(suite.id)
    status = await s.transport.key_package_status(sid)
    now = s.now_ms()
    local = _of_suite(await s.tx(lambda tx: tx.list_key_packages()), suite)
    if status.count and any(
        not k.last_resort and now - k.created_at > KEY_PACKAGE_LIFETIME_MS // 2 for k in local
    ):
        await drain_stale_key_packages(s, status.count, suite)
        status = await s.transport.key_package_status(sid)
        local = _of_suite(await s.tx(lambda tx: tx.list_key_packages()), suite)
    newest_last = max((k.created_at for k in local if k.last_resort), default=None)
    # The last-resort package is replaced long before it expires (it is never consumed).
    rotate = (
        not status.last_resort
        or newest_last is None
        or now - newest_last > KEY_PACKAGE_LIFETIME_MS // 2
    )
    target = max(s.options.key_package_target, status.low_watermark)
    count = target - status.count if status.count < status.low_watermark else 0
    if count <= 0 and not rotate:
        return
    bundles = await asyncio.to_thread(lambda: [s.new_key_package(suite) for _ in range(count)])
    last = await asyncio.to_thread(s.new_key_package, suite) if rotate else None

    def stored(bundle: KeyPackageBundle, last_resort: bool) -> StoredKeyPackage:
        return StoredKeyPackage(
            ref=bundle.ref,
            key_package=encode(bundle.key_package),
            init_private_key=bundle.init_private_key,
            encryption_private_key=bundle.encryption_private_key,
            created_at=now,
            last_resort=last_resort,
        )

    def write(tx: Transaction) -> None:
        for bundle in bundles:
            tx.insert_key_package(stored(bundle, False))
        if last is not None:
            tx.insert_key_package(stored(last, True))

    await s.tx(write)
    await s.transport.upload_key_packages(
        [encode(MLSMessage(b.key_package)) for b in bundles],
        last_resort=encode(MLSMessage(last.key_package)) if last is not None else None,
    )


async def drain_stale_key_packages(
    s: Session, limit: int, suite: CipherSuite | None = None
) -> None:
    """Take our own old one-time KeyPackages (of ``suite``, default the classic one) back
    from the directory (it hands out the oldest first and cannot tell that they will
    expire), so that peers get fresh ones."""
    half = KEY_PACKAGE_LIFETIME_MS // 2000
    suite = suite or s.suite
    for _ in range(limit):
        try:
            claimed = await s.transport.claim_key_package(s.me.device_id, int(suite.id))
        except NotFound:
            return
        if claimed.last_resort:
            return
        body = decode(MLSMessage, claimed.key_package).body
        if not isinstance(body, KeyPackage):
            raise BadResponse("the directory returned something else than a KeyPackage")
        ref = make_key_package_ref(suite, body)
        await s.tx(functools.partial(_forget_key_package, ref=ref))
        lifetime = body.leaf_node.lifetime
        if lifetime is None or lifetime.not_after - s.now_s() > half:
            return  # a fresh one (now used up too): the stale ones are gone


async def record_own_devices(
    s: Session, devices: Sequence[DeviceInfo], names: dict[str, str] | None = None
) -> None:
    """Store the account's device list; report devices not seen before (I3)."""
    s.devices[s.me.user] = {d.device_id: d for d in devices}
    now = s.now_ms()
    names = names or {}

    def write(tx: Transaction) -> list[DeviceChanged]:
        events: list[DeviceChanged] = []
        first = not tx.list_devices()
        for d in devices:
            known = tx.get_device(d.device_id)
            status = DeviceStatus.REVOKED if d.revoked_at is not None else DeviceStatus.APPROVED
            if known is not None and known.status is status:
                continue
            tx.put_device(
                OwnDevice(
                    device_id=d.device_id,
                    signature_public_key=d.device_key,
                    name=names.get(d.device_id, known.name if known else ""),
                    status=status,
                    first_seen_at=known.first_seen_at if known else now,
                )
            )
            if first or d.device_id == s.me.device_id:
                continue
            ref = DeviceRef(s.me.user, d.device_id)
            if d.revoked_at is not None:
                events.append(DeviceChanged(ref, DeviceChange.REVOKED))
            else:
                by = DeviceRef(s.me.user, d.approved_by) if d.approved_by else None
                events.append(DeviceChanged(ref, DeviceChange.LINKED, by=by))
        return events

    for event in await s.tx(write):
        s.hub.emit(event)


async def device_info(s: Session, ref: DeviceRef) -> DeviceInfo | None:
    """The server's record of a device (None if the user has no such device). The key
    itself is vouched for by the transparency log (`_check_devices` asks it first), so
    the directory's approval chain is not required here: a server that slipped in one
    bad entry must not make all of a user's genuine devices unusable."""
    known = s.devices.get(ref.user)
    if known is None or ref.device_id not in known:
        try:
            devices = await s.transport.list_devices(ref.user, verify=False)
        except NotFound:
            return None
        known = {d.device_id: d for d in devices}
        s.devices[ref.user] = known
    return known.get(ref.device_id)


async def check_devices(s: Session, entries: Iterable[RosterEntry]) -> None:
    """Every device must be in its user's device list in the key-transparency log with
    exactly this key (`KeyNotInTransparencyLog`), and registered for its user on the
    server, admitted by the approval chain (I3, `ValidationError`). Network errors (and
    a log head not witnessed yet) propagate."""
    for entry in entries:
        try:
            await s.kt.check_device(entry.device.user, entry.device.device_id, entry.signature_key)
        except KtViolation as e:
            await alarms.raise_alarm(s, violation_alarm(e))
            raise
        except KeyNotInTransparencyLog as e:
            await _not_in_log(s, entry.device, e)
            raise
        await check_confirmed(s, entry.device.user)
        info = await device_info(s, entry.device)
        if info is None or info.device_key != entry.signature_key:
            raise ValidationError(
                f"device {entry.device} is not a registered, approved device of {entry.device.user}"
            )


async def _not_in_log(s: Session, ref: DeviceRef, e: KeyNotInTransparencyLog) -> None:
    """A device offered with a key the log does not have: a key swap if the log has the
    device with another key (an alarm), else a device the log does not know (a ghost, left
    out: a warning about a peer; this account's own are alarmed by `check_transparency`)."""
    verified = s.kt.cached(ref.user)
    if verified is not None and verified.device(ref.device_id) is not None:
        await alarms.raise_alarm(
            s,
            TransparencyAlarm(
                AlarmKind.KEY_MISMATCH,
                f"the server offered device {ref} with a key that is not the one in the "
                "transparency log",
                ref,
            ),
        )
    elif ref.user != s.me.user:
        await alarms.skipped(s, ref, f"not in the transparency log: {e}")


async def check_claimed(
    s: Session, user: str, claimed: ClaimedKeyPackage, suite: CipherSuite | None = None
) -> KeyPackage | None:
    """A claimed KeyPackage of ``suite`` (default the classic one) usable for ``user``'s
    device, or None (logged) if it is not."""
    try:
        body = decode(MLSMessage, claimed.key_package).body
        if not isinstance(body, KeyPackage):
            raise ValidationError("not a KeyPackage")
        named = device_ref_of(body.leaf_node.credential)
        if (
            named == DeviceRef(user, claimed.device_id)
            and protocol.device_id_of(body.leaf_node.signature_key) != named.device_id
        ):
            await alarms.raise_alarm(
                s,
                TransparencyAlarm(
                    AlarmKind.KEY_MISMATCH,
                    f"the server offered a KeyPackage of device {named} signed with a key that "
                    "is not that device's",
                    named,
                ),
            )
            return None
        ref = check_binding(body.leaf_node)
        if ref != DeviceRef(user, claimed.device_id):
            raise ValidationError("KeyPackage names another device")
        if body.cipher_suite != (suite or s.suite).id:
            raise ValidationError("KeyPackage of another cipher suite")
        if CONVERSATION_INFO_EXTENSION not in body.leaf_node.capabilities.extensions:
            raise ValidationError("KeyPackage lacks the conversation info capability")
        lifetime = body.leaf_node.lifetime
        if lifetime is None or not lifetime.contains(s.now_s()):
            # An idle device's old one-time package: claimed again by the caller.
            log.info("skipping an expired KeyPackage of %s", user)
            return None
        await check_devices(s, [RosterEntry(LeafIndex(0), ref, body.leaf_node.signature_key)])
    except NETWORK:
        raise
    except KeyNotInTransparencyLog:
        return None  # reported by check_devices
    except DoorlessError as e:
        if user != s.me.user and protocol.is_device_id(claimed.device_id):
            await alarms.skipped(
                s, DeviceRef(user, claimed.device_id), f"its KeyPackage is unusable: {e}"
            )
        else:
            log.warning("skipping a KeyPackage of %s: %s", user, e)
        return None
    return body


async def claim_users(
    s: Session, users: Sequence[str], suite: CipherSuite | None = None
) -> Claimed:
    """One KeyPackage of ``suite`` (default the classic one) for every device of each user
    (this device excepted)."""
    claimed = await _claim_users(s, users, suite, every_device=False)
    assert claimed is not None  # only every_device gives None
    return claimed


async def claim_every_device(
    s: Session, users: Sequence[str], suite: CipherSuite
) -> Claimed | None:
    """Like `claim_users`, or None as soon as one live device has no usable package of
    ``suite`` (the packages claimed until then are used up: their owners top up)."""
    return await _claim_users(s, users, suite, every_device=True)


async def _claim_users(
    s: Session, users: Sequence[str], suite: CipherSuite | None, *, every_device: bool
) -> Claimed | None:
    claimed: Claimed = {}
    sid = int((suite or s.suite).id)
    for user in users:
        result = await s.transport.claim_key_packages(user, sid)
        if every_device and result.missing:
            return None
        usable = 0
        for c in result.key_packages:
            kp = await check_claimed(s, user, c, suite)
            # An unusable one-time package (e.g. expired on an idle device): claim again,
            # which also drains it from the directory.
            for _ in range(_RECLAIMS):
                if kp is not None or c.last_resort:
                    break
                try:
                    c = await s.transport.claim_key_package(c.device_id, sid)
                except NotFound:
                    break
                kp = await check_claimed(s, user, c, suite)
            if kp is not None:
                claimed[c.device_id] = (DeviceRef(user, c.device_id), kp)
                usable += 1
            elif every_device:
                return None
        if usable == 0 and user != s.me.user:
            raise UserUnavailable(f"{user} has no device that can be added now")
    return claimed


async def claim_device(
    s: Session, ref: DeviceRef, wait: float, suite: CipherSuite | None = None
) -> KeyPackage | None:
    """Claim one KeyPackage of ``suite`` (default the classic one) of one device, waiting up
    to ``wait`` seconds for one."""
    deadline = asyncio.get_running_loop().time() + wait
    delay = 0.1
    while True:
        try:
            claimed = await s.transport.claim_key_package(ref.device_id, int((suite or s.suite).id))
        except NotFound:
            if asyncio.get_running_loop().time() >= deadline:
                return None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
            continue
        return await check_claimed(s, ref.user, claimed, suite)


async def active_groups(s: Session) -> list[Conv]:
    """The conversations this device is a member of."""
    rows = await s.tx(lambda tx: tx.list_groups())
    return [
        s.cache.get(r.group_id) or Conv.from_row(r) for r in rows if r.status is GroupStatus.ACTIVE
    ]


async def add_own_device(s: Session, device_id: str, *, wait: float) -> None:
    """Add one of this account's devices to every active conversation that lacks it."""
    ref = DeviceRef(s.me.user, device_id)
    for conv in await active_groups(s):
        if ref in safe_roster(conv.mls):
            continue
        kp = await claim_device(s, ref, wait, conv.mls.suite)
        if kp is None:
            log.info("device %s has no KeyPackage yet; it will be added later", ref)
            return
        async with s.lock:
            await membership.commit_locked(
                s, conv.group_id, membership.adds(s, {device_id: (ref, kp)})
            )


async def remove_devices_everywhere(s: Session, device_ids: set[str]) -> None:
    """Remove these devices of this account from every conversation that has them."""
    if not device_ids:
        return

    async def build(conv: Conv, excluded: frozenset[str]) -> Plan | None:
        removes = tuple(
            Remove(e.leaf)
            for ref, e in safe_roster(conv.mls).items()
            if ref.user == s.me.user and ref.device_id in device_ids
        )
        return Plan(removes) if removes else None

    for conv in await active_groups(s):
        if any(r.device_id in device_ids for r in safe_roster(conv.mls) if r.user == s.me.user):
            async with s.lock:
                await membership.commit_locked(s, conv.group_id, build)
