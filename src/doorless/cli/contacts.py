"""``doorless contacts list|show|nick|unnick``: the users this profile knows and the local
nicknames its user gives them, and the daemon methods ``listContacts``, ``getContact``,
``setNickname``.

A nickname stays in this profile: it is never sent to the server or to anyone, and other
devices of the account do not see it. Wherever a name is shown it appears as
``~Bobby (@bob)``, marked and next to the real username (`doorless.cli.output.nicknamed`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from doorless.cli import rpc
from doorless.cli.common import state
from doorless.cli.output import JSON, emit, safe
from doorless.cli.people import person
from doorless.cli.session import checked, parse_user, with_client

if TYPE_CHECKING:
    from doorless.client import Client, ContactInfo

app = typer.Typer(
    help="Your contacts and the nicknames you give them (kept on this device, never sent).",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)

UserArg = Annotated[str, typer.Argument(metavar="@USER", help="A user.")]


def contact_json(c: ContactInfo) -> JSON:
    return {
        "username": c.username,
        "nickname": c.nickname,
        "verified": c.verified,
        "blocked": c.blocked,
        "accepted": c.accepted,
        "conversations": list(c.conversations),
    }


def _flags(c: ContactInfo) -> str:
    flags = [
        flag
        for flag, on in (("verified", c.verified), ("blocked", c.blocked), ("accepted", c.accepted))
        if on
    ]
    return f"  [{', '.join(flags)}]" if flags else ""


def contact_line(c: ContactInfo) -> str:
    nicks = {c.username: c.nickname} if c.nickname else {}
    n = len(c.conversations)
    return f"{person(c.username, nicks)}  {n} conversation{'s' if n != 1 else ''}{_flags(c)}"


def _contact_text(c: ContactInfo) -> str:
    lines = [
        f"@{safe(c.username)}",
        f"  nickname: {safe(c.nickname) + ' (on this device only)' if c.nickname else '-'}",
        f"  safety number verified: {'yes' if c.verified else 'no'}",
        f"  blocked: {'yes' if c.blocked else 'no'}",
        f"  conversations: {', '.join(cid[:12] for cid in c.conversations) or '-'}",
    ]
    return "\n".join(lines)


@app.command("list")
def list_contacts(ctx: typer.Context) -> None:
    """List the users of your conversations and contact list, with their nicknames."""
    st = state(ctx)

    async def main(client: Client) -> None:
        contacts = await client.contacts()
        emit(
            st.json,
            {"contacts": [contact_json(c) for c in contacts]},
            lambda: "\n".join(contact_line(c) for c in contacts) or "no contacts",
        )

    with_client(st, main)


@app.command("show")
def show(ctx: typer.Context, user: UserArg) -> None:
    """Show one contact."""
    st = state(ctx)
    with checked(st):
        name = parse_user(user)

    async def main(client: Client) -> None:
        c = await client.contact(name)
        emit(st.json, contact_json(c), lambda: _contact_text(c))

    with_client(st, main)


@app.command("nick")
def nick(
    ctx: typer.Context,
    user: UserArg,
    nickname: Annotated[str, typer.Argument(metavar="NICK", help="The nickname (local only).")],
) -> None:
    """Give a user a nickname, shown as ~NICK (@user) on this device; it is never sent."""
    st = state(ctx)
    with checked(st):
        name = parse_user(user)

    async def main(client: Client) -> None:
        c = await client.set_nickname(name, nickname)
        shown = person(c.username, {c.username: c.nickname or ""})
        emit(
            st.json,
            contact_json(c),
            lambda: f"@{safe(c.username)} is shown as {shown} (on this device only)",
        )

    with_client(st, main)


@app.command("unnick")
def unnick(ctx: typer.Context, user: UserArg) -> None:
    """Remove a user's nickname."""
    st = state(ctx)
    with checked(st):
        name = parse_user(user)

    async def main(client: Client) -> None:
        c = await client.set_nickname(name, None)
        emit(st.json, contact_json(c), lambda: f"@{safe(c.username)}: nickname removed")

    with_client(st, main)


# --- daemon methods ---------------------------------------------------------------------------


@rpc.method("listContacts")
async def rpc_list_contacts(client: Client, params: rpc.Params) -> JSON:
    """The users this profile knows. No params. Result ``{contacts: [{username, nickname,
    verified, blocked, accepted, conversations}]}``."""
    params.done()
    return {"contacts": [contact_json(c) for c in await client.contacts()]}


@rpc.method("getContact")
async def rpc_get_contact(client: Client, params: rpc.Params) -> JSON:
    """One contact. Params: ``user``. Result: the contact."""
    user = parse_user(params.string("user"))
    params.done()
    return contact_json(await client.contact(user))


@rpc.method("setNickname")
async def rpc_set_nickname(client: Client, params: rpc.Params) -> JSON:
    """Set (or with ``nickname`` null, remove) a user's local nickname. Params: ``user``,
    ``nickname``. Result: the contact."""
    user = parse_user(params.string("user"))
    nickname = params.opt_string("nickname")
    params.done()
    return contact_json(await client.set_nickname(user, nickname))


__all__ = ["app", "contact_json", "contact_line"]
