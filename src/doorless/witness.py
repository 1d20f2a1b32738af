"""A key-transparency witness: ``doorless witness --server URL --state DIR``.

A witness is what makes the log *one* log. It polls a Doorless server's ``/v1/kt/*``
endpoints, replays every log entry itself (`doorless.kt.combined.CombinedTree.replay`), and
cosigns a checkpoint (C2SP ``cosignature/v1``) only if

* the checkpoint carries the log's signature (key pinned on first use, or ``--log-key``);
* it does not go back: its size is at least the size the witness cosigned before;
* every new entry is a valid step from the previous prefix tree: timestamps never decrease,
  the added search keys are sorted and were all absent (nothing is ever removed or replaced),
  and the recomputed prefix-tree root is the one the log entry commits to;
* the RFC 9162 root of the replayed log equals the checkpoint's root, so the log the
  checkpoint names is the replayed one, which extends everything cosigned before.

Otherwise it refuses (`WitnessRefused`), says why, and keeps its state: a server that showed
two histories stays refused. Clients that require this witness's cosignature therefore never
accept a fork (split view), a rollback, or a log from which a version was removed.

State (``DIR/witness.sqlite3``, mode 0600): the witness's Ed25519 key, the pinned log key, and
every replayed entry (``AuditEntry``, ``LogEntry``), written only together with the checkpoint
they lead to, after it verified. At start the entries are replayed again into memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from doorless.codec import decode, encode
from doorless.errors import (
    ConfigurationError,
    DecodeError,
    InvalidSignature,
    RemoteError,
    ValidationError,
)
from doorless.kt.checkpoint import (
    NoteVerifier,
    SignatureType,
    SignedCheckpoint,
    cosign_checkpoint,
    ed25519_public_key,
    ed25519_verifier,
    verify_checkpoint,
)
from doorless.kt.combined import AuditEntry, CombinedTree
from doorless.kt.log_entry import LogEntry
from doorless.wire.kt import MAX_AUDIT_PAGE, KtAudit, KtHead, KtInfo

log = logging.getLogger("doorless.witness")

STATE_FILE = "witness.sqlite3"
DEFAULT_RECOSIGN_INTERVAL = 3600.0


class WitnessRefused(RemoteError):
    """The server's checkpoint is not one this witness can vouch for."""


class LogSource(Protocol):
    """The server's KT endpoints (`doorless.client.transport.Transport` without a device)."""

    async def kt_info(self) -> KtInfo: ...

    async def kt_head(self, since: int) -> KtHead: ...

    async def kt_audit(self, start: int, limit: int = 100) -> KtAudit: ...

    async def kt_cosign(self, checkpoint: bytes) -> int: ...


@dataclass(frozen=True, slots=True)
class StepResult:
    """What one poll did: ``cosigned`` the checkpoint of ``size`` or found nothing new."""

    size: int
    cosigned: bool
    new_entries: int


# --- persistent state ---------------------------------------------------------------------------


class WitnessState:
    """The witness's SQLite file (see the module docstring)."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = directory / STATE_FILE
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
            os.close(fd)
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.executescript(
            """
            CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS entries (
                idx INTEGER PRIMARY KEY, audit BLOB NOT NULL, log_entry BLOB NOT NULL);
            CREATE TABLE IF NOT EXISTS cosigned (
                id INTEGER PRIMARY KEY CHECK (id = 1), size INTEGER NOT NULL,
                root BLOB NOT NULL, cosigned_at INTEGER NOT NULL);
            """
        )

    def close(self) -> None:
        self._conn.close()

    def get(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def put(self, key: str, value: str) -> None:
        self._conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def seed(self) -> bytes:
        """The witness's Ed25519 private key (minted on first use)."""
        stored = self.get("seed")
        if stored is None:
            stored = secrets.token_hex(32)
            self.put("seed", stored)
        return bytes.fromhex(stored)

    def entries(self) -> list[tuple[AuditEntry, LogEntry]]:
        rows = self._conn.execute("SELECT audit, log_entry FROM entries ORDER BY idx").fetchall()
        return [(decode(AuditEntry, bytes(a)), decode(LogEntry, bytes(e))) for a, e in rows]

    def cosigned(self) -> tuple[int, bytes, int] | None:
        row = self._conn.execute("SELECT size, root, cosigned_at FROM cosigned").fetchone()
        return None if row is None else (int(row[0]), bytes(row[1]), int(row[2]))

    def commit(
        self,
        first_index: int,
        new: list[tuple[AuditEntry, LogEntry]],
        size: int,
        root: bytes,
        now: int,
    ) -> None:
        """Store the new entries and the cosigned checkpoint, in one transaction."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            self._conn.executemany(
                "INSERT INTO entries (idx, audit, log_entry) VALUES (?, ?, ?)",
                [(first_index + i, encode(a), encode(e)) for i, (a, e) in enumerate(new)],
            )
            self._conn.execute(
                "INSERT INTO cosigned (id, size, root, cosigned_at) VALUES (1, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET size = excluded.size, root = excluded.root, "
                "cosigned_at = excluded.cosigned_at",
                (size, root, now),
            )
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")


# --- the witness --------------------------------------------------------------------------------


class Witness:
    """One witness over one log (see the module docstring)."""

    def __init__(
        self,
        source: LogSource,
        state: WitnessState,
        *,
        name: str = "doorless-witness",
        log_key: str | None = None,
        clock: Callable[[], float] = time.time,
        recosign_interval: float = DEFAULT_RECOSIGN_INTERVAL,
    ) -> None:
        self.source = source
        self.state = state
        self.name = name
        self.clock = clock
        self.recosign_interval = recosign_interval
        self._seed = state.seed()
        self.verifier = NoteVerifier(
            name, SignatureType.COSIGNATURE_V1, ed25519_public_key(self._seed)
        )
        pinned = log_key or state.get("log_key")
        self._log_key = None if pinned is None else _log_key(pinned)
        if log_key is not None:
            stored = state.get("log_key")
            if stored is not None and stored != log_key:
                raise ConfigurationError("--log-key differs from the key this witness pinned")
            state.put("log_key", log_key)
        self._tree = self._load()

    @property
    def vkey(self) -> str:
        """This witness's verifier key, for clients' witness lists and the server's config."""
        return self.verifier.vkey()

    @property
    def size(self) -> int:
        return self._tree.size

    def _load(self) -> CombinedTree:
        tree = CombinedTree()
        for audit, entry in self.state.entries():
            tree.replay(audit, entry)
        cosigned = self.state.cosigned()
        if cosigned is not None and (cosigned[0] != tree.size or tree.log.root() != cosigned[1]):
            raise ConfigurationError("the witness state is inconsistent (corrupt file?)")
        return tree

    async def _key(self) -> NoteVerifier:
        if self._log_key is None:
            info = await self.source.kt_info()
            key = _log_key(info.log_key)
            if key.name != info.origin:
                raise WitnessRefused("the log key is not named after the log's origin")
            await asyncio.to_thread(self.state.put, "log_key", info.log_key)
            self._log_key = key
            log.info("pinned the log key %s", info.log_key)
        return self._log_key

    def _refuse(self, reason: str) -> WitnessRefused:
        self._tree = self._load()  # forget whatever was replayed of the refused history
        log.error("REFUSING to cosign: %s", reason)
        return WitnessRefused(reason)

    async def step(self) -> StepResult:
        """Poll once: replay what is new and cosign the server's latest checkpoint if it is
        consistent with everything seen so far; raises `WitnessRefused` if it is not."""
        key = await self._key()
        head = await self.source.kt_head(0)
        try:
            signed = SignedCheckpoint.decode(head.checkpoint)
            verify_checkpoint(signed, key)
        except (DecodeError, InvalidSignature, ValidationError) as exc:
            raise self._refuse(f"the checkpoint does not verify: {exc}") from None
        cp = signed.checkpoint
        before = self._tree.size
        if cp.size < before:
            raise self._refuse(f"the log went back from size {before} to {cp.size}")
        new: list[tuple[AuditEntry, LogEntry]] = []
        while self._tree.size < cp.size:
            want = min(MAX_AUDIT_PAGE, cp.size - self._tree.size)
            page = await self.source.kt_audit(self._tree.size, want)
            items = [e for e in page.entries if e.index < cp.size]
            if not items:
                raise self._refuse("the log does not publish the entries of its checkpoint")
            for item in items:
                if item.index != self._tree.size:
                    raise self._refuse("the log publishes its entries out of order")
                try:
                    self._tree.replay(item.audit, item.log_entry)
                except ValidationError as exc:
                    raise self._refuse(f"log entry {item.index}: {exc}") from None
                new.append((item.audit, item.log_entry))
        if self._tree.log.root(cp.size) != cp.root:
            raise self._refuse(
                f"the checkpoint of size {cp.size} does not name the replayed log "
                "(its entries were changed, removed or forked)"
            )
        cosigned = self.state.cosigned()
        now = int(self.clock())
        if cp.size == 0:
            return StepResult(0, False, 0)
        ours = any(
            (s.name, s.key_id) == (self.verifier.name, self.verifier.key_id)
            for s in signed.signatures
        )
        fresh = cosigned is not None and now - cosigned[2] < self.recosign_interval
        if not new and ours and fresh and cosigned is not None and cosigned[0] == cp.size:
            return StepResult(cp.size, False, 0)
        note = cosign_checkpoint(signed, self.name, self._seed, now).encode()
        await asyncio.to_thread(self.state.commit, before, new, cp.size, cp.root, now)
        await self.source.kt_cosign(note)
        log.info("cosigned the checkpoint of size %d (%d new entries)", cp.size, len(new))
        return StepResult(cp.size, True, len(new))

    async def run(self, interval: float, *, stop: asyncio.Event | None = None) -> None:
        """Poll every ``interval`` seconds until ``stop`` is set. A refusal is logged and the
        witness goes on polling (it never cosigns that history)."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            try:
                await self.step()
            except WitnessRefused:
                pass  # already logged loudly
            except RemoteError as exc:
                log.warning("polling the log failed: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)


def _log_key(vkey: str) -> NoteVerifier:
    return ed25519_verifier(vkey, "the log key")


__all__ = ["LogSource", "StepResult", "Witness", "WitnessRefused", "WitnessState"]
