"""One SQL implementation of `Storage` for both databases, over a small `Executor`.

Owns every operation whose SQL is the same in SQLite and PostgreSQL: the statements (written
once, with ``$n`` placeholders that the SQLite executor turns into ``?n``), their order, and
the checks between them (the franking/report/block and transparency-log operations are in
`sql_safety` and `sql_kt`; the hooks below are declared in `sql_hooks`). A dialect subclass
(`SQLiteStorage`, `PostgresStorage`) supplies

* `SqlHooks._run`: how an operation is run: on which connection, inside which transaction
  (chosen from the operation's `Tx`), with which retries;
* the operations that truly differ: a batch of acks, releasing payloads, locking a device's
  key packages, bulk inserts, claiming a key package, `deliver` (row locks and batching on
  PostgreSQL, a single writer on SQLite), and how a list of values is matched
  (`SqlHooks._any_of`).

Statements are single-statement-safe under concurrent writers (PostgreSQL at READ COMMITTED):
conditional writes with ``RETURNING``, ``INSERT ... ON CONFLICT DO NOTHING RETURNING true``
instead of check-then-insert, so the same text is correct on one SQLite writer and on many
PostgreSQL processes. Every operation is a pure function of its arguments and the database, so
a retried transaction is safe.
"""

from __future__ import annotations

from collections.abc import Sequence

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
    GroupAccess,
    GroupExists,
    GroupState,
    InviteInvalid,
    KeyPackageCount,
    KtVersion,
    LinkGone,
    LinkRecord,
    SendContext,
    TooManyKeyPackages,
    UnknownAccount,
    UsernameTaken,
)
from doorless.server.storage.coalesce import Coalescer
from doorless.server.storage.executor import Executor, Tx
from doorless.server.storage.sql_hooks import Ack
from doorless.server.storage.sql_kt import KtOperations
from doorless.server.storage.sql_safety import SafetyOperations
from doorless.wire.messages import QueuedMessage

_DEVICE_COLUMNS_D = ", ".join(f"d.{c.strip()}" for c in rows.DEVICE_COLUMNS.split(","))


class SqlStorage(KtOperations, SafetyOperations):
    """The shared operations; see the module docstring for what a dialect adds."""

    def __init__(self) -> None:
        self._acks = Coalescer[Ack, int](self._ack_batch)

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
            found = await ex.fetch(
                "DELETE FROM queue WHERE device_id = $1 RETURNING payload_id", device_id
            )
            await self._release_payloads(ex, [int(r[0]) for r in found])

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

    async def token_holder(self, token_hash: bytes, now: int) -> tuple[DeviceRecord, int] | None:
        return await self._run(Tx.READ, self._token_holder, token_hash, now)

    @staticmethod
    async def _token_holder(
        ex: Executor, token_hash: bytes, now: int
    ) -> tuple[DeviceRecord, int] | None:
        row = await ex.fetchrow(
            f"SELECT {_DEVICE_COLUMNS_D}, t.expires_at FROM tokens t JOIN devices d "
            "ON d.device_id = t.device_id WHERE t.token_hash = $1 AND t.expires_at > $2",
            token_hash,
            now,
        )
        return None if row is None else (rows.device(row), int(row[7]))

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
        self,
        device_id: str,
        key_packages: Sequence[bytes],
        last_resort: bytes | None,
        limit: int,
        cipher_suite: int = 1,
    ) -> KeyPackageCount:
        packages = tuple(key_packages)

        async def op(ex: Executor) -> KeyPackageCount:
            await self._lock_key_packages(ex, device_id)
            stored = await ex.fetchval(
                "SELECT COUNT(*) FROM key_packages WHERE device_id = $1 AND NOT last_resort",
                device_id,
            )
            if int(stored) + len(packages) > limit:
                raise TooManyKeyPackages(
                    f"a device may hold at most {limit} key packages ({stored} stored)"
                )
            if packages:
                await self._insert_key_packages(ex, device_id, packages, cipher_suite)
            if last_resort is not None:
                await ex.execute(
                    "DELETE FROM key_packages "
                    "WHERE device_id = $1 AND last_resort AND cipher_suite = $2",
                    device_id,
                    cipher_suite,
                )
                await ex.execute(
                    "INSERT INTO key_packages (device_id, data, last_resort, cipher_suite) "
                    "VALUES ($1, $2, true, $3)",
                    device_id,
                    last_resort,
                    cipher_suite,
                )
            return await self._key_package_count(ex, device_id, cipher_suite)

        return await self._run(Tx.WRITE, op)

    async def claim_key_package(
        self, device_id: str, cipher_suite: int | None = None
    ) -> ClaimedKeyPackage | None:
        return await self._run(Tx.WRITE, self._claim_key_package, device_id, cipher_suite)

    async def key_package_count(
        self, device_id: str, cipher_suite: int | None = None
    ) -> KeyPackageCount:
        return await self._run(Tx.READ, self._key_package_count, device_id, cipher_suite)

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

    async def send_context(
        self, token_hash: bytes, now: int, group_id: bytes | None, recipients: Sequence[str]
    ) -> SendContext | None:
        checked = frozenset(recipients)

        async def op(ex: Executor) -> SendContext | None:
            found = await self._token_holder(ex, token_hash, now)
            if found is None:
                return None
            device, expires_at = found
            access, next_seq = None, None
            if group_id is not None:
                access = await self._group_access(ex, group_id, device.device_id)
                seq = await ex.fetchval(
                    "SELECT next_seq FROM group_epochs WHERE group_id = $1", group_id
                )
                next_seq = None if seq is None else int(seq)
            blocked = await self._blocking_devices(ex, device.username, sorted(checked))
            return SendContext(
                device, expires_at, group_id, access, next_seq, checked, frozenset(blocked)
            )

        return await self._run(Tx.SNAPSHOT, op)

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
        """Acks that arrive together, from any sockets of this process, share one operation
        (`Coalescer`; the dialect's `_ack_batch`): at 1,000 connected devices acking every
        250 ms they are most of a server's writes, and one each cost SQLite's single writer a
        savepoint and three statements per frame, PostgreSQL a transaction (issue #16)."""
        if not seqs:
            return 0
        return await self._acks.submit((device_id, sorted(set(seqs))))

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

    async def group_access(self, group_id: bytes, device_id: str) -> GroupAccess | None:
        return await self._run(Tx.READ, self._group_access, group_id, device_id)

    @staticmethod
    async def _group_access(ex: Executor, group_id: bytes, device_id: str) -> GroupAccess | None:
        row = await ex.fetchrow(
            "SELECT s.epoch, EXISTS (SELECT 1 FROM group_members m "
            "WHERE m.group_id = s.group_id AND m.device_id = $2) "
            "FROM group_states s WHERE s.group_id = $1",
            group_id,
            device_id,
        )
        return None if row is None else GroupAccess(int(row[0]), bool(row[1]))

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
