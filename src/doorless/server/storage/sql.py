"""One SQL implementation of `Storage` for both databases, over a small `Executor`.

Owns every operation whose SQL is the same in SQLite and PostgreSQL: the statements (written
once, with ``$n`` placeholders that the SQLite executor turns into ``?n``), their order, and
the checks between them. A dialect subclass (`SQLiteStorage`, `PostgresStorage`) supplies

* `SqlStorage._run`: how an operation is run: on which connection, inside which transaction
  (chosen from the operation's `Tx`), with which retries;
* the operations that truly differ: dropping queue entries, locking a device's key packages,
  bulk inserts, claiming a key package, `deliver` (row locks and batching on PostgreSQL, a
  single writer on SQLite), and how a list of values is matched (`SqlStorage._any_of`).

Statements are single-statement-safe under concurrent writers (PostgreSQL at READ COMMITTED):
conditional writes with ``RETURNING``, ``INSERT ... ON CONFLICT DO NOTHING RETURNING true``
instead of check-then-insert, so the same text is correct on one SQLite writer and on many
PostgreSQL processes. Every operation is a pure function of its arguments and the database, so
a retried transaction is safe.
"""

from __future__ import annotations

import secrets
from abc import abstractmethod
from collections.abc import Sequence
from typing import Any, TypeVar

from doorless.server.storage import rows
from doorless.server.storage.base import (
    AttachmentRecord,
    ClaimedKeyPackage,
    Delivery,
    DeliveryResult,
    DeviceExists,
    DeviceRecord,
    EpochConflict,
    EpochGate,
    FrankingKeyRecord,
    FrankingKeys,
    GroupExists,
    GroupState,
    InviteInvalid,
    KeyPackageCount,
    KtConflict,
    KtLogEntry,
    KtVersion,
    LinkGone,
    LinkRecord,
    ReportRecord,
    Storage,
    TooManyKeyPackages,
    UnknownAccount,
    UsernameTaken,
)
from doorless.server.storage.executor import Executor, Op, Tx
from doorless.wire.messages import QueuedMessage

T = TypeVar("T")


class SqlStorage(Storage):
    """The shared operations; see the module docstring for what a dialect adds."""

    # --- what a dialect provides -----------------------------------------------------------

    @abstractmethod
    async def _run(self, tx: Tx, op: Op[T], *args: Any) -> T:
        """Run ``op(executor, *args)`` as ``tx`` says. Raises `StateError` if not open."""

    @abstractmethod
    def _any_of(
        self, column: str, param: int, values: Sequence[Any], sqltype: str
    ) -> list[tuple[str, tuple[Any, ...]]]:
        """``(condition, args)`` pairs that together match ``column`` against ``values``:
        the condition's first placeholder is ``$param`` and ``args`` fill it from there.
        ``sqltype`` is the element type (``bigint``, ``text``). Empty ``values``: no pair."""

    @abstractmethod
    async def _drop_queue_entries(
        self, ex: Executor, device_id: str, seqs: Sequence[int] | None
    ) -> int:
        """Delete queue entries (all of the device's if ``seqs`` is None, else these sorted,
        distinct ones) and release their payloads; returns how many existed."""

    @abstractmethod
    async def _lock_key_packages(self, ex: Executor, device_id: str) -> None:
        """Serialize uploads of one device's key packages (the limit check)."""

    @abstractmethod
    async def _insert_key_packages(
        self, ex: Executor, device_id: str, key_packages: Sequence[bytes]
    ) -> None:
        """Insert one-time packages, in order."""

    @abstractmethod
    async def _claim_key_package(self, ex: Executor, device_id: str) -> ClaimedKeyPackage | None:
        """`Storage.claim_key_package`, inside its transaction."""

    @abstractmethod
    async def _deliver(
        self,
        ex: Executor,
        sender: str,
        message_id: str,
        digest: bytes,
        parts: tuple[Delivery, ...],
        gate: EpochGate | None,
        now: int,
    ) -> DeliveryResult:
        """`Storage.deliver`, inside its transaction."""

    async def _before_ack(self, ex: Executor) -> None:
        """Hook at the start of an ack's transaction (PostgreSQL relaxes its fsync)."""

    # --- shared pieces ---------------------------------------------------------------------

    @staticmethod
    async def _mint_server_id(ex: Executor) -> str:
        await ex.execute(
            "INSERT INTO meta (key, value) VALUES ('server_id', $1) ON CONFLICT (key) DO NOTHING",
            secrets.token_hex(16),
        )
        return str(await ex.fetchval("SELECT value FROM meta WHERE key = 'server_id'"))

    @staticmethod
    async def _key_package_count(ex: Executor, device_id: str) -> KeyPackageCount:
        row = await ex.fetchrow(
            "SELECT COALESCE(SUM(CASE WHEN last_resort THEN 0 ELSE 1 END), 0), "
            "COALESCE(MAX(CASE WHEN last_resort THEN 1 ELSE 0 END), 0) "
            "FROM key_packages WHERE device_id = $1",
            device_id,
        )
        assert row is not None
        return KeyPackageCount(int(row[0]), bool(row[1]))

    @staticmethod
    async def _insert_device(ex: Executor, d: DeviceRecord) -> None:
        # The unique constraints decide races between processes.
        inserted = await ex.fetchval(
            f"INSERT INTO devices ({rows.DEVICE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7) "
            "ON CONFLICT DO NOTHING RETURNING true",
            *rows.device_values(d),
        )
        if not inserted:
            raise DeviceExists("this device key is already registered")

    @staticmethod
    async def _insert_kt_version(ex: Executor, v: KtVersion) -> None:
        """Store a pending version; it must be the label's next one (no gap, no overwrite).

        Two processes adding the same next version race on the primary key: the second insert
        waits for the first transaction and, once it commits, inserts nothing (KtConflict), so
        a label's versions never fork.
        """
        latest = await ex.fetchval("SELECT MAX(version) FROM kt_versions WHERE label = $1", v.label)
        if v.version != (-1 if latest is None else int(latest)) + 1:
            raise KtConflict("this version of the label is taken: re-read the label and retry")
        inserted = await ex.fetchval(
            f"INSERT INTO kt_versions ({rows.KT_VERSION_COLUMNS}) "
            "VALUES ($1, $2, $3, $4, $5, $6, NULL) ON CONFLICT DO NOTHING RETURNING true",
            v.label,
            v.version,
            v.value,
            v.opening,
            v.search_key,
            v.commitment,
        )
        if not inserted:
            raise KtConflict("this label version or search key is already taken")

    @staticmethod
    async def _insert_franking_key(ex: Executor, k: FrankingKeyRecord) -> None:
        await ex.execute(
            f"INSERT INTO franking_keys ({rows.FRANKING_KEY_COLUMNS}) VALUES ($1, $2, $3, $4)",
            *rows.franking_key_values(k),
        )

    async def _delete_any(self, table: str, column: str, ids: Sequence[int], where: str) -> int:
        async def op(ex: Executor) -> int:
            deleted = 0
            for condition, args in self._any_of(column, 1, ids, "bigint"):
                deleted += await ex.execute(f"DELETE FROM {table} WHERE {condition}{where}", *args)
            return deleted

        return await self._run(Tx.STATEMENT, op)

    # --- invites, accounts, devices --------------------------------------------------------

    async def create_invite(self, code_hash: bytes, now: int, expires_at: int) -> None:
        async def op(ex: Executor) -> None:
            await ex.execute(
                "INSERT INTO invites (code_hash, created_at, expires_at) VALUES ($1, $2, $3)",
                code_hash,
                now,
                expires_at,
            )

        await self._run(Tx.WRITE, op)

    async def create_account(
        self,
        device: DeviceRecord,
        invite_code_hash: bytes | None,
        now: int,
        kt: KtVersion | None = None,
    ) -> int | None:
        async def op(ex: Executor) -> int | None:
            used = None
            if invite_code_hash is not None:
                # DELETE ... RETURNING: of two racing registrations with one code, one gets it.
                used = await ex.fetchval(
                    "DELETE FROM invites WHERE code_hash = $1 AND expires_at > $2 "
                    "RETURNING expires_at",
                    invite_code_hash,
                    now,
                )
                if used is None:
                    raise InviteInvalid("unknown, used or expired invite code")
            created = await ex.fetchval(
                "INSERT INTO accounts (username, created_at) VALUES ($1, $2) "
                "ON CONFLICT DO NOTHING RETURNING true",
                device.username,
                now,
            )
            if not created:
                raise UsernameTaken("username is taken")  # the rollback restores the invite
            await self._insert_device(ex, device)
            if kt is not None:
                await self._insert_kt_version(ex, kt)
            return None if used is None else int(used)

        return await self._run(Tx.WRITE, op)

    async def undo_registration(
        self, username: str, device_id: str, label: bytes, invite: tuple[bytes, int] | None
    ) -> bool:
        async def op(ex: Executor) -> bool:
            # The conditional delete decides against a concurrent publish (READ COMMITTED
            # re-checks it against the newest row): logged meanwhile, the account stands.
            if not await ex.fetchval(
                "DELETE FROM kt_versions WHERE label = $1 AND version = 0 "
                "AND log_index IS NULL RETURNING true",
                label,
            ):
                return False
            await ex.execute("DELETE FROM tokens WHERE device_id = $1", device_id)
            await ex.execute("DELETE FROM key_packages WHERE device_id = $1", device_id)
            await ex.execute("DELETE FROM devices WHERE device_id = $1", device_id)
            await ex.execute("DELETE FROM accounts WHERE username = $1", username)
            if invite is not None:
                await ex.execute(
                    "INSERT INTO invites (code_hash, created_at, expires_at) VALUES ($1, $2, $3) "
                    "ON CONFLICT DO NOTHING",
                    invite[0],
                    0,
                    invite[1],
                )
            return True

        return await self._run(Tx.WRITE, op)

    async def get_device(self, device_id: str) -> DeviceRecord | None:
        async def op(ex: Executor) -> DeviceRecord | None:
            row = await ex.fetchrow(
                f"SELECT {rows.DEVICE_COLUMNS} FROM devices WHERE device_id = $1", device_id
            )
            return rows.device(row) if row else None

        return await self._run(Tx.READ, op)

    async def list_devices(self, username: str) -> list[DeviceRecord] | None:
        async def op(ex: Executor) -> list[DeviceRecord] | None:
            if not await ex.fetchval("SELECT true FROM accounts WHERE username = $1", username):
                return None
            found = await ex.fetch(
                f"SELECT {rows.DEVICE_COLUMNS} FROM devices WHERE username = $1 "
                "ORDER BY created_at, device_id",
                username,
            )
            return [rows.device(r) for r in found]

        return await self._run(Tx.SNAPSHOT, op)

    async def revoke_device(self, device_id: str, now: int, kt: KtVersion | None = None) -> None:
        async def op(ex: Executor) -> None:
            if kt is not None:
                await self._insert_kt_version(ex, kt)
            # Locks the device row (as a send to it does), so a send that raced the revocation
            # either committed before it (and its entry is dropped here) or sees it revoked.
            await ex.execute(
                "UPDATE devices SET revoked_at = $1 WHERE device_id = $2 AND revoked_at IS NULL",
                now,
                device_id,
            )
            await ex.execute("DELETE FROM tokens WHERE device_id = $1", device_id)
            await ex.execute("DELETE FROM key_packages WHERE device_id = $1", device_id)
            await self._drop_queue_entries(ex, device_id, None)

        await self._run(Tx.WRITE, op)

    # --- authentication --------------------------------------------------------------------

    async def put_challenge(self, nonce_hash: bytes, expires_at: int) -> None:
        async def op(ex: Executor) -> None:
            await ex.execute(
                "INSERT INTO challenges (nonce_hash, expires_at) VALUES ($1, $2)",
                nonce_hash,
                expires_at,
            )

        await self._run(Tx.STATEMENT, op)

    async def take_challenge(self, nonce_hash: bytes, now: int) -> bool:
        async def op(ex: Executor) -> bool:
            # One statement: of two racing uses of a nonce, only one gets the row.
            expires_at = await ex.fetchval(
                "DELETE FROM challenges WHERE nonce_hash = $1 RETURNING expires_at", nonce_hash
            )
            return expires_at is not None and expires_at > now

        return await self._run(Tx.STATEMENT, op)

    async def put_token(self, token_hash: bytes, device_id: str, expires_at: int) -> None:
        async def op(ex: Executor) -> None:
            await ex.execute(
                "INSERT INTO tokens (token_hash, device_id, expires_at) VALUES ($1, $2, $3)",
                token_hash,
                device_id,
                expires_at,
            )

        await self._run(Tx.STATEMENT, op)

    async def token_device(self, token_hash: bytes, now: int) -> tuple[str, int] | None:
        async def op(ex: Executor) -> tuple[str, int] | None:
            row = await ex.fetchrow(
                "SELECT t.device_id, t.expires_at FROM tokens t JOIN devices d "
                "ON d.device_id = t.device_id "
                "WHERE t.token_hash = $1 AND t.expires_at > $2 AND d.revoked_at IS NULL",
                token_hash,
                now,
            )
            return (str(row[0]), int(row[1])) if row else None

        return await self._run(Tx.READ, op)

    # --- links -----------------------------------------------------------------------------

    async def create_link(self, link: LinkRecord) -> bool:
        async def op(ex: Executor) -> bool:
            if not await ex.fetchval(
                "SELECT true FROM accounts WHERE username = $1", link.username
            ):
                raise UnknownAccount("no such user")
            if await ex.fetchval("SELECT true FROM devices WHERE device_key = $1", link.device_key):
                raise DeviceExists("this device key is already registered")
            inserted = await ex.fetchval(
                "INSERT INTO links (code, username, device_id, device_key, created_at, expires_at) "
                "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (code) DO NOTHING RETURNING true",
                link.code,
                link.username,
                link.device_id,
                link.device_key,
                link.created_at,
                link.expires_at,
            )
            return bool(inserted)

        return await self._run(Tx.WRITE, op)

    async def get_link(self, code: str, now: int) -> LinkRecord | None:
        async def op(ex: Executor) -> LinkRecord | None:
            row = await ex.fetchrow(
                f"SELECT {rows.LINK_COLUMNS} FROM links WHERE code = $1 AND expires_at > $2",
                code,
                now,
            )
            return None if row is None else rows.link(row)

        return await self._run(Tx.READ, op)

    async def approve_link(
        self, code: str, device: DeviceRecord, now: int, kt: KtVersion | None = None
    ) -> None:
        async def op(ex: Executor) -> None:
            # Conditional update: of two racing approvals, the second finds approved_at set.
            approved = await ex.fetchval(
                "UPDATE links SET approved_at = $1 WHERE code = $2 AND expires_at > $1 "
                "AND approved_at IS NULL AND username = $3 AND device_id = $4 "
                "AND device_key = $5 RETURNING true",
                now,
                code,
                device.username,
                device.device_id,
                device.device_key,
            )
            if not approved:
                raise LinkGone("no pending link request with this code")
            await self._insert_device(ex, device)
            if kt is not None:
                await self._insert_kt_version(ex, kt)

        await self._run(Tx.WRITE, op)

    # --- key packages ----------------------------------------------------------------------

    async def add_key_packages(
        self, device_id: str, key_packages: Sequence[bytes], last_resort: bytes | None, limit: int
    ) -> KeyPackageCount:
        packages = tuple(key_packages)

        async def op(ex: Executor) -> KeyPackageCount:
            await self._lock_key_packages(ex, device_id)
            before = await self._key_package_count(ex, device_id)
            if before.count + len(packages) > limit:
                raise TooManyKeyPackages(
                    f"a device may hold at most {limit} key packages ({before.count} stored)"
                )
            if packages:
                await self._insert_key_packages(ex, device_id, packages)
            if last_resort is not None:
                await ex.execute(
                    "DELETE FROM key_packages WHERE device_id = $1 AND last_resort", device_id
                )
                await ex.execute(
                    "INSERT INTO key_packages (device_id, data, last_resort) VALUES ($1, $2, true)",
                    device_id,
                    last_resort,
                )
            return await self._key_package_count(ex, device_id)

        return await self._run(Tx.WRITE, op)

    async def claim_key_package(self, device_id: str) -> ClaimedKeyPackage | None:
        return await self._run(Tx.WRITE, self._claim_key_package, device_id)

    async def key_package_count(self, device_id: str) -> KeyPackageCount:
        return await self._run(Tx.READ, self._key_package_count, device_id)

    # --- delivery --------------------------------------------------------------------------

    async def deliver(
        self,
        sender_device_id: str,
        message_id: str,
        digest: bytes,
        parts: Sequence[Delivery],
        gate: EpochGate | None,
        now: int,
    ) -> DeliveryResult:
        return await self._run(
            Tx.WRITE, self._deliver, sender_device_id, message_id, digest, tuple(parts), gate, now
        )

    async def fetch(self, device_id: str, after: int, limit: int) -> list[QueuedMessage]:
        async def op(ex: Executor) -> list[QueuedMessage]:
            found = await ex.fetch(
                "SELECT q.seq, p.data, q.received_at, p.frank FROM queue q "
                "JOIN payloads p ON p.id = q.payload_id "
                "WHERE q.device_id = $1 AND q.seq > $2 ORDER BY q.seq LIMIT $3",
                device_id,
                after,
                limit,
            )
            return [rows.queued(r) for r in found]

        return await self._run(Tx.READ, op)

    async def ack(self, device_id: str, seqs: Sequence[int]) -> int:
        if not seqs:
            return 0
        distinct = sorted(set(seqs))

        async def op(ex: Executor) -> int:
            await self._before_ack(ex)
            return await self._drop_queue_entries(ex, device_id, distinct)

        return await self._run(Tx.WRITE, op)

    async def group_epoch(self, group_id: bytes) -> int | None:
        async def op(ex: Executor) -> int | None:
            epoch = await ex.fetchval(
                "SELECT epoch FROM group_epochs WHERE group_id = $1", group_id
            )
            return None if epoch is None else int(epoch)

        return await self._run(Tx.READ, op)

    # --- validated groups (doorless.server.groups) -----------------------------------------

    async def register_group(self, state: GroupState, members: Sequence[str]) -> None:
        async def op(ex: Executor) -> None:
            if not await ex.fetchval(
                "INSERT INTO group_epochs (group_id, epoch) VALUES ($1, $2) "
                "ON CONFLICT DO NOTHING RETURNING true",
                state.group_id,
                state.epoch,
            ):
                raise GroupExists("the server already knows a group with this id")
            await ex.execute(
                "INSERT INTO group_states (group_id, epoch, state, group_info) "
                "VALUES ($1, $2, $3, $4)",
                state.group_id,
                state.epoch,
                state.state,
                state.group_info,
            )
            await ex.executemany(
                "INSERT INTO group_members (group_id, device_id) VALUES ($1, $2)",
                [(state.group_id, d) for d in sorted(set(members))],
            )

        await self._run(Tx.WRITE, op)

    async def group_state(self, group_id: bytes) -> GroupState | None:
        async def op(ex: Executor) -> GroupState | None:
            row = await ex.fetchrow(
                "SELECT epoch, state, group_info FROM group_states WHERE group_id = $1", group_id
            )
            if row is None:
                return None
            return GroupState(group_id, int(row[0]), bytes(row[1]), bytes(row[2]))

        return await self._run(Tx.READ, op)

    async def is_group_member(self, group_id: bytes, device_id: str) -> bool:
        async def op(ex: Executor) -> bool:
            return bool(
                await ex.fetchval(
                    "SELECT true FROM group_members WHERE group_id = $1 AND device_id = $2",
                    group_id,
                    device_id,
                )
            )

        return await self._run(Tx.READ, op)

    @staticmethod
    async def _apply_group_update(ex: Executor, gate: EpochGate) -> None:
        """Inside `deliver`, after the gate let a message for ``gate.epoch`` through: store a
        registered group's next state (conditional on the stored epoch, like the gate). A
        commit without a validated update is refused for a registered group."""
        update = gate.update
        if update is None:
            if (
                gate.is_commit
                and await ex.fetchval(
                    "SELECT epoch FROM group_states WHERE group_id = $1", gate.group_id
                )
                is not None
            ):
                raise EpochConflict(gate.epoch, "the group's state moved on; read it again")
            return
        new = update.state
        changed = await ex.execute(
            "UPDATE group_states SET epoch = $3, state = $4, group_info = $5 "
            "WHERE group_id = $1 AND epoch = $2",
            new.group_id,
            gate.epoch,
            new.epoch,
            new.state,
            new.group_info,
        )
        if changed != 1:
            raise EpochConflict(gate.epoch, "the group's state moved on; read it again")
        if update.removed:
            await ex.executemany(
                "DELETE FROM group_members WHERE group_id = $1 AND device_id = $2",
                [(new.group_id, d) for d in update.removed],
            )
        if update.added:
            await ex.executemany(
                "INSERT INTO group_members (group_id, device_id) VALUES ($1, $2) "
                "ON CONFLICT DO NOTHING",
                [(new.group_id, d) for d in update.added],
            )

    # --- attachments -----------------------------------------------------------------------

    async def add_attachment(self, record: AttachmentRecord) -> None:
        async def op(ex: Executor) -> None:
            await ex.execute(
                f"INSERT INTO attachments ({rows.ATTACHMENT_COLUMNS}) VALUES ($1, $2, $3, $4)",
                record.attachment_id,
                record.size,
                record.created_at,
                record.expires_at,
            )

        await self._run(Tx.STATEMENT, op)

    async def get_attachment(self, attachment_id: str, now: int) -> AttachmentRecord | None:
        async def op(ex: Executor) -> AttachmentRecord | None:
            row = await ex.fetchrow(
                f"SELECT {rows.ATTACHMENT_COLUMNS} FROM attachments "
                "WHERE attachment_id = $1 AND expires_at > $2",
                attachment_id,
                now,
            )
            return rows.attachment(row) if row else None

        return await self._run(Tx.READ, op)

    async def attachment_ids(self) -> set[str]:
        async def op(ex: Executor) -> set[str]:
            return {r[0] for r in await ex.fetch("SELECT attachment_id FROM attachments")}

        return await self._run(Tx.READ, op)

    async def take_expired_attachments(self, now: int) -> list[str]:
        async def op(ex: Executor) -> list[str]:
            # One statement: when several nodes sweep at once, each row goes to one of them.
            found = await ex.fetch(
                "DELETE FROM attachments WHERE expires_at <= $1 RETURNING attachment_id", now
            )
            return [r[0] for r in found]

        return await self._run(Tx.STATEMENT, op)

    async def purge_expired(self, now: int, idempotency_cutoff: int) -> None:
        async def op(ex: Executor) -> None:
            await ex.execute("DELETE FROM challenges WHERE expires_at <= $1", now)
            await ex.execute("DELETE FROM tokens WHERE expires_at <= $1", now)
            await ex.execute("DELETE FROM links WHERE expires_at <= $1", now)
            await ex.execute("DELETE FROM invites WHERE expires_at <= $1", now)
            await ex.execute("DELETE FROM sent WHERE created_at < $1", idempotency_cutoff)

        await self._run(Tx.WRITE, op)

    # --- franking, reports, blocks ---------------------------------------------------------

    async def franking_keys(self, initial: FrankingKeys) -> FrankingKeys:
        async def op(ex: Executor) -> FrankingKeys:
            # Processes starting together: the signer row's primary key lets one insert; the
            # others wait for it, insert nothing, and read the winner's keys.
            if await ex.fetchval(
                "INSERT INTO franking_signer (id, signing_key) VALUES (1, $1) "
                "ON CONFLICT DO NOTHING RETURNING true",
                initial.signing_key,
            ):
                for k in initial.keys:
                    await self._insert_franking_key(ex, k)
                return initial
            signing_key = await ex.fetchval("SELECT signing_key FROM franking_signer WHERE id = 1")
            found = await ex.fetch(
                f"SELECT {rows.FRANKING_KEY_COLUMNS} FROM franking_keys ORDER BY key_id"
            )
            return FrankingKeys(bytes(signing_key), tuple(rows.franking_key(r) for r in found))

        return await self._run(Tx.WRITE, op)

    async def rotate_franking_key(self, current_key_id: int, new_key: FrankingKeyRecord) -> bool:
        async def op(ex: Executor) -> bool:
            # Conditional retire of the current key: of two processes rotating at once, the
            # second waits for the first's row lock, then finds the key retired.
            if not await ex.fetchval(
                "UPDATE franking_keys SET retired_at_ms = $2 WHERE key_id = $1 "
                "AND retired_at_ms IS NULL "
                "AND key_id = (SELECT MAX(key_id) FROM franking_keys) RETURNING true",
                current_key_id,
                new_key.created_at_ms,
            ):
                return False
            await self._insert_franking_key(ex, new_key)
            return True

        return await self._run(Tx.WRITE, op)

    async def delete_franking_keys(self, key_ids: Sequence[int]) -> int:
        return await self._delete_any(
            "franking_keys", "key_id", key_ids, " AND retired_at_ms IS NOT NULL"
        )

    async def _lock_reporter(self, ex: Executor, username: str) -> None:
        """Serialize the reports of one user (SQLite: every write transaction already is)."""

    async def add_report(self, report: ReportRecord) -> int:
        """A message this user already reported (a replay, or another of their devices) is
        the same report: its first id is returned and nothing is filed again."""

        async def op(ex: Executor) -> int:
            await self._lock_reporter(ex, report.reporter_username)
            existing = await ex.fetchval(
                "SELECT report_id FROM reports WHERE reporter_username = $1 AND group_id = $2 "
                "AND server_seq = $3 ORDER BY report_id LIMIT 1",
                report.reporter_username,
                report.group_id,
                report.server_seq,
            )
            if existing is not None:
                return int(existing)
            return int(
                await ex.fetchval(
                    f"INSERT INTO reports ({rows.REPORT_COLUMNS}) "
                    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING report_id",
                    *rows.report_values(report),
                )
            )

        return await self._run(Tx.WRITE, op)

    async def list_reports(self, after_id: int, limit: int) -> list[ReportRecord]:
        async def op(ex: Executor) -> list[ReportRecord]:
            found = await ex.fetch(
                f"SELECT report_id, {rows.REPORT_COLUMNS} FROM reports WHERE report_id > $1 "
                "ORDER BY report_id LIMIT $2",
                after_id,
                limit,
            )
            return [rows.report(r) for r in found]

        return await self._run(Tx.READ, op)

    async def delete_reports(self, report_ids: Sequence[int]) -> int:
        return await self._delete_any("reports", "report_id", report_ids, "")

    async def set_block(self, blocker: str, blocked: str, block: bool, now: int) -> None:
        async def op(ex: Executor) -> None:
            if block:
                await ex.execute(
                    "INSERT INTO blocks (blocker, blocked, created_at) VALUES ($1, $2, $3) "
                    "ON CONFLICT (blocker, blocked) DO NOTHING",
                    blocker,
                    blocked,
                    now,
                )
            else:
                await ex.execute(
                    "DELETE FROM blocks WHERE blocker = $1 AND blocked = $2", blocker, blocked
                )

        await self._run(Tx.STATEMENT, op)

    async def list_blocks(self, blocker: str) -> list[str]:
        async def op(ex: Executor) -> list[str]:
            found = await ex.fetch(
                "SELECT blocked FROM blocks WHERE blocker = $1 ORDER BY blocked", blocker
            )
            return [str(r[0]) for r in found]

        return await self._run(Tx.READ, op)

    async def blocking_devices(self, sender: str, device_ids: Sequence[str]) -> set[str]:
        if not device_ids:
            return set()

        async def op(ex: Executor) -> set[str]:
            found: set[str] = set()
            for condition, args in self._any_of("d.device_id", 2, device_ids, "text"):
                found.update(
                    str(r[0])
                    for r in await ex.fetch(
                        "SELECT d.device_id FROM devices d JOIN blocks b "
                        f"ON b.blocker = d.username WHERE b.blocked = $1 AND {condition}",
                        sender,
                        *args,
                    )
                )
            return found

        return await self._run(Tx.READ, op)

    # --- key transparency ------------------------------------------------------------------

    async def kt_signing_seed(self) -> bytes:
        async def op(ex: Executor) -> bytes:
            await ex.execute(
                "INSERT INTO meta (key, value) VALUES ('kt_log_seed', $1) "
                "ON CONFLICT (key) DO NOTHING",
                secrets.token_hex(32),
            )
            seed = await ex.fetchval("SELECT value FROM meta WHERE key = 'kt_log_seed'")
            return bytes.fromhex(str(seed))

        return await self._run(Tx.WRITE, op)

    async def kt_latest_version(self, label: bytes) -> KtVersion | None:
        async def op(ex: Executor) -> KtVersion | None:
            row = await ex.fetchrow(
                f"SELECT {rows.KT_VERSION_COLUMNS} FROM kt_versions WHERE label = $1 "
                "ORDER BY version DESC LIMIT 1",
                label,
            )
            return rows.kt_version(row) if row else None

        return await self._run(Tx.READ, op)

    async def kt_versions(self, label: bytes, start: int) -> list[KtVersion]:
        async def op(ex: Executor) -> list[KtVersion]:
            found = await ex.fetch(
                f"SELECT {rows.KT_VERSION_COLUMNS} FROM kt_versions "
                "WHERE label = $1 AND version >= $2 ORDER BY version",
                label,
                start,
            )
            return [rows.kt_version(r) for r in found]

        return await self._run(Tx.READ, op)

    async def kt_pending(self) -> list[KtVersion]:
        async def op(ex: Executor) -> list[KtVersion]:
            found = await ex.fetch(
                f"SELECT {rows.KT_VERSION_COLUMNS} FROM kt_versions WHERE log_index IS NULL "
                "ORDER BY search_key"
            )
            return [rows.kt_version(r) for r in found]

        return await self._run(Tx.READ, op)

    async def kt_append(self, entry: KtLogEntry) -> None:
        async def op(ex: Executor) -> None:
            # The log only grows by its next index: two processes appending the same index race
            # on the primary key (the second finds it taken); an index past the committed size
            # is refused, so no gap can appear. Versions are marked by a conditional update
            # (pending only), re-checked against the newest row under READ COMMITTED.
            size = await ex.fetchval("SELECT COUNT(*) FROM kt_log")
            if entry.index != int(size):
                raise KtConflict(f"log entry {entry.index} is not the next one ({size})")
            if not await ex.fetchval(
                f"INSERT INTO kt_log ({rows.KT_LOG_COLUMNS}) VALUES ($1, $2, $3, $4) "
                "ON CONFLICT DO NOTHING RETURNING true",
                entry.index,
                entry.timestamp,
                entry.prefix_root,
                entry.checkpoint,
            ):
                raise KtConflict(f"log entry {entry.index} is taken")
            for search_key, commitment in entry.added:
                if not await ex.fetchval(
                    "UPDATE kt_versions SET log_index = $1 WHERE search_key = $2 "
                    "AND commitment = $3 AND log_index IS NULL RETURNING true",
                    entry.index,
                    search_key,
                    commitment,
                ):
                    raise KtConflict("a version to log is not pending")

        await self._run(Tx.WRITE, op)

    async def kt_entries(self, start: int, limit: int) -> list[KtLogEntry]:
        async def op(ex: Executor) -> list[KtLogEntry]:
            found = await ex.fetch(
                f"SELECT {rows.KT_LOG_COLUMNS} FROM kt_log WHERE idx >= $1 ORDER BY idx LIMIT $2",
                start,
                limit,
            )
            if not found:
                return []
            added: dict[int, list[tuple[bytes, bytes]]] = {int(r[0]): [] for r in found}
            for index, key, commitment in await ex.fetch(
                "SELECT log_index, search_key, commitment FROM kt_versions "
                "WHERE log_index BETWEEN $1 AND $2 ORDER BY log_index, search_key",
                int(found[0][0]),
                int(found[-1][0]),
            ):
                added[int(index)].append((bytes(key), bytes(commitment)))
            return [rows.kt_entry(r, added[int(r[0])]) for r in found]

        return await self._run(Tx.SNAPSHOT, op)

    async def kt_add_cosignature(
        self, size: int, witness: str, signature_line: str, now: int
    ) -> None:
        async def op(ex: Executor) -> None:
            # Only the newest cosignature of each witness is ever served.
            await ex.execute(
                "DELETE FROM kt_cosignatures WHERE witness = $1 AND size < $2", witness, size
            )
            await ex.execute(
                "INSERT INTO kt_cosignatures (size, witness, signature_line, cosigned_at) "
                "VALUES ($1, $2, $3, $4) ON CONFLICT (size, witness) DO UPDATE SET "
                "signature_line = excluded.signature_line, cosigned_at = excluded.cosigned_at",
                size,
                witness,
                signature_line,
                now,
            )

        await self._run(Tx.WRITE, op)

    async def kt_cosignatures(self, size: int) -> list[str]:
        async def op(ex: Executor) -> list[str]:
            found = await ex.fetch(
                "SELECT signature_line FROM kt_cosignatures WHERE size = $1 ORDER BY witness",
                size,
            )
            return [str(r[0]) for r in found]

        return await self._run(Tx.READ, op)
