"""How the local-history commands name people and conversations: a user as ``@bob``, or with
the local nickname this profile gave them as ``~Bobby (@bob)``, and a conversation argument
(``@bob``, a group's name, a conversation id) as the conversation it names.

A nickname is chosen by this profile's user and never sent; a peer cannot pass for one: a
nickname is always shown after ``~`` and followed by the real ``(@username)``, while a peer's
username is always shown after ``@`` (usernames are ``[a-z0-9_.-]``: never ``~``, space or
parenthesis) and a group name, which a peer may choose, after ``#``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from doorless import client as dl
from doorless.cli.output import NICKNAME_MARK, conversation_label, nicknamed, safe
from doorless.cli.session import CliError, Target, resolve
from doorless.wire.errors import ErrorCode

if TYPE_CHECKING:
    from doorless.client import Client, Conversation


def person(user: str, nicknames: Mapping[str, str]) -> str:
    """``@bob``, or ``~Bobby (@bob)`` when this profile calls bob "Bobby"."""
    return nicknamed(user, nicknames, f"@{safe(user)}")


def label(c: Conversation | None, me: str, nicknames: Mapping[str, str], cid: str = "") -> str:
    """`conversation_label` with nicknames."""
    return conversation_label(c, me, cid, nicknames)


def _is_hex(value: str) -> bool:
    return len(value) % 2 == 0 and all(ch in "0123456789abcdef" for ch in value.lower())


async def resolve_conversation(client: Client, value: str) -> Conversation:
    """The conversation ``value`` names: ``@user`` (the direct conversation), a group's name
    or id (or an id prefix of 6+ digits), or the id of any conversation."""
    if value.startswith("@"):
        return await resolve(client, Target.of(value, None))
    try:
        return await resolve(client, Target(group=value))
    except CliError as exc:
        if exc.failure.code != ErrorCode.UNKNOWN_CONVERSATION or not _is_hex(value) or not value:
            raise
    try:
        return await client.conversation(value.lower())
    except dl.UnknownConversation:
        raise CliError(ErrorCode.UNKNOWN_CONVERSATION, f"no conversation {safe(value)!r}") from None


__all__ = ["NICKNAME_MARK", "label", "person", "resolve_conversation"]
