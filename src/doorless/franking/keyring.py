"""The server's franking HMAC keys (``docs/franking.md`` §3, "How long a report stays
verifiable", and FRANK-7).

Owns `FrankingKeySecret`, `FrankingKey` and `FrankingKeyring`: which key stamps, rotation,
retention of retired keys and deletion, and which key checks a report (`ReportExpired` versus
`UnknownFrankingKey`). Keys and times are parameters; persisting the keyring is the caller's
job (`doorless.server.franking`).
"""

from __future__ import annotations

from dataclasses import dataclass

from doorless.errors import ConfigurationError, StateError
from doorless.franking.constants import FRANKING_KEY_LENGTH, MAX_UINT32, MAX_UINT64, check_uint
from doorless.franking.errors import ReportExpired, UnknownFrankingKey
from doorless.secret import Secret


class FrankingKeySecret(Secret):
    """A server HMAC key for server franks (MIMI's ``hub_key``)."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class FrankingKey:
    """One franking key. ``retired_at_ms`` is None while it is the key that stamps."""

    key_id: int
    key: FrankingKeySecret
    created_at_ms: int
    retired_at_ms: int | None = None

    def __post_init__(self) -> None:
        check_uint("key_id", self.key_id, MAX_UINT32)
        if len(self.key) != FRANKING_KEY_LENGTH:
            raise ConfigurationError(f"franking keys are {FRANKING_KEY_LENGTH} bytes")


@dataclass(frozen=True, slots=True)
class FrankingKeyring:
    """The server's franking keys: the newest stamps, older ones only verify reports.

    Key ids are consecutive, so an id between ``first_key_id`` and the current id that is no
    longer held was deleted (`ReportExpired`), and any other id was never issued
    (`UnknownFrankingKey`). A retired key is kept for ``retention_ms`` after its retirement;
    a report made with it is verifiable until then (see ``docs/franking.md``). Operations
    return a new keyring; the caller persists it (stage, then merge).
    """

    retention_ms: int
    first_key_id: int
    keys: tuple[FrankingKey, ...]

    def __post_init__(self) -> None:
        check_uint("retention_ms", self.retention_ms, MAX_UINT64)
        if not self.keys or self.keys[-1].retired_at_ms is not None:
            raise ConfigurationError("a keyring holds a current (unretired) key")
        ids = [k.key_id for k in self.keys]
        if ids != sorted(set(ids)) or ids[0] < self.first_key_id:
            raise ConfigurationError("key ids must be increasing and not below first_key_id")
        if any(k.retired_at_ms is None for k in self.keys[:-1]):
            raise ConfigurationError("only the newest key may be unretired")

    @classmethod
    def create(
        cls, key: bytes, *, now_ms: int, retention_ms: int, key_id: int = 0
    ) -> FrankingKeyring:
        """A keyring with one fresh key (``key``: 32 random bytes from the caller)."""
        first = FrankingKey(key_id, FrankingKeySecret(key), now_ms)
        return cls(retention_ms, key_id, (first,))

    @property
    def current(self) -> FrankingKey:
        return self.keys[-1]

    def rotate(self, key: bytes, *, now_ms: int) -> FrankingKeyring:
        """Stamp with ``key`` from now on (id = current id + 1); keep the old key for reports."""
        old = self.current
        if old.key_id == MAX_UINT32:
            raise StateError("franking key ids are exhausted")
        retired = FrankingKey(old.key_id, old.key, old.created_at_ms, now_ms)
        new = FrankingKey(old.key_id + 1, FrankingKeySecret(key), now_ms)
        return FrankingKeyring(
            self.retention_ms, self.first_key_id, (*self.keys[:-1], retired, new)
        )

    def expire(self, now_ms: int) -> FrankingKeyring:
        """Delete every retired key whose retention period has ended at ``now_ms``."""
        kept = tuple(k for k in self.keys if not self._expired(k, now_ms))
        return FrankingKeyring(self.retention_ms, self.first_key_id, kept)

    def delete(self, key_id: int) -> FrankingKeyring:
        """Delete one retired key now (policy or compromise); reports for it then expire."""
        if key_id == self.current.key_id:
            raise StateError("rotate before deleting the current franking key")
        kept = tuple(k for k in self.keys if k.key_id != key_id)
        return FrankingKeyring(self.retention_ms, self.first_key_id, kept)

    def verifiable_until_ms(self, key_id: int) -> int | None:
        """When reports stamped with ``key_id`` stop verifying: None while the key is current,
        0 when it is not held (deleted or never issued)."""
        key = self._find(key_id)
        if key is None:
            return 0
        return None if key.retired_at_ms is None else key.retired_at_ms + self.retention_ms

    def key_for_report(self, key_id: int, now_ms: int) -> FrankingKey:
        """The key to check a report with; `ReportExpired` / `UnknownFrankingKey` (FRANK-7)."""
        key = self._find(key_id)
        if key is not None and not self._expired(key, now_ms):
            return key
        if self.first_key_id <= key_id <= self.current.key_id:
            raise ReportExpired(
                f"franking key {key_id} has been deleted; reports stamped with it can no "
                "longer be verified",
                rule="FRANK-7",
            )
        raise UnknownFrankingKey(f"no franking key {key_id} was ever issued", rule="FRANK-7")

    def _find(self, key_id: int) -> FrankingKey | None:
        return next((k for k in self.keys if k.key_id == key_id), None)

    def _expired(self, key: FrankingKey, now_ms: int) -> bool:
        return key.retired_at_ms is not None and key.retired_at_ms + self.retention_ms <= now_ms
