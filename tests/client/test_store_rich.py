"""The store's rich-message rows (doorless.client.store.rich): metadata, edit history,
reactions, read marks, and a delete for everyone that leaves no trace in any page image."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from doorless.client.keys import StoreKey
from doorless.client.store import ProfileStore, RichMeta, StoredReaction

from .test_store import canary, decrypted_pages, group, message, new_raw_key, open_raw


@pytest.fixture
def key() -> StoreKey:
    return new_raw_key()


@pytest.fixture
def db(tmp_path: Path, key: StoreKey) -> Iterator[ProfileStore]:
    s = open_raw(tmp_path / "profile", key)
    yield s
    s.close()


def _post(store: ProfileStore, body: bytes) -> int:
    with store.transaction() as tx:
        tx.insert_group(group())
        local_id = tx.insert_message(message(body=body, content_type="text")).local_id
        assert local_id is not None
        tx.put_rich(RichMeta(local_id=local_id, mimi_id=b"\x01" * 32, mentions=("bob",)))
    return local_id


def test_edit_keeps_history_and_reactions_and_read_marks(db: ProfileStore) -> None:
    local_id = _post(db, b"first")
    with db.transaction() as tx:
        tx.edit_message(local_id, b"second", (), 10)
        tx.edit_message(local_id, b"third", ("carol",), 20)
        tx.put_reaction(
            StoredReaction(
                mimi_id=b"r1", local_id=local_id, sender_user="bob", emoji="👍", sent_at=5
            )
        )
        assert tx.put_read_up_to(b"g1", "bob", local_id, 30)
        assert not tx.put_read_up_to(b"g1", "bob", local_id - 1, 40)  # only forward
    with db.transaction() as tx:
        got = tx.get_message(local_id)
        assert got is not None and got.body == b"third"
        assert [(v.version, v.body, v.replaced_at) for v in tx.edit_history(local_id)] == [
            (0, b"first", 10),
            (1, b"second", 20),
        ]
        meta = tx.get_rich(local_id)
        assert meta is not None and meta.edited and meta.mentions == ("carol",)
        assert tx.rich_by_mimi_id(b"\x01" * 32) == meta
        assert [r.emoji for r in tx.reactions_of([local_id])] == ["👍"]
        assert tx.read_up_to(b"g1") == {"bob": local_id}


@pytest.mark.parametrize("secure_delete", [True, False], ids=["secure-delete", "control"])
def test_delete_for_everyone_leaves_no_trace(
    db: ProfileStore, tmp_path: Path, key: StoreKey, secure_delete: bool
) -> None:
    store, profile, raw_key = db, tmp_path / "profile", key
    if not secure_delete:
        store._conn.execute("PRAGMA secure_delete = OFF")
    original, edited = canary(), canary()
    local_id = _post(store, original)
    with store.transaction() as tx:
        tx.edit_message(local_id, edited, (), 10)
        tx.set_message_franking(local_id, b"franked " + edited)
        tx.put_pending_payload("m1", b"payload " + edited)
    store.checkpoint()
    plain = decrypted_pages(profile, raw_key)
    assert original in plain and edited in plain
    with store.transaction() as tx:
        tx.erase_message(local_id)
        tx.drop_pending_payload("m1")
    store.checkpoint()
    plain = decrypted_pages(profile, raw_key)
    left = (original in plain, edited in plain)
    assert left == ((False, False) if secure_delete else (True, True))
    with store.transaction() as tx:
        got = tx.get_message(local_id)
        assert got is not None and got.body == b"" and got.franking is None  # a placeholder
        meta = tx.get_rich(local_id)
        assert meta is not None and meta.deleted and tx.edit_history(local_id) == []
