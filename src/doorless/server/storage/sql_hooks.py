"""What every SQL operation of `doorless.server.storage.sql` builds on: the hooks a dialect
provides (`SqlHooks._run`, `_any_of`, the dialect-specific writes) and the small pieces shared by
several groups of operations. See `doorless.server.storage.sql` for the design."""

from __future__ import annotations

import secrets
from abc import abstractmethod
from collections.abc import Iterable, Sequence
from typing import Any, TypeAlias, TypeVar

from doorless.server.storage import rows
from doorless.server.storage.base import (
    ClaimedKeyPackage,
    Delivery,
    DeliveryResult,
    DeviceExists,
    DeviceRecord,
    EpochGate,
    FrankingKeyRecord,
    KeyPackageCount,
    KtConflict,
    KtVersion,
    Storage,
)
from doorless.server.storage.executor import Executor, Op, Tx

T = TypeVar("T")

# An ack frame: a device and the seqs it acknowledges (distinct, sorted).
Ack: TypeAlias = tuple[str, list[int]]


# RFC 9420's suites (1-7): what a client that names no suite in a claim or count can use.
CLASSIC_SUITES_SQL = "AND cipher_suite BETWEEN 1 AND 7"


def count_per_ack(acks: Sequence[Ack], deleted: Iterable[tuple[str, int]]) -> list[int]:
    """How many of the ``deleted`` ``(device, seq)`` entries each ack of a batch named: each
    entry counts once, for the first ack of the batch that named it (two frames of one device
    may repeat a seq; the second frame's answer says it was already gone)."""
    owner: dict[tuple[str, int], int] = {}
    for i, (device_id, seqs) in enumerate(acks):
        for seq in seqs:
            owner.setdefault((device_id, seq), i)
    counts = [0] * len(acks)
    for device_id, seq in deleted:
        counts[owner[(str(device_id), int(seq))]] += 1
    return counts


def suite_filter(cipher_suite: int | None, param: int) -> tuple[str, tuple[int, ...]]:
    """The ``AND ...`` selecting one suite's key packages (as parameter ``$param``), or the
    classic suites' for ``None``, and its arguments."""
    if cipher_suite is None:
        return CLASSIC_SUITES_SQL, ()
    return f"AND cipher_suite = ${param}", (cipher_suite,)


class SqlHooks(Storage):
    """The dialect hooks and shared pieces of the SQL storage."""

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
    async def _release_payloads(self, ex: Executor, payload_ids: list[int]) -> None:
        """After queue entries were deleted (``DELETE ... RETURNING payload_id``, which hands
        each entry to one transaction only): one fewer recipient left for each id, as many
        times as it is listed; a payload left with none is deleted."""

    @abstractmethod
    async def _lock_key_packages(self, ex: Executor, device_id: str) -> None:
        """Serialize uploads of one device's key packages (the limit check)."""

    @abstractmethod
    async def _insert_key_packages(
        self, ex: Executor, device_id: str, key_packages: Sequence[bytes], cipher_suite: int
    ) -> None:
        """Insert one-time packages of one suite, in order."""

    @abstractmethod
    async def _claim_key_package(
        self, ex: Executor, device_id: str, cipher_suite: int | None
    ) -> ClaimedKeyPackage | None:
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

    @abstractmethod
    async def _ack_batch(self, acks: list[Ack]) -> list[int]:
        """Delete the queue entries a batch of acks names, from any devices, in one operation
        (`SqlStorage.ack` coalesces them); per ack, how many entries it deleted
        (`count_per_ack`)."""

    # --- shared pieces ---------------------------------------------------------------------

    @staticmethod
    async def _mint_server_id(ex: Executor) -> str:
        await ex.execute(
            "INSERT INTO meta (key, value) VALUES ('server_id', $1) ON CONFLICT (key) DO NOTHING",
            secrets.token_hex(16),
        )
        return str(await ex.fetchval("SELECT value FROM meta WHERE key = 'server_id'"))

    @staticmethod
    async def _key_package_count(
        ex: Executor, device_id: str, cipher_suite: int | None
    ) -> KeyPackageCount:
        where, args = suite_filter(cipher_suite, 2)
        row = await ex.fetchrow(
            "SELECT COALESCE(SUM(CASE WHEN last_resort THEN 0 ELSE 1 END), 0), "
            "COALESCE(MAX(CASE WHEN last_resort THEN 1 ELSE 0 END), 0) "
            f"FROM key_packages WHERE device_id = $1 {where}",
            device_id,
            *args,
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
