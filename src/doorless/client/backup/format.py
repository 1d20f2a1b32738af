"""The backup file format (version 1): a clear header, then AES-256-GCM chunks.

::

    struct {
        opaque magic[8] = "DLBACKUP";
        uint8 version = 1;
        KeyKind key_kind;                      // 1: recovery key, 2: passphrase (Argon2id)
        select (key_kind) {
            case recovery_key: struct {};
            case passphrase:   uint32 time_cost; uint32 memory_cost_kib; uint8 parallelism;
                               opaque argon2_salt[16];
        };
        opaque file_salt[32];                  // fresh per file: a fresh content key
        opaque key_check[16];                  // tells a wrong key from an altered file
        uint32 chunk_size;
    } Header;

    struct { uint32 length; opaque ciphertext[length]; } Chunk;   // repeated to the end

Keys: ``secret`` is the 256-bit recovery key, or Argon2id (RFC 9106) of the passphrase;
``content_key = HKDF-SHA256(secret, file_salt, "doorless backup v1 content")`` and
``key_check = HKDF-SHA256(secret, file_salt, "doorless backup v1 key check")[:16]``
(RFC 5869). Chunk ``i`` is AES-256-GCM under ``content_key`` with the nonce
``uint64(i) || uint8(final) || 0x000000`` and the whole header as associated data, so a
changed header, a reordered, dropped, duplicated or altered chunk, a file cut at a chunk
boundary (no chunk marked final) and bytes after the final chunk are all refused. The content
key is unique per file (random ``file_salt``), so a nonce is never reused under one key.

Everything here works on bytes and file objects given by the caller: no clock, no paths.
"""

from __future__ import annotations

import base64
import hmac
import os
import re
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import IntEnum
from typing import BinaryIO

from argon2.low_level import ARGON2_VERSION, Type, hash_secret_raw
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from doorless.client.backup.errors import (
    BackupCorrupt,
    BackupTruncated,
    InvalidRecoveryKey,
    UnsupportedBackup,
    WrongBackupKey,
)
from doorless.client.keys import DEFAULT_ARGON2, Argon2Params
from doorless.codec import Reader, Writer
from doorless.errors import ConfigurationError, DecodeError
from doorless.secret import Secret

MAGIC = b"DLBACKUP"
VERSION = 1
SECRET_LENGTH = 32
FILE_SALT_LENGTH = 32
ARGON2_SALT_LENGTH = 16
KEY_CHECK_LENGTH = 16
TAG_LENGTH = 16
DEFAULT_CHUNK_SIZE = 64 * 1024
MIN_CHUNK_SIZE = 16
MAX_CHUNK_SIZE = 16 * 1024 * 1024
# The longest header: magic, version, kind, Argon2 parameters and salt, salts, chunk size.
MAX_HEADER = len(MAGIC) + 2 + 9 + ARGON2_SALT_LENGTH + FILE_SALT_LENGTH + KEY_CHECK_LENGTH + 4

MAX_ARGON2_TIME = 16
MAX_ARGON2_MEMORY_KIB = 1024 * 1024  # 1 GiB
_CONTENT_INFO = b"doorless backup v1 content"
_CHECK_INFO = b"doorless backup v1 key check"


class KeyKind(IntEnum):
    recovery_key = 1
    passphrase = 2


class BackupSecret(Secret):
    """The 256-bit secret a backup's keys come from (recovery key or Argon2id output)."""


@dataclass(frozen=True, slots=True)
class Header:
    """A backup's clear header (no secret in it)."""

    key_kind: KeyKind
    file_salt: bytes
    key_check: bytes = field(repr=False)
    chunk_size: int = DEFAULT_CHUNK_SIZE
    argon2: Argon2Params | None = None
    argon2_salt: bytes = b""

    def push(self, w: Writer) -> None:
        w.push_bytes(MAGIC)
        w.push_uint8(VERSION)
        w.push_uint8(self.key_kind)
        if self.key_kind is KeyKind.passphrase:
            assert self.argon2 is not None
            w.push_uint32(self.argon2.time_cost)
            w.push_uint32(self.argon2.memory_cost_kib)
            w.push_uint8(self.argon2.parallelism)
            w.push_bytes(self.argon2_salt)
        w.push_bytes(self.file_salt)
        w.push_bytes(self.key_check)
        w.push_uint32(self.chunk_size)

    @classmethod
    def pull(cls, r: Reader) -> Header:
        if r.pull_bytes(len(MAGIC)) != MAGIC:
            raise BackupCorrupt("this is not a Doorless backup file")
        version = r.pull_uint8()
        if version != VERSION:
            raise UnsupportedBackup(
                f"backup format version {version}; this Doorless reads version {VERSION}"
            )
        try:
            kind = KeyKind(r.pull_uint8())
        except ValueError:
            raise BackupCorrupt("the backup header names an unknown key kind") from None
        argon2: Argon2Params | None = None
        argon2_salt = b""
        if kind is KeyKind.passphrase:
            t, m, p = r.pull_uint32(), r.pull_uint32(), r.pull_uint8()
            # A file from anywhere must not make us spend minutes or gigabytes before the key
            # check: the costs a backup may ask for are bounded more tightly than a profile's.
            if t > MAX_ARGON2_TIME or m > MAX_ARGON2_MEMORY_KIB:
                raise BackupCorrupt("the backup header asks for an unreasonable Argon2id cost")
            try:
                argon2 = Argon2Params(time_cost=t, memory_cost_kib=m, parallelism=p)
            except ConfigurationError as e:
                raise BackupCorrupt(f"the backup header is invalid: {e}") from None
            argon2_salt = r.pull_bytes(ARGON2_SALT_LENGTH)
        file_salt = r.pull_bytes(FILE_SALT_LENGTH)
        key_check = r.pull_bytes(KEY_CHECK_LENGTH)
        chunk_size = r.pull_uint32()
        if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
            raise BackupCorrupt("the backup header has an invalid chunk size")
        return cls(kind, file_salt, key_check, chunk_size, argon2, argon2_salt)

    def encode(self) -> bytes:
        w = Writer()
        self.push(w)
        return w.getvalue()


# --- keys ---------------------------------------------------------------------------------


def _hkdf(secret: BackupSecret, salt: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(secret.value)


def passphrase_secret(passphrase: str, params: Argon2Params, salt: bytes) -> BackupSecret:
    """Argon2id (RFC 9106) over the UTF-8 of the NFC-normalised passphrase."""
    raw = hash_secret_raw(
        secret=unicodedata.normalize("NFC", passphrase).encode("utf-8"),
        salt=salt,
        time_cost=params.time_cost,
        memory_cost=params.memory_cost_kib,
        parallelism=params.parallelism,
        hash_len=SECRET_LENGTH,
        type=Type.ID,
        version=ARGON2_VERSION,
    )
    return BackupSecret(raw)


@dataclass(frozen=True, slots=True, repr=False)
class BackupKey:
    """What a backup is sealed under: a header template and the secret it names."""

    key_kind: KeyKind
    secret: BackupSecret
    argon2: Argon2Params | None = None
    argon2_salt: bytes = b""

    @classmethod
    def new_recovery_key(cls) -> BackupKey:
        return cls(KeyKind.recovery_key, BackupSecret(os.urandom(SECRET_LENGTH)))

    @classmethod
    def from_passphrase(cls, passphrase: str, params: Argon2Params = DEFAULT_ARGON2) -> BackupKey:
        salt = os.urandom(ARGON2_SALT_LENGTH)
        return cls(KeyKind.passphrase, passphrase_secret(passphrase, params, salt), params, salt)

    @property
    def recovery_key(self) -> str:
        """The recovery key as shown to the user (only for a recovery-key backup)."""
        if self.key_kind is not KeyKind.recovery_key:
            raise ConfigurationError("a passphrase backup has no recovery key")
        return format_recovery_key(self.secret)

    def __repr__(self) -> str:
        return f"BackupKey({self.key_kind.name}, ***)"


# --- recovery keys ------------------------------------------------------------------------

_GROUP = 4
_RECOVERY_LENGTH = 52  # base32 letters of 256 bits (RFC 4648 §6, no padding)
_BASE32 = re.compile(r"[A-Z2-7]{52}")


def format_recovery_key(secret: BackupSecret) -> str:
    """RFC 4648 base32 without padding, in groups of four letters for copying by hand."""
    text = base64.b32encode(secret.value).decode("ascii").rstrip("=")
    return "-".join(text[i : i + _GROUP] for i in range(0, len(text), _GROUP))


def parse_recovery_key(text: str) -> BackupSecret:
    """A recovery key as typed: case, spaces and dashes do not matter."""
    letters = re.sub(r"[\s-]", "", text).upper()
    if len(letters) != _RECOVERY_LENGTH or _BASE32.fullmatch(letters) is None:
        raise InvalidRecoveryKey(
            "a recovery key is 52 letters A-Z and digits 2-7 (groups of four, as shown when "
            "the backup was made)"
        )
    raw = base64.b32decode(letters + "====")
    if format_recovery_key(BackupSecret(raw)).replace("-", "") != letters:
        raise InvalidRecoveryKey("this is not a valid recovery key (its last letter is wrong)")
    return BackupSecret(raw)


# --- sealing ------------------------------------------------------------------------------


def _nonce(index: int, final: bool) -> bytes:
    return index.to_bytes(8, "big") + (b"\x01" if final else b"\x00") + b"\x00\x00\x00"


class BackupWriter:
    """Writes a backup to ``out``: the header at once, a chunk each ``chunk_size`` bytes of
    `write`, and the final chunk on `finish` (a file without it is refused as truncated)."""

    def __init__(
        self, out: BinaryIO, key: BackupKey, *, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> None:
        if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
            raise ConfigurationError("invalid backup chunk size")
        file_salt = os.urandom(FILE_SALT_LENGTH)
        self.header = Header(
            key.key_kind,
            file_salt,
            _hkdf(key.secret, file_salt, _CHECK_INFO, KEY_CHECK_LENGTH),
            chunk_size,
            key.argon2,
            key.argon2_salt,
        )
        self._aad = self.header.encode()
        self._aead = AESGCM(_hkdf(key.secret, file_salt, _CONTENT_INFO, SECRET_LENGTH))
        self._out = out
        self._buffer = bytearray()
        self._index = 0
        self._finished = False
        out.write(self._aad)

    def write(self, data: bytes) -> None:
        if self._finished:
            raise ConfigurationError("the backup is already finished")
        self._buffer += data
        size = self.header.chunk_size
        # Keep at least one byte back: the last chunk is written by finish, marked final.
        while len(self._buffer) > size:
            self._emit(bytes(self._buffer[:size]), final=False)
            del self._buffer[:size]

    def finish(self) -> None:
        if not self._finished:
            self._emit(bytes(self._buffer), final=True)
            self._buffer.clear()
            self._finished = True

    def _emit(self, plaintext: bytes, *, final: bool) -> None:
        sealed = self._aead.encrypt(_nonce(self._index, final), plaintext, self._aad)
        self._out.write(len(sealed).to_bytes(4, "big") + sealed)
        self._index += 1


def _read_exact(src: BinaryIO, n: int) -> bytes:
    data = src.read(n)
    return data if data is not None else b""


def read_header(src: BinaryIO) -> Header:
    """The header at the start of ``src`` (the stream is left just after it)."""
    fixed = _read_exact(src, len(MAGIC) + 2)
    if len(fixed) < len(MAGIC) + 2:
        if MAGIC.startswith(fixed[: len(MAGIC)]) and fixed:
            raise BackupTruncated("the backup file ends inside its header")
        raise BackupCorrupt("this is not a Doorless backup file")
    rest_length = MAX_HEADER - len(fixed)
    if fixed[-1] == KeyKind.recovery_key:
        rest_length -= 9 + ARGON2_SALT_LENGTH
    rest = _read_exact(src, rest_length)
    try:
        r = Reader(fixed + rest)
        header = Header.pull(r)
    except DecodeError:
        raise BackupTruncated("the backup file ends inside its header") from None
    # A header of an unknown kind is refused by pull; for a known kind the length is exact.
    if not r.eof():
        raise BackupCorrupt("the backup header is malformed")
    return header


def open_key(header: Header, secret: BackupSecret) -> AESGCM:
    """The content cipher, once ``secret`` is shown to be the file's (`WrongBackupKey`)."""
    check = _hkdf(secret, header.file_salt, _CHECK_INFO, KEY_CHECK_LENGTH)
    if not hmac.compare_digest(check, header.key_check):
        what = "recovery key" if header.key_kind is KeyKind.recovery_key else "passphrase"
        raise WrongBackupKey(f"wrong {what} for this backup")
    return AESGCM(_hkdf(secret, header.file_salt, _CONTENT_INFO, SECRET_LENGTH))


def read_chunks(src: BinaryIO, unlock: Callable[[Header], BackupSecret]) -> Iterator[bytes]:
    """The plaintext of a backup, chunk by chunk. ``unlock`` turns the header into the secret
    (from the recovery key, or Argon2id of the passphrase). Raises `BackupCorrupt`,
    `BackupTruncated`, `WrongBackupKey` or `UnsupportedBackup`; nothing read is authentic
    until the generator has finished without error."""
    header = read_header(src)
    aad = header.encode()
    aead = open_key(header, unlock(header))
    limit = header.chunk_size + TAG_LENGTH
    index = 0
    while True:
        prefix = _read_exact(src, 4)
        if len(prefix) < 4:
            raise BackupTruncated("the backup file is truncated (it ends before its final chunk)")
        length = int.from_bytes(prefix, "big")
        if not TAG_LENGTH <= length <= limit:
            raise BackupCorrupt(f"backup chunk {index} has an invalid length")
        sealed = _read_exact(src, length)
        if len(sealed) < length:
            raise BackupTruncated("the backup file is truncated (it ends inside a chunk)")
        plaintext, final = _open_chunk(aead, index, sealed, aad)
        yield plaintext
        if final:
            break
        index += 1
    if _read_exact(src, 1):
        raise BackupCorrupt("the backup file has data after its final chunk")


def _open_chunk(aead: AESGCM, index: int, sealed: bytes, aad: bytes) -> tuple[bytes, bool]:
    for final in (False, True):
        try:
            return aead.decrypt(_nonce(index, final), sealed, aad), final
        except InvalidTag:
            continue
    raise BackupCorrupt(f"the backup file was altered (chunk {index} fails authentication)")


__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "MAGIC",
    "VERSION",
    "BackupKey",
    "BackupSecret",
    "BackupWriter",
    "Header",
    "KeyKind",
    "format_recovery_key",
    "open_key",
    "parse_recovery_key",
    "passphrase_secret",
    "read_chunks",
    "read_header",
]
