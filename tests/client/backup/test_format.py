"""The backup file format: round trips, and every kind of damage refused with its typed
error (altered, truncated, extended, reordered, wrong key, wrong version, garbage)."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from doorless.client.backup import format as fmt
from doorless.client.backup.errors import (
    BackupCorrupt,
    BackupError,
    BackupTruncated,
    InvalidRecoveryKey,
    UnsupportedBackup,
    WrongBackupKey,
)
from doorless.client.keys import Argon2Params

FAST = Argon2Params(time_cost=1, memory_cost_kib=8, parallelism=1)
CHUNK = 64


def seal(plaintext: bytes, key: fmt.BackupKey, chunk_size: int = CHUNK) -> bytes:
    out = io.BytesIO()
    writer = fmt.BackupWriter(out, key, chunk_size=chunk_size)
    for i in range(0, len(plaintext), 7):
        writer.write(plaintext[i : i + 7])
    writer.finish()
    return out.getvalue()


def unseal(data: bytes, secret: fmt.BackupSecret) -> bytes:
    return b"".join(fmt.read_chunks(io.BytesIO(data), lambda header: secret))


def chunks_of(data: bytes) -> tuple[bytes, list[bytes]]:
    """The header and the framed chunks of a backup made with the recovery-key header."""
    src = io.BytesIO(data)
    header = fmt.read_header(src).encode()
    rest = data[len(header) :]
    chunks = []
    while rest:
        n = 4 + int.from_bytes(rest[:4], "big")
        chunks.append(rest[:n])
        rest = rest[n:]
    return header, chunks


KEY = fmt.BackupKey.new_recovery_key()
TEXT = bytes(range(256)) * 3  # 768 bytes: 12 chunks of 64


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 5 * CHUNK])
def test_round_trip(size: int) -> None:
    data = TEXT[:size]
    assert unseal(seal(data, KEY), KEY.secret) == data


def test_passphrase_round_trip_and_wrong_passphrase() -> None:
    key = fmt.BackupKey.from_passphrase("violet anchor mango trellis", FAST)
    sealed = seal(TEXT, key)
    header = fmt.read_header(io.BytesIO(sealed))
    assert header.key_kind is fmt.KeyKind.passphrase and header.argon2 == FAST
    good = fmt.passphrase_secret("violet anchor mango trellis", FAST, header.argon2_salt)
    assert unseal(sealed, good) == TEXT
    bad = fmt.passphrase_secret("violet anchor mango trellis!", FAST, header.argon2_salt)
    with pytest.raises(WrongBackupKey):
        unseal(sealed, bad)


def test_wrong_recovery_key() -> None:
    with pytest.raises(WrongBackupKey):
        unseal(seal(TEXT, KEY), fmt.BackupKey.new_recovery_key().secret)


def test_recovery_key_text() -> None:
    shown = KEY.recovery_key
    groups = shown.split("-")
    assert len(groups) == 13 and all(len(g) == 4 for g in groups)
    assert fmt.parse_recovery_key(shown) == KEY.secret
    assert fmt.parse_recovery_key(" ".join(groups).lower()) == KEY.secret
    with pytest.raises(InvalidRecoveryKey):
        fmt.parse_recovery_key(shown[:-1])
    with pytest.raises(InvalidRecoveryKey):
        fmt.parse_recovery_key(shown.replace(shown[0], "1"))
    # The last letter carries 1 bit of the key and 4 zero bits: another value is refused.
    assert shown[-1] in "AQ"
    with pytest.raises(InvalidRecoveryKey):
        fmt.parse_recovery_key(shown[:-1] + "B")


def test_truncated_at_a_chunk_boundary() -> None:
    header, chunks = chunks_of(seal(TEXT, KEY))
    assert len(chunks) == 12
    with pytest.raises(BackupTruncated):
        unseal(header + b"".join(chunks[:-1]), KEY.secret)


@pytest.mark.parametrize("cut", [5, 20, 60, 200, -1])
def test_truncated_anywhere(cut: int) -> None:
    sealed = seal(TEXT, KEY)
    with pytest.raises(BackupTruncated):
        unseal(sealed[:cut], KEY.secret)


def test_empty_file_is_not_a_backup() -> None:
    with pytest.raises(BackupCorrupt):
        unseal(b"", KEY.secret)


def test_reordered_dropped_duplicated_chunks() -> None:
    header, chunks = chunks_of(seal(TEXT, KEY))
    swapped = [chunks[1], chunks[0], *chunks[2:]]
    dropped = [chunks[0], *chunks[2:]]
    doubled = [chunks[0], *chunks]
    for body in (swapped, dropped, doubled):
        with pytest.raises(BackupCorrupt):
            unseal(header + b"".join(body), KEY.secret)


def test_data_after_the_final_chunk() -> None:
    sealed = seal(TEXT, KEY)
    with pytest.raises(BackupCorrupt):
        unseal(sealed + b"\x00", KEY.secret)


def test_altered_header_fails_authentication() -> None:
    sealed = bytearray(seal(TEXT, KEY))
    header_length = len(fmt.read_header(io.BytesIO(bytes(sealed))).encode())
    sealed[header_length - 1] ^= 0x01  # chunk size 64 -> 65: still valid, but authenticated
    with pytest.raises(BackupCorrupt):
        unseal(bytes(sealed), KEY.secret)


def test_other_version_is_unsupported() -> None:
    sealed = bytearray(seal(TEXT, KEY))
    sealed[len(fmt.MAGIC)] = 2
    with pytest.raises(UnsupportedBackup):
        unseal(bytes(sealed), KEY.secret)


def test_unreasonable_argon2_costs_are_refused_before_any_work() -> None:
    huge = Argon2Params(time_cost=1, memory_cost_kib=4 * 1024 * 1024, parallelism=1)
    key = fmt.BackupKey(fmt.KeyKind.passphrase, fmt.BackupSecret(bytes(32)), huge, bytes(16))
    with pytest.raises(BackupCorrupt, match="unreasonable"):
        unseal(seal(b"x", key), key.secret)


def test_not_a_backup() -> None:
    with pytest.raises(BackupCorrupt):
        unseal(b"PK\x03\x04" + bytes(100), KEY.secret)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_random_bytes_give_a_backup_error(data: bytes) -> None:
    with pytest.raises(BackupError):
        unseal(data, KEY.secret)


SEALED = seal(TEXT, KEY)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(SEALED) - 1), st.integers(1, 255))
def test_any_flipped_byte_is_refused(position: int, mask: int) -> None:
    altered = bytearray(SEALED)
    altered[position] ^= mask
    with pytest.raises(BackupError):
        unseal(bytes(altered), KEY.secret)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=3000), st.integers(fmt.MIN_CHUNK_SIZE, 512))
def test_round_trip_any_content(data: bytes, chunk_size: int) -> None:
    assert unseal(seal(data, KEY, chunk_size), KEY.secret) == data
