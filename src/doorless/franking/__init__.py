"""Message franking: verifiable, recipient-initiated abuse reports (invariant I7).

The construction follows the MIMI protocol draft (§Message Franking, §Report abuse) over the
MLS ``authenticated_data`` as Safe AAD (draft-ietf-mls-extensions §4.9), with the changes listed
in ``docs/franking.md``. In short::

    application_data   = encode(FrankedContent)          # inside the MLS PrivateMessage
    franking_tag       = HMAC-SHA256(key=salt, msg=application_data)     # salt: 16 bytes
    authenticated_data = encode(FrankingAAD)             # SafeAAD with frank_aad (0x0020) = tag
    context            = {sender, group_id, accepted_at_ms, server_seq, key_id}
    server_frank       = HMAC-SHA256(franking_key[key_id], franking_tag || encode(context))
    signature          = SignWithLabel(server_sk, "Doorless FrankingIntegrityTBS",
                                       {franking_tag, server_frank, suite, context})

The sender computes the tag; the server, which authenticates the sending device and sees only
the tag, stamps the message (`stamp`); every receiver checks the content against the tag, the
MLS sender and group, and the server's signature (`verify_received`) and hides the message if
any check fails; a receiver reports a message by revealing its ``application_data`` and frank
(`make_report`); the server recomputes the tag and its own HMAC (`verify_report`).

Everything here is pure: no I/O, no clock, no randomness. Times (milliseconds since the Unix
epoch), salts, keys and nonces are parameters. Rule ids (FRANK-n) are described in
``docs/franking.md``.

The parts, each in its module (import from here, `doorless.franking`, not from them):

==============  ===========================================================================
constants       sizes, the frank_aad component id, the signature label and default suite
errors          one error per check (FRANK-1 .. FRANK-8)
structures      the wire structures (FrankedContent, FrankingAAD, ServerFrank, AbuseReport)
sender          the franking tag and the MLS AAD of an outgoing message
keyring         the server's HMAC keys: rotation, retention, the key for a report
stamp           the server frank and its integrity signature
receiver        a receiver's check of a delivered message
attachments     sealing and opening committed attachments (FRANK-8)
report          making a report (recipient) and verifying it (server)
decoders        DECODERS, for property tests and tooling
==============  ===========================================================================
"""

from doorless.franking.attachments import open_attachment, seal_attachment
from doorless.franking.constants import (
    ATTACHMENT_KEY_LENGTH,
    ATTACHMENT_NONCE_LENGTH,
    DEFAULT_SIGNATURE_SUITE,
    FRANK_AAD_COMPONENT_ID,
    FRANKED_CONTENT_VERSION,
    FRANKING_INTEGRITY_LABEL,
    FRANKING_KEY_LENGTH,
    SALT_LENGTH,
    SHA256_LENGTH,
    TAG_LENGTH,
)
from doorless.franking.decoders import DECODERS
from doorless.franking.errors import (
    AttachmentMismatch,
    FrankingTagMismatch,
    FrankSuiteMismatch,
    GroupMismatch,
    InvalidFrankSignature,
    InvalidSalt,
    ReportExpired,
    SenderMismatch,
    ServerFrankMismatch,
    UnknownFrankingKey,
)
from doorless.franking.keyring import FrankingKey, FrankingKeyring, FrankingKeySecret
from doorless.franking.receiver import verify_received
from doorless.franking.report import ReceivedFrank, VerifiedReport, make_report, verify_report
from doorless.franking.sender import (
    FrankedMessage,
    frank_content,
    franking_tag,
    franking_tag_from_aad,
)
from doorless.franking.stamp import stamp
from doorless.franking.structures import (
    AbuseReport,
    AttachmentDescriptor,
    FrankedContent,
    FrankingAAD,
    FrankingIntegrityTBS,
    ReportReason,
    SafeAADItem,
    SenderIdentity,
    ServerFrank,
    ServerFrankingContext,
)

__all__ = [
    "ATTACHMENT_KEY_LENGTH",
    "ATTACHMENT_NONCE_LENGTH",
    "DECODERS",
    "DEFAULT_SIGNATURE_SUITE",
    "FRANKED_CONTENT_VERSION",
    "FRANKING_INTEGRITY_LABEL",
    "FRANKING_KEY_LENGTH",
    "FRANK_AAD_COMPONENT_ID",
    "SALT_LENGTH",
    "SHA256_LENGTH",
    "TAG_LENGTH",
    "AbuseReport",
    "AttachmentDescriptor",
    "AttachmentMismatch",
    "FrankSuiteMismatch",
    "FrankedContent",
    "FrankedMessage",
    "FrankingAAD",
    "FrankingIntegrityTBS",
    "FrankingKey",
    "FrankingKeySecret",
    "FrankingKeyring",
    "FrankingTagMismatch",
    "GroupMismatch",
    "InvalidFrankSignature",
    "InvalidSalt",
    "ReceivedFrank",
    "ReportExpired",
    "ReportReason",
    "SafeAADItem",
    "SenderIdentity",
    "SenderMismatch",
    "ServerFrank",
    "ServerFrankMismatch",
    "ServerFrankingContext",
    "UnknownFrankingKey",
    "VerifiedReport",
    "frank_content",
    "franking_tag",
    "franking_tag_from_aad",
    "make_report",
    "open_attachment",
    "seal_attachment",
    "stamp",
    "verify_received",
    "verify_report",
]
