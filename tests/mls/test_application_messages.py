"""The lean application-message path against the generic one (RFC 9420 §6.1, §6.3).

`seal_application` must produce the very bytes of `authenticate` + `protect_private` +
`encode(MLSMessage(...))` (Ed25519 and AES-GCM are deterministic, so equal inputs give equal
outputs), and `open_application` must accept what `unprotect_private` accepts and reject the
same inputs with the same typed errors, leaving the secret tree as it was (I4).
"""

from __future__ import annotations

from functools import cache

import pytest

from doorless.codec import Writer, decode, encode
from doorless.crypto import KeyPair, cipher_suite
from doorless.errors import DecodeError, DecryptError, InvalidSignature, ValidationError
from doorless.mls.application_messages import open_application, seal_application
from doorless.mls.framing import (
    ContentType,
    FramedContent,
    MLSMessage,
    PrivateMessage,
    SenderData,
    SenderDataAAD,
    SenderMember,
    WireFormat,
)
from doorless.mls.group_context import GroupContext
from doorless.mls.message_protection import authenticate, protect_private, unprotect_private
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
SENDER = LeafIndex(1)


@cache
def keys() -> tuple[EncryptionSecret, EpochSecrets]:
    k = derive_epoch_keys(SUITE, EpochSecret(bytes([42]) * 32))
    return k.encryption_secret, k.secrets


@cache
def signer() -> KeyPair:
    return SUITE.generate_signature_key_pair()


def fresh_tree() -> SecretTree:
    return SecretTree.create(SUITE, keys()[0], 4)


def members(leaf: LeafIndex) -> bool:
    return leaf in (0, 1, 2)


def generic(data: bytes, aad: bytes, tree: SecretTree, pad_to: int) -> tuple[bytes, SecretTree]:
    framed = FramedContent(CONTEXT.group_id, CONTEXT.epoch, SenderMember(SENDER), aad, data)
    auth = authenticate(
        SUITE, signer().private_key, WireFormat.mls_private_message, framed, CONTEXT
    )
    out = protect_private(SUITE, auth, tree, keys()[1].sender_data_secret, GUARD, pad_to=pad_to)
    return encode(MLSMessage(out.message)), out.tree


def lean(data: bytes, aad: bytes, tree: SecretTree, pad_to: int) -> tuple[bytes, SecretTree]:
    out = seal_application(
        SUITE,
        signer().private_key,
        CONTEXT,
        SENDER,
        data,
        aad,
        tree,
        keys()[1].sender_data_secret,
        GUARD,
        pad_to,
    )
    return out.message, out.tree


def private(message: bytes) -> PrivateMessage:
    body = decode(MLSMessage, message).body
    assert isinstance(body, PrivateMessage)
    return body


def opened(message: bytes | PrivateMessage, tree: SecretTree | None = None) -> bytes:
    body = private(message) if isinstance(message, bytes) else message
    decrypted = open_application(
        SUITE, body, CONTEXT, tree or fresh_tree(), keys()[1].sender_data_secret, members
    )
    return decrypted.verify(SUITE, signer().public_key).data


# Lengths on both sides of each varint width (1, 2 and 4 octets: < 64, < 16384).
SIZES = [0, 5, 63, 64, 1024, 16383, 16384, 70000]


@pytest.mark.parametrize("size", SIZES, ids=[f"{n}B" for n in SIZES])
@pytest.mark.parametrize("pad_to", [0, 1, 32, 1000], ids=["no-pad", "pad1", "pad32", "pad1000"])
def test_seal_is_byte_identical_to_the_generic_path(size: int, pad_to: int) -> None:
    data, aad = bytes(range(256)) * (size // 256) + bytes(size % 256), b"franking" * (size % 9)
    tree_a, tree_b = fresh_tree(), fresh_tree()
    for _ in range(3):  # the first message derives the sender's ratchet; then in order
        expected, tree_a = generic(data, aad, tree_a, pad_to)
        got, tree_b = lean(data, aad, tree_b, pad_to)
        assert got == expected
    assert tree_a.to_bytes() == tree_b.to_bytes()


@pytest.mark.parametrize("size", SIZES, ids=[f"{n}B" for n in SIZES])
def test_each_path_opens_the_other(size: int) -> None:
    data = b"\x5a" * size
    from_generic, _ = generic(data, b"ad", fresh_tree(), 32)
    assert opened(from_generic) == data
    from_lean, _ = lean(data, b"ad", fresh_tree(), 32)
    got = unprotect_private(
        SUITE, private(from_lean), CONTEXT, fresh_tree(), keys()[1].sender_data_secret
    )
    got.content.verify(SUITE, signer().public_key)
    assert got.content.content.content == data
    assert got.sender_data == SenderData(SENDER, 0, GUARD)


def test_open_returns_sender_generation_and_tree_without_the_key() -> None:
    message, _ = lean(b"hi", b"ad", fresh_tree(), 0)
    tree = fresh_tree()
    before = tree.to_bytes()
    decrypted = open_application(
        SUITE, private(message), CONTEXT, tree, keys()[1].sender_data_secret, members
    )
    assert (decrypted.sender, decrypted.generation) == (SENDER, 0)
    verified = decrypted.verify(SUITE, signer().public_key)
    assert (verified.data, verified.authenticated_data) == (b"hi", b"ad")
    assert tree.to_bytes() == before  # not changed: the caller adopts verified.tree
    with pytest.raises(GenerationConsumed):  # I6: the key is gone from the new tree
        opened(message, verified.tree)


def test_bad_signature_is_refused() -> None:
    message, _ = lean(b"hi", b"", fresh_tree(), 0)
    decrypted = open_application(
        SUITE, private(message), CONTEXT, fresh_tree(), keys()[1].sender_data_secret, members
    )
    other = SUITE.generate_signature_key_pair()
    with pytest.raises(InvalidSignature):
        decrypted.verify(SUITE, other.public_key)


def test_wrong_epoch_and_group_are_refused() -> None:
    body = private(lean(b"hi", b"", fresh_tree(), 0)[0])
    for wrong in (
        PrivateMessage(b"other", *vars_of(body)[1:]),
        PrivateMessage(body.group_id, 8, *vars_of(body)[2:]),
    ):
        with pytest.raises(ValidationError, match=r"group|epoch"):
            opened(wrong)


def vars_of(body: PrivateMessage) -> tuple[object, ...]:
    return (
        body.group_id,
        body.epoch,
        body.content_type,
        body.authenticated_data,
        body.encrypted_sender_data,
        body.ciphertext,
    )


def test_tampered_ciphertext_and_authenticated_data_are_refused() -> None:
    body = private(lean(b"hi", b"ad", fresh_tree(), 0)[0])
    fields = vars_of(body)
    tampered_ct = PrivateMessage(*fields[:5], bytes([body.ciphertext[0] ^ 1]) + body.ciphertext[1:])
    with pytest.raises(DecryptError):
        opened(tampered_ct)
    with pytest.raises(DecryptError):
        opened(PrivateMessage(*fields[:3], b"AD", *fields[4:]))


def reencrypted(plaintext: bytes, sender_data: bytes) -> PrivateMessage:
    """A message whose content plaintext and SenderData are chosen by a malicious member."""
    tree = fresh_tree()
    step = tree.next_key(SENDER, RatchetType.application)
    guard = sender_data[8:] if len(sender_data) >= 12 else GUARD
    nonce = bytearray(step.key.nonce.value)
    for i in range(4):
        nonce[i] ^= guard[i]
    aad = Writer()
    aad.push_opaque(CONTEXT.group_id)
    aad.push_uint64(CONTEXT.epoch)
    aad.push_uint8(ContentType.application)
    aad.push_opaque(b"")
    ct = SUITE.aead_seal(step.key.key.value, bytes(nonce), aad.getvalue(), plaintext)
    k, n = sender_data_key_nonce(SUITE, keys()[1].sender_data_secret, ct)
    sd_aad = encode(SenderDataAAD(CONTEXT.group_id, CONTEXT.epoch, ContentType.application))
    esd = SUITE.aead_seal(k.value, n.value, sd_aad, sender_data)
    return PrivateMessage(CONTEXT.group_id, CONTEXT.epoch, ContentType.application, b"", esd, ct)


def sender_data(leaf: int = SENDER, generation: int = 0) -> bytes:
    return encode(SenderData(leaf, generation, GUARD))


def test_non_zero_padding_and_truncated_plaintext_are_decode_errors() -> None:
    w = Writer()
    w.push_opaque(b"hi")
    w.push_opaque(b"s" * 64)
    good = w.getvalue()
    for plaintext in (good + b"\x00\x01", good[:-1], b""):
        message = reencrypted(plaintext, sender_data())
        with pytest.raises(DecodeError):
            opened(message)
        with pytest.raises(DecodeError):  # the generic path agrees
            unprotect_private(SUITE, message, CONTEXT, fresh_tree(), keys()[1].sender_data_secret)


def test_malformed_sender_data_and_non_member_sender_are_refused() -> None:
    with pytest.raises(DecodeError):
        opened(reencrypted(b"", sender_data()[:-1]))
    with pytest.raises(DecodeError):
        opened(reencrypted(b"", sender_data() + b"\x00"))
    for leaf in (3, 4, 0xFFFFFFFF):  # blank, and outside the tree
        with pytest.raises(ValidationError, match="not a member"):
            opened(reencrypted(b"", sender_data(leaf)))


def test_in_order_ratchet_steps_match_the_general_path() -> None:
    """`next_key`/`key_for` take a shortcut for the next generation; the general path
    (skipping ahead, keeping skipped keys) must hand out the same keys."""
    tree = fresh_tree()
    in_order = []
    for _ in range(4):
        step = tree.next_key(SENDER, RatchetType.application)
        in_order.append(step.key)
        tree = step.tree
    jumped = fresh_tree().key_for(SENDER, RatchetType.application, 3)
    skipped = jumped.tree.ratchets[(SENDER, RatchetType.application)].skipped
    for expected, got in zip(in_order, [*skipped, jumped.key], strict=True):
        assert expected.generation == got.generation
        assert expected.key == got.key
        assert expected.nonce == got.nonce
    # And both against DeriveTreeSecret spelled out (RFC 9420 §9.1).
    secret = fresh_tree().next_key(SENDER, RatchetType.handshake).tree.ratchets
    ratchet = secret[(SENDER, RatchetType.application)]
    assert ratchet.secret is not None
    assert in_order[0].key.value == SUITE.derive_tree_secret(ratchet.secret.value, b"key", 0, 16)
    assert in_order[0].nonce.value == SUITE.derive_tree_secret(
        ratchet.secret.value, b"nonce", 0, 12
    )
