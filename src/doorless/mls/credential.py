"""Credentials (RFC 9420 §5.3).

::

    // See the "MLS Credential Types" IANA registry for values
    uint16 CredentialType;

    struct {
        opaque cert_data<V>;
    } Certificate;

    struct {
        CredentialType credential_type;
        select (Credential.credential_type) {
            case basic:
                opaque identity<V>;

            case x509:
                Certificate certificates<V>;
        };
    } Credential;

Unknown credential types: the ``select`` above has no arm for them, so their body has no
defined length and a ``Credential`` of an unknown type cannot be parsed (an MLS ``Credential``
is never length-prefixed as a whole). Decoding one raises `DecodeError`. Unknown credential
*types* as plain numbers (in ``Capabilities.credentials`` or ``RequiredCapabilities``) are kept
as ints by those structs (RFC 9420 §7.2, §13.3).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar, Self

from doorless.codec import Reader, Writer, pull_opaque_item, push_opaque_item
from doorless.errors import DecodeError


class CredentialType(IntEnum):
    """RFC 9420 §17.5 "MLS Credential Types"."""

    basic = 1
    x509 = 2


def credential_type_of(value: int) -> CredentialType | int:
    """A known `CredentialType`, or the raw int for values we don't know (GREASE, future)."""
    try:
        return CredentialType(value)
    except ValueError:
        return value


@dataclass(frozen=True, slots=True)
class BasicCredential:
    """``case basic: opaque identity<V>;`` (RFC 9420 §5.3)."""

    identity: bytes

    credential_type: ClassVar[CredentialType] = CredentialType.basic

    def push(self, w: Writer) -> None:
        w.push_uint16(CredentialType.basic)
        w.push_opaque(self.identity)

    @classmethod
    def pull_body(cls, r: Reader) -> Self:
        return cls(r.pull_opaque())

    @classmethod
    def pull(cls, r: Reader) -> Self:
        value = pull_credential(r)
        if not isinstance(value, cls):
            raise DecodeError("expected a basic credential")
        return value


@dataclass(frozen=True, slots=True)
class X509Credential:
    """``case x509: Certificate certificates<V>;`` with ``Certificate = {opaque cert_data<V>}``.

    ``certificates[0]`` is the end-entity certificate (DER), RFC 9420 §5.3.
    """

    certificates: tuple[bytes, ...]

    credential_type: ClassVar[CredentialType] = CredentialType.x509

    def push(self, w: Writer) -> None:
        w.push_uint16(CredentialType.x509)
        w.push_vector(self.certificates, push_opaque_item)

    @classmethod
    def pull_body(cls, r: Reader) -> Self:
        return cls(tuple(r.pull_vector(pull_opaque_item)))

    @classmethod
    def pull(cls, r: Reader) -> Self:
        value = pull_credential(r)
        if not isinstance(value, cls):
            raise DecodeError("expected an x509 credential")
        return value


Credential = BasicCredential | X509Credential

_PULL_CREDENTIAL: dict[int, Callable[[Reader], Credential]] = {
    CredentialType.basic: BasicCredential.pull_body,
    CredentialType.x509: X509Credential.pull_body,
}


def pull_credential(r: Reader) -> Credential:
    credential_type = r.pull_uint16()
    pull_body = _PULL_CREDENTIAL.get(credential_type)
    if pull_body is None:
        raise DecodeError(f"unsupported credential type {credential_type}")
    return pull_body(r)


def push_credential(w: Writer, value: Credential) -> None:
    value.push(w)
