"""The receiver's check (``docs/franking.md`` §1 step 3 and §2, FRANK-1 to FRANK-5).

Owns `verify_received`, which a client runs on every decrypted application message before
showing it, and the two checks the server's report verification reuses: `open_content`
(salt length and tag, FRANK-1/2) and `verify_frank_signature` (pinned suite and the server's
integrity signature, FRANK-5).
"""

from __future__ import annotations

from doorless.codec import decode, encode
from doorless.crypto import cipher_suite
from doorless.errors import InvalidSignature
from doorless.franking.constants import DEFAULT_SIGNATURE_SUITE, FRANKING_INTEGRITY_LABEL
from doorless.franking.errors import (
    FrankingTagMismatch,
    FrankSuiteMismatch,
    GroupMismatch,
    InvalidFrankSignature,
    SenderMismatch,
)
from doorless.franking.sender import franking_tag, franking_tag_from_aad
from doorless.franking.structures import (
    FrankedContent,
    FrankingIntegrityTBS,
    SenderIdentity,
    ServerFrank,
    ServerFrankingContext,
)
from doorless.secret import constant_time_equal


def open_content(application_data: bytes, expected_tag: bytes) -> FrankedContent:
    """FRANK-1 and FRANK-2: decode, check the salt length, recompute the tag."""
    content = decode(FrankedContent, application_data)
    tag = franking_tag(content.salt, application_data)
    if not constant_time_equal(tag, expected_tag):
        raise FrankingTagMismatch("franking tag does not match the content [FRANK-2]")
    return content


def verify_frank_signature(
    tag: bytes,
    frank: ServerFrank,
    context: ServerFrankingContext,
    server_public_key: bytes,
    signature_suite: int,
) -> None:
    """FRANK-5: the suite is the pinned one and the integrity signature verifies."""
    if frank.franking_signature_ciphersuite != signature_suite:
        raise FrankSuiteMismatch(
            f"frank signed with suite {frank.franking_signature_ciphersuite}, "
            f"expected {int(signature_suite)}",
            rule="FRANK-5",
        )
    tbs = FrankingIntegrityTBS(
        tag, frank.server_frank, frank.franking_signature_ciphersuite, context
    )
    try:
        cipher_suite(signature_suite).verify_with_label(
            server_public_key,
            FRANKING_INTEGRITY_LABEL,
            encode(tbs),
            frank.franking_integrity_signature,
        )
    except InvalidSignature:
        raise InvalidFrankSignature(
            "the server's franking signature does not verify [FRANK-5]"
        ) from None


def verify_received(
    franked_content: bytes,
    authenticated_data: bytes,
    frank: ServerFrank,
    *,
    server_public_key: bytes,
    mls_sender: SenderIdentity,
    group_id: bytes,
    signature_suite: int = DEFAULT_SIGNATURE_SUITE,
) -> FrankedContent:
    """Check a decrypted application message before it is shown.

    ``franked_content`` is the PrivateMessage's application data, ``authenticated_data`` its
    AAD, ``mls_sender`` the identity of the sender's MLS leaf credential (already verified by
    MLS), ``group_id`` the MLS group the message was decrypted in, ``server_public_key`` the
    pinned franking signature key. Raises `DecodeError`, `InvalidSalt`, `FrankingTagMismatch`,
    `SenderMismatch`, `GroupMismatch`, `FrankSuiteMismatch` or `InvalidFrankSignature`; the
    caller hides the message and counts it. Store the three inputs to report it later.
    """
    tag = franking_tag_from_aad(authenticated_data)
    content = open_content(franked_content, tag)
    if content.sender != mls_sender:
        raise SenderMismatch(
            "the sender named in the content is not the MLS sender", rule="FRANK-3"
        )
    if content.group_id != group_id:
        raise GroupMismatch("the content names another group", rule="FRANK-4")
    context = frank.context(content.sender, content.group_id)
    verify_frank_signature(tag, frank, context, server_public_key, signature_suite)
    return content
