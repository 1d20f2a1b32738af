"""The SQL of the key-transparency log (docs/key-transparency.md), shared by both dialects
(`doorless.server.storage.sql`)."""

from __future__ import annotations

import secrets

from doorless.server.storage import rows
from doorless.server.storage.base import (
    KtConflict,
    KtLogEntry,
    KtVersion,
)
from doorless.server.storage.executor import Executor, Tx
from doorless.server.storage.sql_hooks import SqlHooks


class KtOperations(SqlHooks):
    """The log's versions, entries and cosignatures."""

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
