"""Rich messages on the MIMI content container (draft-ietf-mimi-content-08).

A ``content`` payload (`doorless.wire.payload.PayloadKind.content`) carries one encoded
`doorless.content.MimiContent`. This module is the contract between Doorless clients on how
each thing a user does maps to a container, and back (`classify`):

==============  ===========================================================================
action          container (draft section)
==============  ===========================================================================
text            body render, SinglePart ``text/markdown;variant=GFM-MIMI`` (4.4, appendix
                GFM-MIMI); ``inReplyTo`` for a reply (4.1); @mentions as links to the user's
                URI (the draft's "Mentions" section)
file            body attachment, ExternalPart (4.5) with the AES-256-GCM file key, nonce,
                the plaintext SHA-256 and, in ``url``, the locator and ciphertext SHA-256
reaction        body reaction, SinglePart ``text/plain;charset=utf-8`` (the emoji);
                ``inReplyTo`` = the message reacted to ("Reactions")
un-reaction     ``replaces`` = the reaction's id, body reaction NullPart ("Unlike")
edit            ``replaces`` = the original's id, body render SinglePart ("Edit")
delete          ``replaces`` = the original's id, body render NullPart ("Delete")
read up to      body SinglePart ``application/vnd.doorless.read-up-to``, ``inReplyTo`` = the
                newest message read (the message-status draft is not final: a local type)
typing          body SinglePart ``application/vnd.doorless.typing``, content 1 or 0
==============  ===========================================================================

Disappearing messages set ``expires`` (relative seconds, 4.1). Message ids are derived as
the draft says (3.3) from the implied URIs ``mimi://doorless/u/<user>`` (the sender, from its
verified MLS credential) and ``mimi://doorless/r/<group id hex>`` (the room): the container
does not carry senderUri / roomUri, so a sender cannot claim another identity in them.
No I/O; randomness (the salt) comes in as a parameter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from doorless.content import (
    HASH_ALG_SHA256,
    Disposition,
    Expiration,
    ExternalPart,
    MimiContent,
    NestedPart,
    NullPart,
    SinglePart,
)
from doorless.errors import ConfigurationError, ValidationError
from doorless.franking import AttachmentDescriptor

MARKDOWN = "text/markdown;variant=GFM-MIMI"
PLAIN = "text/plain;charset=utf-8"
READ_UP_TO = "application/vnd.doorless.read-up-to"
TYPING = "application/vnd.doorless.typing"
AEAD_AES_256_GCM = 2  # IANA AEAD algorithm 2, the cipher of `doorless.franking` attachments
URI_PREFIX = "mimi://doorless/"
_LOCATOR = "doorless:attachment/"
MAX_EMOJI_BYTES = 64
_RULE = "doorless rich messages (docs/content.md)"

_USER = r"[a-z0-9][a-z0-9_.-]{1,31}"
# A mention as sent: a Markdown link whose target is a user URI (the draft's "Mentions").
_MENTION_LINK = re.compile(r"\[[^\]\n]*\]\(mimi://doorless/u/(" + _USER + r")\)")
# A mention as typed: @user at the start or after a non-word character.
_TYPED_MENTION = re.compile(r"(?<![\w@\[])@(" + _USER + r")\b")


def user_uri(user: str) -> str:
    return f"{URI_PREFIX}u/{user}"


def room_uri(group_id: bytes) -> str:
    return f"{URI_PREFIX}r/{group_id.hex()}"


def message_id_of(content: MimiContent, sender_user: str, group_id: bytes) -> bytes:
    """The draft's message id (3.3) of ``content`` sent by ``sender_user`` in the group."""
    return content.message_id(user_uri(sender_user), room_uri(group_id))


def _refuse(message: str) -> ValidationError:
    return ValidationError(message, rule=_RULE)


# --- building ----------------------------------------------------------------------------------


def _container(
    body: NestedPart,
    salt: bytes,
    *,
    replaces: bytes | None = None,
    in_reply_to: bytes | None = None,
    expires_s: int | None = None,
) -> MimiContent:
    expires = None if expires_s is None else Expiration(relative=True, time=expires_s)
    return MimiContent(
        salt=salt,
        replaces=replaces,
        topic_id=b"",
        expires=expires,
        in_reply_to=in_reply_to,
        body=body,
    )


def _markdown(text: str, disposition: Disposition = Disposition.RENDER) -> NestedPart:
    return NestedPart(disposition, "", SinglePart(MARKDOWN, text.encode("utf-8")))


def with_mentions(text: str, members: frozenset[str]) -> str:
    """The Markdown of a typed text: each ``@user`` naming a member becomes a mention link."""

    def link(m: re.Match[str]) -> str:
        user = m.group(1)
        return f"[@{user}]({user_uri(user)})" if user in members else m.group(0)

    return _TYPED_MENTION.sub(link, text)


def post(
    text: str,
    *,
    salt: bytes,
    members: frozenset[str] = frozenset(),
    in_reply_to: bytes | None = None,
    expires_s: int | None = None,
) -> MimiContent:
    """A text message (a reply if ``in_reply_to``); ``@member`` becomes a mention."""
    return _container(
        _markdown(with_mentions(text, members)),
        salt,
        in_reply_to=in_reply_to,
        expires_s=expires_s,
    )


def attachment(
    name: str, descriptor: AttachmentDescriptor, *, salt: bytes, expires_s: int | None = None
) -> MimiContent:
    """A file: an ExternalPart holding the file key, nonce and hashes (draft 4.5)."""
    url = (
        f"{_LOCATOR}{descriptor.locator.decode('ascii')}"
        f"?ciphertext-sha256={descriptor.ciphertext_sha256.hex()}"
    )
    part = ExternalPart(
        content_type=descriptor.media_type.decode("utf-8"),
        url=url,
        expires=0,
        size=descriptor.size,
        enc_alg=AEAD_AES_256_GCM,
        key=descriptor.key,
        nonce=descriptor.nonce,
        aad=b"",
        hash_alg=HASH_ALG_SHA256,
        content_hash=descriptor.plaintext_sha256,
        description="",
        filename=name,
    )
    return _container(NestedPart(Disposition.ATTACHMENT, "", part), salt, expires_s=expires_s)


def reaction(target: bytes, emoji: str, *, salt: bytes) -> MimiContent:
    _check_emoji(emoji)
    body = NestedPart(Disposition.REACTION, "", SinglePart(PLAIN, emoji.encode("utf-8")))
    return _container(body, salt, in_reply_to=target)


def unreaction(reaction_id: bytes, target: bytes, *, salt: bytes) -> MimiContent:
    body = NestedPart(Disposition.REACTION, "", NullPart())
    return _container(body, salt, replaces=reaction_id, in_reply_to=target)


def edit(target: bytes, text: str, *, salt: bytes, members: frozenset[str]) -> MimiContent:
    return _container(_markdown(with_mentions(text, members)), salt, replaces=target)


def delete(target: bytes, *, salt: bytes) -> MimiContent:
    return _container(NestedPart(Disposition.RENDER, "", NullPart()), salt, replaces=target)


def read_up_to(target: bytes, *, salt: bytes) -> MimiContent:
    body = NestedPart(Disposition.UNSPECIFIED, "", SinglePart(READ_UP_TO, b""))
    return _container(body, salt, in_reply_to=target)


def typing(active: bool, *, salt: bytes) -> MimiContent:
    body = NestedPart(
        Disposition.UNSPECIFIED, "", SinglePart(TYPING, b"\x01" if active else b"\x00")
    )
    return _container(body, salt)


def _check_emoji(emoji: str) -> None:
    raw = emoji.encode("utf-8")
    if not 0 < len(raw) <= MAX_EMOJI_BYTES or not emoji.isprintable() or emoji.isspace():
        raise _refuse(f"a reaction is 1..{MAX_EMOJI_BYTES} bytes of printable text")


# --- reading -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, repr=False)
class Post:
    """A text or file message. ``text`` is what is shown: mention links become ``@user``."""

    text: str | None
    mentions: tuple[str, ...]
    file_name: str | None
    attachment: AttachmentDescriptor | None
    in_reply_to: bytes | None
    expires: Expiration | None

    def __repr__(self) -> str:
        return f"Post(<{len(self.text or '')} chars>, file={self.file_name is not None})"


@dataclass(frozen=True, slots=True)
class Reaction:
    target: bytes
    emoji: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Unreaction:
    reaction_id: bytes


@dataclass(frozen=True, slots=True)
class Edit:
    target: bytes
    text: str = field(repr=False)
    mentions: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Delete:
    target: bytes


@dataclass(frozen=True, slots=True)
class ReadUpTo:
    target: bytes


@dataclass(frozen=True, slots=True)
class Typing:
    active: bool


Rich = Post | Reaction | Unreaction | Edit | Delete | ReadUpTo | Typing


def displayed(markdown: str) -> tuple[str, tuple[str, ...]]:
    """The text to show and the users mentioned. A mention's link text is only the sender's
    hint (draft "Link and Mention handling"): it is shown as the canonical ``@user``."""
    mentions: list[str] = []

    def canonical(m: re.Match[str]) -> str:
        if m.group(1) not in mentions:
            mentions.append(m.group(1))
        return f"@{m.group(1)}"

    return _MENTION_LINK.sub(canonical, markdown), tuple(mentions)


def _utf8(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise _refuse(f"{what} is not UTF-8") from None


def _text(part: SinglePart) -> str:
    if part.content_type != MARKDOWN:
        raise _refuse(f"a text of type {part.content_type!r} is not supported")
    return _utf8(part.content, "the text")


def _attachment(part: ExternalPart) -> AttachmentDescriptor:
    if part.enc_alg != AEAD_AES_256_GCM or part.hash_alg != HASH_ALG_SHA256 or part.aad:
        raise _refuse("an attachment must be AES-256-GCM with a SHA-256 hash and no aad")
    locator, sep, query = part.url.removeprefix(_LOCATOR).partition("?ciphertext-sha256=")
    if not part.url.startswith(_LOCATOR) or not sep:
        raise _refuse("an attachment url is not a Doorless attachment")
    try:
        digest = bytes.fromhex(query)
        return AttachmentDescriptor(
            locator=locator.encode("ascii"),
            media_type=part.content_type.encode("utf-8"),
            key=part.key,
            nonce=part.nonce,
            ciphertext_sha256=digest,
            plaintext_sha256=part.content_hash,
            size=part.size,
        )
    except (ValueError, ConfigurationError):  # hex, ASCII, the descriptor's own checks
        raise _refuse("a malformed attachment") from None


def _classify_replacement(content: MimiContent, replaces: bytes) -> Rich:
    body = content.body
    if isinstance(body.part, NullPart):
        if body.disposition == Disposition.REACTION:
            return Unreaction(replaces)
        return Delete(replaces)
    if isinstance(body.part, SinglePart) and body.disposition == Disposition.RENDER:
        text, mentions = displayed(_text(body.part))
        return Edit(replaces, text, mentions)
    raise _refuse("a replacement is an edited text or an empty body")


def _classify_single(content: MimiContent, part: SinglePart) -> Rich:
    disposition = content.body.effective_disposition
    target = content.in_reply_to
    if part.content_type == READ_UP_TO:
        if target is None:
            raise _refuse("a read receipt names the message read")
        return ReadUpTo(target)
    if part.content_type == TYPING:
        if part.content not in (b"\x00", b"\x01"):
            raise _refuse("a typing notice is 0 or 1")
        return Typing(part.content == b"\x01")
    if disposition == Disposition.REACTION:
        if target is None or part.content_type != PLAIN:
            raise _refuse("a reaction is plain text in reply to a message")
        emoji = _utf8(part.content, "a reaction")
        _check_emoji(emoji)
        return Reaction(target, emoji)
    text, mentions = displayed(_text(part))
    return Post(text, mentions, None, None, target, content.expires)


def classify(content: MimiContent) -> Rich:
    """What a received container asks for; `ValidationError` if Doorless does not support
    its shape (e.g. a MultiPart body, an unknown content type)."""
    if content.replaces is not None:
        return _classify_replacement(content, content.replaces)
    part = content.body.part
    if isinstance(part, SinglePart):
        return _classify_single(content, part)
    if isinstance(part, ExternalPart):
        name = part.filename
        return Post(None, (), name, _attachment(part), content.in_reply_to, content.expires)
    raise _refuse("this message body is not supported (only one part)")


def attachments_of(content: MimiContent) -> tuple[AttachmentDescriptor, ...]:
    """The attachments a container commits to (franking covers their keys and hashes)."""
    part = content.body.part
    return (_attachment(part),) if isinstance(part, ExternalPart) else ()


__all__ = [
    "MARKDOWN",
    "READ_UP_TO",
    "TYPING",
    "Delete",
    "Edit",
    "Post",
    "Reaction",
    "ReadUpTo",
    "Rich",
    "Typing",
    "Unreaction",
    "attachment",
    "attachments_of",
    "classify",
    "delete",
    "displayed",
    "edit",
    "message_id_of",
    "post",
    "reaction",
    "read_up_to",
    "room_uri",
    "typing",
    "unreaction",
    "user_uri",
    "with_mentions",
]
