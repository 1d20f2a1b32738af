"""The sender's side (``docs/franking.md`` §1 step 1): the franking tag and the MLS AAD.

Owns `franking_tag` (HMAC-SHA256 keyed by the 16-byte salt, FRANK-1), `frank_content`
(content -> application data, tag and `FrankingAAD`) and `franking_tag_from_aad` (what the
server reads from the clear AAD). The salt is a parameter: the caller draws it at random.
"""

from __future__ import annotations

from dataclasses import dataclass

from doorless.codec import decode, encode
from doorless.errors import ConfigurationError
from doorless.franking.constants import SALT_LENGTH, SHA256_SUITE
from doorless.franking.errors import InvalidSalt
from doorless.franking.structures import FrankedContent, FrankingAAD, SafeAADItem


def franking_tag(salt: bytes, application_data: bytes) -> bytes:
    """``HMAC-SHA256(key=salt, msg=application_data)``; raises `InvalidSalt` (FRANK-1)."""
    if len(salt) != SALT_LENGTH:
        raise InvalidSalt(len(salt))
    return SHA256_SUITE.mac(salt, application_data)


@dataclass(frozen=True, slots=True, repr=False)
class FrankedMessage:
    """What the sender hands to MLS: the PrivateMessage's application data and AAD."""

    application_data: bytes
    authenticated_data: bytes
    franking_tag: bytes

    def __repr__(self) -> str:
        return (
            f"FrankedMessage(<{len(self.application_data)} bytes>, tag={self.franking_tag.hex()})"
        )


def frank_content(
    content: FrankedContent, other_aad_items: tuple[SafeAADItem, ...] = ()
) -> FrankedMessage:
    """Encode ``content`` and compute its tag and AAD. The salt must be fresh random bytes."""
    if len(content.salt) != SALT_LENGTH:
        raise ConfigurationError(f"the franking salt must be {SALT_LENGTH} bytes")
    application_data = encode(content)
    tag = franking_tag(content.salt, application_data)
    return FrankedMessage(application_data, encode(FrankingAAD(tag, other_aad_items)), tag)


def franking_tag_from_aad(authenticated_data: bytes) -> bytes:
    """The tag of a message's ``authenticated_data``; `DecodeError` if it carries none."""
    return decode(FrankingAAD, authenticated_data).franking_tag
