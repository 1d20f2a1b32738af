"""Where the key of a profile's encrypted store comes from.

A profile's SQLCipher database is encrypted with a raw 256-bit key (``PRAGMA key = "x'..'"``,
so SQLCipher's own PBKDF2 is skipped). The key comes from one of three *key sources*:

* `Passphrase` — Argon2id (RFC 9106) over the NFC-normalised passphrase with a random 16-byte
  salt. Salt and cost parameters are written to the profile's key header so that a later
  version can raise the defaults without locking anyone out (`ProfileStore.change_key`).
* `KeyringKey` — a random key kept in the OS keyring (the optional ``keyring`` package, used
  only if it is installed and has a working backend).
* `RawKey` — a key the embedding application manages itself.

`resolve_key_source` picks one when the caller gives none: the key header of an existing
profile decides (keyring or passphrase); a passphrase comes from ``DOORLESS_PASSPHRASE`` or,
only if ``interactive`` is set and stdin is a terminal, from a prompt.

The key header (``key.json``) holds no secret: the kind of source, the Argon2id salt and
parameters, or the keyring entry's name.
"""

from __future__ import annotations

import contextlib
import getpass
import importlib
import json
import os
import secrets
import sys
import unicodedata
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from argon2.low_level import ARGON2_VERSION, Type, hash_secret_raw

from doorless.errors import ConfigurationError
from doorless.secret import Secret

KEY_LENGTH = 32
SALT_LENGTH = 16
PASSPHRASE_ENV = "DOORLESS_PASSPHRASE"
KEYRING_SERVICE = "doorless"
HEADER_FORMAT = 1


class StoreKey(Secret):
    """The raw 32-byte SQLCipher key of one profile."""

    __slots__ = ()


class KeyUnavailable(ConfigurationError):
    """No key source can be used: no passphrase given, no keyring entry, no terminal."""


class ProfileCorrupt(ConfigurationError):
    """A profile file (key header, store) is missing or malformed."""


@dataclass(frozen=True, slots=True)
class Argon2Params:
    """Argon2id cost parameters (RFC 9106 §4).

    The default is RFC 9106's second recommended option (t=3, 64 MiB, p=4), about a quarter of
    a second on a laptop core. Tests pass much smaller values.
    """

    time_cost: int = 3
    memory_cost_kib: int = 64 * 1024
    parallelism: int = 4

    def __post_init__(self) -> None:
        # Bounds also stop a tampered key header from asking for terabytes of memory.
        if not 1 <= self.time_cost <= 64:
            raise ConfigurationError("Argon2 time_cost must be in 1..64")
        if not 1 <= self.parallelism <= 64:
            raise ConfigurationError("Argon2 parallelism must be in 1..64")
        if not 8 * self.parallelism <= self.memory_cost_kib <= 4 * 1024 * 1024:
            raise ConfigurationError("Argon2 memory_cost_kib must be in 8*parallelism..4 GiB")


DEFAULT_ARGON2 = Argon2Params()


# --- key headers --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Argon2Header:
    """The key is Argon2id(passphrase, salt) with these parameters."""

    params: Argon2Params
    salt: bytes


@dataclass(frozen=True, slots=True)
class KeyringHeader:
    """The key is a random value stored in the OS keyring under (service, username)."""

    service: str
    username: str


@dataclass(frozen=True, slots=True)
class RawHeader:
    """The application supplies the raw key itself."""


KeyHeader = Argon2Header | KeyringHeader | RawHeader


def encode_header(header: KeyHeader) -> bytes:
    body: dict[str, Any] = {"format": HEADER_FORMAT}
    match header:
        case Argon2Header(params=p, salt=salt):
            body["kind"] = "argon2id"
            body["argon2"] = {
                "version": ARGON2_VERSION,
                "time_cost": p.time_cost,
                "memory_cost_kib": p.memory_cost_kib,
                "parallelism": p.parallelism,
                "hash_len": KEY_LENGTH,
                "salt": salt.hex(),
            }
        case KeyringHeader(service=service, username=username):
            body["kind"] = "keyring"
            body["keyring"] = {"service": service, "username": username}
        case RawHeader():
            body["kind"] = "raw"
    return (json.dumps(body, indent=2, sort_keys=True) + "\n").encode()


def _field(obj: Mapping[str, Any], name: str, kind: type) -> Any:
    value = obj.get(name)
    # bool is an int subclass; a header never holds booleans.
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ProfileCorrupt(f"key header: field {name!r} missing or not {kind.__name__}")
    return value


def decode_header(data: bytes) -> KeyHeader:
    try:
        body = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ProfileCorrupt("key header is not valid JSON") from e
    if not isinstance(body, dict):
        raise ProfileCorrupt("key header is not a JSON object")
    if body.get("format") != HEADER_FORMAT:
        raise ProfileCorrupt(f"key header format {body.get('format')!r} is not supported")
    kind = body.get("kind")
    if kind == "argon2id":
        a = _field(body, "argon2", dict)
        if _field(a, "version", int) != ARGON2_VERSION or _field(a, "hash_len", int) != KEY_LENGTH:
            raise ProfileCorrupt("key header: unsupported Argon2 version or hash length")
        try:
            salt = bytes.fromhex(_field(a, "salt", str))
            params = Argon2Params(
                time_cost=_field(a, "time_cost", int),
                memory_cost_kib=_field(a, "memory_cost_kib", int),
                parallelism=_field(a, "parallelism", int),
            )
        except (ValueError, ConfigurationError) as e:
            raise ProfileCorrupt(f"key header: invalid Argon2 parameters ({e})") from e
        if len(salt) < SALT_LENGTH:
            raise ProfileCorrupt("key header: Argon2 salt too short")
        return Argon2Header(params=params, salt=salt)
    if kind == "keyring":
        k = _field(body, "keyring", dict)
        return KeyringHeader(service=_field(k, "service", str), username=_field(k, "username", str))
    if kind == "raw":
        return RawHeader()
    raise ProfileCorrupt(f"key header: unknown kind {kind!r}")


def read_header(path: Path) -> KeyHeader | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    return decode_header(data)


def write_file_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (mode 0600) so that a crash leaves the old or the new file."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    # A rename is durable only once the directory entry is on disk.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- derivation ---------------------------------------------------------------------------


def derive_key(passphrase: str, header: Argon2Header) -> StoreKey:
    """Argon2id (RFC 9106) over the UTF-8 of the NFC-normalised passphrase."""
    # NFC so that the same passphrase typed on two systems (composed vs decomposed accents)
    # gives the same key.
    secret = unicodedata.normalize("NFC", passphrase).encode("utf-8")
    p = header.params
    raw = hash_secret_raw(
        secret=secret,
        salt=header.salt,
        time_cost=p.time_cost,
        memory_cost=p.memory_cost_kib,
        parallelism=p.parallelism,
        hash_len=KEY_LENGTH,
        type=Type.ID,
        version=ARGON2_VERSION,
    )
    return StoreKey(raw)


# --- key sources --------------------------------------------------------------------------


class KeySource(Protocol):
    """Produces the store key: fresh for a new profile, or from an existing key header."""

    def create(self, argon2: Argon2Params) -> tuple[KeyHeader, StoreKey]: ...

    def unlock(self, header: KeyHeader) -> StoreKey: ...


@dataclass(frozen=True, slots=True, repr=False)
class Passphrase:
    value: str

    def __post_init__(self) -> None:
        if not self.value:
            raise ConfigurationError("the passphrase is empty")

    def __repr__(self) -> str:
        return "Passphrase(***)"

    def create(self, argon2: Argon2Params) -> tuple[KeyHeader, StoreKey]:
        header = Argon2Header(params=argon2, salt=secrets.token_bytes(SALT_LENGTH))
        return header, derive_key(self.value, header)

    def unlock(self, header: KeyHeader) -> StoreKey:
        if not isinstance(header, Argon2Header):
            raise ConfigurationError(f"this profile's key is not a passphrase ({_kind(header)})")
        return derive_key(self.value, header)


@dataclass(frozen=True, slots=True, repr=False)
class RawKey:
    key: StoreKey

    def __post_init__(self) -> None:
        if len(self.key) != KEY_LENGTH:
            raise ConfigurationError(f"a raw store key is {KEY_LENGTH} bytes")

    def __repr__(self) -> str:
        return "RawKey(***)"

    def create(self, argon2: Argon2Params) -> tuple[KeyHeader, StoreKey]:
        return RawHeader(), self.key

    def unlock(self, header: KeyHeader) -> StoreKey:
        if not isinstance(header, RawHeader):
            raise ConfigurationError(f"this profile's key is not a raw key ({_kind(header)})")
        return self.key


@dataclass(frozen=True, slots=True)
class KeyringKey:
    """A random store key kept in the OS keyring.

    ``backend`` is anything with keyring's ``get_password(service, username)`` and
    ``set_password(service, username, password)``; by default the system keyring.
    """

    service: str = KEYRING_SERVICE
    backend: Any = field(default=None, compare=False)

    def _backend(self) -> Any:
        backend = self.backend if self.backend is not None else system_keyring()
        if backend is None:
            raise KeyUnavailable("no usable OS keyring (install 'keyring' with a backend)")
        return backend

    def create(self, argon2: Argon2Params) -> tuple[KeyHeader, StoreKey]:
        backend = self._backend()
        header = KeyringHeader(service=self.service, username=f"profile-{uuid.uuid4().hex}")
        key = StoreKey(secrets.token_bytes(KEY_LENGTH))
        try:
            backend.set_password(header.service, header.username, key.value.hex())
        except _keyring_errors() as e:  # keyring backends raise their own types; translate them
            raise KeyUnavailable(
                f"could not store the key in the OS keyring: {type(e).__name__}"
            ) from None
        return header, key

    def unlock(self, header: KeyHeader) -> StoreKey:
        if not isinstance(header, KeyringHeader):
            raise ConfigurationError(f"this profile's key is not in a keyring ({_kind(header)})")
        backend = self._backend()
        try:
            stored = backend.get_password(header.service, header.username)
        except _keyring_errors() as e:  # see create()
            raise KeyUnavailable(f"could not read the OS keyring: {type(e).__name__}") from None
        if stored is None:
            raise KeyUnavailable("the OS keyring holds no key for this profile")
        try:
            raw = bytes.fromhex(stored)
        except ValueError:
            raise ProfileCorrupt("the keyring entry for this profile is malformed") from None
        if len(raw) != KEY_LENGTH:
            raise ProfileCorrupt("the keyring entry for this profile is malformed")
        return StoreKey(raw)

    def forget(self, header: KeyringHeader) -> None:
        """Remove the entry (after the profile moved to another key)."""
        try:
            self._backend().delete_password(header.service, header.username)
        except _keyring_errors() as e:  # see create()
            raise KeyUnavailable(f"could not update the OS keyring: {type(e).__name__}") from None


def _kind(header: KeyHeader) -> str:
    return {Argon2Header: "passphrase", KeyringHeader: "OS keyring", RawHeader: "raw key"}[
        type(header)
    ]


def _keyring_errors() -> tuple[type[Exception], ...]:
    """What keyring backends raise: the ``keyring`` package's own error tree, and the OS,
    D-Bus and lookup failures backends let through (a missing entry is a `KeyError`)."""
    errors: list[type[Exception]] = [OSError, RuntimeError, LookupError, ValueError]
    with contextlib.suppress(ImportError):
        errors.append(importlib.import_module("keyring.errors").KeyringError)
    return tuple(errors)


def system_keyring() -> Any | None:
    """The ``keyring`` package's backend, or None if not installed or no real backend."""
    try:
        keyring = importlib.import_module("keyring")
    except ImportError:
        return None
    backend = keyring.get_keyring()
    # keyring falls back to backends.fail.Keyring (priority 0) or null (negative) when the
    # system has no secret service; those cannot hold a key.
    priority = getattr(backend, "priority", 0)
    if not isinstance(priority, int | float) or priority <= 0:
        return None
    return backend


def prompt_passphrase(profile: Path, *, confirm: bool) -> Passphrase:
    value = getpass.getpass(f"Passphrase for Doorless profile {profile}: ")
    if confirm and getpass.getpass("Repeat the passphrase: ") != value:
        raise ConfigurationError("the two passphrases differ")
    return Passphrase(value)


def resolve_key_source(
    given: str | KeySource | None,
    header: KeyHeader | None,
    profile: Path,
    *,
    interactive: bool = False,
    environ: Mapping[str, str] | None = None,
) -> KeySource:
    """Pick the key source for opening ``profile`` (``header`` is None for a new profile).

    Order: the caller's choice; the keyring if the header says so; ``DOORLESS_PASSPHRASE``;
    for a new profile the OS keyring if usable; a prompt if ``interactive`` and on a terminal.
    """
    if isinstance(given, str):
        return Passphrase(given)
    if given is not None:
        return given
    if isinstance(header, KeyringHeader):
        return KeyringKey(service=header.service)
    if isinstance(header, RawHeader):
        raise KeyUnavailable("this profile needs the raw key its application supplies")
    env = os.environ if environ is None else environ
    if env.get(PASSPHRASE_ENV):
        return Passphrase(env[PASSPHRASE_ENV])
    if header is None and system_keyring() is not None:
        return KeyringKey()
    if interactive and sys.stdin.isatty():
        return prompt_passphrase(profile, confirm=header is None)
    raise KeyUnavailable(
        f"no key for profile {profile}: pass a passphrase, set {PASSPHRASE_ENV}, "
        "or run interactively"
    )


__all__ = [
    "DEFAULT_ARGON2",
    "KEYRING_SERVICE",
    "KEY_LENGTH",
    "PASSPHRASE_ENV",
    "Argon2Header",
    "Argon2Params",
    "KeyHeader",
    "KeySource",
    "KeyUnavailable",
    "KeyringHeader",
    "KeyringKey",
    "Passphrase",
    "ProfileCorrupt",
    "RawHeader",
    "RawKey",
    "StoreKey",
    "decode_header",
    "derive_key",
    "encode_header",
    "resolve_key_source",
    "system_keyring",
]
