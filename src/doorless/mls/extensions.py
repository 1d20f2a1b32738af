"""Extensions (RFC 9420 §7.2, §13.4) and the typed payloads of the default extension types.

::

    // See the "MLS Extension Types" IANA registry for values
    uint16 ExtensionType;

    struct {
        ExtensionType extension_type;
        opaque extension_data<V>;
    } Extension;

Unknown extension types are kept as plain ints (clients MUST ignore unknown extensions,
RFC 9420 §13.4). A list of extensions never holds two of one type (§13.4): `pull_extensions`
rejects such a list as malformed, and `check_unique_extensions` lets builders check theirs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar, Self, TypeVar

from doorless.codec import (
    Reader,
    Writer,
    decode,
    encode,
    pull_uint16_item,
    push_struct,
    push_uint16_item,
)
from doorless.errors import DecodeError, ValidationError
from doorless.mls.credential import Credential, pull_credential


class ExtensionType(IntEnum):
    """RFC 9420 §17.3 "MLS Extension Types" (default types)."""

    application_id = 1
    ratchet_tree = 2
    required_capabilities = 3
    external_pub = 4
    external_senders = 5


DEFAULT_EXTENSION_TYPES = frozenset(int(t) for t in ExtensionType)


def extension_type_of(value: int) -> ExtensionType | int:
    """A known `ExtensionType`, or the raw int (unknown types are kept, RFC 9420 §13.4)."""
    try:
        return ExtensionType(value)
    except ValueError:
        return value


@dataclass(frozen=True, slots=True)
class Extension:
    """``struct { ExtensionType extension_type; opaque extension_data<V>; } Extension;``"""

    extension_type: ExtensionType | int
    extension_data: bytes

    def push(self, w: Writer) -> None:
        w.push_uint16(self.extension_type)
        w.push_opaque(self.extension_data)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        extension_type = extension_type_of(r.pull_uint16())
        return cls(extension_type, r.pull_opaque())


def pull_extensions(r: Reader) -> tuple[Extension, ...]:
    """``Extension extensions<V>``, rejecting duplicate types (RFC 9420 §13.4)."""
    items = tuple(r.pull_vector(Extension.pull))
    if len({e.extension_type for e in items}) != len(items):
        raise DecodeError("extension list has two extensions of one type [RFC9420 13.4]")
    return items


def push_extensions(w: Writer, extensions: Sequence[Extension]) -> None:
    w.push_vector(extensions, push_struct)


def check_unique_extensions(extensions: Iterable[Extension]) -> None:
    """Raise `ValidationError` if two extensions share a type (RFC 9420 §13.4)."""
    seen: set[int] = set()
    for e in extensions:
        if e.extension_type in seen:
            raise ValidationError(
                f"duplicate extension type {int(e.extension_type)}", rule="RFC9420 13.4"
            )
        seen.add(e.extension_type)


def find_extension(
    extensions: Iterable[Extension], extension_type: ExtensionType | int
) -> Extension | None:
    """The extension of ``extension_type`` in ``extensions``, if any."""
    for e in extensions:
        if e.extension_type == extension_type:
            return e
    return None


# --- typed payloads of the default extensions --------------------------------------------


@dataclass(frozen=True, slots=True)
class ApplicationId:
    """``opaque application_id<V>;`` (RFC 9420 §5.3.3)."""

    application_id: bytes

    extension_type: ClassVar[ExtensionType] = ExtensionType.application_id

    def push(self, w: Writer) -> None:
        w.push_opaque(self.application_id)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        return cls(r.pull_opaque())


@dataclass(frozen=True, slots=True)
class RequiredCapabilities:
    """RFC 9420 §11.1::

    struct {
        ExtensionType extension_types<V>;
        ProposalType proposal_types<V>;
        CredentialType credential_types<V>;
    } RequiredCapabilities;

    Values are kept as raw ints (unknown values are legal here).
    """

    extension_types: tuple[int, ...]
    proposal_types: tuple[int, ...]
    credential_types: tuple[int, ...]

    extension_type: ClassVar[ExtensionType] = ExtensionType.required_capabilities

    def push(self, w: Writer) -> None:
        w.push_vector(self.extension_types, push_uint16_item)
        w.push_vector(self.proposal_types, push_uint16_item)
        w.push_vector(self.credential_types, push_uint16_item)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        return cls(
            tuple(r.pull_vector(pull_uint16_item)),
            tuple(r.pull_vector(pull_uint16_item)),
            tuple(r.pull_vector(pull_uint16_item)),
        )


@dataclass(frozen=True, slots=True)
class ExternalPub:
    """``struct { HPKEPublicKey external_pub; } ExternalPub;`` (RFC 9420 §12.4.3.2)."""

    external_pub: bytes

    extension_type: ClassVar[ExtensionType] = ExtensionType.external_pub

    def push(self, w: Writer) -> None:
        w.push_opaque(self.external_pub)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        return cls(r.pull_opaque())


@dataclass(frozen=True, slots=True)
class ExternalSender:
    """RFC 9420 §12.1.8.1::

    struct {
      SignaturePublicKey signature_key;
      Credential credential;
    } ExternalSender;
    """

    signature_key: bytes
    credential: Credential

    def push(self, w: Writer) -> None:
        w.push_opaque(self.signature_key)
        self.credential.push(w)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        return cls(r.pull_opaque(), pull_credential(r))


@dataclass(frozen=True, slots=True)
class ExternalSenders:
    """``ExternalSender external_senders<V>;`` (RFC 9420 §12.1.8.1)."""

    external_senders: tuple[ExternalSender, ...]

    extension_type: ClassVar[ExtensionType] = ExtensionType.external_senders

    def push(self, w: Writer) -> None:
        w.push_vector(self.external_senders, push_struct)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        return cls(tuple(r.pull_vector(ExternalSender.pull)))


ExtensionPayload = ApplicationId | RequiredCapabilities | ExternalPub | ExternalSenders
P = TypeVar("P", ApplicationId, RequiredCapabilities, ExternalPub, ExternalSenders)


def make_extension(payload: ExtensionPayload) -> Extension:
    """Wrap a typed payload as an `Extension`."""
    return Extension(payload.extension_type, encode(payload))


def parse_extension(extensions: Iterable[Extension], payload_type: type[P]) -> P | None:
    """Find and decode the extension of ``payload_type``; `DecodeError` if its data is bad.

    (The ``ratchet_tree`` extension is decoded by `doorless.mls.nodes.decode_ratchet_tree`.)
    """
    e = find_extension(extensions, payload_type.extension_type)
    if e is None:
        return None
    return decode(payload_type, e.extension_data)
