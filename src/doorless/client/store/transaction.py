"""`Transaction`: typed access to the store within one transaction, all record families."""

from __future__ import annotations

from doorless.client.store.accounts import AccountRows
from doorless.client.store.groups import GroupRows
from doorless.client.store.key_material import KeyMaterialRows
from doorless.client.store.messages import MessageRows
from doorless.client.store.outbox import OutboxRows
from doorless.client.store.rich import RichRows
from doorless.client.store.search import SearchRows
from doorless.client.store.settings import SettingRows
from doorless.client.store.snapshot import SnapshotRows


class Transaction(
    AccountRows,
    GroupRows,
    MessageRows,
    OutboxRows,
    KeyMaterialRows,
    SettingRows,
    SearchRows,
    SnapshotRows,
    RichRows,
):
    """Typed access to the store inside one ``BEGIN IMMEDIATE`` transaction.

    Obtained from `ProfileStore.transaction`; unusable once the ``with`` block ends.
    Constraint violations (duplicate key, unknown group) raise `StateError`; the caller's
    ``with`` block then rolls everything back.
    """

    __slots__ = ()


__all__ = ["Transaction"]
