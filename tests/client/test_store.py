"""The client's encrypted local store (doorless.client.store, doorless.client.keys)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import secrets
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlcipher3
from argon2.low_level import Type, hash_secret_raw
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given
from hypothesis import strategies as st

from doorless.client import keys as keys_module
from doorless.client.keys import (
    DEFAULT_ARGON2,
    PASSPHRASE_ENV,
    Argon2Header,
    Argon2Params,
    KeyringHeader,
    KeyringKey,
    KeyUnavailable,
    Passphrase,
    ProfileCorrupt,
    RawHeader,
    RawKey,
    StoreKey,
    decode_header,
    encode_header,
    resolve_key_source,
)
from doorless.client.store import (
    DB_NAME,
    SCHEMA_VERSION,
    Account,
    Contact,
    ContactDevice,
    DeviceStatus,
    Group,
    GroupStatus,
    KtCheckpoint,
    Message,
    MessageState,
    OutboxItem,
    OwnDevice,
    ProfileLocked,
    ProfileStore,
    StoredKeyPackage,
    StoreError,
    Transaction,
    WrongPassphrase,
)
from doorless.errors import ConfigurationError, LocalError, StateError
from doorless.secret import PrivateKeyBytes

# Tiny Argon2 costs keep the tests fast; the defaults are tested separately.
FAST = Argon2Params(time_cost=1, memory_cost_kib=8, parallelism=1)
NOW = 1_700_000_000_000

# SQLCipher 4 defaults: 4096-byte pages ending in an 80-byte reserve (16-byte IV, 64-byte
# HMAC-SHA512); page 1 starts with the 16-byte file salt. A raw key is the AES-256 key itself.
PAGE_SIZE = 4096
RESERVE = 80
WAL_HEADER = 32
WAL_FRAME_HEADER = 24


# --- helpers ------------------------------------------------------------------------------


def new_raw_key() -> StoreKey:
    return StoreKey(secrets.token_bytes(32))


def open_raw(profile: Path, key: StoreKey, **kw: Any) -> ProfileStore:
    return ProfileStore.open(profile, RawKey(key), **kw)


def open_pw(profile: Path, passphrase: str | None = "correct horse", **kw: Any) -> ProfileStore:
    kw.setdefault("argon2", FAST)
    kw.setdefault("environ", {})
    return ProfileStore.open(profile, passphrase, **kw)


def canary() -> bytes:
    return b"CANARY-" + secrets.token_hex(16).encode()


def group(gid: bytes = b"g1", state: bytes = b"state-0", epoch: int = 0) -> Group:
    return Group(
        group_id=gid, name="friends", mls_state=state, epoch=epoch, created_at=NOW, updated_at=NOW
    )


def message(gid: bytes = b"g1", body: bytes = b"hello", **kw: Any) -> Message:
    fields: dict[str, Any] = {
        "group_id": gid,
        "sender_user": "alice",
        "sender_device": "d1",
        "outgoing": False,
        "content_type": "text/plain",
        "body": body,
        "sent_at": NOW,
        "received_at": NOW + 5,
        "state": MessageState.RECEIVED,
    }
    fields.update(kw)
    return Message(**fields)


def key_package(ref: bytes, secret: bytes = b"init-sk") -> StoredKeyPackage:
    return StoredKeyPackage(
        ref=ref,
        key_package=b"kp-" + ref,
        init_private_key=PrivateKeyBytes(secret),
        encryption_private_key=PrivateKeyBytes(b"enc-sk-" + ref),
        created_at=NOW,
    )


def raw_dump(profile: Path, key: StoreKey) -> dict[str, list[tuple[Any, ...]]]:
    """Schema and every row of every table, read through an independent SQLCipher connection."""
    conn = sqlcipher3.connect(str(profile / DB_NAME))
    try:
        conn.execute(f"PRAGMA key = \"x'{key.value.hex()}'\"")
        objects = conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
        dump: dict[str, list[tuple[Any, ...]]] = {"": [tuple(o) for o in objects]}
        for kind, name, _ in objects:
            if kind == "table":
                dump[name] = sorted(map(tuple, conn.execute(f'SELECT * FROM "{name}"')), key=repr)
        return dump
    finally:
        conn.close()


def folder_bytes(profile: Path, *, skip: tuple[str, ...] = ("lock",)) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(profile.iterdir()) if p.name not in skip}


def decrypt_page(page: bytes, key: StoreKey, first: bool) -> bytes:
    iv = page[PAGE_SIZE - RESERVE : PAGE_SIZE - RESERVE + 16]
    decryptor = Cipher(algorithms.AES(key.value), modes.CBC(iv)).decryptor()
    return decryptor.update(page[16 if first else 0 : PAGE_SIZE - RESERVE]) + decryptor.finalize()


def decrypted_pages(profile: Path, key: StoreKey) -> bytes:
    """Decrypt every page image in the database file and in its WAL (all frames)."""
    out = []
    db = (profile / DB_NAME).read_bytes()
    for offset in range(0, len(db) - PAGE_SIZE + 1, PAGE_SIZE):
        out.append(decrypt_page(db[offset : offset + PAGE_SIZE], key, offset == 0))
    wal_path = profile / (DB_NAME + "-wal")
    wal = wal_path.read_bytes() if wal_path.exists() else b""
    frame = WAL_FRAME_HEADER + PAGE_SIZE
    for offset in range(WAL_HEADER, len(wal) - frame + 1, frame):
        pgno = int.from_bytes(wal[offset : offset + 4], "big")
        page = wal[offset + WAL_FRAME_HEADER : offset + frame]
        out.append(decrypt_page(page, key, pgno == 1))
    return b"".join(out)


@pytest.fixture
def profile(tmp_path: Path) -> Path:
    return tmp_path / "profile"


@pytest.fixture
def raw_key() -> StoreKey:
    return new_raw_key()


@pytest.fixture
def store(profile: Path, raw_key: StoreKey) -> Iterator[ProfileStore]:
    s = open_raw(profile, raw_key)
    yield s
    s.close()


class FakeKeyring:
    def __init__(self) -> None:
        self.entries: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.entries.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.entries[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        del self.entries[(service, username)]


# --- creation, schema, key header ----------------------------------------------------------


def test_new_profile_from_empty_folder(profile: Path, raw_key: StoreKey) -> None:
    with open_raw(profile, raw_key) as s:
        assert s.schema_version == SCHEMA_VERSION
    assert stat.S_IMODE(profile.stat().st_mode) == 0o700
    for name in ("key.json", DB_NAME, "lock"):
        assert stat.S_IMODE((profile / name).stat().st_mode) == 0o600, name
    assert not (profile / "key.json.new").exists()
    tables = set(raw_dump(profile, raw_key))
    assert {
        "account",
        "devices",
        "contacts",
        "contact_devices",
        "mls_groups",
        "messages",
        "processed",
        "outbox",
        "key_packages",
        "kt_checkpoint",
        "settings",
    } <= tables


def test_reopen_keeps_data_and_does_not_migrate_again(profile: Path, raw_key: StoreKey) -> None:
    with open_raw(profile, raw_key) as s, s.transaction() as tx:
        tx.set_setting("theme", "dark")
    with open_raw(profile, raw_key) as s, s.transaction() as tx:
        assert s.schema_version == SCHEMA_VERSION
        assert tx.get_setting("theme") == "dark"


def test_newer_schema_is_refused(profile: Path, raw_key: StoreKey) -> None:
    open_raw(profile, raw_key).close()
    conn = sqlcipher3.connect(str(profile / DB_NAME))
    conn.execute(f"PRAGMA key = \"x'{raw_key.value.hex()}'\"")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer"):
        open_raw(profile, raw_key)
    # The failed open released the lock (ProfileLocked is a StoreError too: match the text).
    with pytest.raises(StoreError, match="newer"):
        open_raw(profile, raw_key)


def test_default_argon2_parameters_are_rfc9106_second_recommendation() -> None:
    # RFC 9106 §4: t=3 iterations, p=4 lanes, m=2^16 KiB (64 MiB).
    rfc9106 = Argon2Params(time_cost=3, memory_cost_kib=65536, parallelism=4)
    assert rfc9106 == DEFAULT_ARGON2


def test_argon2_parameters_persisted_and_used(profile: Path) -> None:
    params = Argon2Params(time_cost=2, memory_cost_kib=16, parallelism=2)
    with open_pw(profile, "pässwörd", argon2=params) as s, s.transaction() as tx:
        tx.set_setting("k", "v")
    header = json.loads((profile / "key.json").read_text())
    assert header["kind"] == "argon2id"
    a = header["argon2"]
    assert (a["time_cost"], a["memory_cost_kib"], a["parallelism"]) == (2, 16, 2)
    assert (a["version"], a["hash_len"]) == (19, 32)
    salt = bytes.fromhex(a["salt"])
    assert len(salt) == 16

    # The store key is Argon2id(NFC(passphrase), salt) with exactly these parameters,
    # computed here straight from argon2-cffi.
    expected = hash_secret_raw(
        "pässwörd".encode(), salt, time_cost=2, memory_cost=16, parallelism=2,
        hash_len=32, type=Type.ID, version=19,
    )  # fmt: skip
    assert raw_dump(profile, StoreKey(expected))["settings"] == [("k", "v")]

    # Reopening with other default parameters uses the stored ones.
    before = (profile / "key.json").read_bytes()
    with open_pw(profile, "pässwörd", argon2=DEFAULT_ARGON2) as s, s.transaction() as tx:
        assert tx.get_setting("k") == "v"
    assert (profile / "key.json").read_bytes() == before


def test_passphrase_is_nfc_normalised(profile: Path) -> None:
    open_pw(profile, "caf\u00e9").close()
    open_pw(profile, "cafe\u0301").close()  # decomposed é


def test_two_profiles_get_different_salts(tmp_path: Path) -> None:
    open_pw(tmp_path / "a").close()
    open_pw(tmp_path / "b").close()
    salt = [json.loads((tmp_path / n / "key.json").read_text())["argon2"]["salt"] for n in "ab"]
    assert salt[0] != salt[1]


@pytest.mark.parametrize(
    "params",
    [
        {"time_cost": 0},
        {"time_cost": 65},
        {"parallelism": 0},
        {"memory_cost_kib": 7, "parallelism": 1},
        {"memory_cost_kib": 4 * 1024 * 1024 + 1},
    ],
    ids=["t0", "t65", "p0", "m-too-small", "m-too-big"],
)
def test_argon2_params_bounds(params: dict[str, int]) -> None:
    with pytest.raises(ConfigurationError):
        Argon2Params(**params)


@pytest.mark.parametrize(
    "edit",
    [
        lambda h: h.update(format=2),
        lambda h: h.update(kind="rot13"),
        lambda h: h["argon2"].update(memory_cost_kib=1 << 40),
        lambda h: h["argon2"].update(salt="00"),
        lambda h: h["argon2"].update(salt="zz" * 16),
        lambda h: h["argon2"].update(version=16),
        lambda h: h["argon2"].update(time_cost=True),
        lambda h: h.pop("argon2"),
    ],
    ids=["format", "kind", "memory", "short-salt", "bad-hex", "version", "bool", "missing"],
)
def test_tampered_key_header_is_profile_corrupt(profile: Path, edit: Any) -> None:
    open_pw(profile).close()
    header = json.loads((profile / "key.json").read_text())
    edit(header)
    (profile / "key.json").write_text(json.dumps(header))
    with pytest.raises(ProfileCorrupt):
        open_pw(profile)


def test_store_without_header_is_profile_corrupt(profile: Path) -> None:
    open_pw(profile).close()
    (profile / "key.json").unlink()
    before = folder_bytes(profile)
    with pytest.raises(ProfileCorrupt, match="key header"):
        open_pw(profile)
    assert folder_bytes(profile) == before


def test_header_without_store_is_profile_corrupt(profile: Path) -> None:
    open_pw(profile).close()
    (profile / DB_NAME).unlink()
    with pytest.raises(ProfileCorrupt, match="missing"):
        open_pw(profile)
    assert not (profile / DB_NAME).exists()


def test_interrupted_creation_starts_over(profile: Path) -> None:
    # A creation that crashed before promoting its header leaves key.json.new and maybe a
    # store file; the next open creates the profile afresh.
    profile.mkdir()
    (profile / "key.json.new").write_bytes(encode_header(RawHeader()))
    (profile / DB_NAME).write_bytes(b"half-created junk")
    with open_pw(profile) as s:
        assert s.schema_version == SCHEMA_VERSION
    assert not (profile / "key.json.new").exists()
    assert json.loads((profile / "key.json").read_text())["kind"] == "argon2id"


@given(st.binary(max_size=300))
def test_decode_header_arbitrary_bytes(data: bytes) -> None:
    with contextlib.suppress(ProfileCorrupt):
        decode_header(data)


@given(
    st.one_of(
        st.builds(
            Argon2Header,
            params=st.builds(
                Argon2Params,
                time_cost=st.integers(1, 64),
                memory_cost_kib=st.integers(512, 4096),
                parallelism=st.integers(1, 64),
            ),
            salt=st.binary(min_size=16, max_size=64),
        ),
        st.builds(KeyringHeader, service=st.text(), username=st.text()),
        st.just(RawHeader()),
    )
)
def test_key_header_round_trip(header: Any) -> None:
    encoded = encode_header(header)
    assert decode_header(encoded) == header
    assert encode_header(decode_header(encoded)) == encoded


# --- wrong passphrase ----------------------------------------------------------------------


def test_wrong_passphrase_raises_and_changes_nothing(profile: Path) -> None:
    with open_pw(profile, "right") as s, s.transaction() as tx:
        tx.set_setting("k", "v")
    before = folder_bytes(profile)
    with pytest.raises(WrongPassphrase) as info:
        open_pw(profile, "hunter2-typo")
    assert isinstance(info.value, LocalError)
    assert "hunter2" not in str(info.value)
    assert folder_bytes(profile) == before
    # The failed attempt released the lock; the right passphrase still opens the data.
    with open_pw(profile, "right") as s, s.transaction() as tx:
        assert tx.get_setting("k") == "v"


def test_wrong_raw_key(profile: Path, raw_key: StoreKey) -> None:
    open_raw(profile, raw_key).close()
    with pytest.raises(WrongPassphrase):
        open_raw(profile, new_raw_key())


def test_wrong_passphrase_prints_nothing(profile: Path) -> None:
    # In a fresh process, so that no earlier connection has already silenced SQLCipher's log.
    open_pw(profile, "right").close()
    script = (
        "import sys\n"
        "from doorless.client.keys import Argon2Params\n"
        "from doorless.client.store import ProfileStore, WrongPassphrase\n"
        "try:\n"
        "    ProfileStore.open(sys.argv[1], 'wrong', environ={})\n"
        "except WrongPassphrase:\n"
        "    print('refused')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(profile)], capture_output=True, timeout=60
    )
    assert result.stdout == b"refused\n"
    assert result.stderr == b""


def test_key_source_of_another_kind_is_refused(profile: Path, raw_key: StoreKey) -> None:
    open_pw(profile).close()
    with pytest.raises(ConfigurationError, match="not a raw key"):
        open_raw(profile, raw_key)


# --- key sources ---------------------------------------------------------------------------


def test_passphrase_from_environment(profile: Path) -> None:
    env = {PASSPHRASE_ENV: "from-env"}
    open_pw(profile, None, environ=env).close()
    open_pw(profile, "from-env").close()
    with pytest.raises(WrongPassphrase):
        open_pw(profile, None, environ={PASSPHRASE_ENV: "other"})


def test_no_key_source_available(profile: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keys_module, "system_keyring", lambda: None)
    with pytest.raises(KeyUnavailable):
        ProfileStore.open(profile, None, environ={}, argon2=FAST)
    assert not (profile / "key.json").exists()


def test_raw_profile_needs_its_raw_key(profile: Path, raw_key: StoreKey) -> None:
    open_raw(profile, raw_key).close()
    with pytest.raises(KeyUnavailable):
        ProfileStore.open(profile, None, environ={PASSPHRASE_ENV: "x"})


def test_empty_passphrase_refused() -> None:
    with pytest.raises(ConfigurationError):
        Passphrase("")


def test_key_sources_hide_secrets() -> None:
    assert "hunter2" not in repr(Passphrase("hunter2"))
    key = new_raw_key()
    assert key.value.hex() not in repr(RawKey(key))
    assert key.value.hex() not in repr(key)


def test_keyring_key(profile: Path) -> None:
    ring = FakeKeyring()
    with ProfileStore.open(profile, KeyringKey(backend=ring)) as s, s.transaction() as tx:
        tx.set_setting("k", "v")
    header = decode_header((profile / "key.json").read_bytes())
    assert isinstance(header, KeyringHeader)
    stored = ring.entries[(header.service, header.username)]
    assert len(bytes.fromhex(stored)) == 32
    assert raw_dump(profile, StoreKey(bytes.fromhex(stored)))["settings"] == [("k", "v")]
    with ProfileStore.open(profile, KeyringKey(backend=ring)) as s, s.transaction() as tx:
        assert tx.get_setting("k") == "v"
    ring.entries.clear()
    with pytest.raises(KeyUnavailable):
        ProfileStore.open(profile, KeyringKey(backend=ring))


def test_keyring_used_for_new_profile_when_available(
    profile: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ring = FakeKeyring()
    monkeypatch.setattr(keys_module, "system_keyring", lambda: ring)
    ProfileStore.open(profile, None, environ={}).close()
    assert isinstance(decode_header((profile / "key.json").read_bytes()), KeyringHeader)
    ProfileStore.open(profile, None, environ={}).close()  # the header says: keyring


def test_resolve_prefers_explicit_then_env(tmp_path: Path) -> None:
    assert isinstance(resolve_key_source("pw", None, tmp_path, environ={}), Passphrase)
    source = resolve_key_source(None, None, tmp_path, environ={PASSPHRASE_ENV: "pw"})
    assert source == Passphrase("pw")


# --- lock ----------------------------------------------------------------------------------


def test_second_open_is_locked(profile: Path, raw_key: StoreKey) -> None:
    with open_raw(profile, raw_key):
        with pytest.raises(ProfileLocked, match=f"process {os.getpid()}"):
            open_raw(profile, raw_key)
        started = time.monotonic()
        with pytest.raises(ProfileLocked):
            open_raw(profile, raw_key, lock_timeout=0.2)
        assert time.monotonic() - started >= 0.2
    open_raw(profile, raw_key).close()


def test_lock_timeout_waits_for_release(profile: Path, raw_key: StoreKey) -> None:
    first = open_raw(profile, raw_key)
    timer = threading.Timer(0.1, first.close)
    timer.start()
    try:
        open_raw(profile, raw_key, lock_timeout=10).close()
    finally:
        timer.join()


def test_closed_store_refuses_use(store: ProfileStore) -> None:
    store.close()
    store.close()  # idempotent
    with pytest.raises(StateError), store.transaction():
        pass


# --- transactions --------------------------------------------------------------------------


def populate(tx: Transaction) -> None:
    tx.insert_group(group())
    tx.insert_message(message())
    tx.mark_processed("srv-1", NOW)
    tx.insert_key_package(key_package(b"ref-1"))
    tx.set_setting("theme", "dark")


class Boom(Exception):
    pass


@pytest.mark.parametrize("exc", [Boom, KeyboardInterrupt, asyncio.CancelledError])
def test_exception_rolls_back_everything(
    store: ProfileStore, profile: Path, raw_key: StoreKey, exc: type[BaseException]
) -> None:
    with store.transaction() as tx:
        populate(tx)
    before = raw_dump(profile, raw_key)
    with pytest.raises(exc), store.transaction() as tx:
        tx.update_group_state(b"g1", b"state-1", 1, NOW + 1)
        tx.insert_message(message(body=b"second"))
        tx.mark_processed("srv-2", NOW)
        tx.delete_key_package(b"ref-1")
        tx.insert_group(group(b"g2"))
        raise exc
    assert raw_dump(profile, raw_key) == before
    with store.transaction() as tx:
        assert tx.get_group(b"g1") == group()


def test_constraint_violation_is_state_error_and_rolls_back(
    store: ProfileStore, profile: Path, raw_key: StoreKey
) -> None:
    with store.transaction() as tx:
        populate(tx)
    before = raw_dump(profile, raw_key)
    with pytest.raises(StateError, match="constraint"), store.transaction() as tx:
        tx.update_group_state(b"g1", b"state-1", 1, NOW + 1)
        tx.insert_group(group())  # duplicate group_id
    assert raw_dump(profile, raw_key) == before
    with pytest.raises(StateError, match="constraint"), store.transaction() as tx:
        tx.insert_message(message(gid=b"no-such-group"))  # foreign key
    assert raw_dump(profile, raw_key) == before


def test_transaction_object_dies_with_its_block(store: ProfileStore) -> None:
    with store.transaction() as tx:
        pass
    with pytest.raises(StateError, match="ended"):
        tx.get_setting("x")


def test_nested_transaction_refused(store: ProfileStore) -> None:
    with store.transaction() as tx:
        tx.set_setting("a", "1")
        with pytest.raises(StateError, match="already open"), store.transaction():
            pass
        with pytest.raises(StateError):
            store.vacuum()
        with pytest.raises(StateError):
            store.close()
    with store.transaction() as tx:
        assert tx.get_setting("a") == "1"


def test_commit_is_visible_to_another_connection(
    store: ProfileStore, profile: Path, raw_key: StoreKey
) -> None:
    with store.transaction() as tx:
        tx.set_setting("committed", "yes")
    assert raw_dump(profile, raw_key)["settings"] == [("committed", "yes")]


# --- crash (kill -9) -----------------------------------------------------------------------

CHILD = """
import os, sys, time
from doorless.client.keys import RawKey, StoreKey
from doorless.client.store import Group, Message, MessageState, ProfileStore

profile, key_hex, mode = sys.argv[1], sys.argv[2], sys.argv[3]
store = ProfileStore.open(profile, RawKey(StoreKey(bytes.fromhex(key_hex))))
print("open", flush=True)
i = 0
while True:
    with store.transaction() as tx:
        gid = b"g%d" % i
        tx.insert_group(Group(group_id=gid, name="g", mls_state=os.urandom(100_000), epoch=i,
                              created_at=0, updated_at=0))
        for j in range(5):
            tx.insert_message(Message(group_id=gid, sender_user="a", sender_device="d",
                                      outgoing=False, content_type="text/plain",
                                      body=os.urandom(3000), sent_at=j,
                                      state=MessageState.RECEIVED))
        tx.mark_processed("srv-%d" % i, 0)
        if mode == "hang":
            print("inside", flush=True)
            time.sleep(120)
    print("committed", i, flush=True)
    i += 1
"""


def spawn_child(profile: Path, key: StoreKey, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(profile), key.value.hex(), mode],
        stdout=subprocess.PIPE,
        text=True,
    )


def check_all_or_nothing(profile: Path, key: StoreKey) -> set[int]:
    with open_raw(profile, key) as s, s.transaction() as tx:
        groups = {int(g.group_id[1:]) for g in tx.list_groups()}
        for i in groups:
            assert len(tx.list_messages(b"g%d" % i)) == 5
            assert tx.is_processed(f"srv-{i}")
        processed = {i for i in range(len(groups) + 50) if tx.is_processed(f"srv-{i}")}
        assert processed == groups
    with open_raw(profile, key) as s:
        s.check_integrity()
    return groups


def test_kill_inside_transaction_leaves_nothing(profile: Path, raw_key: StoreKey) -> None:
    child = spawn_child(profile, raw_key, "hang")
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "open\n"
        assert child.stdout.readline() == "inside\n"
        # The child holds the profile: we are refused, told which process has it.
        with pytest.raises(ProfileLocked, match=f"process {child.pid}"):
            open_raw(profile, raw_key)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert check_all_or_nothing(profile, raw_key) == set()


@pytest.mark.parametrize("delay_ms", [0, 7, 23])
def test_kill_during_commits_is_all_or_nothing(
    profile: Path, raw_key: StoreKey, delay_ms: int
) -> None:
    child = spawn_child(profile, raw_key, "loop")
    acknowledged: list[int] = []
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "open\n"
        while len(acknowledged) < 3:
            acknowledged.append(int(child.stdout.readline().split()[1]))
        time.sleep(delay_ms / 1000)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    groups = check_all_or_nothing(profile, raw_key)
    # Every transaction the child saw committed survived.
    assert set(acknowledged) <= groups
    assert groups == set(range(len(groups)))


# --- at rest: no plaintext, deleted means gone ---------------------------------------------


def test_files_never_hold_plaintext(store: ProfileStore, profile: Path, raw_key: StoreKey) -> None:
    secrets_in = {name: canary() for name in ("body", "state", "sk", "kp", "contact", "setting")}
    with store.transaction() as tx:
        tx.insert_group(group(state=secrets_in["state"]))
        tx.insert_message(message(body=secrets_in["body"]))
        tx.insert_key_package(key_package(b"r", secret=secrets_in["sk"]))
        tx.insert_key_package(key_package(secrets_in["kp"]))
        tx.put_contact(
            Contact(username=secrets_in["contact"].decode(), created_at=NOW, updated_at=NOW)
        )
        tx.set_setting("note", secrets_in["setting"].decode())
    # While open (data in the WAL), then after close (checkpointed into the main file).
    for when in ("open", "closed"):
        if when == "closed":
            store.close()
        files = folder_bytes(profile, skip=())
        assert any(name.endswith("-wal") for name in files) or when == "closed"
        for name, data in files.items():
            for what, value in secrets_in.items():
                assert value not in data, f"{what} in plaintext in {name} ({when})"
    # The decryption used below does find them: the check above could fail.
    plain = decrypted_pages(profile, raw_key)
    assert all(value in plain for value in secrets_in.values())


@pytest.mark.parametrize("secure_delete", [True, False], ids=["secure-delete", "control"])
def test_deleted_rows_leave_no_trace(
    store: ProfileStore, profile: Path, raw_key: StoreKey, secure_delete: bool
) -> None:
    if not secure_delete:
        store._conn.execute("PRAGMA secure_delete = OFF")
    body, sk = canary(), canary()
    with store.transaction() as tx:
        tx.insert_group(group())
        tx.insert_message(message(body=b"keep me"))
        local_id = tx.insert_message(message(body=body)).local_id
        tx.insert_key_package(key_package(b"ref", secret=sk))
    store.checkpoint()
    plain = decrypted_pages(profile, raw_key)
    assert body in plain and sk in plain

    with store.transaction() as tx:
        assert local_id is not None
        tx.delete_message(local_id)
        tx.delete_key_package(b"ref")  # the KeyPackage was consumed
    store.checkpoint()
    plain = decrypted_pages(profile, raw_key)
    assert (body in plain, sk in plain) == (not secure_delete, not secure_delete)

    if secure_delete:
        store.vacuum()
        plain = decrypted_pages(profile, raw_key)
        assert body not in plain and sk not in plain
        with store.transaction() as tx:
            assert tx.get_key_package(b"ref") is None
            assert [m.body for m in tx.list_messages(b"g1")] == [b"keep me"]


def test_vacuum_truncates_wal(store: ProfileStore, profile: Path) -> None:
    with store.transaction() as tx:
        tx.set_setting("x", "y" * 10_000)
    assert (profile / (DB_NAME + "-wal")).stat().st_size > 0
    store.vacuum()
    assert (profile / (DB_NAME + "-wal")).stat().st_size == 0


def test_reprs_hide_secrets() -> None:
    state, body, sk = canary(), canary(), canary()
    account = Account(
        username="alice",
        server_url="https://example.org",
        device_id="d1",
        cipher_suite=1,
        signature_private_key=PrivateKeyBytes(sk),
        signature_public_key=b"pk",
        credential=b"cred",
        created_at=NOW,
    )
    for obj in (group(state=state), message(body=body), key_package(b"r", sk), account):
        text = repr(obj)
        for value in (state, body, sk):
            assert value.decode() not in text and value.hex() not in text


# --- disappearing messages -----------------------------------------------------------------


def test_delete_expired(store: ProfileStore) -> None:
    with store.transaction() as tx:
        tx.insert_group(group())
        early = tx.insert_message(message(body=b"a", expires_at=NOW + 10))
        late = tx.insert_message(message(body=b"b", expires_at=NOW + 20))
        tx.insert_message(message(body=b"c"))
        tx.enqueue(
            OutboxItem(
                group_id=b"g1",
                kind="application",
                payload=b"ct",
                message_local_id=early.local_id,
                created_at=NOW,
                next_attempt_at=NOW,
            )
        )
    assert store.delete_expired(NOW + 9) == 0
    assert store.delete_expired(NOW + 10) == 1
    with store.transaction() as tx:
        assert [m.body for m in tx.list_messages(b"g1")] == [b"b", b"c"]
        # The pending send outlives its expired message.
        (item,) = tx.list_outbox()
        assert item.message_local_id is None
    assert store.delete_expired(NOW + 10_000) == 1
    with store.transaction() as tx:
        assert late.local_id is not None and tx.get_message(late.local_id) is None


# --- accessors -----------------------------------------------------------------------------


def test_account_round_trip(store: ProfileStore) -> None:
    account = Account(
        username="alice",
        server_url="https://example.org",
        device_id="d1",
        cipher_suite=1,
        signature_private_key=PrivateKeyBytes(b"sk"),
        signature_public_key=b"pk",
        credential=b"cred",
        created_at=NOW,
    )
    with store.transaction() as tx:
        assert tx.get_account() is None
        tx.put_account(account)
    with store.transaction() as tx:
        assert tx.get_account() == account
        tx.put_account(dataclasses.replace(account, device_id="d2"))
        got = tx.get_account()
        assert got is not None and got.device_id == "d2"


def test_devices(store: ProfileStore) -> None:
    d1 = OwnDevice(
        device_id="d1",
        signature_public_key=b"pk1",
        name="laptop",
        status=DeviceStatus.APPROVED,
        first_seen_at=NOW,
    )
    d2 = dataclasses.replace(d1, device_id="d2", status=DeviceStatus.PENDING, first_seen_at=NOW + 1)
    with store.transaction() as tx:
        tx.put_device(d1)
        tx.put_device(d2)
        assert tx.list_devices() == [d1, d2]
        tx.put_device(dataclasses.replace(d2, status=DeviceStatus.REVOKED))
        got = tx.get_device("d2")
        assert got is not None and got.status is DeviceStatus.REVOKED
        tx.delete_device("d1")
        assert tx.get_device("d1") is None
        with pytest.raises(StateError, match="does not exist"):
            tx.delete_device("d1")


def test_contacts_and_device_snapshots(store: ProfileStore) -> None:
    bob = Contact(username="bob", created_at=NOW, updated_at=NOW)
    devices = [
        ContactDevice(username="bob", device_id=d, signature_public_key=b"pk-" + d.encode(),
                      verified_at=NOW)
        for d in ("b1", "b2")
    ]  # fmt: skip
    with store.transaction() as tx:
        tx.put_contact(bob)
        tx.replace_contact_devices("bob", devices)
        assert tx.get_contact("bob") == bob
        assert tx.list_contact_devices("bob") == devices
        blocked = dataclasses.replace(bob, blocked=True, accepted=True, updated_at=NOW + 1)
        tx.put_contact(blocked)
        assert tx.get_contact("bob") == blocked
        assert tx.list_contact_devices("bob") == devices  # kept by the update
        tx.replace_contact_devices("bob", devices[1:])
        assert tx.list_contact_devices("bob") == devices[1:]
        with pytest.raises(ConfigurationError):
            tx.replace_contact_devices("carol", devices)
        with pytest.raises(StateError):
            tx.replace_contact_devices(
                "carol",
                [ContactDevice(username="carol", device_id="c", signature_public_key=b"",
                               verified_at=NOW)],
            )  # fmt: skip
        assert tx.list_contacts() == [blocked]
        tx.delete_contact("bob")
        assert tx.list_contact_devices("bob") == []


def test_groups(store: ProfileStore) -> None:
    with store.transaction() as tx:
        tx.insert_group(group())
        tx.update_group_state(b"g1", b"state-1", 1, NOW + 1)
        got = tx.get_group(b"g1")
        assert got == dataclasses.replace(
            group(), mls_state=b"state-1", epoch=1, updated_at=NOW + 1
        )
        renamed = dataclasses.replace(
            got, name="family", disappearing_timer_ms=60_000, status=GroupStatus.LEFT
        )
        tx.update_group(renamed)
        assert tx.get_group(b"g1") == renamed
        with pytest.raises(StateError):
            tx.update_group_state(b"nope", b"", 0, NOW)
        with pytest.raises(StateError):
            tx.update_group(group(b"nope"))
        tx.insert_message(message())
        assert tx.list_groups() == [renamed]
        tx.delete_group(b"g1")
        assert tx.get_group(b"g1") is None
        assert tx.list_messages(b"g1") == []


def test_messages(store: ProfileStore) -> None:
    with store.transaction() as tx:
        tx.insert_group(group())
        stored = [tx.insert_message(message(body=b"m%d" % i)) for i in range(6)]
        ids = [m.local_id or 0 for m in stored]
        assert ids == sorted(ids) and 0 not in ids
        first = stored[0]
        assert first.local_id is not None
        assert tx.get_message(first.local_id) == first
        with pytest.raises(ConfigurationError):
            tx.insert_message(first)

        def bodies(**kw: Any) -> list[bytes]:
            return [m.body for m in tx.list_messages(b"g1", **kw)]

        assert bodies() == [b"m%d" % i for i in range(6)]
        assert bodies(limit=2) == [b"m4", b"m5"]
        assert bodies(before=ids[4], limit=2) == [b"m2", b"m3"]
        assert bodies(after=ids[1], limit=2) == [b"m2", b"m3"]
        assert bodies(after=ids[3]) == [b"m4", b"m5"]

        tx.set_message_server_id(first.local_id, "srv-9")
        tx.update_message_state(first.local_id, MessageState.READ, expires_at=NOW + 99)
        got = tx.get_message_by_server_id("srv-9")
        assert got == dataclasses.replace(
            first, server_id="srv-9", state=MessageState.READ, expires_at=NOW + 99
        )
        with pytest.raises(StateError, match="constraint"):
            tx.set_message_server_id(ids[1], "srv-9")  # server ids are unique
        tx.delete_message(first.local_id)
        with pytest.raises(StateError):
            tx.delete_message(first.local_id)
        with pytest.raises(StateError):
            tx.update_message_state(first.local_id, MessageState.READ)
        # Local ids are never reused.
        assert (tx.insert_message(message()).local_id or 0) > ids[-1]


def test_processed_dedupe(store: ProfileStore) -> None:
    with store.transaction() as tx:
        assert tx.mark_processed("s1", NOW) is True
        assert tx.mark_processed("s1", NOW + 1) is False
        assert tx.mark_processed("s2", NOW + 10) is True
        assert tx.is_processed("s1") and not tx.is_processed("s3")
        assert tx.prune_processed(NOW + 5) == 1
        assert not tx.is_processed("s1") and tx.is_processed("s2")


def test_outbox_fifo_and_retries(store: ProfileStore) -> None:
    def item(n: int, due: int) -> OutboxItem:
        return OutboxItem(
            group_id=None, kind="commit", payload=b"p%d" % n, created_at=NOW, next_attempt_at=due
        )

    with store.transaction() as tx:
        a = tx.enqueue(item(0, NOW + 100))
        b = tx.enqueue(item(1, NOW))
        assert a.outbox_id is not None and b.outbox_id is not None
        assert tx.list_outbox() == [a, b]
        assert tx.list_outbox(due_at=NOW) == [b]
        assert tx.list_outbox(limit=1) == [a]
        tx.record_attempt(b.outbox_id, NOW + 50, "server unreachable")
        assert tx.get_outbox(b.outbox_id) == dataclasses.replace(
            b, attempts=1, next_attempt_at=NOW + 50, last_error="server unreachable"
        )
        tx.dequeue(a.outbox_id)
        assert tx.list_outbox() == [tx.get_outbox(b.outbox_id)]
        with pytest.raises(StateError):
            tx.dequeue(a.outbox_id)
        with pytest.raises(ConfigurationError):
            tx.enqueue(b)


def test_key_packages(store: ProfileStore) -> None:
    last_resort = dataclasses.replace(key_package(b"r0"), last_resort=True)
    with store.transaction() as tx:
        tx.insert_key_package(last_resort)
        tx.insert_key_package(key_package(b"r1"))
        tx.insert_key_package(key_package(b"r2"))
        assert tx.count_key_packages() == 2
        assert tx.get_key_package(b"r1") == key_package(b"r1")
        assert [k.ref for k in tx.list_key_packages()] == [b"r0", b"r1", b"r2"]
        with pytest.raises(StateError):
            tx.insert_key_package(key_package(b"r1"))
        tx.delete_key_package(b"r1")
        assert tx.get_key_package(b"r1") is None
        with pytest.raises(StateError):
            tx.delete_key_package(b"r1")


def test_kt_checkpoint_and_settings(store: ProfileStore) -> None:
    cp = KtCheckpoint(tree_size=10, root_hash=b"r", signed_tree_head=b"sth", verified_at=NOW)
    with store.transaction() as tx:
        assert tx.get_kt_checkpoint() is None
        tx.put_kt_checkpoint(cp)
        tx.put_kt_checkpoint(dataclasses.replace(cp, tree_size=11))
        assert tx.get_kt_checkpoint() == dataclasses.replace(cp, tree_size=11)
        tx.set_setting("a", "1")
        tx.set_setting("a", "2")
        assert tx.get_setting("a") == "2"
        tx.delete_setting("a")
        assert tx.get_setting("a") is None


# --- asyncio -------------------------------------------------------------------------------


def test_run_uses_one_worker_thread(store: ProfileStore) -> None:
    async def main() -> None:
        names = await asyncio.gather(*(store.run(lambda: threading.current_thread().name)
                                       for _ in range(5)))  # fmt: skip
        assert len(set(names)) == 1 and names[0].startswith("doorless-store")
        assert names[0] != threading.current_thread().name

        def write(tx: Transaction) -> int:
            tx.insert_group(group())
            return tx.insert_message(message()).local_id or 0

        local_id = await store.run_transaction(write)
        got = await store.run_transaction(lambda tx: tx.get_message(local_id))
        assert got is not None and got.body == b"hello"

        def fail(tx: Transaction) -> None:
            tx.insert_group(group(b"g2"))
            raise Boom

        with pytest.raises(Boom):
            await store.run_transaction(fail)
        assert await store.run_transaction(lambda tx: tx.get_group(b"g2")) is None
        assert await store.run(store.delete_expired, NOW) == 0
        await store.aclose()
        assert store.closed
        with pytest.raises(StateError, match="closed"):
            await store.run(store.delete_expired, NOW)

    asyncio.run(main())


def test_async_context_manager(profile: Path, raw_key: StoreKey) -> None:
    async def main() -> None:
        async with open_raw(profile, raw_key) as s:
            await s.run_transaction(lambda tx: tx.set_setting("a", "b"))
        open_raw(profile, raw_key).close()  # the lock was released

    asyncio.run(main())


# --- changing the key ----------------------------------------------------------------------


def test_change_passphrase_and_parameters(profile: Path) -> None:
    with open_pw(profile, "old") as s:
        with s.transaction() as tx:
            populate(tx)
        stronger = Argon2Params(time_cost=2, memory_cost_kib=32, parallelism=1)
        s.change_key("new", argon2=stronger)
        with s.transaction() as tx:  # still usable after the switch
            assert tx.get_setting("theme") == "dark"
            tx.set_setting("after", "change")
    header = json.loads((profile / "key.json").read_text())
    assert header["argon2"]["memory_cost_kib"] == 32 and header["argon2"]["time_cost"] == 2
    assert sorted(p.name for p in profile.iterdir()) == ["key.json", "lock", DB_NAME]
    with pytest.raises(WrongPassphrase):
        open_pw(profile, "old")
    with open_pw(profile, "new") as s, s.transaction() as tx:
        assert tx.get_setting("after") == "change"
        assert tx.get_group(b"g1") == group()
        assert s.schema_version == SCHEMA_VERSION


def test_change_to_raw_key(profile: Path, raw_key: StoreKey) -> None:
    with open_pw(profile, "old") as s:
        with s.transaction() as tx:
            tx.set_setting("k", "v")
        s.change_key(RawKey(raw_key))
    with open_raw(profile, raw_key) as s, s.transaction() as tx:
        assert tx.get_setting("k") == "v"


@pytest.mark.parametrize("fail_at", [1, 2], ids=["before-file-switch", "before-header-switch"])
def test_interrupted_key_change_recovers(
    profile: Path, monkeypatch: pytest.MonkeyPatch, fail_at: int
) -> None:
    with open_pw(profile, "old") as s, s.transaction() as tx:
        tx.set_setting("k", "v")
    s = open_pw(profile, "old")
    real_replace = os.replace
    calls = []

    def replace(src: Any, dst: Any) -> None:
        if Path(dst).name in (DB_NAME, "key.json"):
            calls.append(dst)
            if len(calls) == fail_at:
                raise OSError("simulated crash")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="simulated"):
        s.change_key("new", argon2=FAST)
    monkeypatch.setattr(os, "replace", real_replace)
    assert s.closed  # the store closed itself and released the lock

    effective, stale = ("old", "new") if fail_at == 1 else ("new", "old")
    with pytest.raises(WrongPassphrase):
        open_pw(profile, stale)
    with open_pw(profile, effective) as s2, s2.transaction() as tx:
        assert tx.get_setting("k") == "v"
    assert sorted(p.name for p in profile.iterdir()) == ["key.json", "lock", DB_NAME]
    open_pw(profile, effective).close()
