"""Franking constants and the field checks every structure shares.

Owns the fixed sizes, the Safe AAD component id, the signature label and the default signature
suite of ``docs/franking.md`` §1 (Construction) and §5 (Differences from MIMI), plus the two
primitives the construction is built on (HMAC-SHA256 / SHA-256 through `doorless.crypto`).
`check_uint` and `check_length` are package-internal helpers for ``__post_init__`` checks.
"""

from __future__ import annotations

from doorless.crypto import CipherSuiteId, cipher_suite
from doorless.errors import ConfigurationError

SALT_LENGTH = 16
"""The franking salt is exactly 16 bytes (MIMI: "a per-message ... random 128-bit salt").

It is the HMAC key of the franking tag, and HMAC keys are ambiguous: a key shorter than the
hash block is zero-padded, so HMAC(k) == HMAC(k || 00), and a key longer than the block (64
bytes for SHA-256) is replaced by its hash, so HMAC(k) == HMAC(SHA-256(k)). With a variable
salt length a sender could commit to one (salt, content) and later open it with another salt;
fixing the length to 16 makes the key the salt itself, with exactly one encoding (FRANK-1).
"""

TAG_LENGTH = 32
FRANKING_KEY_LENGTH = 32
ATTACHMENT_KEY_LENGTH = 32
ATTACHMENT_NONCE_LENGTH = 12
SHA256_LENGTH = 32

FRANK_AAD_COMPONENT_ID = 0x0020
"""``frank_aad`` Safe AAD component (MIMI protocol draft, IANA §frank_aad: 0x0020)."""

FRANKED_CONTENT_VERSION = 1

FRANKING_INTEGRITY_LABEL = b"Doorless FrankingIntegrityTBS"
"""SignWithLabel label (RFC 9420 §5.1.2 adds the "MLS 1.0 " prefix). Not MIMI's
"FrankingIntegrityTBS": our TBS also covers the franking tag, so it must not be confused with
a MIMI signature."""

DEFAULT_SIGNATURE_SUITE = CipherSuiteId.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519

# HMAC-SHA256 and SHA-256 come from MLS suite 1 (pyca / hashlib behind doorless.crypto).
SHA256_SUITE = cipher_suite(CipherSuiteId.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519)

MAX_UINT32 = (1 << 32) - 1
MAX_UINT64 = (1 << 64) - 1


def check_uint(name: str, value: int, maximum: int) -> None:
    if not 0 <= value <= maximum:
        raise ConfigurationError(f"{name} is out of range")


def check_length(name: str, value: bytes, length: int) -> None:
    if len(value) != length:
        raise ConfigurationError(f"{name} must be {length} bytes, not {len(value)}")
