"""Message framing (RFC 9420 §6): senders, content, authentication data, public and private
messages, and the MLSMessage envelope.

Tagged unions (`Sender`, the content of `FramedContent`, the body of `MLSMessage`) are one type
per variant; the tag on the wire is derived from the variant's type, so a struct whose tag and
body disagree cannot be built. Fields whose presence depends on another field
(``confirmation_tag``, ``membership_tag``) are checked in the constructor.

One module of ~800 lines on purpose: these are the structs of one RFC section, whose unions
refer to one another; splitting them would only scatter §6 across files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from functools import cache, lru_cache
from typing import ClassVar, NamedTuple, Self, TypeVar

from doorless.codec import Reader, Writer, decode
from doorless.errors import ConfigurationError, DecodeError
from doorless.mls.group_context import GroupContext, ProtocolVersion, pull_protocol_version
from doorless.mls.key_package import KeyPackage
from doorless.mls.proposals import Commit, Proposal, pull_proposal, push_proposal
from doorless.mls.welcome import GroupInfo, Welcome


class WireFormat(IntEnum):
    """``uint16 WireFormat`` (RFC 9420 §6, IANA registry §17.2)."""

    mls_public_message = 0x0001
    mls_private_message = 0x0002
    mls_welcome = 0x0003
    mls_group_info = 0x0004
    mls_key_package = 0x0005


class ContentType(IntEnum):
    """``enum { reserved(0), application(1), proposal(2), commit(3), (255) } ContentType;``."""

    application = 1
    proposal = 2
    commit = 3


class SenderType(IntEnum):
    """RFC 9420 §6::

    enum { reserved(0), member(1), external(2), new_member_proposal(3),
           new_member_commit(4), (255) } SenderType;
    """

    member = 1
    external = 2
    new_member_proposal = 3
    new_member_commit = 4


E = TypeVar("E", bound=IntEnum)


def _enum_or_decode_error(enum: type[E], value: int) -> E:
    member: E | None = _members(enum).get(value)
    if member is None:
        raise DecodeError(f"unknown {enum.__name__} {value}")
    return member


@cache
def _members(enum: type[E]) -> dict[int, E]:
    # A dict lookup instead of calling the Enum (its __call__ costs microseconds per message).
    return {int(m): m for m in enum}


# --- Sender (§6) ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SenderMember:
    """``case member: uint32 leaf_index;`` — a member of the group, by leaf index."""

    sender_type: ClassVar[SenderType] = SenderType.member

    leaf_index: int

    def push(self, w: Writer) -> None:
        w.push_uint32(self.leaf_index)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        return cls(r.pull_uint32())


@dataclass(frozen=True, slots=True)
class SenderExternal:
    """``case external: uint32 sender_index;`` — an index into the external_senders extension."""

    sender_type: ClassVar[SenderType] = SenderType.external

    sender_index: int

    def push(self, w: Writer) -> None:
        w.push_uint32(self.sender_index)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        return cls(r.pull_uint32())


@dataclass(frozen=True, slots=True)
class SenderNewMemberProposal:
    """``case new_member_proposal: struct{};`` — a non-member proposing to add itself."""

    sender_type: ClassVar[SenderType] = SenderType.new_member_proposal

    def push(self, w: Writer) -> None:
        pass

    @classmethod
    def pull(cls, r: Reader) -> Self:
        return cls()


@dataclass(frozen=True, slots=True)
class SenderNewMemberCommit:
    """``case new_member_commit: struct{};`` — a non-member joining by external commit."""

    sender_type: ClassVar[SenderType] = SenderType.new_member_commit

    def push(self, w: Writer) -> None:
        pass

    @classmethod
    def pull(cls, r: Reader) -> Self:
        return cls()


Sender = SenderMember | SenderExternal | SenderNewMemberProposal | SenderNewMemberCommit

_SENDER_PULL: dict[int, Callable[[Reader], Sender]] = {
    SenderType.member: SenderMember.pull,
    SenderType.external: SenderExternal.pull,
    SenderType.new_member_proposal: SenderNewMemberProposal.pull,
    SenderType.new_member_commit: SenderNewMemberCommit.pull,
}


def pull_sender(r: Reader) -> Sender:
    """RFC 9420 §6::

    struct {
        SenderType sender_type;
        select (Sender.sender_type) {
            case member:
                uint32 leaf_index;
            case external:
                uint32 sender_index;
            case new_member_commit:
            case new_member_proposal:
                struct{};
        };
    } Sender;
    """
    sender_type = r.pull_uint8()
    pull = _SENDER_PULL.get(sender_type)
    if pull is None:
        raise DecodeError(f"unknown sender type {sender_type}")
    return pull(r)


def push_sender(w: Writer, sender: Sender) -> None:
    w.push_uint8(sender.sender_type)
    sender.push(w)


# Senders whose FramedContentTBS includes the GroupContext (§6.1) and whose PublicMessage
# carries a membership tag (§6.2).
_SENDERS_WITH_CONTEXT = frozenset({SenderType.member, SenderType.new_member_commit})
_SENDERS_WITH_MEMBERSHIP_TAG = frozenset({SenderType.member})


# --- content (§6) -----------------------------------------------------------------------------

Content = bytes | Proposal | Commit
"""The ``select (content_type)`` arm of FramedContent and PrivateMessageContent:
``application_data`` (bytes), a `Proposal`, or a `Commit`."""


def content_type_of(content: Content) -> ContentType:
    if isinstance(content, bytes):
        return ContentType.application
    if isinstance(content, Commit):
        return ContentType.commit
    return ContentType.proposal


def _pull_application_data(r: Reader) -> Content:
    return r.pull_opaque()


def _pull_proposal(r: Reader) -> Content:
    return pull_proposal(r)


def _pull_commit(r: Reader) -> Content:
    # Received commits keep their bytes: they are signed and hashed as received.
    return Commit.pull_received(r)


_CONTENT_PULL: dict[ContentType, Callable[[Reader], Content]] = {
    ContentType.application: _pull_application_data,
    ContentType.proposal: _pull_proposal,
    ContentType.commit: _pull_commit,
}


def pull_content(r: Reader, content_type: ContentType) -> Content:
    return _CONTENT_PULL[content_type](r)


def push_content(w: Writer, content: Content) -> None:
    if isinstance(content, bytes):
        w.push_opaque(content)
    elif isinstance(content, Commit):
        content.push(w)
    else:
        push_proposal(w, content)


def _pull_content_type(r: Reader) -> ContentType:
    return _enum_or_decode_error(ContentType, r.pull_uint8())


@dataclass(frozen=True, slots=True)
class FramedContent:
    """RFC 9420 §6::

    struct {
        opaque group_id<V>;
        uint64 epoch;
        Sender sender;
        opaque authenticated_data<V>;

        ContentType content_type;
        select (FramedContent.content_type) {
            case application:
              opaque application_data<V>;
            case proposal:
              Proposal proposal;
            case commit:
              Commit commit;
        };
    } FramedContent;

    ``content_type`` is derived from the type of ``content``.
    """

    group_id: bytes
    epoch: int
    sender: Sender
    authenticated_data: bytes
    content: Content

    @property
    def content_type(self) -> ContentType:
        return content_type_of(self.content)

    def push(self, w: Writer) -> None:
        w.push_opaque(self.group_id)
        w.push_uint64(self.epoch)
        push_sender(w, self.sender)
        w.push_opaque(self.authenticated_data)
        w.push_uint8(self.content_type)
        push_content(w, self.content)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        group_id = r.pull_opaque()
        epoch = r.pull_uint64()
        sender = pull_sender(r)
        authenticated_data = r.pull_opaque()
        content = pull_content(r, _pull_content_type(r))
        return cls(group_id, epoch, sender, authenticated_data, content)


def framed_content_tbs(
    wire_format: WireFormat, content: FramedContent, group_context: GroupContext | None
) -> bytes:
    """RFC 9420 §6.1, the content that FramedContentAuthData.signature signs::

    struct {
        ProtocolVersion version = mls10;
        WireFormat wire_format;
        FramedContent content;
        select (FramedContentTBS.content.sender.sender_type) {
            case member:
            case new_member_commit:
                GroupContext context;
            case external:
            case new_member_proposal:
                struct{};
        };
    } FramedContentTBS;

    ``group_context`` must be given exactly when the sender is a member or a new_member_commit.
    """
    needs_context = content.sender.sender_type in _SENDERS_WITH_CONTEXT
    if needs_context != (group_context is not None):
        raise ConfigurationError(
            f"FramedContentTBS for a {content.sender.sender_type.name} sender "
            + ("needs" if needs_context else "takes no")
            + " GroupContext"
        )
    w = Writer()
    w.push_uint16(ProtocolVersion.mls10)
    w.push_uint16(wire_format)
    content.push(w)
    if group_context is not None:
        w.push_bytes(encoded_group_context(group_context))
    return w.getvalue()


@lru_cache(maxsize=16)
def encoded_group_context(group_context: GroupContext) -> bytes:
    """The encoded GroupContext (§8.1), memoized: every message of an epoch signs over it."""
    w = Writer()
    group_context.push(w)
    return w.getvalue()


# --- authentication data (§6.1) ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FramedContentAuthData:
    """RFC 9420 §6.1::

    struct {
        /* SignWithLabel(., "FramedContentTBS", FramedContentTBS) */
        opaque signature<V>;
        select (FramedContent.content_type) {
            case commit:
                /* MAC(confirmation_key, GroupContext.confirmed_transcript_hash) */
                MAC confirmation_tag;
            case application:
            case proposal:
                struct{};
        };
    } FramedContentAuthData;

    ``confirmation_tag`` is None exactly when the content is not a commit; decoding therefore
    needs the content type from outside.
    """

    signature: bytes
    confirmation_tag: bytes | None = None

    def check_content_type(self, content_type: ContentType) -> None:
        """Raise `ConfigurationError` if the tag's presence does not fit ``content_type``."""
        if (content_type == ContentType.commit) != (self.confirmation_tag is not None):
            raise ConfigurationError(
                "confirmation_tag must be present exactly for commit content (RFC 9420 §6.1)"
            )

    def push(self, w: Writer) -> None:
        w.push_opaque(self.signature)
        if self.confirmation_tag is not None:
            w.push_opaque(self.confirmation_tag)

    @classmethod
    def pull(cls, r: Reader, content_type: ContentType) -> Self:
        signature = r.pull_opaque()
        if content_type == ContentType.commit:
            return cls(signature, r.pull_opaque())
        return cls(signature)


def _pull_wire_format(r: Reader) -> WireFormat:
    return _enum_or_decode_error(WireFormat, r.pull_uint16())


@dataclass(frozen=True, slots=True)
class AuthenticatedContent:
    """RFC 9420 §6::

    struct {
        WireFormat wire_format;
        FramedContent content;
        FramedContentAuthData auth;
    } AuthenticatedContent;
    """

    wire_format: WireFormat
    content: FramedContent
    auth: FramedContentAuthData

    def __post_init__(self) -> None:
        self.auth.check_content_type(self.content.content_type)

    def tbs(self, group_context: GroupContext | None) -> bytes:
        """The encoded FramedContentTBS of this content (see `framed_content_tbs`)."""
        return framed_content_tbs(self.wire_format, self.content, group_context)

    def push(self, w: Writer) -> None:
        w.push_uint16(self.wire_format)
        self.content.push(w)
        self.auth.push(w)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        wire_format = _pull_wire_format(r)
        content = FramedContent.pull(r)
        return cls(wire_format, content, FramedContentAuthData.pull(r, content.content_type))


def authenticated_content_tbm(content_tbs: bytes, auth: FramedContentAuthData) -> bytes:
    """RFC 9420 §6.2, the input of the membership tag MAC::

    struct {
      FramedContentTBS content_tbs;
      FramedContentAuthData auth;
    } AuthenticatedContentTBM;
    """
    w = Writer()
    w.push_bytes(content_tbs)
    auth.push(w)
    return w.getvalue()


# --- PublicMessage (§6.2) ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PublicMessage:
    """RFC 9420 §6.2::

    struct {
        FramedContent content;
        FramedContentAuthData auth;
        select (PublicMessage.content.sender.sender_type) {
            case member:
                MAC membership_tag;
            case external:
            case new_member_commit:
            case new_member_proposal:
                struct{};
        };
    } PublicMessage;
    """

    content: FramedContent
    auth: FramedContentAuthData
    membership_tag: bytes | None = None

    def __post_init__(self) -> None:
        self.auth.check_content_type(self.content.content_type)
        needs_tag = self.content.sender.sender_type in _SENDERS_WITH_MEMBERSHIP_TAG
        if needs_tag != (self.membership_tag is not None):
            raise ConfigurationError(
                "membership_tag must be present exactly for member senders (RFC 9420 §6.2)"
            )

    def authenticated_content(self) -> AuthenticatedContent:
        return AuthenticatedContent(WireFormat.mls_public_message, self.content, self.auth)

    def push(self, w: Writer) -> None:
        self.content.push(w)
        self.auth.push(w)
        if self.membership_tag is not None:
            w.push_opaque(self.membership_tag)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        content = FramedContent.pull(r)
        auth = FramedContentAuthData.pull(r, content.content_type)
        membership_tag = (
            r.pull_opaque() if content.sender.sender_type in _SENDERS_WITH_MEMBERSHIP_TAG else None
        )
        return cls(content, auth, membership_tag)


# --- PrivateMessage (§6.3) --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PrivateMessage:
    """RFC 9420 §6.3::

    struct {
        opaque group_id<V>;
        uint64 epoch;
        ContentType content_type;
        opaque authenticated_data<V>;
        opaque encrypted_sender_data<V>;
        opaque ciphertext<V>;
    } PrivateMessage;
    """

    group_id: bytes
    epoch: int
    content_type: ContentType
    authenticated_data: bytes
    encrypted_sender_data: bytes
    ciphertext: bytes

    def push(self, w: Writer) -> None:
        w.push_opaque(self.group_id)
        w.push_uint64(self.epoch)
        w.push_uint8(self.content_type)
        w.push_opaque(self.authenticated_data)
        w.push_opaque(self.encrypted_sender_data)
        w.push_opaque(self.ciphertext)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        return cls(
            group_id=r.pull_opaque(),
            epoch=r.pull_uint64(),
            content_type=_pull_content_type(r),
            authenticated_data=r.pull_opaque(),
            encrypted_sender_data=r.pull_opaque(),
            ciphertext=r.pull_opaque(),
        )


@dataclass(frozen=True, slots=True)
class PrivateMessageContent:
    """RFC 9420 §6.3.1::

    struct {
        select (PrivateMessage.content_type) {
            case application:
              opaque application_data<V>;
            case proposal:
              Proposal proposal;
            case commit:
              Commit commit;
        };
        FramedContentAuthData auth;
        opaque padding[length_of_padding];
    } PrivateMessageContent;

    ``padding`` is the number of zero octets after ``auth``. The content type is not encoded
    here (it is in the PrivateMessage), so `pull`/`decode` take it as an argument, and the
    padding runs to the end of the plaintext, so `pull` consumes everything left.
    """

    content: Content
    auth: FramedContentAuthData
    padding: int = 0

    def __post_init__(self) -> None:
        self.auth.check_content_type(self.content_type)
        if self.padding < 0:
            raise ConfigurationError("padding length must not be negative")

    @property
    def content_type(self) -> ContentType:
        return content_type_of(self.content)

    def push(self, w: Writer) -> None:
        push_content(w, self.content)
        self.auth.push(w)
        w.push_bytes(bytes(self.padding))

    def encode(self) -> bytes:
        """The plaintext to encrypt (not a `codec.Struct`: its `pull` needs the content type)."""
        w = Writer()
        self.push(w)
        return w.getvalue()

    @classmethod
    def pull(cls, r: Reader, content_type: ContentType) -> Self:
        content = pull_content(r, content_type)
        auth = FramedContentAuthData.pull(r, content_type)
        padding = r.pull_bytes(r.remaining())
        # §6.3.1: "the padding field MUST be all zero"; any other octet is a malformed plaintext.
        if padding.count(0) != len(padding):
            raise DecodeError("PrivateMessageContent padding is not all zero")
        return cls(content, auth, len(padding))

    @classmethod
    def decode(cls, data: bytes, content_type: ContentType) -> Self:
        r = Reader(data)
        value = cls.pull(r, content_type)
        r.expect_end()
        return value


@dataclass(frozen=True, slots=True)
class PrivateContentAAD:
    """RFC 9420 §6.3.1, the AAD of the content encryption::

    struct {
        opaque group_id<V>;
        uint64 epoch;
        ContentType content_type;
        opaque authenticated_data<V>;
    } PrivateContentAAD;
    """

    group_id: bytes
    epoch: int
    content_type: ContentType
    authenticated_data: bytes

    def push(self, w: Writer) -> None:
        w.push_opaque(self.group_id)
        w.push_uint64(self.epoch)
        w.push_uint8(self.content_type)
        w.push_opaque(self.authenticated_data)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        return cls(r.pull_opaque(), r.pull_uint64(), _pull_content_type(r), r.pull_opaque())


@dataclass(frozen=True, slots=True)
class SenderData:
    """RFC 9420 §6.3.2::

    struct {
        uint32 leaf_index;
        uint32 generation;
        opaque reuse_guard[4];
    } SenderData;
    """

    REUSE_GUARD_LENGTH: ClassVar[int] = 4

    leaf_index: int
    generation: int
    reuse_guard: bytes

    def __post_init__(self) -> None:
        if len(self.reuse_guard) != self.REUSE_GUARD_LENGTH:
            raise ConfigurationError("reuse_guard must be 4 bytes")

    def push(self, w: Writer) -> None:
        w.push_uint32(self.leaf_index)
        w.push_uint32(self.generation)
        w.push_bytes(self.reuse_guard)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        return cls(r.pull_uint32(), r.pull_uint32(), r.pull_bytes(cls.REUSE_GUARD_LENGTH))


@dataclass(frozen=True, slots=True)
class SenderDataAAD:
    """RFC 9420 §6.3.2, the AAD of the sender data encryption::

    struct {
        opaque group_id<V>;
        uint64 epoch;
        ContentType content_type;
    } SenderDataAAD;
    """

    group_id: bytes
    epoch: int
    content_type: ContentType

    def push(self, w: Writer) -> None:
        w.push_opaque(self.group_id)
        w.push_uint64(self.epoch)
        w.push_uint8(self.content_type)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        return cls(r.pull_opaque(), r.pull_uint64(), _pull_content_type(r))


# --- MLSMessage (§6) --------------------------------------------------------------------------

MLSMessageBody = PublicMessage | PrivateMessage | Welcome | GroupInfo | KeyPackage

_BODY_PULL: dict[WireFormat, Callable[[Reader], MLSMessageBody]] = {
    WireFormat.mls_public_message: PublicMessage.pull,
    WireFormat.mls_private_message: PrivateMessage.pull,
    WireFormat.mls_welcome: Welcome.pull,
    WireFormat.mls_group_info: GroupInfo.pull,
    WireFormat.mls_key_package: KeyPackage.pull,
}
_WIRE_FORMAT_OF: dict[type, WireFormat] = {
    PublicMessage: WireFormat.mls_public_message,
    PrivateMessage: WireFormat.mls_private_message,
    Welcome: WireFormat.mls_welcome,
    GroupInfo: WireFormat.mls_group_info,
    KeyPackage: WireFormat.mls_key_package,
}


@dataclass(frozen=True, slots=True)
class MLSMessage:
    """RFC 9420 §6::

    struct {
        ProtocolVersion version = mls10;
        WireFormat wire_format;
        select (MLSMessage.wire_format) {
            case mls_public_message:
                PublicMessage public_message;
            case mls_private_message:
                PrivateMessage private_message;
            case mls_welcome:
                Welcome welcome;
            case mls_group_info:
                GroupInfo group_info;
            case mls_key_package:
                KeyPackage key_package;
        };
    } MLSMessage;

    ``wire_format`` is derived from the type of ``body``; any version but mls10 is rejected.
    """

    body: MLSMessageBody

    @property
    def version(self) -> ProtocolVersion:
        return ProtocolVersion.mls10

    @property
    def wire_format(self) -> WireFormat:
        return _WIRE_FORMAT_OF[type(self.body)]

    def push(self, w: Writer) -> None:
        w.push_uint16(ProtocolVersion.mls10)
        w.push_uint16(self.wire_format)
        self.body.push(w)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        pull_protocol_version(r)
        return cls(_BODY_PULL[_pull_wire_format(r)](r))


class Routing(NamedTuple):
    """What a delivery service needs to route an MLSMessage without any key."""

    wire_format: WireFormat
    group_id: bytes | None
    epoch: int | None
    content_type: ContentType | None


def _routing_public(body: PublicMessage) -> Routing:
    c = body.content
    return Routing(WireFormat.mls_public_message, c.group_id, c.epoch, c.content_type)


def _routing_private(body: PrivateMessage) -> Routing:
    return Routing(WireFormat.mls_private_message, body.group_id, body.epoch, body.content_type)


def _routing_group_info(body: GroupInfo) -> Routing:
    gc = body.group_context
    return Routing(WireFormat.mls_group_info, gc.group_id, gc.epoch, None)


def peek_routing(data: bytes) -> Routing:
    """``(wire_format, group_id, epoch, content_type)`` of encoded MLSMessage ``data``.

    The message is fully decoded (so garbage raises `DecodeError`, never anything else).
    Welcome and KeyPackage carry no cleartext group ID: those fields are None; a GroupInfo
    gives its group ID and epoch but no content type.
    """
    body = decode(MLSMessage, data).body
    if isinstance(body, PublicMessage):
        return _routing_public(body)
    if isinstance(body, PrivateMessage):
        return _routing_private(body)
    if isinstance(body, GroupInfo):
        return _routing_group_info(body)
    return Routing(_WIRE_FORMAT_OF[type(body)], None, None, None)


__all__ = [
    "AuthenticatedContent",
    "Content",
    "ContentType",
    "FramedContent",
    "FramedContentAuthData",
    "MLSMessage",
    "MLSMessageBody",
    "PrivateContentAAD",
    "PrivateMessage",
    "PrivateMessageContent",
    "ProtocolVersion",
    "PublicMessage",
    "Routing",
    "Sender",
    "SenderData",
    "SenderDataAAD",
    "SenderExternal",
    "SenderMember",
    "SenderNewMemberCommit",
    "SenderNewMemberProposal",
    "SenderType",
    "WireFormat",
    "authenticated_content_tbm",
    "content_type_of",
    "encoded_group_context",
    "framed_content_tbs",
    "peek_routing",
    "pull_content",
    "pull_sender",
    "push_content",
    "push_sender",
]
