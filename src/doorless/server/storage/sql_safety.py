"""The SQL of franking keys, abuse reports and blocks (docs/franking.md), shared by both
dialects (`doorless.server.storage.sql`)."""

from __future__ import annotations

from collections.abc import Sequence

from doorless.server.storage import rows
from doorless.server.storage.base import (
    FrankingKeyRecord,
    FrankingKeys,
    ReportRecord,
)
from doorless.server.storage.executor import Executor, Tx
from doorless.server.storage.sql_hooks import SqlHooks


class SafetyOperations(SqlHooks):
    """Franking keys, reports and blocks."""

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

        return await self._run(Tx.READ, self._blocking_devices, sender, device_ids)

    async def _blocking_devices(
        self, ex: Executor, sender: str, device_ids: Sequence[str]
    ) -> set[str]:
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
