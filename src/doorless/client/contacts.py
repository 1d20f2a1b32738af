"""Contacts: the users this profile knows (from its conversations and its contact list), with
the nicknames its user gives them.

A nickname is local: it is kept in the encrypted store (``contacts.display_name``) and never
sent to the server or to anyone; another device of the same account has its own. The
programs show it marked as a nickname next to the real username, so that a name a peer chose
can never pass for one (``doorless.cli.people``).
"""

from __future__ import annotations

import dataclasses
import unicodedata
from dataclasses import dataclass

from doorless.client import membership
from doorless.client.core import Session, checked_users
from doorless.client.store import Contact, Transaction
from doorless.errors import ConfigurationError

MAX_NICKNAME_CHARS = 64


@dataclass(frozen=True, slots=True)
class ContactInfo:
    """A user this profile knows, as this device sees them now."""

    username: str
    nickname: str | None  # local only, never sent
    verified: bool  # safety number confirmed
    blocked: bool
    accepted: bool  # a message request of theirs was accepted
    conversations: tuple[str, ...]  # ids of the conversations shared with them, on this device


def check_nickname(nickname: str) -> str:
    """A nickname as stored: NFC, without surrounding spaces, 1 to 64 characters, none of them
    invisible or a control (`ConfigurationError` otherwise)."""
    value = unicodedata.normalize("NFC", nickname).strip()
    if not value:
        raise ConfigurationError("a nickname cannot be empty")
    if len(value) > MAX_NICKNAME_CHARS:
        raise ConfigurationError(f"a nickname is at most {MAX_NICKNAME_CHARS} characters")
    for ch in value:
        if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
            raise ConfigurationError(
                f"a nickname cannot contain the invisible or control character U+{ord(ch):04X}"
            )
    return value


async def _shared(s: Session) -> dict[str, list[str]]:
    """Each other user -> the ids of the conversations shared with them."""
    shared: dict[str, list[str]] = {}
    for conv in await membership.conversations(s):
        for user in conv.members:
            if user != s.me.user:
                shared.setdefault(user, []).append(conv.id)
    return shared


def _info(username: str, row: Contact | None, shared: dict[str, list[str]]) -> ContactInfo:
    return ContactInfo(
        username=username,
        nickname=row.display_name if row is not None else None,
        verified=row.verified if row is not None else False,
        blocked=row.blocked if row is not None else False,
        accepted=row.accepted if row is not None else False,
        conversations=tuple(shared.get(username, ())),
    )


async def contacts(s: Session) -> list[ContactInfo]:
    """Every user of this profile's conversations and contact list, by username."""
    shared = await _shared(s)
    rows = {c.username: c for c in await s.tx(lambda tx: tx.list_contacts())}
    names = sorted((set(shared) | set(rows)) - {s.me.user})
    return [_info(u, rows.get(u), shared) for u in names]


async def contact(s: Session, username: str) -> ContactInfo:
    """One user; `ConfigurationError` if this profile does not know them."""
    (user,) = checked_users([username])
    shared = await _shared(s)
    row = await s.tx(lambda tx: tx.get_contact(user))
    if row is None and user not in shared:
        raise ConfigurationError(f"@{user} is not a contact of this profile")
    return _info(user, row, shared)


async def nicknames(s: Session) -> dict[str, str]:
    """username -> nickname, for the users that have one."""
    rows = await s.tx(lambda tx: tx.list_contacts())
    return {c.username: c.display_name for c in rows if c.display_name}


async def set_nickname(s: Session, username: str, nickname: str | None) -> ContactInfo:
    """Give ``username`` a local nickname (None: remove it); returns the contact."""
    (user,) = checked_users([username])
    if user == s.me.user:
        raise ConfigurationError("you cannot give yourself a nickname")
    value = None if nickname is None else check_nickname(nickname)
    now = s.now_ms()

    def write(tx: Transaction) -> None:
        row = tx.get_contact(user) or Contact(username=user, created_at=now, updated_at=now)
        tx.put_contact(dataclasses.replace(row, display_name=value, updated_at=now))

    await s.tx(write)
    return await contact(s, user)


__all__ = [
    "MAX_NICKNAME_CHARS",
    "ContactInfo",
    "check_nickname",
    "contact",
    "contacts",
    "nicknames",
    "set_nickname",
]
