"""The server's part of message franking (``docs/franking.md`` §7): keys, stamps, reports.

The delivery rules that use it (which messages must be franked, when they are stamped, who
receives them, blocks) are in `doorless.server.delivery`; this module provides the pieces.

* **Keys.** One Ed25519 franking signature key (clients pin its public key from
  ``GET /v1/info``) and a ring of HMAC keys (`doorless.franking.FrankingKeyring`), all in the
  database so that every server process stamps and verifies with the same keys. The current
  HMAC key is replaced every ``franking_rotation`` seconds (by whichever process sweeps first;
  a compare-and-swap in the storage makes that one rotation) or by
  ``doorless server rotate-franking-key``; a retired key verifies reports for
  ``franking_retention`` seconds more, then it is deleted and reports of the messages it
  stamped fail with ``report_expired``.
* **Stamping.** `application_tag` reads the franking tag of an application message from its
  PrivateMessage ``authenticated_data`` (in clear; `doorless.franking.franking_tag_from_aad`)
  and raises `Unfranked` when there is none. `FrankingService.stamper` makes the stamp the
  storage applies in the delivery transaction: the tag, the device the server authenticated
  as the sender (`sender_identity`), the group id of the header, the server clock and the
  group's next sequence number.
* **Reports.** `file_report` verifies an `AbuseReport` (`doorless.franking.verify_report`),
  checks each reported attachment against the stored blob (``ok``, ``mismatch``, ``gone``)
  and files it. Nothing is learnt about messages nobody reported.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from doorless.codec import decode, encode
from doorless.crypto import cipher_suite
from doorless.errors import DecodeError, DoorlessError, RemoteError, StateError
from doorless.franking import (
    DEFAULT_SIGNATURE_SUITE,
    AbuseReport,
    FrankingKey,
    FrankingKeyring,
    FrankingKeySecret,
    ReportExpired,
    SenderIdentity,
    VerifiedReport,
    franking_tag_from_aad,
    open_attachment,
    stamp,
    verify_report,
)
from doorless.mls.framing import ContentType, MLSMessage, PrivateMessage, PublicMessage
from doorless.server.blobs import ATTACHMENT_ID_PATTERN, BlobStore
from doorless.server.storage.base import FrankingKeyRecord, FrankingKeys, ReportRecord, Storage

FIRST_KEY_ID = 0  # every database starts its key ids here (FRANK-7 tells expired from unknown)
KEY_LENGTH = 32


class Unfranked(RemoteError):
    """An application message without a franking tag, or one sent as a PublicMessage."""


def sender_identity(username: str, device_id: str) -> SenderIdentity:
    """How a device is named in franked content and in the MLS credential
    (`doorless.client.conversations.make_credential` makes the same)."""
    return SenderIdentity(username.encode("ascii"), device_id.encode("ascii"))


def application_tag(data: bytes) -> bytes | None:
    """The franking tag of an application message, None for any other MLSMessage.

    The content type of a PrivateMessage is in clear (RFC 9420 §6.3), so is its
    ``authenticated_data``. Raises `Unfranked` for an application message without a valid
    ``frank_aad`` component, or sent as a PublicMessage (RFC 9420 §6.2 forbids it), and
    `DecodeError` if ``data`` is not an MLSMessage.
    """
    body = decode(MLSMessage, data).body
    if isinstance(body, PublicMessage):
        if body.content.content_type == ContentType.application:
            raise Unfranked("application data must be sent as a PrivateMessage")
        return None
    if not isinstance(body, PrivateMessage) or body.content_type != ContentType.application:
        return None
    try:
        return franking_tag_from_aad(body.authenticated_data)
    except DecodeError:
        raise Unfranked("application message without a franking tag (frank_aad)") from None


def _keyring(keys: FrankingKeys, retention_ms: int) -> FrankingKeyring:
    return FrankingKeyring(
        retention_ms,
        FIRST_KEY_ID,
        tuple(
            FrankingKey(k.key_id, FrankingKeySecret(k.key), k.created_at_ms, k.retired_at_ms)
            for k in keys.keys
        ),
    )


@dataclass(frozen=True, slots=True)
class FiledReport:
    report_id: int
    verified: VerifiedReport
    attachments: tuple[str, ...]


class FrankingService:
    """Keys, stamps and report checks of one server process (shared through the storage)."""

    def __init__(
        self,
        storage: Storage,
        *,
        rotation_ms: int,
        retention_ms: int,
        clock_ms: Callable[[], int],
        rng: Callable[[int], bytes] = os.urandom,
        signature_suite: int = DEFAULT_SIGNATURE_SUITE,
    ) -> None:
        self._storage = storage
        self.rotation_ms = rotation_ms
        self.retention_ms = retention_ms
        self._clock_ms = clock_ms
        self._rng = rng
        self.signature_suite = signature_suite
        self._suite = cipher_suite(signature_suite)
        self._signing_key = b""
        self.public_key = b""
        self._keyring: FrankingKeyring | None = None
        self._lock = asyncio.Lock()

    # --- keys ------------------------------------------------------------------------------

    @property
    def keyring(self) -> FrankingKeyring:
        if self._keyring is None:
            raise StateError("FrankingService.load() was not called")
        return self._keyring

    async def load(self) -> None:
        """Read the keys (minting them on a new database)."""
        now = self._clock_ms()
        initial = FrankingKeys(
            self._suite.generate_signature_key_pair().private_key,
            (FrankingKeyRecord(FIRST_KEY_ID, self._rng(KEY_LENGTH), now),),
        )
        self._apply(await self._storage.franking_keys(initial))

    def _apply(self, keys: FrankingKeys) -> None:
        self._keyring = _keyring(keys, self.retention_ms)
        if keys.signing_key != self._signing_key:
            self._signing_key = keys.signing_key
            self.public_key = self._suite.signature_public_key(keys.signing_key)

    async def rotate(self) -> int:
        """Make a fresh HMAC key the stamping key; returns its id."""
        async with self._lock:
            await self.load()
            current = self.keyring.current
            new = FrankingKeyRecord(current.key_id + 1, self._rng(KEY_LENGTH), self._clock_ms())
            await self._storage.rotate_franking_key(current.key_id, new)
            await self.load()
            return self.keyring.current.key_id

    async def maintain(self) -> list[int]:
        """Rotate when the current key is older than the rotation period, delete retired keys
        whose retention has ended (returns their ids), and pick up other processes' changes."""
        async with self._lock:
            await self.load()
            now = self._clock_ms()
            current = self.keyring.current
            if now - current.created_at_ms >= self.rotation_ms:
                new = FrankingKeyRecord(current.key_id + 1, self._rng(KEY_LENGTH), now)
                await self._storage.rotate_franking_key(current.key_id, new)
            expired = [
                k.key_id
                for k in self.keyring.keys
                if k.retired_at_ms is not None and k.retired_at_ms + self.retention_ms <= now
            ]
            if expired:
                await self._storage.delete_franking_keys(expired)
            await self.load()
            return expired

    # --- stamping --------------------------------------------------------------------------

    def stamper(
        self, tag: bytes, *, sender: SenderIdentity, group_id: bytes, accepted_at_ms: int
    ) -> Callable[[int], bytes]:
        """What `doorless.server.storage.base.Delivery.stamp` calls with the group's next
        sequence number: the encoded `ServerFrank`."""
        keyring, signing_key, suite = self.keyring, self._signing_key, self.signature_suite

        def make(server_seq: int) -> bytes:
            frank = stamp(
                tag,
                sender=sender,
                group_id=group_id,
                accepted_at_ms=accepted_at_ms,
                server_seq=server_seq,
                keyring=keyring,
                signing_key=signing_key,
                signature_suite=suite,
            )
            return encode(frank)

        return make

    # --- reports ---------------------------------------------------------------------------

    async def verify(self, report: AbuseReport) -> VerifiedReport:
        """`verify_report` against the current keys (re-read first if the frank names a key
        this process has not seen: another process rotated)."""
        if report.frank.key_id > self.keyring.current.key_id:
            await self.load()
        return verify_report(
            report,
            self.keyring,
            server_public_key=self.public_key,
            now_ms=self._clock_ms(),
            signature_suite=self.signature_suite,
        )

    def verifiable_until_ms(self, key_id: int) -> int | None:
        return self.keyring.verifiable_until_ms(key_id)


def _identity_text(value: bytes) -> str:
    return value.decode("ascii", "replace")


def _open_blob(blobs: BlobStore, locator: str) -> BinaryIO | None:
    if re.fullmatch(ATTACHMENT_ID_PATTERN, locator) is None:
        return None
    return blobs.open(locator)


async def check_attachments(report: VerifiedReport, blobs: BlobStore) -> tuple[str, ...]:
    """One verdict per reported attachment: ``ok`` (the stored ciphertext opens to exactly
    the committed plaintext, FRANK-8), ``mismatch``, or ``gone`` (expired or never stored)."""
    verdicts: list[str] = []
    for descriptor in report.content.attachments:
        locator = descriptor.locator.decode("ascii", "replace")
        f = await asyncio.to_thread(_open_blob, blobs, locator)
        if f is None:
            verdicts.append("gone")
            continue
        with f:
            ciphertext = await asyncio.to_thread(f.read)
        try:
            await asyncio.to_thread(open_attachment, descriptor, ciphertext)
        except DoorlessError:
            verdicts.append("mismatch")
        else:
            verdicts.append("ok")
    return tuple(verdicts)


async def file_report(
    service: FrankingService,
    storage: Storage,
    blobs: BlobStore,
    data: bytes,
    *,
    reporter: tuple[str, str],
    now: int,
) -> FiledReport:
    """Verify and file one encoded `AbuseReport` from device ``reporter`` (user, device).

    Raises `DecodeError`, `ReportExpired` or another `RemoteError` of
    `doorless.franking.verify_report`; nothing is stored then.
    """
    report = decode(AbuseReport, data)
    verified = await service.verify(report)
    verdicts = await check_attachments(verified, blobs)
    sender = verified.sender
    record = ReportRecord(
        reporter_username=reporter[0],
        reporter_device_id=reporter[1],
        sender_username=_identity_text(sender.user_id),
        sender_device_id=_identity_text(sender.device_id),
        group_id=verified.group_id,
        server_seq=verified.context.server_seq,
        reason=verified.reason.name,
        report=data,
        attachments=verdicts,
        created_at=now,
    )
    report_id = await storage.add_report(record)
    return FiledReport(report_id, verified, verdicts)


def report_fingerprint(record: ReportRecord) -> str:
    """Reports of the same message (by several recipients) share this value."""
    return hashlib.sha256(record.group_id + record.server_seq.to_bytes(8, "big")).hexdigest()[:16]


__all__ = [
    "FIRST_KEY_ID",
    "FiledReport",
    "FrankingService",
    "ReportExpired",
    "Unfranked",
    "application_tag",
    "check_attachments",
    "file_report",
    "report_fingerprint",
    "sender_identity",
]
