"""Application messages of the current epoch on a lean path (RFC 9420 §6.1, §6.3).

`message_protection` builds every struct of a PrivateMessage (FramedContent,
AuthenticatedContent, PrivateMessageContent, SenderData, PrivateMessage, MLSMessage) and
encodes each; for the one message kind that is sent and received at volume this module writes
the same bytes straight into one buffer per encoding, with the codec's `Writer`/`Reader`, and
caches the parts that only change with the epoch (the TBS and message headers). The output is
byte-identical to `protect_private` + `encode(MLSMessage(...))` on the same inputs, and
`open_application` accepts and rejects exactly what `unprotect_private` + `verify_signature`
do (tests compare the two paths; the message-protection vectors go through both).

Receiving is still a chain of types: `open_application` returns a `DecryptedApplication`,
whose `verify` is the only way to the data. The secret tree is not changed: the caller adopts
``tree`` once the message is accepted (I4).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from doorless.codec import Reader, Writer
from doorless.crypto import CipherSuite
from doorless.errors import ConfigurationError, DecodeError, ValidationError
from doorless.mls.framing import (
    ContentType,
    PrivateMessage,
    ProtocolVersion,
    SenderType,
    WireFormat,
    encoded_group_context,
)
from doorless.mls.group_context import GroupContext
from doorless.mls.message_protection import (
    FRAMED_CONTENT_TBS_LABEL,
    REUSE_GUARD_LENGTH,
    bucket_size,
    check_group,
    content_aad,
    guarded_nonce,
    sender_data_aad,
)
from doorless.mls.schedule import SenderDataSecret
from doorless.mls.secret_tree import RatchetType, SecretTree, sender_data_key_nonce
from doorless.mls.tree_math import LeafIndex

_APPLICATION = ContentType.application
_SENDER_DATA_LENGTH = 4 + 4 + REUSE_GUARD_LENGTH  # struct SenderData (§6.3.2)


@lru_cache(maxsize=64)
def _tbs_head(group_id: bytes, epoch: int, leaf: int) -> bytes:
    """FramedContentTBS up to the sender (§6.1): version, wire format, group_id, epoch,
    Sender{member, leaf_index}. Public values, the same for every message of the epoch."""
    w = Writer()
    w.push_uint16(ProtocolVersion.mls10)
    w.push_uint16(WireFormat.mls_private_message)
    w.push_opaque(group_id)
    w.push_uint64(epoch)
    w.push_uint8(SenderType.member)
    w.push_uint32(leaf)
    return w.getvalue()


@lru_cache(maxsize=64)
def _message_head(group_id: bytes, epoch: int) -> bytes:
    """MLSMessage up to PrivateMessage.authenticated_data (§6, §6.3): version, wire format,
    group_id, epoch, content_type."""
    w = Writer()
    w.push_uint16(ProtocolVersion.mls10)
    w.push_uint16(WireFormat.mls_private_message)
    w.push_opaque(group_id)
    w.push_uint64(epoch)
    w.push_uint8(_APPLICATION)
    return w.getvalue()


def _tbs(
    group_context: GroupContext, leaf: int, authenticated_data: bytes, encoded_data: bytes
) -> bytes:
    """The encoded FramedContentTBS of an application message from member ``leaf``;
    ``encoded_data`` is ``opaque application_data<V>`` already encoded."""
    w = Writer()
    w.push_bytes(_tbs_head(group_context.group_id, group_context.epoch, leaf))
    w.push_opaque(authenticated_data)
    w.push_uint8(_APPLICATION)
    w.push_bytes(encoded_data)
    w.push_bytes(encoded_group_context(group_context))
    return w.getvalue()


@dataclass(frozen=True, slots=True, repr=False, eq=False)
class SealedApplication:
    """An encoded MLSMessage (PrivateMessage) and the secret tree without the key it used."""

    message: bytes
    tree: SecretTree
    generation: int

    def __repr__(self) -> str:
        return f"SealedApplication(generation={self.generation}, size={len(self.message)})"


def seal_application(
    suite: CipherSuite,
    signature_private_key: bytes,
    group_context: GroupContext,
    leaf: LeafIndex,
    data: bytes,
    authenticated_data: bytes,
    tree: SecretTree,
    sender_data_secret: SenderDataSecret,
    reuse_guard: bytes,
    pad_to: int = 0,
    buckets: tuple[int, ...] = (),
) -> SealedApplication:
    """Sign and encrypt application ``data`` from member ``leaf`` (§6.1, §6.3).

    The same bytes as `authenticate` + `protect_private(..., pad_to=pad_to, buckets=buckets)`
    + encoding the MLSMessage.
    """
    if len(reuse_guard) != REUSE_GUARD_LENGTH:
        raise ConfigurationError("reuse_guard must be 4 bytes")
    group_id, epoch = group_context.group_id, group_context.epoch
    body = Writer()  # PrivateMessageContent (§6.3.1): application_data<V>, auth, padding
    body.push_opaque(data)
    encoded_data = body.getvalue()
    signature = suite.sign_with_label(
        signature_private_key,
        FRAMED_CONTENT_TBS_LABEL,
        _tbs(group_context, leaf, authenticated_data, encoded_data),
    )
    body.push_opaque(signature)  # FramedContentAuthData: no confirmation tag outside commits
    if buckets:  # as protect_private: the size bucket hides what kind of message it is
        body.push_bytes(bytes(bucket_size(len(body), buckets) - len(body)))
    elif pad_to > 1:
        body.push_bytes(bytes(-len(body) % pad_to))
    step = tree.next_key(leaf, RatchetType.application)
    key = step.key
    ciphertext = suite.aead_seal(
        key.key.value,
        guarded_nonce(key.nonce, reuse_guard),
        content_aad(group_id, epoch, _APPLICATION, authenticated_data),
        body.getvalue(),
    )
    sd_key, sd_nonce = sender_data_key_nonce(suite, sender_data_secret, ciphertext)
    sender_data = Writer()  # SenderData (§6.3.2)
    sender_data.push_uint32(leaf)
    sender_data.push_uint32(key.generation)
    sender_data.push_bytes(reuse_guard)
    encrypted_sender_data = suite.aead_seal(
        sd_key.value,
        sd_nonce.value,
        sender_data_aad(group_id, epoch, _APPLICATION),
        sender_data.getvalue(),
    )
    w = Writer()
    w.push_bytes(_message_head(group_id, epoch))
    w.push_opaque(authenticated_data)
    w.push_opaque(encrypted_sender_data)
    w.push_opaque(ciphertext)
    return SealedApplication(w.getvalue(), step.tree, key.generation)


@dataclass(frozen=True, slots=True, repr=False, eq=False)
class VerifiedApplication:
    """Application data whose signature verified, and the secret tree to adopt."""

    sender: LeafIndex
    generation: int
    authenticated_data: bytes
    data: bytes
    tree: SecretTree

    def __repr__(self) -> str:
        return f"VerifiedApplication(sender={self.sender}, generation={self.generation})"


@dataclass(frozen=True, slots=True, repr=False, eq=False)
class DecryptedApplication:
    """A decrypted application message whose signature is still to be checked (`verify`)."""

    sender: LeafIndex
    generation: int
    _tbs: bytes
    _signature: bytes
    _verified: VerifiedApplication

    def __repr__(self) -> str:
        return f"DecryptedApplication(sender={self.sender}, generation={self.generation})"

    def verify(self, suite: CipherSuite, signature_public_key: bytes) -> VerifiedApplication:
        """Raise `InvalidSignature` unless the FramedContentTBS signature is valid (§6.1)."""
        suite.verify_with_label(
            signature_public_key, FRAMED_CONTENT_TBS_LABEL, self._tbs, self._signature
        )
        return self._verified


def open_application(
    suite: CipherSuite,
    message: PrivateMessage,
    group_context: GroupContext,
    tree: SecretTree,
    sender_data_secret: SenderDataSecret,
    is_member: Callable[[LeafIndex], bool],
) -> DecryptedApplication:
    """Decrypt an application PrivateMessage of the epoch of ``group_context`` (§6.3).

    The checks and errors of `unprotect_private`: `ValidationError` (wrong group or epoch,
    sender not a member, generation consumed or too far ahead), `DecryptError`, `DecodeError`
    (malformed sender data or plaintext, non-zero padding). ``tree`` is not changed.
    """
    if message.content_type != _APPLICATION:
        raise ConfigurationError("open_application takes application messages only")
    group_id, epoch = message.group_id, message.epoch
    check_group(group_id, epoch, group_context)
    ciphertext = message.ciphertext
    sd_key, sd_nonce = sender_data_key_nonce(suite, sender_data_secret, ciphertext)
    sender_data = suite.aead_open(
        sd_key.value,
        sd_nonce.value,
        sender_data_aad(group_id, epoch, _APPLICATION),
        message.encrypted_sender_data,
    )
    if len(sender_data) != _SENDER_DATA_LENGTH:
        raise DecodeError("SenderData must be 12 bytes")
    r = Reader(sender_data)
    leaf = LeafIndex(r.pull_uint32())
    generation = r.pull_uint32()
    reuse_guard = r.pull_bytes(REUSE_GUARD_LENGTH)
    if leaf >= tree.n_leaves or not is_member(leaf):
        raise ValidationError(f"sender leaf {leaf} is not a member", rule="RFC9420 6.3.2")
    step = tree.key_for(leaf, RatchetType.application, generation)
    authenticated_data = message.authenticated_data
    plaintext = suite.aead_open(
        step.key.key.value,
        guarded_nonce(step.key.nonce, reuse_guard),
        content_aad(group_id, epoch, _APPLICATION, authenticated_data),
        ciphertext,
    )
    r = Reader(plaintext)
    data = r.pull_opaque()
    data_end = r.position
    signature = r.pull_opaque()
    padding = r.pull_bytes(r.remaining())
    # §6.3.1: "the padding field MUST be all zero"; any other octet is a malformed plaintext.
    if padding.count(0) != len(padding):
        raise DecodeError("PrivateMessageContent padding is not all zero")
    # The codec only accepts minimal length prefixes, so the received encoding of
    # application_data is the one the signature covers.
    tbs = _tbs(group_context, leaf, authenticated_data, plaintext[:data_end])
    verified = VerifiedApplication(leaf, generation, authenticated_data, data, step.tree)
    return DecryptedApplication(leaf, generation, tbs, signature, verified)


__all__ = [
    "DecryptedApplication",
    "SealedApplication",
    "VerifiedApplication",
    "open_application",
    "seal_application",
]
