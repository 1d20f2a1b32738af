"""``doorless group ...``: create group conversations and change their members, and the daemon
methods ``createGroup``, ``addMembers``, ``removeMembers``, ``listMembers``, ``renameGroup``,
``listGroups``, ``upgradeConversation``.

Every change is an MLS commit that every member sees (``receive`` shows it); a group is named
by its name or its id (``doorless conversations`` lists both).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from doorless import client as dl
from doorless.cli import rpc
from doorless.cli.common import state
from doorless.cli.output import JSON, conversation_json, emit, fingerprint, request_label, safe
from doorless.cli.output import users as usernames
from doorless.cli.people import person
from doorless.cli.session import Target, checked, parse_user, resolve, resolve_users, with_client

if TYPE_CHECKING:
    from doorless.client import Client, Conversation

app = typer.Typer(
    help="Create groups, add and remove members, list members, list your groups, upgrade a "
    "group to the post-quantum suite.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)

GroupArg = Annotated[str, typer.Argument(metavar="GROUP", help="The group's name or id.")]
UsersArg = Annotated[list[str], typer.Argument(metavar="@USER...", help="One or more users.")]


def members_json(conv: Conversation) -> JSON:
    return {
        "conversation_id": conv.id,
        "name": conv.name,
        "members": [
            {
                "user": user,
                "devices": [d.device_id for d in conv.devices if d.user == user],
            }
            for user in conv.members
        ],
    }


def _members_text(conv: Conversation) -> str:
    lines = [f"#{safe(conv.name)} ({len(conv.members)} members, {len(conv.devices)} devices)"]
    for user in conv.members:
        devices = [fingerprint(d.device_id)[:9] for d in conv.devices if d.user == user]
        lines.append(f"  @{safe(user)}  devices: {', '.join(devices)}")
    return "\n".join(lines)


@app.command("create")
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="The group's name.")],
    members: Annotated[
        list[str] | None,
        typer.Option("--member", "-m", metavar="@USER", help="A member (repeat the option)."),
    ] = None,
) -> None:
    """Create a group with you and the given members (all their devices)."""
    st = state(ctx)
    with checked(st):
        users = [parse_user(m) for m in members or []]

    async def main(client: Client) -> None:
        conv = await resolve_users(client, lambda: client.create_group(name, users), users)
        emit(
            st.json,
            conversation_json(conv),
            lambda: (
                f"created group #{safe(conv.name)} ({conv.id[:12]}) with {usernames(conv.members)}"
            ),
        )

    with_client(st, main)


@app.command("add")
def add(ctx: typer.Context, group: GroupArg, users: UsersArg) -> None:
    """Add users (every device of theirs) to a group."""
    st = state(ctx)
    with checked(st):
        names = [parse_user(u) for u in users]

    async def main(client: Client) -> None:
        conv = await resolve(client, Target(group=group))
        conv = await resolve_users(client, lambda: client.add_members(conv.id, names), names)
        emit(st.json, conversation_json(conv), lambda: _members_text(conv))

    with_client(st, main)


@app.command("remove")
def remove(ctx: typer.Context, group: GroupArg, users: UsersArg) -> None:
    """Remove users (all their devices) from a group."""
    st = state(ctx)
    with checked(st):
        names = [parse_user(u) for u in users]

    async def main(client: Client) -> None:
        conv = await resolve(client, Target(group=group))
        conv = await client.remove_members(conv.id, names)
        emit(st.json, conversation_json(conv), lambda: _members_text(conv))

    with_client(st, main)


@app.command("members")
def members(ctx: typer.Context, group: GroupArg) -> None:
    """List a group's members and their devices (the MLS roster, as this device sees it)."""
    st = state(ctx)

    async def main(client: Client) -> None:
        conv = await resolve(client, Target(group=group))
        emit(st.json, members_json(conv), lambda: _members_text(conv))

    with_client(st, main)


def group_summary_json(conv: Conversation) -> JSON:
    """A group in ``group list``: its counts next to the conversation's usual fields."""
    return {
        "id": conv.id,
        "name": conv.name,
        "member_count": len(conv.members),
        "device_count": len(conv.devices),
        "members": list(conv.members),
        "status": conv.status.value,
        "epoch": conv.epoch,
        "updated_at": conv.updated_at,
        "request_from": conv.request_from,
    }


def _group_line(conv: Conversation, me: str, nicknames: dict[str, str]) -> str:
    n = len(conv.members)
    names = ", ".join("me" if u == me else person(u, nicknames) for u in conv.members)
    status = "" if conv.status is dl.ConversationStatus.ACTIVE else f"  [{conv.status.value}]"
    label = request_label(conv, me)
    return f"{conv.id[:12]}  {label}  {n} member{'s' if n != 1 else ''} ({names}){status}"


async def _groups(client: Client) -> list[Conversation]:
    return [c for c in await client.conversations() if c.kind is dl.ConversationKind.GROUP]


@app.command("list")
def list_groups(ctx: typer.Context) -> None:
    """List your groups with their member counts (as this device sees them; no network)."""
    st = state(ctx)

    async def main(client: Client) -> None:
        groups = await _groups(client)
        nicknames = await client.nicknames()
        emit(
            st.json,
            {"groups": [group_summary_json(c) for c in groups]},
            lambda: (
                "\n".join(_group_line(c, client.username, nicknames) for c in groups) or "no groups"
            ),
        )

    with_client(st, main)


@app.command("rename")
def rename(
    ctx: typer.Context,
    group: GroupArg,
    new_name: Annotated[str, typer.Argument(metavar="NEW_NAME")],
) -> None:
    """Rename a group (every member sees the new name)."""
    st = state(ctx)

    async def main(client: Client) -> None:
        conv = await resolve(client, Target(group=group))
        conv = await client.rename(conv.id, new_name)
        emit(st.json, conversation_json(conv), f"renamed to #{safe(conv.name)}")

    with_client(st, main)


@app.command("upgrade")
def upgrade(ctx: typer.Context, group: GroupArg) -> None:
    """Move a group to the post-quantum suite: a new conversation with the same members, name
    and disappearing timer; the old one keeps its history and is marked "upgraded to" it (every
    member's client links the two). Refused, with nothing changed, when a member has a device
    without post-quantum KeyPackages."""
    st = state(ctx)

    async def main(client: Client) -> None:
        old = await resolve(client, Target(group=group))
        conv = await client.upgrade_conversation(old.id)
        emit(
            st.json,
            conversation_json(conv),
            f"#{safe(conv.name)} upgraded to {conv.cipher_suite}: new conversation {conv.id[:12]}"
            f" (history stays in {old.id[:12]})",
        )

    with_client(st, main)


# --- daemon methods ---------------------------------------------------------------------------


def _group(params: rpc.Params) -> Target:
    """``group`` (name or id) or ``conversation_id``."""
    group, conversation_id = params.opt_string("group"), params.opt_string("conversation_id")
    if (group is None) == (conversation_id is None):
        raise rpc.InvalidParams("give exactly one of 'group', 'conversation_id'")
    return Target(group=group, conversation_id=conversation_id)


@rpc.method("createGroup")
async def rpc_create_group(client: Client, params: rpc.Params) -> JSON:
    """Create a group. Params: ``name``, ``members`` (usernames). Result: the conversation."""
    name = params.string("name")
    users = [parse_user(u) for u in params.strings("members", required=False)]
    params.done()
    conv = await resolve_users(client, lambda: client.create_group(name, users), users)
    return conversation_json(conv)


@rpc.method("addMembers")
async def rpc_add_members(client: Client, params: rpc.Params) -> JSON:
    """Add users to a group. Params: ``group`` or ``conversation_id``, ``members``."""
    target = _group(params)
    users = [parse_user(u) for u in params.strings("members")]
    params.done()
    conv = await resolve(client, target)
    return conversation_json(
        await resolve_users(client, lambda: client.add_members(conv.id, users), users)
    )


@rpc.method("removeMembers")
async def rpc_remove_members(client: Client, params: rpc.Params) -> JSON:
    """Remove users from a group. Params: ``group`` or ``conversation_id``, ``members``."""
    target = _group(params)
    users = [parse_user(u) for u in params.strings("members")]
    params.done()
    conv = await resolve(client, target)
    return conversation_json(await client.remove_members(conv.id, users))


@rpc.method("listMembers")
async def rpc_list_members(client: Client, params: rpc.Params) -> JSON:
    """A group's members. Params: ``group`` or ``conversation_id``. Result:
    ``{conversation_id, name, members: [{user, devices}]}``."""
    target = _group(params)
    params.done()
    return members_json(await resolve(client, target))


@rpc.method("listGroups")
async def rpc_list_groups(client: Client, params: rpc.Params) -> JSON:
    """This profile's groups. No params. Result ``{groups: [{id, name, member_count,
    device_count, members, status, epoch, updated_at, request_from}]}``."""
    params.done()
    return {"groups": [group_summary_json(c) for c in await _groups(client)]}


@rpc.method("renameGroup")
async def rpc_rename_group(client: Client, params: rpc.Params) -> JSON:
    """Rename a group. Params: ``group`` or ``conversation_id``, ``name``."""
    target = _group(params)
    name = params.string("name")
    params.done()
    conv = await resolve(client, target)
    return conversation_json(await client.rename(conv.id, name))


@rpc.method("upgradeConversation")
async def rpc_upgrade_conversation(client: Client, params: rpc.Params) -> JSON:
    """Move a conversation to the post-quantum suite. Params: ``group`` or
    ``conversation_id``. Result: the new conversation (``upgraded_from`` names the old one)."""
    target = _group(params)
    params.done()
    conv = await resolve(client, target)
    return conversation_json(await client.upgrade_conversation(conv.id))


__all__ = ["app", "members_json"]
