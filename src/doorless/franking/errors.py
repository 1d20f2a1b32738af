"""The franking errors, one per check (rule ids FRANK-1 .. FRANK-8, ``docs/franking.md`` §2).

Every check a receiver or the server makes raises one of these (or `DecodeError` for bytes that
do not parse). A receiver hides a message on any `doorless.errors.RemoteError` from
`doorless.franking.verify_received` and counts it by the error's type. All of them sit in the
one tree of `doorless.errors`.
"""

from __future__ import annotations

from doorless.errors import InvalidMac, InvalidSignature, ValidationError
from doorless.franking.constants import SALT_LENGTH


class InvalidSalt(ValidationError):
    """FRANK-1: the salt is not exactly 16 bytes."""

    def __init__(self, length: int) -> None:
        super().__init__(f"franking salt has {length} bytes, not {SALT_LENGTH}", rule="FRANK-1")


class FrankingTagMismatch(InvalidMac):
    """FRANK-2: the franking tag in the AAD is not the HMAC of the content under its salt."""


class SenderMismatch(ValidationError):
    """FRANK-3: the sender named in the content is not the MLS-authenticated sender."""


class GroupMismatch(ValidationError):
    """FRANK-4: the group named in the content is not the group the message arrived in."""


class FrankSuiteMismatch(ValidationError):
    """FRANK-5: the frank is signed with another cipher suite than the pinned server key."""


class InvalidFrankSignature(InvalidSignature):
    """FRANK-5: the server's franking integrity signature does not verify."""


class ServerFrankMismatch(InvalidMac):
    """FRANK-6: the server frank in a report is not the server's HMAC (a forged report)."""


class UnknownFrankingKey(ValidationError):
    """FRANK-7: a report names a franking key this server never had (forged or foreign)."""


class ReportExpired(ValidationError):
    """FRANK-7: the franking key of a report was deleted; the report can no longer be verified."""


class AttachmentMismatch(ValidationError):
    """FRANK-8: an attachment does not match the hashes and size committed in the content."""
