"""The one exception tree of Doorless.

::

    DoorlessError
     ├── LocalError                 you misused the API (a bug in the caller)
     │    ├── ConfigurationError    a setting or argument is invalid
     │    └── StateError            the operation is not valid in the current state
     └── RemoteError                the input (from the network, a file, a peer) is bad
          ├── DecodeError           bytes are not a valid encoding (also a ValueError)
          ├── CryptoError           a cryptographic check failed
          │    ├── InvalidSignature
          │    ├── DecryptError     AEAD/HPKE open failed (wrong key, tampered ciphertext)
          │    └── InvalidMac       MAC / membership tag / confirmation tag mismatch
          └── ValidationError       well-formed but violates a protocol rule (cites its section)

Errors from `cryptography` and the codec are translated into this tree at one boundary each
(`doorless.crypto` and `doorless.codec`); no other exception type escapes a decoder.
Messages never contain secret values.
"""

from __future__ import annotations


class DoorlessError(Exception):
    """Root of every error Doorless raises on purpose."""


class LocalError(DoorlessError):
    """The caller misused the API."""


class ConfigurationError(LocalError):
    """A setting or argument is invalid."""


class StateError(LocalError):
    """The operation is not valid in the current state."""


class RemoteError(DoorlessError):
    """Input from outside (network, file, peer) is malformed or violates the protocol."""


class DecodeError(RemoteError, ValueError):
    """Bytes are not a valid encoding of the expected structure."""


class CryptoError(RemoteError):
    """A cryptographic check failed."""


class InvalidSignature(CryptoError):
    """A signature does not verify."""


class DecryptError(CryptoError):
    """An AEAD or HPKE ciphertext does not open."""


class InvalidMac(CryptoError):
    """A MAC, membership tag or confirmation tag does not match."""


class ValidationError(RemoteError):
    """A well-formed input violates a protocol rule.

    ``rule`` names the rule (for RFC 9420, its section, e.g. ``"RFC9420 12.2"``).
    """

    def __init__(self, message: str, rule: str = "") -> None:
        super().__init__(f"{message} [{rule}]" if rule else message)
        self.rule = rule


__all__ = [
    "ConfigurationError",
    "CryptoError",
    "DecodeError",
    "DecryptError",
    "DoorlessError",
    "InvalidMac",
    "InvalidSignature",
    "LocalError",
    "RemoteError",
    "StateError",
    "ValidationError",
]
