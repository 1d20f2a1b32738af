"""What the Doorless HTTP protocol's two ends must agree on, with no I/O and no web framework.

The server and the client transport (`doorless.client.transport`) both import this module, so
it imports nothing but the codec and the crypto layer. See ``docs/protocol-http.md``.

Device keys are Ed25519 (``cipher_suite(1)``'s signature scheme), one per device, separate from
the device's MLS signature keys. Every signature the protocol asks for covers a byte string
built here from ``opaque<V>`` fields (RFC 9420 §2.1 encoding) whose first field is a label
``doorless/v1/...``. MLS ``SignWithLabel`` content starts with ``opaque("MLS 1.0 " + label)``,
so neither kind of signed content can be mistaken for the other even under one key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

from doorless.codec import Writer
from doorless.crypto import CipherSuiteId, cipher_suite
from doorless.errors import DecodeError

API_PREFIX = "/v1"

# Labels of everything a device key signs (first opaque field of the signed content).
LABEL_REGISTER = b"doorless/v1/register"
LABEL_AUTH = b"doorless/v1/auth"
LABEL_LINK_REQUEST = b"doorless/v1/link-request"
LABEL_DEVICE_APPROVAL = b"doorless/v1/device-approval"
_LABEL_DEVICE_ID = b"doorless/v1/device-id"

DEVICE_KEY_LENGTH = 32  # raw Ed25519 public key
DEVICE_ID_LENGTH = 32  # hex characters (128 bits)

# Lowercase ASCII only: no homoglyphs, no case folding questions.
USERNAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{1,31}$"
DEVICE_ID_PATTERN = r"^[0-9a-f]{32}$"
MESSAGE_ID_PATTERN = r"^[A-Za-z0-9_-]{8,64}$"
_USERNAME_RE = re.compile(USERNAME_PATTERN)
_DEVICE_ID_RE = re.compile(DEVICE_ID_PATTERN)

_SUITE = cipher_suite(CipherSuiteId.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519)


def _signed(label: bytes, *fields: bytes) -> bytes:
    w = Writer()
    w.push_opaque(label)
    for field in fields:
        w.push_opaque(field)
    return w.getvalue()


def device_id_of(device_key: bytes) -> str:
    """A device's id: the first 128 bits of SHA-256 over a label and its public key, in hex.

    Derived, not assigned, so a server cannot give two keys the same id or one key two ids.
    """
    return hashlib.sha256(_LABEL_DEVICE_ID + device_key).digest()[:16].hex()


def register_content(server_id: str, username: str, device_key: bytes) -> bytes:
    """Signed by the first device of a new account: proves possession of ``device_key``."""
    return _signed(LABEL_REGISTER, server_id.encode(), username.encode(), device_key)


def auth_content(server_id: str, nonce: bytes, device_id: str) -> bytes:
    """Signed in answer to a challenge: proves this device holds its key right now."""
    return _signed(LABEL_AUTH, server_id.encode(), nonce, device_id.encode())


def link_request_content(server_id: str, username: str, device_key: bytes) -> bytes:
    """Signed by a new device asking to join ``username``: proves possession of its key."""
    return _signed(LABEL_LINK_REQUEST, server_id.encode(), username.encode(), device_key)


def device_approval_content(
    server_id: str, username: str, new_device_id: str, new_device_key: bytes
) -> bytes:
    """Signed by an existing device of ``username`` to admit a new device.

    Every device of the account can later re-verify the whole chain of approvals (I3).
    """
    return _signed(
        LABEL_DEVICE_APPROVAL,
        server_id.encode(),
        username.encode(),
        new_device_id.encode(),
        new_device_key,
    )


def sign(private_key: bytes, content: bytes) -> bytes:
    return _SUITE.sign(private_key, content)


def verify(device_key: bytes, content: bytes, signature: bytes) -> None:
    """Raise `doorless.errors.InvalidSignature` unless ``signature`` is valid."""
    _SUITE.verify(device_key, content, signature)


def generate_device_key() -> tuple[bytes, bytes]:
    """A fresh ``(private_key, public_key)`` Ed25519 pair."""
    kp = _SUITE.generate_signature_key_pair()
    return kp.private_key, kp.public_key


def public_key_of(private_key: bytes) -> bytes:
    return _SUITE.signature_public_key(private_key)


def is_username(value: str) -> bool:
    return _USERNAME_RE.fullmatch(value) is not None


def is_device_id(value: str) -> bool:
    return _DEVICE_ID_RE.fullmatch(value) is not None


def b64encode(data: bytes) -> str:
    """Standard base64 with padding (OpenAPI ``format: byte``)."""
    return base64.b64encode(data).decode("ascii")


def b64decode(text: str) -> bytes:
    """Strict standard base64: any other character or bad padding raises `DecodeError`."""
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise DecodeError("invalid base64") from None


__all__ = [
    "API_PREFIX",
    "DEVICE_ID_PATTERN",
    "DEVICE_KEY_LENGTH",
    "LABEL_AUTH",
    "LABEL_DEVICE_APPROVAL",
    "LABEL_LINK_REQUEST",
    "LABEL_REGISTER",
    "MESSAGE_ID_PATTERN",
    "USERNAME_PATTERN",
    "auth_content",
    "b64decode",
    "b64encode",
    "device_approval_content",
    "device_id_of",
    "generate_device_key",
    "is_device_id",
    "is_username",
    "link_request_content",
    "public_key_of",
    "register_content",
    "sign",
    "verify",
]
