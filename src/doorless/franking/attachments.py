"""Encrypted attachments committed in the franked content (``docs/franking.md``, FRANK-8).

Owns `seal_attachment` (AES-256-GCM with a fresh key and nonce given by the caller, and the
`AttachmentDescriptor` that commits to key, ciphertext hash, plaintext hash and size) and
`open_attachment`, whose plaintext-hash check defeats "invisible salamanders" (DGRW18): what
a receiver is shown is exactly what a report reveals.
"""

from __future__ import annotations

import hashlib

from doorless.crypto import CipherSuiteId, cipher_suite
from doorless.franking.constants import ATTACHMENT_KEY_LENGTH, ATTACHMENT_NONCE_LENGTH, check_length
from doorless.franking.errors import AttachmentMismatch
from doorless.franking.structures import AttachmentDescriptor
from doorless.secret import constant_time_equal

# Attachments use AES-256-GCM; suite 5's AEAD is AES-256-GCM, and going through doorless.crypto
# keeps the pyca error translation (InvalidTag -> DecryptError) at its one boundary.
_ATTACHMENT_AEAD = cipher_suite(CipherSuiteId.MLS_256_DHKEMP521_AES256GCM_SHA512_P521)


def seal_attachment(
    plaintext: bytes,
    *,
    key: bytes,
    nonce: bytes,
    locator: bytes = b"",
    media_type: bytes = b"application/octet-stream",
) -> tuple[AttachmentDescriptor, bytes]:
    """Encrypt an attachment (AES-256-GCM, empty AAD) -> (descriptor, ciphertext).

    ``key`` must be fresh random bytes for every attachment (32), ``nonce`` 12 random bytes.
    The descriptor goes into the `FrankedContent`; ``locator`` can be set later with
    `dataclasses.replace` once the ciphertext is stored.
    """
    check_length("attachment key", key, ATTACHMENT_KEY_LENGTH)
    check_length("attachment nonce", nonce, ATTACHMENT_NONCE_LENGTH)
    ciphertext = _ATTACHMENT_AEAD.aead_seal(key, nonce, b"", plaintext)
    descriptor = AttachmentDescriptor(
        locator=locator,
        media_type=media_type,
        key=key,
        nonce=nonce,
        ciphertext_sha256=hashlib.sha256(ciphertext).digest(),
        plaintext_sha256=hashlib.sha256(plaintext).digest(),
        size=len(plaintext),
    )
    return descriptor, ciphertext


def open_attachment(descriptor: AttachmentDescriptor, ciphertext: bytes) -> bytes:
    """Decrypt an attachment and check it against the committed hashes and size (FRANK-8).

    Used by receivers before showing an attachment and by the server when it checks a
    reported one. Raises `AttachmentMismatch` or `doorless.errors.DecryptError`.
    """
    if not constant_time_equal(hashlib.sha256(ciphertext).digest(), descriptor.ciphertext_sha256):
        raise AttachmentMismatch("attachment ciphertext hash mismatch", rule="FRANK-8")
    plaintext = _ATTACHMENT_AEAD.aead_open(descriptor.key, descriptor.nonce, b"", ciphertext)
    # The plaintext hash is what makes a salamander (one ciphertext, two keys) useless: only
    # the plaintext the sender committed to can be shown, and it is the one a report reveals.
    if len(plaintext) != descriptor.size:
        raise AttachmentMismatch("attachment size mismatch", rule="FRANK-8")
    if not constant_time_equal(hashlib.sha256(plaintext).digest(), descriptor.plaintext_sha256):
        raise AttachmentMismatch("attachment plaintext hash mismatch", rule="FRANK-8")
    return plaintext
