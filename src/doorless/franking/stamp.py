"""The server stamp (``docs/franking.md`` §1 step 2): the server frank and its signature.

Owns `server_frank_mac` (HMAC-SHA256 under the current franking key over the tag and the
`ServerFrankingContext`) and `stamp`, which signs `FrankingIntegrityTBS` with the server's
franking signature key. The sender identity, clock, sequence number and keys are parameters.
"""

from __future__ import annotations

from doorless.codec import encode
from doorless.crypto import cipher_suite
from doorless.franking.constants import (
    DEFAULT_SIGNATURE_SUITE,
    FRANKING_INTEGRITY_LABEL,
    SHA256_SUITE,
    TAG_LENGTH,
    check_length,
)
from doorless.franking.keyring import FrankingKey, FrankingKeyring
from doorless.franking.structures import (
    FrankingIntegrityTBS,
    SenderIdentity,
    ServerFrank,
    ServerFrankingContext,
)


def server_frank_mac(key: FrankingKey, tag: bytes, context: ServerFrankingContext) -> bytes:
    # The tag has a fixed length, so ``tag || context`` is an unambiguous encoding.
    return SHA256_SUITE.mac(key.key.value, tag + encode(context))


def stamp(
    tag: bytes,
    *,
    sender: SenderIdentity,
    group_id: bytes,
    accepted_at_ms: int,
    server_seq: int,
    keyring: FrankingKeyring,
    signing_key: bytes,
    signature_suite: int = DEFAULT_SIGNATURE_SUITE,
) -> ServerFrank:
    """The server's frank for a message it accepted.

    ``sender`` is the device the server authenticated on the submitting connection (never a
    value read from the message); ``tag`` comes from `franking_tag_from_aad`; ``signing_key``
    is the server's franking signature private key for ``signature_suite``.
    """
    check_length("franking tag", tag, TAG_LENGTH)
    key = keyring.current
    context = ServerFrankingContext(sender, group_id, accepted_at_ms, server_seq, key.key_id)
    server_frank = server_frank_mac(key, tag, context)
    tbs = FrankingIntegrityTBS(tag, server_frank, signature_suite, context)
    signature = cipher_suite(signature_suite).sign_with_label(
        signing_key, FRANKING_INTEGRITY_LABEL, encode(tbs)
    )
    return ServerFrank(
        accepted_at_ms, server_seq, key.key_id, server_frank, signature_suite, signature
    )
