"""The MIMI content container (draft-ietf-mimi-content-08) as frozen dataclasses.

The CDDL (draft appendix B, ``mimiContent``) maps to these types:

===========================  =======================================================
CDDL                         Python
===========================  =======================================================
``mimiContent``              `MimiContent`
``Expiration``               `Expiration`
``extensions``               `MimiContent.sender_uri`, `.room_uri`, `.extensions`
``NestedPart``               `NestedPart` (disposition, language, `part`)
``NullPart``                 `NullPart`
``SinglePart``               `SinglePart`
``ExternalPart``             `ExternalPart`
``MultiPart``                `MultiPart`
``baseDispos``               `Disposition`
``cardinality``              `Cardinality`
``partSemantics``            `PartSemantics`
===========================  =======================================================

Every constructor checks its CDDL rule and the draft's limits, so an invalid value cannot
exist: a violation raises `ValidationError` whose ``rule`` names the draft section. The
decoder builds the objects through these constructors, so decoded input gets the same checks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from doorless.content._cbor import (
    MAX_SAFE_INT,
    check_data_model,
    decode_document,
    encode_item,
    frozen_within,
    require_deterministic,
)
from doorless.errors import DecodeError, ValidationError

# Limits. Draft section 6.3 (depth) and 9.1 (parts, topicId); sizes are local policy.
MAX_NESTING_DEPTH = 4
"""NestedParts MUST NOT be nested more than 4 levels deep (draft 6.3); the body is level 1."""
MAX_PARTS = 1024
"""More than 1024 body parts is malicious (draft 9.1)."""
MAX_TOPIC_ID = 4096
"""A topicId longer than 4096 octets is malicious (draft 9.1)."""
MAX_EXTENSION_DEPTH = 4
"""Extensions MUST NOT nest tags, maps or arrays more than 4 levels deep; the map is level 1."""
MAX_EXTENSION_VALUE = 4095
"""``value = any .size (0..4095)``: the encoded size of one extension value (draft 4.3)."""
MAX_EXTENSION_NAME = 255
"""``name = int / tstr .size (1..255)`` (draft 4.3)."""
MAX_CONTENT_SIZE = 1 << 20
"""Local policy (draft 9.1 "too large"): the largest encoded content `decode` accepts."""
MAX_EXTENSIONS = 1024
"""Local policy (the draft sets no number): the most extensions one container may carry."""

SALT_SIZE = 16
MESSAGE_ID_SIZE = 32
HASH_ALG_SHA256 = 1
"""IANA Named Information hash algorithm identifier of SHA-256 (draft 3.3)."""

_U8 = 2**8 - 1
_U16 = 2**16 - 1
_U32 = 2**32 - 1
_U64 = 2**64 - 1

SENDER_URI_KEY = 1
ROOM_URI_KEY = 2


class Disposition(IntEnum):
    """``baseDispos`` (draft 4.4); values 9..255 are unknown and kept as plain ints."""

    UNSPECIFIED = 0
    RENDER = 1
    REACTION = 2
    PROFILE = 3
    INLINE = 4
    ICON = 5
    ATTACHMENT = 6
    SESSION = 7
    PREVIEW = 8


class Cardinality(IntEnum):
    """The ``cardinality`` that selects the part kind (draft 4.4)."""

    NULLPART = 0
    SINGLE = 1
    EXTERNAL = 2
    MULTI = 3


class PartSemantics(IntEnum):
    """``partSemantics`` of a `MultiPart` (draft 4.4); an unknown value is rejected (draft 9.1)."""

    CHOOSE_ONE = 0
    SINGLE_UNIT = 1
    PROCESS_ALL = 2


def _fail(message: str, rule: str) -> ValidationError:
    return ValidationError(message, rule=f"draft-ietf-mimi-content-08 {rule}")


def _uint(value: object, limit: int, name: str, rule: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(f"{name} must be an unsigned integer", rule)
    if not 0 <= value <= limit:
        raise _fail(f"{name} is out of range 0..{limit}", rule)
    return value


def _bstr(value: object, name: str, rule: str, size: int | None = None) -> bytes:
    if not isinstance(value, bytes):
        raise _fail(f"{name} must be a byte string", rule)
    if size is not None and len(value) != size:
        raise _fail(f"{name} must be {size} octets", rule)
    return value


def _tstr(value: object, name: str, rule: str) -> str:
    if not isinstance(value, str):
        raise _fail(f"{name} must be a text string", rule)
    return value


def _opt_message_id(value: object, name: str) -> bytes | None:
    if value is None:
        return None
    return _bstr(value, name, "4.1 (MessageId)", MESSAGE_ID_SIZE)


@dataclass(frozen=True, slots=True)
class Expiration:
    """``Expiration = [relative: bool, time: uint .size 4]`` (draft 4.1)."""

    relative: bool
    time: int

    def __post_init__(self) -> None:
        if not isinstance(self.relative, bool):
            raise _fail("Expiration.relative must be a bool", "4.1 (Expiration)")
        _uint(self.time, _U32, "Expiration.time", "4.1 (Expiration)")


@dataclass(frozen=True, slots=True)
class NullPart:
    """``NullPart = (cardinality: nullpart)``: a body with no content (delete, unlike)."""

    cardinality = Cardinality.NULLPART


@dataclass(frozen=True, slots=True)
class SinglePart:
    """``SinglePart = (cardinality: single, contentType: tstr, content: bstr)``."""

    content_type: str
    content: bytes

    cardinality = Cardinality.SINGLE

    def __post_init__(self) -> None:
        _tstr(self.content_type, "contentType", "4.4 (SinglePart)")
        _bstr(self.content, "content", "4.4 (SinglePart)")


@dataclass(frozen=True, slots=True)
class ExternalPart:
    """``ExternalPart`` (draft 4.5): content at a URL, with its AEAD key, nonce and hash.

    `key` is the file key: it never appears in the repr.
    """

    content_type: str
    url: str
    expires: int
    size: int
    enc_alg: int
    key: bytes = field(repr=False)
    nonce: bytes
    aad: bytes
    hash_alg: int
    content_hash: bytes
    description: str
    filename: str

    cardinality = Cardinality.EXTERNAL

    def __post_init__(self) -> None:
        rule = "4.5 (ExternalPart)"
        _tstr(self.content_type, "contentType", rule)
        _tstr(self.url, "url", rule)
        _uint(self.expires, _U32, "expires", rule)
        _uint(self.size, _U64, "size", rule)
        _uint(self.enc_alg, _U16, "encAlg", rule)
        _bstr(self.key, "key", rule)
        _bstr(self.nonce, "nonce", rule)
        _bstr(self.aad, "aad", rule)
        _uint(self.hash_alg, _U8, "hashAlg", rule)
        _bstr(self.content_hash, "contentHash", rule)
        _tstr(self.description, "description", rule)
        _tstr(self.filename, "filename", rule)
        if self.enc_alg == 0 and (self.key or self.nonce or self.aad):
            raise _fail("encAlg 0 requires empty key, nonce and aad", rule)


@dataclass(frozen=True, slots=True)
class MultiPart:
    """``MultiPart = (cardinality: multi, partSemantics, parts: [2* NestedPart])``."""

    semantics: PartSemantics
    parts: tuple[NestedPart, ...]

    cardinality = Cardinality.MULTI

    def __post_init__(self) -> None:
        rule = "4.4 (MultiPart)"
        if isinstance(self.semantics, bool) or not isinstance(self.semantics, int):
            raise _fail("partSemantics must be an integer", rule)
        if self.semantics not in PartSemantics.__members__.values():
            raise _fail(f"unknown partSemantics {self.semantics}", "9.1")
        object.__setattr__(self, "semantics", PartSemantics(self.semantics))
        if not isinstance(self.parts, tuple) or not all(
            isinstance(p, NestedPart) for p in self.parts
        ):
            raise _fail("parts must be a tuple of NestedPart", rule)
        if len(self.parts) < 2:
            raise _fail("a MultiPart has at least 2 parts", rule)


Part = NullPart | SinglePart | ExternalPart | MultiPart


@dataclass(frozen=True, slots=True)
class NestedPart:
    """``NestedPart = [disposition, language, (NullPart // SinglePart // ...)]`` (draft 4.4).

    `disposition` is a `Disposition` or, for an unknown value 9..255, a plain int; use
    `effective_disposition`, which treats unknown values as render (draft 9.1).
    """

    disposition: Disposition | int
    language: str
    part: Part

    def __post_init__(self) -> None:
        rule = "4.4 (NestedPart)"
        value = _uint(self.disposition, _U8, "disposition", rule)
        if value in Disposition.__members__.values():
            object.__setattr__(self, "disposition", Disposition(value))
        _tstr(self.language, "language", rule)
        if not isinstance(self.part, NullPart | SinglePart | ExternalPart | MultiPart):
            raise _fail("part must be a NullPart, SinglePart, ExternalPart or MultiPart", rule)
        if self.depth() > MAX_NESTING_DEPTH:
            raise _fail(f"parts nested more than {MAX_NESTING_DEPTH} levels deep", "6.3")
        if self.count() > MAX_PARTS:
            raise _fail(f"more than {MAX_PARTS} body parts", "9.1")

    @property
    def effective_disposition(self) -> Disposition:
        """The disposition to act on: an unknown value is treated as render (draft 9.1)."""
        if isinstance(self.disposition, Disposition):
            return self.disposition
        return Disposition.RENDER

    def depth(self) -> int:
        """Nesting levels: 1 for a leaf part, 1 + the deepest child for a MultiPart."""
        if isinstance(self.part, MultiPart):
            return 1 + max(p.depth() for p in self.part.parts)
        return 1

    def count(self) -> int:
        """The number of NestedParts here, this one included."""
        if isinstance(self.part, MultiPart):
            return 1 + sum(p.count() for p in self.part.parts)
        return 1

    def walk(self) -> tuple[NestedPart, ...]:
        """All parts depth first; a part's position is its partIndex (draft 4.4)."""
        if isinstance(self.part, MultiPart):
            return (self, *(q for p in self.part.parts for q in p.walk()))
        return (self,)


ExtensionKey = int | str


def _check_extension(key: object, value: object) -> None:
    rule = "4.3 (extensions)"
    if isinstance(key, bool) or not isinstance(key, int | str):
        raise _fail("an extension key is an int or a text string", rule)
    if isinstance(key, int) and not -MAX_SAFE_INT <= key <= MAX_SAFE_INT:
        raise _fail("an integer extension key must fit +-(2^53-1)", "6.2")
    if isinstance(key, str) and not 1 <= len(key.encode()) <= MAX_EXTENSION_NAME:
        raise _fail(f"a text extension key has 1..{MAX_EXTENSION_NAME} octets", rule)
    if key in (SENDER_URI_KEY, ROOM_URI_KEY):
        raise _fail("senderUri and roomUri have their own fields", rule)
    check_data_model(value, "extension value")  # draft 6.2; DecodeError like the decoder's
    try:
        encoded = encode_item(value)
    except DecodeError:
        raise _fail("an extension value is not encodable CBOR", rule) from None
    if len(encoded) > MAX_EXTENSION_VALUE:
        raise _fail(f"an extension value exceeds {MAX_EXTENSION_VALUE} octets", rule)
    # The extensions map is level 1, so a value may add at most 3 levels (draft 6.3).
    if not frozen_within(encoded, MAX_EXTENSION_DEPTH - 1)[0]:
        raise _fail(f"an extension nests more than {MAX_EXTENSION_DEPTH} levels", "6.3")


def _key_order(key: ExtensionKey) -> bytes:
    return encode_item(key)


@dataclass(frozen=True, slots=True)
class MimiContent:
    """``mimiContent`` (draft 4.1 and appendix B): the message container.

    `extensions` holds every extension except senderUri (1) and roomUri (2) as
    ``(key, value)`` pairs sorted in deterministic key order; values are CBOR data items as
    `cbor2` decodes them (tuples for arrays, read-only mappings for maps).
    """

    salt: bytes
    replaces: bytes | None
    topic_id: bytes
    expires: Expiration | None
    in_reply_to: bytes | None
    body: NestedPart
    sender_uri: str | None = None
    room_uri: str | None = None
    extensions: tuple[tuple[ExtensionKey, Any], ...] = ()

    def __post_init__(self) -> None:
        rule = "4.1 (mimiContent)"
        _bstr(self.salt, "salt", rule, SALT_SIZE)
        _opt_message_id(self.replaces, "replaces")
        _bstr(self.topic_id, "topicId", rule)
        if len(self.topic_id) > MAX_TOPIC_ID:
            raise _fail(f"topicId longer than {MAX_TOPIC_ID} octets", "9.1")
        if self.expires is not None and not isinstance(self.expires, Expiration):
            raise _fail("expires must be null or an Expiration", rule)
        _opt_message_id(self.in_reply_to, "inReplyTo")
        if not isinstance(self.body, NestedPart):
            raise _fail("the body must be a NestedPart", rule)
        for name, uri in (("senderUri", self.sender_uri), ("roomUri", self.room_uri)):
            if uri is not None:
                _tstr(uri, name, "4.3 (extensions)")
        if not isinstance(self.extensions, tuple):
            raise _fail("extensions must be a tuple of (key, value) pairs", rule)
        keys: set[tuple[type, ExtensionKey]] = set()
        for pair in self.extensions:
            if not isinstance(pair, tuple) or len(pair) != 2:
                raise _fail("extensions must be a tuple of (key, value) pairs", rule)
            _check_extension(*pair)
            typed = (type(pair[0]), pair[0])
            if typed in keys:
                raise _fail("an extension key occurs twice", "4.3 (extensions)")
            keys.add(typed)
        ordered = tuple(sorted(self.extensions, key=lambda kv: _key_order(kv[0])))
        object.__setattr__(self, "extensions", ordered)

    def extension(self, key: ExtensionKey) -> Any:
        """The value of extension `key`, or None if absent."""
        for k, v in self.extensions:
            if type(k) is type(key) and k == key:
                return v
        return None

    def to_cbor(self) -> Any:
        """The CDDL data item (lists and dicts) this container encodes to."""
        ext: dict[ExtensionKey, Any] = {}
        if self.sender_uri is not None:
            ext[SENDER_URI_KEY] = self.sender_uri
        if self.room_uri is not None:
            ext[ROOM_URI_KEY] = self.room_uri
        ext.update(self.extensions)
        expires = None if self.expires is None else [self.expires.relative, self.expires.time]
        return [
            self.salt,
            self.replaces,
            self.topic_id,
            expires,
            self.in_reply_to,
            ext,
            _part_to_cbor(self.body),
        ]

    def encode(self) -> bytes:
        """The deterministic CBOR encoding (draft 6.1)."""
        return encode_item(self.to_cbor())

    def message_id(self, sender_uri: str, room_uri: str) -> bytes:
        """This message's id (draft 3.3) for the given sender and room URIs."""
        return derive_message_id(sender_uri, room_uri, self.encode(), self.salt)


def _part_to_cbor(nested: NestedPart) -> list[Any]:
    head: list[Any] = [int(nested.disposition), nested.language]
    p = nested.part
    if isinstance(p, NullPart):
        return [*head, Cardinality.NULLPART.value]
    if isinstance(p, SinglePart):
        return [*head, Cardinality.SINGLE.value, p.content_type, p.content]
    if isinstance(p, ExternalPart):
        return [
            *head,
            Cardinality.EXTERNAL.value,
            p.content_type,
            p.url,
            p.expires,
            p.size,
            p.enc_alg,
            p.key,
            p.nonce,
            p.aad,
            p.hash_alg,
            p.content_hash,
            p.description,
            p.filename,
        ]
    return [*head, Cardinality.MULTI.value, p.semantics.value, [_part_to_cbor(q) for q in p.parts]]


def derive_message_id(
    sender_uri: str, room_uri: str, content: bytes, salt: bytes, hash_alg: int = HASH_ALG_SHA256
) -> bytes:
    """The message id of draft-ietf-mimi-content-08 section 3.3 ("Message ID").

    ::

        hash_output = hash( senderUriLength || senderUri ||
                            roomUriLength   || roomUri   ||
                            message         || salt )
        messageId = hashAlg || hash_output[0..30]

    The lengths are big-endian uint16 octet counts of the UTF-8 URIs; `content` is the whole
    encoded MIMI content (salt included). Only SHA-256 (hash algorithm 1) is defined.
    """
    if hash_alg != HASH_ALG_SHA256:
        raise _fail(f"unknown message id hash algorithm {hash_alg}", "3.3")
    sender = sender_uri.encode()
    room = room_uri.encode()
    if len(sender) > _U16 or len(room) > _U16:
        raise _fail("a URI longer than 65535 octets has no message id", "3.3")
    _bstr(salt, "salt", "3.3", SALT_SIZE)
    digest = hashlib.sha256(
        len(sender).to_bytes(2, "big")
        + sender
        + len(room).to_bytes(2, "big")
        + room
        + content
        + salt
    ).digest()
    return bytes([hash_alg]) + digest[:31]


# --- decoding ---------------------------------------------------------------------------------

_EXTERNAL_FIELDS = 13


def _parse_part(item: object, depth: int, seen: list[int]) -> NestedPart:
    """Build one NestedPart; `seen` counts parts so far, so a flood stops before it is built."""
    rule = "4.4 (NestedPart)"
    if not isinstance(item, list | tuple):
        raise _fail("a NestedPart must be an array", rule)
    if depth > MAX_NESTING_DEPTH:
        raise _fail(f"parts nested more than {MAX_NESTING_DEPTH} levels deep", "6.3")
    seen[0] += 1
    if seen[0] > MAX_PARTS:
        raise _fail(f"more than {MAX_PARTS} body parts", "9.1")
    if len(item) < 3:
        raise _fail("a NestedPart has disposition, language and cardinality", rule)
    disposition, language, cardinality, *rest = item
    _uint(cardinality, _U8, "cardinality", rule)
    part: Part
    if cardinality == Cardinality.NULLPART:
        if rest:
            raise _fail("a NullPart has no further fields", rule)
        part = NullPart()
    elif cardinality == Cardinality.SINGLE:
        if len(rest) != 2:
            raise _fail("a SinglePart has contentType and content", rule)
        part = SinglePart(content_type=rest[0], content=rest[1])
    elif cardinality == Cardinality.EXTERNAL:
        if len(rest) != _EXTERNAL_FIELDS - 1:
            raise _fail("an ExternalPart has 12 fields after cardinality", "4.5 (ExternalPart)")
        part = ExternalPart(*rest)
    elif cardinality == Cardinality.MULTI:
        if len(rest) != 2:
            raise _fail("a MultiPart has partSemantics and parts", "4.4 (MultiPart)")
        semantics, parts = rest
        if not isinstance(parts, list | tuple):
            raise _fail("MultiPart parts must be an array", "4.4 (MultiPart)")
        part = MultiPart(semantics, tuple(_parse_part(p, depth + 1, seen) for p in parts))
    else:
        raise _fail(f"unknown cardinality {cardinality}", rule)
    return NestedPart(disposition=disposition, language=language, part=part)


def _parse_expiration(item: object) -> Expiration | None:
    if item is None:
        return None
    if not isinstance(item, list | tuple) or len(item) != 2:
        raise _fail("Expiration is [relative, time]", "4.1 (Expiration)")
    return Expiration(relative=item[0], time=item[1])


def _frozen_extension_value(value: object) -> Any:
    """Size and depth limits (in cbor2's C code), and the value frozen for `MimiContent`."""
    encoded = encode_item(value)
    if len(encoded) > MAX_EXTENSION_VALUE:
        raise _fail(f"an extension value exceeds {MAX_EXTENSION_VALUE} octets", "4.3 (extensions)")
    within, frozen = frozen_within(encoded, MAX_EXTENSION_DEPTH - 1)
    if not within:
        raise _fail(f"an extension nests more than {MAX_EXTENSION_DEPTH} levels", "6.3")
    return frozen


def parse(item: object) -> MimiContent:
    """Validate a decoded CBOR data item against the CDDL and build the container."""
    rule = "4.1 (mimiContent)"
    if not isinstance(item, list | tuple):
        raise _fail("mimiContent must be an array", rule)
    if len(item) != 7:
        raise _fail("mimiContent has 7 fields", rule)
    salt, replaces, topic_id, expires, in_reply_to, extensions, body = item
    if not isinstance(extensions, Mapping):
        raise _fail("extensions must be a map", "4.3 (extensions)")
    if len(extensions) > MAX_EXTENSIONS:
        raise _fail(f"more than {MAX_EXTENSIONS} extensions (local policy)", "4.3 (extensions)")
    for key in extensions:  # draft 6.2, before keys are compared (True == 1 in Python)
        if isinstance(key, bool) or not isinstance(key, int | str | bytes):
            raise DecodeError(f"extension key of type {type(key).__name__} (draft 6.2)")
        if isinstance(key, int) and not -MAX_SAFE_INT <= key <= MAX_SAFE_INT:
            raise DecodeError("integer extension key outside +-(2^53-1) (draft 6.2)")
    sender_uri = extensions.get(SENDER_URI_KEY)
    room_uri = extensions.get(ROOM_URI_KEY)
    others = tuple(
        (k, _frozen_extension_value(v))
        for k, v in extensions.items()
        if not (type(k) is int and k in (SENDER_URI_KEY, ROOM_URI_KEY))
    )
    for name, uri in (("senderUri", sender_uri), ("roomUri", room_uri)):
        if uri is not None and not isinstance(uri, str):
            raise _fail(f"{name} must be a text string", "4.3 (extensions)")
    return MimiContent(
        salt=salt,
        replaces=replaces,
        topic_id=topic_id,
        expires=_parse_expiration(expires),
        in_reply_to=in_reply_to,
        body=_parse_part(body, 1, [0]),
        sender_uri=sender_uri,
        room_uri=room_uri,
        extensions=others,
    )


def decode(data: bytes, *, max_size: int = MAX_CONTENT_SIZE) -> MimiContent:
    """Decode and validate ``application/mimi-content``.

    Raises `DecodeError` for bytes that are not one deterministically encoded CBOR item within
    the draft's data model, and `ValidationError` for CBOR that breaks the CDDL or a limit.
    """
    content = parse(decode_document(data, max_size=max_size))
    require_deterministic(data, content.encode())
    return content


# --- derived values (draft 4.6, appendix B "Implied Message Fields") ----------------------------


@dataclass(frozen=True, slots=True)
class MessageDerivedValues:
    """``MessageDerivedValues`` (draft 4.6): values a client derives rather than receives.

    Only the ``MsecsSinceEpoch`` form of the hub timestamp is supported; the RFC 9581
    extended-time form (tag 1001) is rejected.
    """

    message_id: bytes
    hub_accepted_timestamp: int
    mls_group_id: bytes
    sender_leaf_index: int
    sender_client_url: str
    sender_user_url: str
    room_url: str

    def __post_init__(self) -> None:
        rule = "4.6 (MessageDerivedValues)"
        _bstr(self.message_id, "messageId", rule, MESSAGE_ID_SIZE)
        _uint(self.hub_accepted_timestamp, _U64, "hubAcceptedTimestamp", rule)
        _bstr(self.mls_group_id, "mlsGroupId", rule)
        _uint(self.sender_leaf_index, _U32, "senderLeafIndex", rule)
        _tstr(self.sender_client_url, "senderClientUrl", rule)
        _tstr(self.sender_user_url, "senderUserUrl", rule)
        _tstr(self.room_url, "roomUrl", rule)

    def encode(self) -> bytes:
        return encode_item(
            [
                self.message_id,
                self.hub_accepted_timestamp,
                self.mls_group_id,
                self.sender_leaf_index,
                self.sender_client_url,
                self.sender_user_url,
                self.room_url,
            ]
        )


def decode_derived(data: bytes, *, max_size: int = MAX_CONTENT_SIZE) -> MessageDerivedValues:
    """Decode and validate an encoded ``MessageDerivedValues``."""
    item = decode_document(data, max_size=max_size)
    if not isinstance(item, list | tuple) or len(item) != 7:
        raise _fail("MessageDerivedValues is an array of 7", "4.6 (MessageDerivedValues)")
    derived = MessageDerivedValues(*item)
    require_deterministic(data, derived.encode())
    return derived
