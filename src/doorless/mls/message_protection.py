"""Signing, membership tags, and PrivateMessage encryption (RFC 9420 §6.1-§6.3).

Receiving is a chain of types, so no step can be skipped::

    PublicMessage  --unprotect_public-->  UnverifiedContent --verify--> VerifiedContent
    PrivateMessage --unprotect_private--> DecryptedMessage(.content: UnverifiedContent,
                                                           .tree: SecretTree)

`unprotect_private` does not touch the secret tree it is given: it returns the tree without the
consumed key, which the caller adopts only once the message is fully validated (signature,
then the group's own rules) — stage, then merge (invariant I4). Dropping it is the rollback.

Randomness (the reuse guard) is a parameter: this module reads none.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from doorless.codec import Writer, decode, encode, encode_opaque
from doorless.crypto import CipherSuite
from doorless.errors import ConfigurationError, InvalidMac, ValidationError
from doorless.mls.framing import (
    AuthenticatedContent,
    ContentType,
    FramedContent,
    FramedContentAuthData,
    PrivateMessage,
    PrivateMessageContent,
    PublicMessage,
    SenderData,
    SenderDataAAD,
    SenderMember,
    SenderType,
    WireFormat,
    authenticated_content_tbm,
    framed_content_tbs,
)
from doorless.mls.group_context import GroupContext
from doorless.mls.schedule import MembershipKey, SenderDataSecret
from doorless.mls.secret_tree import SecretTree, ratchet_type_for, sender_data_key_nonce
from doorless.mls.tree_math import LeafIndex
from doorless.secret import AeadNonce, constant_time_equal

FRAMED_CONTENT_TBS_LABEL = b"FramedContentTBS"

# §6.1: the TBS of these senders covers the GroupContext.
_SENDERS_WITH_CONTEXT = frozenset({SenderType.member, SenderType.new_member_commit})


def _tbs_context(content: FramedContent, group_context: GroupContext) -> GroupContext | None:
    return group_context if content.sender.sender_type in _SENDERS_WITH_CONTEXT else None


def check_group(content_group_id: bytes, epoch: int, group_context: GroupContext) -> None:
    """A message must be for this group and its current epoch (§6)."""
    if content_group_id != group_context.group_id:
        raise ValidationError("message is for another group", rule="RFC9420 6")
    if epoch != group_context.epoch:
        raise ValidationError(
            f"message is for epoch {epoch}, not {group_context.epoch}", rule="RFC9420 6"
        )


# --- signatures (§6.1) ------------------------------------------------------------------------


def sign_framed_content(
    suite: CipherSuite,
    signature_private_key: bytes,
    wire_format: WireFormat,
    content: FramedContent,
    group_context: GroupContext,
) -> bytes:
    """``SignWithLabel(., "FramedContentTBS", FramedContentTBS)`` (§6.1).

    ``group_context`` is the current epoch's; it is only covered for member and
    new_member_commit senders. For a Commit, the confirmation tag is computed afterwards from
    this signature (§8.2), then both go into `FramedContentAuthData`.
    """
    tbs = encode_tbs(wire_format, content, group_context)
    return suite.sign_with_label(signature_private_key, FRAMED_CONTENT_TBS_LABEL, tbs)


def encode_tbs(
    wire_format: WireFormat, content: FramedContent, group_context: GroupContext
) -> bytes:
    """The encoded FramedContentTBS, with the GroupContext only where §6.1 puts it."""
    return framed_content_tbs(wire_format, content, _tbs_context(content, group_context))


def authenticate(
    suite: CipherSuite,
    signature_private_key: bytes,
    wire_format: WireFormat,
    content: FramedContent,
    group_context: GroupContext,
) -> AuthenticatedContent:
    """Sign a proposal or application content (a Commit needs its confirmation tag, so sign it
    with `sign_framed_content` and build the `AuthenticatedContent` yourself)."""
    if content.content_type == ContentType.commit:
        raise ConfigurationError("a Commit's AuthenticatedContent needs its confirmation tag")
    signature = sign_framed_content(
        suite, signature_private_key, wire_format, content, group_context
    )
    return AuthenticatedContent(wire_format, content, FramedContentAuthData(signature))


def verify_signature(
    suite: CipherSuite,
    signature_public_key: bytes,
    content: AuthenticatedContent,
    group_context: GroupContext,
) -> None:
    """Raise `InvalidSignature` unless ``content.auth.signature`` is valid (§6.1)."""
    tbs = encode_tbs(content.wire_format, content.content, group_context)
    suite.verify_with_label(
        signature_public_key, FRAMED_CONTENT_TBS_LABEL, tbs, content.auth.signature
    )


@dataclass(frozen=True, slots=True)
class VerifiedContent:
    """An `AuthenticatedContent` whose signature verified against the sender's key.

    For a Commit the confirmation tag is still to be checked against the new epoch's
    confirmation key (the group does that, §12.4.2).
    """

    authenticated_content: AuthenticatedContent


@dataclass(frozen=True, slots=True)
class UnverifiedContent:
    """An `AuthenticatedContent` that passed its membership tag or decryption, not yet its
    signature. ``group_context`` is the one it was received in (its signature covers it)."""

    authenticated_content: AuthenticatedContent
    group_context: GroupContext

    @property
    def content(self) -> FramedContent:
        return self.authenticated_content.content

    def verify(self, suite: CipherSuite, signature_public_key: bytes) -> VerifiedContent:
        """Check the signature with the key the sender's type designates (§6.1)."""
        verify_signature(
            suite, signature_public_key, self.authenticated_content, self.group_context
        )
        return VerifiedContent(self.authenticated_content)


# --- PublicMessage (§6.2) ---------------------------------------------------------------------


def membership_tag(
    suite: CipherSuite,
    membership_key: MembershipKey,
    content: AuthenticatedContent,
    group_context: GroupContext,
) -> bytes:
    """``MAC(membership_key, AuthenticatedContentTBM)`` (§6.2)."""
    tbs = encode_tbs(content.wire_format, content.content, group_context)
    return suite.mac(membership_key.value, authenticated_content_tbm(tbs, content.auth))


def protect_public(
    suite: CipherSuite,
    content: AuthenticatedContent,
    group_context: GroupContext,
    membership_key: MembershipKey | None,
) -> PublicMessage:
    """Frame signed content as a PublicMessage, with a membership tag for member senders.

    Application data may not travel in a PublicMessage (§6: "Applications MUST use
    PrivateMessage to encrypt application messages").
    """
    if content.content.content_type == ContentType.application:
        raise ConfigurationError("application messages must be PrivateMessages (RFC 9420 6)")
    if content.wire_format != WireFormat.mls_public_message:
        raise ConfigurationError("content was signed for another wire format")
    tag: bytes | None = None
    if content.content.sender.sender_type == SenderType.member:
        if membership_key is None:
            raise ConfigurationError("a member's PublicMessage needs the membership key")
        tag = membership_tag(suite, membership_key, content, group_context)
    return PublicMessage(content.content, content.auth, tag)


def unprotect_public(
    suite: CipherSuite,
    message: PublicMessage,
    group_context: GroupContext,
    membership_key: MembershipKey | None,
) -> UnverifiedContent:
    """Check group, epoch and (for members) the membership tag, in constant time (§6.2).

    Raises `ValidationError` (wrong group or epoch, application data) or `InvalidMac`.
    """
    content = message.content
    check_group(content.group_id, content.epoch, group_context)
    if content.content_type == ContentType.application:
        raise ValidationError(
            "application data must not be sent as a PublicMessage", rule="RFC9420 6"
        )
    authenticated = message.authenticated_content()
    if content.sender.sender_type == SenderType.member:
        if membership_key is None:
            raise ConfigurationError("checking a member's PublicMessage needs the membership key")
        assert message.membership_tag is not None  # PublicMessage's constructor guarantees it
        expected = membership_tag(suite, membership_key, authenticated, group_context)
        if not constant_time_equal(expected, message.membership_tag):
            raise InvalidMac("membership tag does not match (RFC9420 6.2)")
    return UnverifiedContent(authenticated, group_context)


# --- PrivateMessage (§6.3) --------------------------------------------------------------------

REUSE_GUARD_LENGTH = SenderData.REUSE_GUARD_LENGTH


def guarded_nonce(nonce: AeadNonce, reuse_guard: bytes) -> bytes:
    """XOR the reuse guard into the first four bytes of the key schedule nonce (§6.3.1)."""
    n = nonce.value
    if len(reuse_guard) != REUSE_GUARD_LENGTH:
        raise ConfigurationError("reuse_guard must be 4 bytes")
    head = int.from_bytes(n[:REUSE_GUARD_LENGTH], "big") ^ int.from_bytes(reuse_guard, "big")
    return head.to_bytes(REUSE_GUARD_LENGTH, "big") + n[REUSE_GUARD_LENGTH:]


# The AADs of one epoch repeat for every message: encode them once (public values only).
@lru_cache(maxsize=64)
def sender_data_aad(group_id: bytes, epoch: int, content_type: ContentType) -> bytes:
    """The encoded `SenderDataAAD` (§6.3.2)."""
    return encode(SenderDataAAD(group_id, epoch, content_type))


@lru_cache(maxsize=64)
def _content_aad_prefix(group_id: bytes, epoch: int, content_type: ContentType) -> bytes:
    # PrivateContentAAD without its last field, ``opaque authenticated_data<V>``.
    w = Writer()
    w.push_opaque(group_id)
    w.push_uint64(epoch)
    w.push_uint8(content_type)
    return w.getvalue()


@lru_cache(maxsize=64)  # authenticated_data is mostly empty or repeats within an epoch
def content_aad(
    group_id: bytes, epoch: int, content_type: ContentType, authenticated_data: bytes
) -> bytes:
    """The encoded `PrivateContentAAD` (§6.3.1)."""
    return _content_aad_prefix(group_id, epoch, content_type) + encode_opaque(authenticated_data)


@dataclass(frozen=True, slots=True, repr=False, eq=False)
class ProtectedMessage:
    """A PrivateMessage and the secret tree without the key it used (adopt it once sent)."""

    message: PrivateMessage
    tree: SecretTree
    generation: int

    def __repr__(self) -> str:
        return f"ProtectedMessage(generation={self.generation})"


def bucket_size(length: int, buckets: tuple[int, ...]) -> int:
    """The smallest of ``buckets`` (ascending) that holds ``length`` octets; beyond the
    largest, the next multiple of the largest."""
    for size in buckets:
        if length <= size:
            return size
    return -(-length // buckets[-1]) * buckets[-1]


def protect_private(
    suite: CipherSuite,
    content: AuthenticatedContent,
    tree: SecretTree,
    sender_data_secret: SenderDataSecret,
    reuse_guard: bytes,
    padding: int = 0,
    *,
    pad_to: int = 0,
    buckets: tuple[int, ...] = (),
) -> ProtectedMessage:
    """Encrypt signed content from a member as a PrivateMessage (§6.3).

    ``reuse_guard`` is 4 fresh random bytes (§6.3.1); ``padding`` the number of zero octets
    appended to the plaintext; or ``pad_to`` > 1: pad the plaintext to a multiple of it; or
    ``buckets`` (ascending): pad it to the smallest bucket that holds it (beyond the largest,
    to a multiple of the largest).
    """
    framed = content.content
    if not isinstance(framed.sender, SenderMember):
        raise ConfigurationError("only members send PrivateMessages (RFC 9420 6.3.2)")
    if content.wire_format != WireFormat.mls_private_message:
        raise ConfigurationError("content was signed for another wire format")
    if len(reuse_guard) != REUSE_GUARD_LENGTH:
        raise ConfigurationError("reuse_guard must be 4 bytes")
    leaf = LeafIndex(framed.sender.leaf_index)
    content_type = framed.content_type
    step = tree.next_key(leaf, ratchet_type_for(content_type))
    w = Writer()  # PrivateMessageContent's pull takes the content type, so no `encode`
    PrivateMessageContent(framed.content, content.auth, padding).push(w)
    if buckets:
        w.push_bytes(bytes(bucket_size(len(w), buckets) - len(w)))
    elif pad_to > 1:
        w.push_bytes(bytes(-len(w) % pad_to))  # zero octets, as `padding` would be
    plaintext = w.getvalue()
    aad = content_aad(framed.group_id, framed.epoch, content_type, framed.authenticated_data)
    ciphertext = suite.aead_seal(
        step.key.key.value, guarded_nonce(step.key.nonce, reuse_guard), aad, plaintext
    )
    sd_key, sd_nonce = sender_data_key_nonce(suite, sender_data_secret, ciphertext)
    sender_data = encode(SenderData(leaf, step.key.generation, reuse_guard))
    sd_aad = sender_data_aad(framed.group_id, framed.epoch, content_type)
    encrypted_sender_data = suite.aead_seal(sd_key.value, sd_nonce.value, sd_aad, sender_data)
    message = PrivateMessage(
        framed.group_id,
        framed.epoch,
        content_type,
        framed.authenticated_data,
        encrypted_sender_data,
        ciphertext,
    )
    return ProtectedMessage(message, step.tree, step.key.generation)


@dataclass(frozen=True, slots=True, repr=False, eq=False)
class DecryptedMessage:
    """A decrypted PrivateMessage: its content (signature still to verify), its sender data,
    and the secret tree without the consumed key (adopt it only once the message is accepted).
    """

    content: UnverifiedContent
    sender_data: SenderData
    tree: SecretTree

    def __repr__(self) -> str:
        return (
            f"DecryptedMessage(leaf_index={self.sender_data.leaf_index}, "
            f"generation={self.sender_data.generation})"
        )


def unprotect_private(
    suite: CipherSuite,
    message: PrivateMessage,
    group_context: GroupContext,
    tree: SecretTree,
    sender_data_secret: SenderDataSecret,
    is_member: Callable[[LeafIndex], bool] | None = None,
) -> DecryptedMessage:
    """Decrypt a PrivateMessage of the epoch of ``group_context`` (§6.3).

    ``is_member(leaf)`` tells whether a leaf is non-blank (§6.3.2 requires the check; without
    it the caller must check ``sender_data.leaf_index`` before adopting anything).
    ``tree`` is not changed. Raises `ValidationError` (wrong group or epoch, sender not a
    member, generation consumed or too far ahead), `DecryptError` (sender data or content does
    not open) or `DecodeError` (malformed plaintext, non-zero padding).
    """
    check_group(message.group_id, message.epoch, group_context)
    content_type = message.content_type
    sd_key, sd_nonce = sender_data_key_nonce(suite, sender_data_secret, message.ciphertext)
    sd_aad = sender_data_aad(message.group_id, message.epoch, content_type)
    sender_data = decode(
        SenderData,
        suite.aead_open(sd_key.value, sd_nonce.value, sd_aad, message.encrypted_sender_data),
    )
    leaf = LeafIndex(sender_data.leaf_index)
    if leaf >= tree.n_leaves or (is_member is not None and not is_member(leaf)):
        raise ValidationError(f"sender leaf {leaf} is not a member", rule="RFC9420 6.3.2")
    step = tree.key_for(leaf, ratchet_type_for(content_type), sender_data.generation)
    aad = content_aad(message.group_id, message.epoch, content_type, message.authenticated_data)
    plaintext = suite.aead_open(
        step.key.key.value,
        guarded_nonce(step.key.nonce, sender_data.reuse_guard),
        aad,
        message.ciphertext,
    )
    body = PrivateMessageContent.decode(plaintext, content_type)
    framed = FramedContent(
        message.group_id,
        message.epoch,
        SenderMember(leaf),
        message.authenticated_data,
        body.content,
    )
    authenticated = AuthenticatedContent(WireFormat.mls_private_message, framed, body.auth)
    return DecryptedMessage(UnverifiedContent(authenticated, group_context), sender_data, step.tree)


__all__ = [
    "FRAMED_CONTENT_TBS_LABEL",
    "REUSE_GUARD_LENGTH",
    "DecryptedMessage",
    "ProtectedMessage",
    "UnverifiedContent",
    "VerifiedContent",
    "authenticate",
    "bucket_size",
    "check_group",
    "content_aad",
    "encode_tbs",
    "guarded_nonce",
    "membership_tag",
    "protect_private",
    "protect_public",
    "sender_data_aad",
    "sign_framed_content",
    "unprotect_private",
    "unprotect_public",
    "verify_signature",
]
