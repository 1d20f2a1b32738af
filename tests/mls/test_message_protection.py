"""Unit tests of message protection (RFC 9420 §6.1-§6.3): round trips, the reuse guard,
padding, and every rejection with its typed error and no state change (invariant I4).
"""

from __future__ import annotations

from dataclasses import replace
from functools import cache

import pytest

from doorless.codec import Writer, encode
from doorless.crypto import KeyPair, cipher_suite
from doorless.errors import (
    ConfigurationError,
    DecodeError,
    DecryptError,
    InvalidMac,
    InvalidSignature,
    ValidationError,
)
from doorless.mls.framing import (
    AuthenticatedContent,
    Content,
    ContentType,
    FramedContent,
    FramedContentAuthData,
    PrivateContentAAD,
    PrivateMessage,
    PublicMessage,
    SenderData,
    SenderDataAAD,
    SenderExternal,
    SenderMember,
    WireFormat,
)
from doorless.mls.group_context import GroupContext
from doorless.mls.message_protection import (
    DecryptedMessage,
    authenticate,
    membership_tag,
    protect_private,
    protect_public,
    sign_framed_content,
    unprotect_private,
    unprotect_public,
)
from doorless.mls.proposals import Commit, Remove
from doorless.mls.schedule import EpochSecrets, derive_epoch_keys
from doorless.mls.secret_tree import (
    GenerationConsumed,
    RatchetType,
    SecretTree,
    sender_data_key_nonce,
)
from doorless.mls.tree_math import LeafIndex
from doorless.secret import EncryptionSecret, EpochSecret

SUITE = cipher_suite(1)
CONTEXT = GroupContext(SUITE.id, b"group", 7, b"tree hash", b"transcript", ())
GUARD = b"\x11\x22\x33\x44"
SENDER = SenderMember(1)


@cache
def keys() -> tuple[EncryptionSecret, EpochSecrets]:
    k = derive_epoch_keys(SUITE, EpochSecret(bytes([42]) * 32))
    return k.encryption_secret, k.secrets


@cache
def signer() -> KeyPair:
    return SUITE.generate_signature_key_pair()


def fresh_tree() -> SecretTree:
    return SecretTree.create(SUITE, keys()[0], 4)


def secrets() -> EpochSecrets:
    return keys()[1]


def flip(data: bytes, index: int = -1) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)


def signed(
    body: Content,
    wire_format: WireFormat = WireFormat.mls_private_message,
    sender: SenderMember | SenderExternal = SENDER,
    key: KeyPair | None = None,
    aad: bytes = b"",
) -> AuthenticatedContent:
    framed = FramedContent(CONTEXT.group_id, CONTEXT.epoch, sender, aad, body)
    sk = (key or signer()).private_key
    if isinstance(body, Commit):
        sig = sign_framed_content(SUITE, sk, wire_format, framed, CONTEXT)
        return AuthenticatedContent(wire_format, framed, FramedContentAuthData(sig, b"tag"))
    return authenticate(SUITE, sk, wire_format, framed, CONTEXT)


BODIES: list[Content] = [b"hello", Remove(2), Commit()]
bodies = pytest.mark.parametrize("body", BODIES, ids=["application", "proposal", "commit"])


def encrypt(body: Content = b"hello", padding: int = 0, aad: bytes = b"") -> PrivateMessage:
    return protect_private(
        SUITE, signed(body, aad=aad), fresh_tree(), secrets().sender_data_secret, GUARD, padding
    ).message


def decrypt(message: PrivateMessage, tree: SecretTree | None = None) -> DecryptedMessage:
    return unprotect_private(
        SUITE, message, CONTEXT, tree or fresh_tree(), secrets().sender_data_secret
    )


# --- PrivateMessage ---------------------------------------------------------------------------


@bodies
def test_private_round_trip(body: Content) -> None:
    content = signed(body, aad=b"franking")
    out = protect_private(SUITE, content, fresh_tree(), secrets().sender_data_secret, GUARD)
    assert out.generation == 0
    got = unprotect_private(SUITE, out.message, CONTEXT, fresh_tree(), secrets().sender_data_secret)
    verified = got.content.verify(SUITE, signer().public_key)
    assert verified.authenticated_content == content
    assert got.sender_data == SenderData(1, 0, GUARD)


def test_sender_state_advances() -> None:
    tree = fresh_tree()
    sds = secrets().sender_data_secret
    first = protect_private(SUITE, signed(b"a"), tree, sds, GUARD)
    second = protect_private(SUITE, signed(b"b"), first.tree, sds, GUARD)
    assert (first.generation, second.generation) == (0, 1)
    # The input tree is unchanged: protecting again from it reuses generation 0.
    assert protect_private(SUITE, signed(b"c"), tree, sds, GUARD).generation == 0
    receiver = fresh_tree()
    got = unprotect_private(SUITE, second.message, CONTEXT, receiver, sds)
    assert got.sender_data.generation == 1


def test_reuse_guard_is_xored_into_the_nonce() -> None:
    message = encrypt()
    step = fresh_tree().key_for(LeafIndex(1), RatchetType.application, 0)
    nonce = step.key.nonce.value
    guarded = bytes(a ^ b for a, b in zip(nonce[:4], GUARD, strict=True)) + nonce[4:]
    aad = encode(PrivateContentAAD(CONTEXT.group_id, CONTEXT.epoch, ContentType.application, b""))
    assert SUITE.aead_open(step.key.key.value, guarded, aad, message.ciphertext)
    with pytest.raises(DecryptError):
        SUITE.aead_open(step.key.key.value, nonce, aad, message.ciphertext)
    other = protect_private(
        SUITE, signed(b"hello"), fresh_tree(), secrets().sender_data_secret, b"\x00" * 4
    ).message
    assert other.ciphertext != message.ciphertext


def test_reuse_guard_length_checked() -> None:
    with pytest.raises(ConfigurationError):
        protect_private(SUITE, signed(b"x"), fresh_tree(), secrets().sender_data_secret, b"abc")


def test_padding() -> None:
    plain = encrypt(padding=0)
    padded = encrypt(padding=100)
    assert len(padded.ciphertext) == len(plain.ciphertext) + 100
    assert decrypt(padded).content.content.content == b"hello"


def _handmade(plaintext: bytes) -> PrivateMessage:
    """A PrivateMessage around an arbitrary plaintext, built from the primitives directly."""
    step = fresh_tree().key_for(LeafIndex(1), RatchetType.application, 0)
    aad = encode(PrivateContentAAD(CONTEXT.group_id, CONTEXT.epoch, ContentType.application, b""))
    ciphertext = SUITE.aead_seal(step.key.key.value, step.key.nonce.value, aad, plaintext)
    key, nonce = sender_data_key_nonce(SUITE, secrets().sender_data_secret, ciphertext)
    sd_aad = encode(SenderDataAAD(CONTEXT.group_id, CONTEXT.epoch, ContentType.application))
    sender_data = SUITE.aead_seal(
        key.value, nonce.value, sd_aad, encode(SenderData(1, 0, bytes(4)))
    )
    return PrivateMessage(
        CONTEXT.group_id, CONTEXT.epoch, ContentType.application, b"", sender_data, ciphertext
    )


def test_handmade_message_decrypts() -> None:
    w = Writer()
    w.push_opaque(b"hi")
    w.push_opaque(b"signature")
    assert decrypt(_handmade(w.getvalue() + bytes(5))).content.content.content == b"hi"


def test_non_zero_padding_rejected() -> None:
    w = Writer()
    w.push_opaque(b"hi")
    w.push_opaque(b"signature")
    with pytest.raises(DecodeError):
        decrypt(_handmade(w.getvalue() + bytes(4) + b"\x01"))


def test_malformed_plaintext_rejected() -> None:
    with pytest.raises(DecodeError):
        decrypt(_handmade(b"\x05ab"))


@pytest.mark.parametrize(
    "field", ["ciphertext", "encrypted_sender_data", "authenticated_data", "content_type"]
)
def test_tampering_rejected_and_state_unchanged(field: str) -> None:
    message = encrypt(aad=b"data")
    tampered = {
        "ciphertext": replace(message, ciphertext=flip(message.ciphertext)),
        "encrypted_sender_data": replace(
            message, encrypted_sender_data=flip(message.encrypted_sender_data)
        ),
        "authenticated_data": replace(message, authenticated_data=b"datA"),
        "content_type": replace(message, content_type=ContentType.proposal),
    }[field]
    tree = fresh_tree()
    before = tree.to_bytes()
    with pytest.raises(DecryptError):
        decrypt(tampered, tree)
    assert tree.to_bytes() == before
    decrypt(message, tree)  # the genuine message still decrypts with the untouched state


def test_wrong_group_or_epoch_rejected() -> None:
    message = encrypt()
    for bad in (replace(message, group_id=b"other"), replace(message, epoch=8)):
        with pytest.raises(ValidationError):
            decrypt(bad)


def test_replay_rejected() -> None:
    message = encrypt()
    first = unprotect_private(SUITE, message, CONTEXT, fresh_tree(), secrets().sender_data_secret)
    with pytest.raises(GenerationConsumed):
        unprotect_private(SUITE, message, CONTEXT, first.tree, secrets().sender_data_secret)


def test_sender_must_be_member() -> None:
    message = encrypt()
    with pytest.raises(ValidationError):
        unprotect_private(
            SUITE,
            message,
            CONTEXT,
            fresh_tree(),
            secrets().sender_data_secret,
            is_member=lambda leaf: leaf != 1,
        )
    small = SecretTree.create(SUITE, keys()[0], 1)
    with pytest.raises(ValidationError):
        unprotect_private(SUITE, message, CONTEXT, small, secrets().sender_data_secret)
    with pytest.raises(ConfigurationError):
        protect_private(
            SUITE,
            signed(Remove(0), sender=SenderExternal(0)),
            fresh_tree(),
            secrets().sender_data_secret,
            GUARD,
        )


def test_wrong_wire_format_refused() -> None:
    with pytest.raises(ConfigurationError):
        protect_private(
            SUITE,
            signed(b"x", WireFormat.mls_public_message),
            fresh_tree(),
            secrets().sender_data_secret,
            GUARD,
        )
    with pytest.raises(ConfigurationError):
        protect_public(SUITE, signed(Remove(0)), CONTEXT, secrets().membership_key)


@bodies
def test_private_bad_signature_rejected(body: Content) -> None:
    other = SUITE.generate_signature_key_pair()
    out = protect_private(
        SUITE, signed(body, key=other), fresh_tree(), secrets().sender_data_secret, GUARD
    )
    got = unprotect_private(SUITE, out.message, CONTEXT, fresh_tree(), secrets().sender_data_secret)
    with pytest.raises(InvalidSignature):
        got.content.verify(SUITE, signer().public_key)
    # The same content signed in another epoch does not verify either (TBS covers the context).
    other_context = replace(CONTEXT, epoch=8)
    moved = replace(got.content, group_context=other_context)
    with pytest.raises(InvalidSignature):
        moved.verify(SUITE, other.public_key)


# --- PublicMessage ----------------------------------------------------------------------------


@pytest.mark.parametrize("body", BODIES[1:], ids=["proposal", "commit"])
def test_public_round_trip(body: Content) -> None:
    content = signed(body, WireFormat.mls_public_message)
    message = protect_public(SUITE, content, CONTEXT, secrets().membership_key)
    got = unprotect_public(SUITE, message, CONTEXT, secrets().membership_key)
    assert got.verify(SUITE, signer().public_key).authenticated_content == content


def test_public_application_refused() -> None:
    content = signed(b"x", WireFormat.mls_public_message)
    with pytest.raises(ConfigurationError):
        protect_public(SUITE, content, CONTEXT, secrets().membership_key)
    tag = membership_tag(SUITE, secrets().membership_key, content, CONTEXT)
    message = PublicMessage(content.content, content.auth, tag)
    with pytest.raises(ValidationError):
        unprotect_public(SUITE, message, CONTEXT, secrets().membership_key)


def test_membership_tag_checked() -> None:
    content = signed(Remove(0), WireFormat.mls_public_message)
    message = protect_public(SUITE, content, CONTEXT, secrets().membership_key)
    assert message.membership_tag is not None
    bad_tag = replace(message, membership_tag=flip(message.membership_tag))
    bad_sig = replace(message, auth=FramedContentAuthData(flip(message.auth.signature)))
    bad_aad = replace(message, content=replace(message.content, authenticated_data=b"!"))
    for bad in (bad_tag, bad_sig, bad_aad):
        with pytest.raises(InvalidMac):
            unprotect_public(SUITE, bad, CONTEXT, secrets().membership_key)
    other_key = derive_epoch_keys(SUITE, EpochSecret(bytes(32))).secrets.membership_key
    with pytest.raises(InvalidMac):
        unprotect_public(SUITE, message, CONTEXT, other_key)
    with pytest.raises(ConfigurationError):
        protect_public(SUITE, content, CONTEXT, None)


def test_public_signature_checked() -> None:
    other = SUITE.generate_signature_key_pair()
    content = signed(Remove(0), WireFormat.mls_public_message, key=other)
    message = protect_public(SUITE, content, CONTEXT, secrets().membership_key)
    got = unprotect_public(SUITE, message, CONTEXT, secrets().membership_key)
    with pytest.raises(InvalidSignature):
        got.verify(SUITE, signer().public_key)


def test_public_wrong_epoch_rejected() -> None:
    content = signed(Remove(0), WireFormat.mls_public_message)
    message = protect_public(SUITE, content, CONTEXT, secrets().membership_key)
    with pytest.raises(ValidationError):
        unprotect_public(SUITE, message, replace(CONTEXT, epoch=8), secrets().membership_key)


def test_external_sender_has_no_membership_tag() -> None:
    content = signed(Remove(0), WireFormat.mls_public_message, sender=SenderExternal(0))
    message = protect_public(SUITE, content, CONTEXT, None)
    assert message.membership_tag is None
    got = unprotect_public(SUITE, message, CONTEXT, None)
    got.verify(SUITE, signer().public_key)
    # External senders' TBS does not cover the GroupContext (§6.1).
    replace(got, group_context=replace(CONTEXT, tree_hash=b"x")).verify(SUITE, signer().public_key)


@pytest.mark.parametrize(
    "field", ["proposal", "commit_pub", "commit_priv", "application_priv", "membership_key"]
)
def test_checker_detects_tampering(field: str) -> None:
    import json
    from pathlib import Path

    from doorless.conformance import VectorMismatch, checker

    path = Path(__file__).parents[1] / "vectors" / "mls" / "message-protection.json"
    case = json.loads(path.read_text())[0]
    b = bytearray.fromhex(case[field])
    b[-1] ^= 0x01
    case[field] = b.hex()
    with pytest.raises(VectorMismatch):
        checker("message-protection")(case)
