"""The server's key-transparency log (design notes §1.3 "KT-lite"; ``docs/protocol-http.md``).

Each account's `DeviceList` is a versioned value under the label ``u:<username>``
(`doorless.wire.kt`). A new version reaches the log in two steps:

1. the account/link/revoke route checks that the uploaded list follows the label's latest one
   (`doorless.kt.device_list.verify_successor`: signed by a device of the previous version) and
   stores it as a *pending* version in the same storage transaction as the directory change;
2. `KtService.publish` takes every pending version, inserts them into the prefix tree, appends
   the new root as one `LogEntry` to the RFC 9162 log, signs a C2SP checkpoint and records
   all of it in one transaction (`Storage.kt_append`).

So the log only ever holds versions some device of the account signed, and a crash between
the two steps leaves the version pending until the next publish (on the next update, at
start, or in the sweeper).

The storage is the source of truth; `KtService` keeps the `CombinedTree` (every entry's prefix
tree, shared structure) in memory, rebuilt from the stored entries at start and caught up
before each answer, so several server processes over one database serve the same log.
Appends are serialized: within a process by an asyncio lock, across processes by the storage's
append lock (`Storage.kt_lock`: a PostgreSQL advisory lock; SQLite has a single writer), held
from the catch-up to the append, so a publish never races another. Should one still lose (a
process without the lock), `kt_append` refuses it (`KtConflict`) and it rebuilds and retries;
a log too busy to append answers `StorageUnavailable` (503, retry), never a 500.

Answers: ``head`` (signed checkpoint with the witnesses' cosignatures, consistency proof from
the client's size, last entry with its inclusion proof), ``search`` (greatest version of a
label with its binary ladder, plus earlier versions the client lacks, all in the last entry's
prefix tree), ``audit`` (what each entry added, for witnesses) and ``add_cosignatures``.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Sequence

from doorless.errors import ConfigurationError, DecodeError, StateError, ValidationError
from doorless.kt.checkpoint import (
    Checkpoint,
    NoteSignature,
    NoteVerifier,
    SignatureType,
    SignedCheckpoint,
    SignedNote,
    ed25519_public_key,
    sign_checkpoint,
    verify_signature,
)
from doorless.kt.combined import AuditEntry, CombinedTree
from doorless.kt.commitment import NC, commit, search_key
from doorless.kt.device_list import DeviceList, decode_device_list, verify_first, verify_successor
from doorless.kt.ladder import (
    greatest_version,
    prove_greatest_version,
    prove_label_absent,
    prove_version,
)
from doorless.kt.prefix_tree import PrefixLeaf, PrefixProof
from doorless.server.storage.base import (
    KtConflict,
    KtLogEntry,
    KtVersion,
    Storage,
    StorageUnavailable,
)
from doorless.wire.kt import (
    MAX_AUDIT_PAGE,
    MAX_VERSIONS_PER_SEARCH,
    KtAudit,
    KtAuditItem,
    KtHead,
    KtInfo,
    KtSearch,
    check_devices,
    check_entries,
    origin_of,
    user_label,
)

log = logging.getLogger("doorless.server.kt")

_PUBLISH_ATTEMPTS = 5
_RULE = "Doorless KT account"


class KtService:
    """The log of one server (one per process; see the module docstring)."""

    def __init__(
        self,
        storage: Storage,
        clock: Callable[[], float],
        witnesses: Sequence[str] = (),
    ) -> None:
        self._storage = storage
        self._clock = clock
        try:
            self.witnesses = tuple(NoteVerifier.from_vkey(w) for w in witnesses)
        except DecodeError as exc:
            raise ConfigurationError(f"invalid witness key: {exc}") from None
        if any(w.signature_type != SignatureType.COSIGNATURE_V1 for w in self.witnesses):
            raise ConfigurationError("witness keys are cosignature/v1 (type 0x04) keys")
        self._witness_vkeys = tuple(witnesses)
        self._tree = CombinedTree()
        self._checkpoint = b""  # log-signed note of the current size
        self._lock = asyncio.Lock()
        self._seed = b""
        self.origin = ""
        self.log_key: NoteVerifier | None = None

    # --- lifecycle -------------------------------------------------------------------------

    async def open(self, server_id: str) -> None:
        """Load the log from storage and publish what a crash may have left pending."""
        self._seed = await self._storage.kt_signing_seed()
        self.origin = origin_of(server_id)
        self.log_key = NoteVerifier(
            self.origin, SignatureType.ED25519, ed25519_public_key(self._seed)
        )
        self._tree = CombinedTree()
        self._checkpoint = b""
        async with self._lock:
            await self._catch_up()
        await self.publish()

    async def open_read_only(self, server_id: str) -> None:
        """`open` without publishing: rebuild the log from storage, checking every entry's
        prefix tree (`doorless server check`). Raises `StateError` on a mismatch."""
        self._seed = await self._storage.kt_signing_seed()
        self.origin = origin_of(server_id)
        self._tree = CombinedTree()
        async with self._lock:
            await self._catch_up()

    def info(self) -> KtInfo:
        return KtInfo(self.origin, self._key().vkey(), self._witness_vkeys)

    def _key(self) -> NoteVerifier:
        if self.log_key is None:
            raise StateError("the KT log is not open")
        return self.log_key

    @property
    def size(self) -> int:
        return self._tree.size

    async def _catch_up(self) -> None:
        """Append the entries other processes logged (caller holds the lock)."""
        while True:
            entries = await self._storage.kt_entries(self._tree.size, MAX_AUDIT_PAGE)
            if not entries:
                return
            for e in entries:
                if e.index != self._tree.size:
                    raise StateError("the stored KT log has a gap")
                entry = self._tree.append(e.timestamp, e.added)
                if entry.prefix_tree != e.prefix_root:
                    raise StateError("the stored KT log does not match its prefix tree")
                self._checkpoint = e.checkpoint

    # --- new versions ----------------------------------------------------------------------

    def new_version(self, label: bytes, version: int, dl: DeviceList) -> KtVersion:
        """A pending version holding ``dl``, with a fresh commitment opening."""
        value = dl.encode()
        opening = secrets.token_bytes(NC)
        return KtVersion(
            label=label,
            version=version,
            value=value,
            opening=opening,
            search_key=search_key(label, version),
            commitment=commit(opening, label, version, value),
        )

    async def current_list(self, label: bytes) -> DeviceList | None:
        """The label's latest device list (pending or logged), as stored."""
        latest = await self._storage.kt_latest_version(label)
        return None if latest is None else decode_device_list(latest.value)

    async def next_version(self, label: bytes, dl: DeviceList) -> KtVersion:
        """Check that ``dl`` validly follows the label's latest version (or starts it) and
        return the pending version to store. Raises `ValidationError`/`InvalidSignature`."""
        current = await self.current_list(label)
        if current is None:
            verify_first(dl)
        else:
            verify_successor(current, dl)
        return self.new_version(label, dl.version, dl)

    # --- what the account routes upload ---------------------------------------------------

    async def version_for_register(
        self, username: str, device_id: str, device_key: bytes, raw: bytes
    ) -> KtVersion:
        """Version 0 of a new account: exactly its first device, signed by it."""
        dl = decode_device_list(raw)
        check_devices(dl, username, {device_id: device_key})
        verify_first(dl)
        # If the name is taken, storage says so (UsernameTaken) before it sees this version.
        return self.new_version(user_label(username), 0, dl)

    async def version_for_change(
        self,
        username: str,
        signer_device_id: str,
        raw: bytes | None,
        expected: Callable[[dict[str, bytes]], dict[str, bytes]],
    ) -> KtVersion | None:
        """The next version after a link or revocation: the current devices changed by
        ``expected``, signed by the acting device. None for an account without a KT label
        (registered without a device list) when none is given."""
        label = user_label(username)
        current = await self.current_list(label)
        if current is None:
            if raw is not None:
                raise ValidationError("this account has no device list", rule=_RULE)
            return None
        if raw is None:
            raise ValidationError("the account's next device list is required", rule=_RULE)
        dl = decode_device_list(raw)
        if dl.tbs.signer_device_id != signer_device_id.encode("ascii"):
            raise ValidationError("the device list is signed by another device", rule=_RULE)
        check_devices(dl, username, expected(check_entries(current, username)))
        return await self.next_version(label, dl)

    async def publish(self) -> int:
        """Log every pending version as one entry; returns the log size."""
        async with self._lock, self._storage.kt_lock():
            for _ in range(_PUBLISH_ATTEMPTS):
                await self._catch_up()
                pending = await self._storage.kt_pending()
                if not pending:
                    return self._tree.size
                index = self._tree.size
                timestamp = max(int(self._clock() * 1000), self._tree.last_timestamp())
                added = tuple((v.search_key, v.commitment) for v in pending)
                entry = self._tree.append(timestamp, added)
                size = self._tree.size
                signed = sign_checkpoint(
                    Checkpoint(self.origin, size, self._tree.log.root()), self.origin, self._seed
                )
                try:
                    await self._storage.kt_append(
                        KtLogEntry(index, timestamp, entry.prefix_tree, signed.encode(), added)
                    )
                except KtConflict:
                    # Another process logged first: start over from what is stored.
                    self._tree = CombinedTree()
                    continue
                except BaseException:
                    self._tree = CombinedTree()
                    raise
                self._checkpoint = signed.encode()
            raise StorageUnavailable("could not append to the KT log (too much contention)")

    # --- answers ---------------------------------------------------------------------------

    async def _fresh(self) -> tuple[CombinedTree, int, bytes]:
        """Catch up, then capture (tree, size, checkpoint): a later publish appends to the
        tree object (sizes up to ``size`` keep their answers) or replaces it, never edits
        what the captured size covers."""
        async with self._lock:
            await self._catch_up()
            return self._tree, self._tree.size, self._checkpoint

    async def head(self, since: int = 0) -> KtHead:
        tree, size, checkpoint = await self._fresh()
        return await self._head_at(tree, size, checkpoint, since)

    async def _head_at(
        self, tree: CombinedTree, size: int, checkpoint: bytes, since: int
    ) -> KtHead:
        log_tree = tree.log
        if size == 0:
            signed = sign_checkpoint(
                Checkpoint(self.origin, 0, log_tree.root(0)), self.origin, self._seed
            )
            return KtHead(signed.encode(), since, (), None, ())
        consistency = log_tree.consistency_proof(since, size) if 0 < since < size else []
        signed = SignedCheckpoint.decode(checkpoint)
        for line in await self._storage.kt_cosignatures(size):
            signed = signed.with_signature(NoteSignature.parse_line(line))
        return KtHead(
            signed.encode(),
            since,
            tuple(consistency),
            tree.entry(size - 1),
            tuple(log_tree.inclusion_proof(size - 1, size)),
        )

    async def search(self, label: bytes, since: int = 0, from_version: int = 0) -> KtSearch:
        """The label in the last entry's prefix tree, and its versions ``from_version ..``
        below the greatest (at most `MAX_VERSIONS_PER_SEARCH`)."""
        tree, size, checkpoint = await self._fresh()
        head = await self._head_at(tree, size, checkpoint, since)
        if size == 0:
            return KtSearch(head, label, None, PrefixProof((), ()), ())
        prefix = tree.tree(size - 1)
        greatest = greatest_version(prefix, label)
        if greatest is None:
            return KtSearch(head, label, None, prove_label_absent(prefix, label), ())
        start = min(from_version, greatest)
        stored = {v.version: v for v in await self._storage.kt_versions(label, start)}
        if any(v not in stored for v in range(start, greatest + 1)):
            raise StateError("a logged KT version is missing from storage")
        top = stored[greatest]
        result = prove_greatest_version(prefix, label, greatest, top.opening, top.value)
        end = min(greatest, start + MAX_VERSIONS_PER_SEARCH)
        versions = tuple(
            prove_version(prefix, label, v, stored[v].opening, stored[v].value)
            for v in range(start, end)
        )
        return KtSearch(head, label, result, None, versions)

    async def audit(self, start: int, limit: int) -> KtAudit:
        tree, size, _ = await self._fresh()
        limit = max(0, min(limit, MAX_AUDIT_PAGE, size - start))
        entries = await self._storage.kt_entries(start, limit) if limit else []
        return KtAudit(
            size,
            tuple(
                KtAuditItem(
                    e.index,
                    tree.entry(e.index),
                    AuditEntry(e.timestamp, tuple(PrefixLeaf(k, c) for k, c in e.added)),
                )
                for e in entries
                if e.index < size
            ),
        )

    async def add_cosignatures(self, note: bytes) -> int:
        """Keep the valid cosignatures, by configured witnesses, in ``note`` (a checkpoint of
        this log); returns how many. Raises `ValidationError` when there is none, or when the
        note is not a checkpoint this log signed."""
        signed = SignedCheckpoint.decode(note)
        tree, size, _ = await self._fresh()
        cp = signed.checkpoint
        if cp.origin != self.origin or cp.extensions:
            raise ValidationError("not a checkpoint of this log", rule="C2SP tlog-checkpoint")
        if not 0 < cp.size <= size or cp.root != tree.log.root(cp.size):
            raise ValidationError("not a checkpoint of this log", rule="C2SP tlog-checkpoint")
        text = cp.text()
        kept = 0
        for sig in signed.signatures:
            witness = next(
                (w for w in self.witnesses if (w.name, w.key_id) == (sig.name, sig.key_id)),
                None,
            )
            if witness is None:
                continue  # signed-note: ignore unknown keys (the log's own signature too)
            verify_signature(text, sig, witness)  # InvalidSignature: reject the request
            await self._storage.kt_add_cosignature(
                cp.size, witness.name, sig.line().rstrip("\n"), int(self._clock())
            )
            kept += 1
        if not kept:
            raise ValidationError(
                "no cosignature by a witness this log collects for", rule="C2SP tlog-cosignature"
            )
        return kept


def note_text(note: bytes) -> str:
    """The text of a signed note (for logs and tests)."""
    return SignedNote.decode(note).text


__all__ = ["KtService", "note_text"]
