"""Store transaction methods: KeyPackage private keys and the last verified KT checkpoint."""

from __future__ import annotations

from doorless.client.store.base import TxBase
from doorless.client.store.rows import KtCheckpoint, StoredKeyPackage
from doorless.client.store.schema import key_package_row


class KeyMaterialRows(TxBase):
    """KeyPackage private keys and the last verified key-transparency checkpoint."""

    __slots__ = ()

    def insert_key_package(self, kp: StoredKeyPackage) -> None:
        self._x(
            "INSERT INTO key_packages (ref, key_package, init_private_key, "
            "encryption_private_key, created_at, last_resort) VALUES (?, ?, ?, ?, ?, ?)",
            (
                kp.ref,
                kp.key_package,
                kp.init_private_key.value,
                kp.encryption_private_key.value,
                kp.created_at,
                int(kp.last_resort),
            ),
        )

    def get_key_package(self, ref: bytes) -> StoredKeyPackage | None:
        row = self._one(
            "SELECT ref, key_package, init_private_key, encryption_private_key, created_at, "
            "last_resort FROM key_packages WHERE ref = ?",
            (ref,),
        )
        return None if row is None else key_package_row(row)

    def list_key_packages(self) -> list[StoredKeyPackage]:
        rows = self._all(
            "SELECT ref, key_package, init_private_key, encryption_private_key, created_at, "
            "last_resort FROM key_packages ORDER BY created_at, ref"
        )
        return [key_package_row(r) for r in rows]

    def count_key_packages(self) -> int:
        count: int = self._one("SELECT count(*) FROM key_packages WHERE last_resort = 0")[0]
        return count

    def delete_key_package(self, ref: bytes) -> None:
        """Delete a consumed KeyPackage's private keys (I6: consumed keys are deleted)."""
        self._changed(self._x("DELETE FROM key_packages WHERE ref = ?", (ref,)), "the KeyPackage")

    # key transparency

    def get_kt_checkpoint(self) -> KtCheckpoint | None:
        row = self._one(
            "SELECT tree_size, root_hash, signed_tree_head, verified_at FROM kt_checkpoint "
            "WHERE id = 1"
        )
        if row is None:
            return None
        return KtCheckpoint(
            tree_size=row[0], root_hash=row[1], signed_tree_head=row[2], verified_at=row[3]
        )

    def put_kt_checkpoint(self, checkpoint: KtCheckpoint) -> None:
        self._x(
            "INSERT OR REPLACE INTO kt_checkpoint (id, tree_size, root_hash, signed_tree_head, "
            "verified_at) VALUES (1, ?, ?, ?, ?)",
            (
                checkpoint.tree_size,
                checkpoint.root_hash,
                checkpoint.signed_tree_head,
                checkpoint.verified_at,
            ),
        )


__all__ = ["KeyMaterialRows"]
