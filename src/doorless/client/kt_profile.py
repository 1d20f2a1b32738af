"""Key transparency in a client profile: where a `KtVerifier`'s state lives, own-label
monitoring turned into events, and confirmed safety numbers.

Persisted in the encrypted profile store (`doorless.client.store`), each write its own
transaction:

* the last verified checkpoint: the ``kt_checkpoint`` row (size, root, signed note, time);
* the log key pinned on first use: setting ``kt.log_key``;
* digests of the device lists this device signed: setting ``kt.published`` (hex, comma
  separated), so that `KtVerifier.monitor_own` can tell a list signed with this device's key
  elsewhere (a stolen key) from one it made;
* confirmed safety numbers: setting ``kt.confirmed.<username>`` = the 60 digits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from doorless.client.events import AlarmKind, DeviceRef, TransparencyAlarm
from doorless.client.kt import (
    DirectoryDevice,
    KtConfig,
    KtStored,
    KtVerifier,
    TrustedHead,
    UnapprovedDevice,
)
from doorless.client.safety_number import SafetyNumber, safety_number
from doorless.client.store import KtCheckpoint, ProfileStore, Transaction
from doorless.client.transport import DeviceInfo, Transport

SETTING_LOG_KEY = "kt.log_key"
SETTING_PUBLISHED = "kt.published"
SETTING_CONFIRMED = "kt.confirmed."


def make_verifier(
    store: ProfileStore,
    transport: Transport,
    config: KtConfig,
    clock: Callable[[], float],
    cipher_suite: int,
) -> KtVerifier:
    """The verifier of a profile, wired to its store, and installed on its transport (which
    then signs device lists from the verified ones). Lists the transport signed before (the
    account's version 0, at registration) are carried over and persisted."""
    carried = set(transport.kt.published) if transport.kt is not None else set()

    def read(tx: Transaction) -> KtStored:
        row = tx.get_kt_checkpoint()
        trusted = (
            None
            if row is None
            else TrustedHead(row.tree_size, row.root_hash, row.signed_tree_head, row.verified_at)
        )
        published = {
            bytes.fromhex(h) for h in (tx.get_setting(SETTING_PUBLISHED) or "").split(",") if h
        }
        if not carried <= published:
            published |= carried
            tx.set_setting(SETTING_PUBLISHED, ",".join(sorted(h.hex() for h in published)))
        return KtStored(trusted, tx.get_setting(SETTING_LOG_KEY), frozenset(published))

    async def load() -> KtStored:
        return await store.run_transaction(read)

    async def save_head(head: TrustedHead) -> None:
        await store.run_transaction(
            lambda tx: tx.put_kt_checkpoint(
                KtCheckpoint(
                    tree_size=head.size,
                    root_hash=head.root,
                    signed_tree_head=head.checkpoint,
                    verified_at=head.verified_at,
                )
            )
        )

    async def save_log_key(vkey: str) -> None:
        await store.run_transaction(lambda tx: tx.set_setting(SETTING_LOG_KEY, vkey))

    async def save_published(digest: bytes) -> None:
        def write(tx: Transaction) -> None:
            known = [h for h in (tx.get_setting(SETTING_PUBLISHED) or "").split(",") if h]
            if digest.hex() not in known:
                tx.set_setting(SETTING_PUBLISHED, ",".join([*known, digest.hex()]))

        await store.run_transaction(write)

    verifier = KtVerifier(
        transport,
        config,
        published=carried,
        on_head=save_head,
        on_published=save_published,
        loader=load,
        on_log_key=save_log_key,
        clock=clock,
    )
    transport.kt = verifier
    transport.kt_cipher_suite = cipher_suite
    return verifier


async def monitor(
    verifier: KtVerifier, me: DeviceRef, directory: Sequence[DeviceInfo]
) -> list[TransparencyAlarm]:
    """`KtVerifier.monitor_own` as events (`KtViolation` propagates: see `violation`)."""
    found: list[UnapprovedDevice] = await verifier.monitor_own(
        me.user,
        me.device_id,
        [DirectoryDevice(d.device_id, d.device_key, d.revoked_at) for d in directory],
    )
    return [
        TransparencyAlarm(
            AlarmKind.UNAPPROVED_DEVICE,
            f"device {a.device_id[:8]} of your account: {a.reason}",
            DeviceRef(me.user, a.device_id),
        )
        for a in found
    ]


def violation(detail: str) -> TransparencyAlarm:
    return TransparencyAlarm(AlarmKind.LOG_VIOLATION, detail)


# --- safety numbers ----------------------------------------------------------------------------


class SafetyStatus(StrEnum):
    UNVERIFIED = "unverified"  # never confirmed
    VERIFIED = "verified"  # confirmed, and the key sets are still the confirmed ones
    CHANGED = "changed"  # confirmed once, but a key set changed since: compare again


@dataclass(frozen=True, slots=True)
class Verification:
    """A contact's safety number now, and how it compares with the one confirmed."""

    username: str
    number: SafetyNumber
    status: SafetyStatus


async def current_number(verifier: KtVerifier, me: str, username: str) -> SafetyNumber:
    mine = await verifier.device_list(me)
    theirs = await verifier.device_list(username)
    return safety_number(me, mine.devices(), username, theirs.devices())


async def verification(
    store: ProfileStore, verifier: KtVerifier, me: str, username: str
) -> Verification:
    number = await current_number(verifier, me, username)
    confirmed = await store.run_transaction(lambda tx: tx.get_setting(SETTING_CONFIRMED + username))
    if confirmed is None:
        status = SafetyStatus.UNVERIFIED
    elif confirmed == number.digits:
        status = SafetyStatus.VERIFIED
    else:
        status = SafetyStatus.CHANGED
    return Verification(username, number, status)


async def confirm(
    store: ProfileStore, verifier: KtVerifier, me: str, username: str
) -> Verification:
    """Record that the user compared the current safety number with ``username``."""
    number = await current_number(verifier, me, username)
    await store.run_transaction(
        lambda tx: tx.set_setting(SETTING_CONFIRMED + username, number.digits)
    )
    return Verification(username, number, SafetyStatus.VERIFIED)


__all__ = [
    "SafetyStatus",
    "Verification",
    "confirm",
    "current_number",
    "make_verifier",
    "monitor",
    "verification",
    "violation",
]
