"""Full-text search in the client store (doorless.client.store.search, schema migration 3):
the triggers that keep the index in step, query errors, unicode, ranking, and that a deleted
message's words are gone from the decrypted database pages."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlcipher3
from hypothesis import given
from hypothesis import strategies as st

from doorless.client.keys import StoreKey
from doorless.client.store import (
    MIGRATIONS,
    SCHEMA_VERSION,
    InvalidSearchQuery,
    ProfileStore,
    RawKey,
)
from doorless.client.store.search import check_query, literal_query
from doorless.errors import ConfigurationError

from .test_store import NOW, decrypted_pages, group, message

INDEX_MIGRATION = next(i for i, m in enumerate(MIGRATIONS) if any("message_search" in s for s in m))


@pytest.fixture
def profile(tmp_path: Path) -> Path:
    return tmp_path / "profile"


@pytest.fixture
def raw_key() -> StoreKey:
    return StoreKey(secrets.token_bytes(32))


@pytest.fixture
def store(profile: Path, raw_key: StoreKey) -> Iterator[ProfileStore]:
    s = ProfileStore.open(profile, RawKey(raw_key))
    with s.transaction() as tx:
        tx.insert_group(group(b"g1"))
        tx.insert_group(group(b"g2"))
    yield s
    s.close()


def add(store: ProfileStore, body: str, gid: bytes = b"g1", **kw: Any) -> int:
    kw.setdefault("content_type", "text")
    with store.transaction() as tx:
        local_id = tx.insert_message(message(gid, body.encode(), **kw)).local_id
    assert local_id is not None
    return local_id


def found(store: ProfileStore, query: str, **kw: Any) -> list[int]:
    kw.setdefault("now", NOW)
    with store.transaction() as tx:
        return [r.message.local_id or 0 for r in tx.search_messages(query, **kw)]


def test_insert_is_indexed_with_a_marked_snippet(store: ProfileStore) -> None:
    hello = add(store, "hello there, General Kenobi")
    add(store, "nothing to see")
    with store.transaction() as tx:
        (row,) = tx.search_messages("kenobi", now=NOW)
    assert row.message.local_id == hello
    assert row.message.body == b"hello there, General Kenobi"
    assert row.snippet == "hello there, General \x02Kenobi\x03"


def test_only_text_messages_are_indexed(store: ProfileStore) -> None:
    add(store, "invoice attached", content_type="file")
    text = add(store, "the invoice")
    assert found(store, "invoice") == [text]


def test_edit_reindexes_and_change_of_kind_leaves(store: ProfileStore) -> None:
    """An UPDATE of the body (an edit) or of the content type, by anyone's SQL, keeps the
    index right: the triggers are the one place that maintains it."""
    local_id = add(store, "original words")
    with store.transaction() as tx:
        tx._x("UPDATE messages SET body = ? WHERE local_id = ?", (b"edited words", local_id))
    assert found(store, "original") == []
    assert found(store, "edited") == [local_id]
    with store.transaction() as tx:
        tx._x("UPDATE messages SET content_type = 'tombstone' WHERE local_id = ?", (local_id,))
    assert found(store, "edited") == []
    with store.transaction() as tx:
        tx._x("UPDATE messages SET content_type = 'text' WHERE local_id = ?", (local_id,))
        tx._x("UPDATE messages SET state = 'read' WHERE local_id = ?", (local_id,))
        tx.search_index_check()
    assert found(store, "edited") == [local_id]


def test_delete_and_expiry_leave_the_index(store: ProfileStore) -> None:
    gone = add(store, "ephemeral note")
    later = add(store, "ephemeral later", expires_at=NOW + 1000)
    expired = add(store, "ephemeral expired", expires_at=NOW - 1)
    assert set(found(store, "ephemeral")) == {gone, later}  # expired: not shown, even unpurged
    with store.transaction() as tx:
        tx.delete_message(gone)
        assert tx.delete_expired(NOW) == 1
        tx.search_index_check()
    assert found(store, "ephemeral") == [later]
    assert found(store, "ephemeral", now=NOW + 2000) == []
    with store.transaction() as tx:
        tx.delete_group(b"g1")  # a conversation deleted with its messages (ON DELETE CASCADE)
        tx.search_index_check()
    assert found(store, "ephemeral") == [] and expired


def test_conversation_filter_and_limit(store: ProfileStore) -> None:
    one = add(store, "lunch at noon", b"g1")
    two = add(store, "lunch tomorrow", b"g2")
    assert set(found(store, "lunch")) == {one, two}
    assert found(store, "lunch", group_id=b"g2") == [two]
    assert len(found(store, "lunch", limit=1)) == 1


def test_ranking_best_match_first_then_newest(store: ProfileStore) -> None:
    weak = add(store, "a long message that mentions pizza once among many other words here")
    strong = add(store, "pizza pizza pizza")
    old_tie = add(store, "tie word")
    new_tie = add(store, "tie word")
    assert found(store, "pizza") == [strong, weak]
    assert found(store, "tie") == [new_tie, old_tie]


@pytest.mark.parametrize(
    ("body", "query"),
    [
        ("Café crème", "cafe"),  # diacritics and case folded
        ("CAFÉ", "café"),
        ("Привет, мир", "мир"),
        ("Γειά σου κόσμε", "ΚΌΣΜΕ"),  # case folded beyond Latin (diacritics: Latin only)
        ("Straße", "straße"),
        ("emoji 🎉 party", "party"),
        ("日本語 テキスト", "テキスト"),
        ("prefix matching works", "match*"),
        ("exact phrase here", '"exact phrase"'),
    ],
    ids=[
        "latin-accent",
        "latin-case",
        "cyrillic",
        "greek",
        "eszett",
        "emoji",
        "cjk",
        "prefix",
        "phrase",
    ],
)
def test_unicode_and_syntax(store: ProfileStore, body: str, query: str) -> None:
    local_id = add(store, body)
    add(store, "unrelated")
    assert found(store, query) == [local_id]


def test_boolean_operators(store: ProfileStore) -> None:
    both = add(store, "apples and pears")
    apples = add(store, "only apples")
    assert set(found(store, "apples OR pears")) == {both, apples}
    assert found(store, "apples NOT pears") == [apples]
    assert found(store, "apples pears") == [both]


@pytest.mark.parametrize(
    "query",
    ['"unterminated', "AND", "a OR", "(a", "nosuchcolumn:word", "don't", "*", "", "   ", "\x00"],
)
def test_bad_query_is_a_typed_error_and_changes_nothing(store: ProfileStore, query: str) -> None:
    add(store, "something")
    with store.transaction() as tx, pytest.raises(InvalidSearchQuery) as info:
        tx.search_messages(query, now=NOW)
    assert isinstance(info.value, ConfigurationError)
    assert "Traceback" not in str(info.value)
    assert found(store, "something")


def test_overlong_query_refused() -> None:
    with pytest.raises(InvalidSearchQuery):
        check_query("word " * 1000)


def test_literal_query_quotes_every_word(store: ProfileStore) -> None:
    local_id = add(store, "don't panic: AND (really)")
    assert found(store, literal_query("don't AND")) == [local_id]
    assert literal_query('say "hi"') == '"say" """hi"""'
    with pytest.raises(InvalidSearchQuery):
        literal_query("  ")


@given(st.text(max_size=40))
def test_any_text_searches_or_raises_invalid_query(text: str) -> None:
    """Every string is either a valid query or an `InvalidSearchQuery`, and as a literal
    query (if it has a word) always valid."""
    with contextlib.suppress(InvalidSearchQuery):
        check_query(text)
    if text.split() and "\x00" not in text:
        check_query(literal_query(text))


def test_snippet_markers_in_a_body_are_not_matches(store: ProfileStore) -> None:
    """The STX/ETX characters that mark matches cannot come from a message body."""
    add(store, "fake \x02marker\x03 and real")
    with store.transaction() as tx:
        (row,) = tx.search_messages("real", now=NOW)
    assert row.snippet.count("\x02") == 1 and row.snippet.endswith("\x02real\x03")


@pytest.mark.parametrize("secure_delete", [True, False])
def test_deleted_words_leave_the_decrypted_pages(
    store: ProfileStore, profile: Path, raw_key: StoreKey, secure_delete: bool
) -> None:
    """After a delete (and the checkpoint the client runs after purging), the canary word is
    in no decrypted page of the database or its WAL, index included. Without FTS5's
    secure-delete the index keeps it: the check can fail."""
    if not secure_delete:
        with store.transaction() as tx:
            tx._x("INSERT INTO message_search (message_search, rank) VALUES ('secure-delete', 0)")
    word = "zqcanary" + secrets.token_hex(12)
    add(store, "keep this message")
    local_id = add(store, word)
    store.checkpoint()
    assert word.encode() in decrypted_pages(profile, raw_key)  # the check sees the index
    with store.transaction() as tx:
        tx.delete_message(local_id)
    store.checkpoint()
    assert found(store, word) == []
    assert (word.encode() in decrypted_pages(profile, raw_key)) is not secure_delete


def test_migration_indexes_existing_messages(profile: Path, raw_key: StoreKey) -> None:
    """A store from before the index gets its text messages indexed by the migration."""
    ProfileStore.open(profile, RawKey(raw_key)).close()  # the folder and its key header
    for name in ("store.db", "store.db-wal", "store.db-shm"):
        (profile / name).unlink(missing_ok=True)
    raw = sqlcipher3.connect(str(profile / "store.db"), isolation_level=None)
    raw.execute(f"PRAGMA key = \"x'{raw_key.value.hex()}'\"")
    for statements in MIGRATIONS[:INDEX_MIGRATION]:
        for statement in statements:
            raw.execute(statement)
    raw.execute(f"PRAGMA user_version = {INDEX_MIGRATION}")
    raw.execute("INSERT INTO mls_groups VALUES (x'01', 'g', x'00', 0, NULL, 'active', 1, 1)")
    for local_id, kind, body in ((1, "text", "old message"), (2, "file", "old file")):
        raw.execute(
            "INSERT INTO messages (local_id, group_id, sender_user, sender_device, outgoing, "
            "content_type, body, sent_at, state) VALUES (?, x'01', 'bob', 'd', 0, ?, ?, 1, "
            "'received')",
            (local_id, kind, body.encode()),
        )
    raw.close()
    store = ProfileStore.open(profile, RawKey(raw_key))
    try:
        assert store.schema_version == SCHEMA_VERSION
        with store.transaction() as tx:
            assert [r.message.local_id for r in tx.search_messages("old", now=NOW)] == [1]
            tx.search_index_check()
    finally:
        store.close()


def test_index_and_triggers_survive_a_key_change(store: ProfileStore) -> None:
    """`ProfileStore.change_key` re-encrypts with sqlcipher_export: the index, its triggers
    and its secure-delete setting come along."""
    old = add(store, "before the key change")
    store.change_key(RawKey(StoreKey(secrets.token_bytes(32))))
    assert found(store, "before") == [old]
    new = add(store, "after the key change")
    with store.transaction() as tx:
        tx.delete_message(old)
        tx.search_index_check()
        (value,) = tx._one("SELECT v FROM message_search_config WHERE k = 'secure-delete'")
    assert found(store, "change") == [new] and value == 1
