"""Secret byte strings: masked in ``repr``/``str``, compared in constant time.

Each kind of secret is its own subclass so that a path secret cannot be passed where an epoch
secret is expected (mypy checks it). ``value`` exposes the bytes for the crypto layer only.
"""

from __future__ import annotations

import hmac
from typing import Self


class Secret:
    __slots__ = ("value",)

    value: bytes

    def __init__(self, value: bytes) -> None:
        self.value = bytes(value)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(***)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Secret)
        return hmac.compare_digest(self.value, other.value)

    def __hash__(self) -> int:
        # Secrets are not meant to be dict keys; hashing would leak through timing and tables.
        raise TypeError(f"{type(self).__name__} is unhashable")

    def __len__(self) -> int:
        return len(self.value)

    def __reduce__(self) -> tuple[type[Self], tuple[bytes]]:
        return (type(self), (self.value,))


def constant_time_equal(a: bytes, b: bytes) -> bool:
    """Compare MACs, tags and secrets without leaking where they differ."""
    return hmac.compare_digest(a, b)


class PrivateKeyBytes(Secret):
    """An HPKE or signature private key in its wire encoding."""

    __slots__ = ()


class InitSecret(Secret):
    __slots__ = ()


class JoinerSecret(Secret):
    __slots__ = ()


class EpochSecret(Secret):
    __slots__ = ()


class PathSecret(Secret):
    __slots__ = ()


class CommitSecret(Secret):
    __slots__ = ()


class PskSecret(Secret):
    __slots__ = ()


class EncryptionSecret(Secret):
    __slots__ = ()


class RatchetSecret(Secret):
    __slots__ = ()


class ExporterSecret(Secret):
    __slots__ = ()


class AeadKey(Secret):
    __slots__ = ()


class AeadNonce(Secret):
    __slots__ = ()


class MacKey(Secret):
    __slots__ = ()
