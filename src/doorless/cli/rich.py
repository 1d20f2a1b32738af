"""Rich messages (docs/content.md): ``reply``, ``react``, ``edit``, ``delete``, ``read``,
``typing``, ``edits``, and the daemon methods that do the same (``reply``, ``react``,
``edit``, ``delete``, ``markRead``, ``typing``, ``editHistory``).

A MESSAGE_ID is the id ``history`` and ``receive`` show (at least 8 characters of it, as
long as it is unique in the profile, like a git commit id)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from doorless.cli import rpc
from doorless.cli.common import state
from doorless.cli.messaging import GroupOption, UserArg
from doorless.cli.output import JSON, emit, message_json, safe, safe_text
from doorless.cli.session import Target, checked, find_message, resolve, usage_error, with_client

if TYPE_CHECKING:
    from doorless.client import Client, Conversation, MessageInfo

MessageArg = Annotated[
    str,
    typer.Argument(
        metavar="MESSAGE_ID", help="As 'history' or 'receive' shows it (8+ characters)."
    ),
]
TextArg = Annotated[str, typer.Argument(metavar="TEXT", help="The text.")]


def _non_empty(text: str) -> str:
    if not text:
        raise usage_error("the message is empty")
    return text


def reply(ctx: typer.Context, message_id: MessageArg, text: TextArg) -> None:
    """Answer a message in its conversation (the answer quotes it)."""
    st = state(ctx)
    with checked(st):
        _non_empty(text)

    async def main(client: Client) -> None:
        target = await find_message(client, message_id)
        info = await client.reply(target.message_id, text)
        emit(
            st.json,
            message_json(info),
            f"replied to {target.message_id[:8]} ({info.message_id[:8]})",
        )

    with_client(st, main)


def react(
    ctx: typer.Context,
    message_id: MessageArg,
    emoji: Annotated[str, typer.Argument(metavar="EMOJI", help="The reaction, e.g. 👍.")],
    remove: Annotated[bool, typer.Option("--remove", help="Take this reaction back.")] = False,
) -> None:
    """React to a message with an emoji (--remove takes the reaction back)."""
    st = state(ctx)

    async def main(client: Client) -> None:
        target = await find_message(client, message_id)
        await client.react(target.message_id, emoji, remove=remove)
        verb = "took back" if remove else "reacted"
        emit(
            st.json,
            {"message_id": target.message_id, "emoji": emoji, "removed": remove},
            f"{verb} {safe(emoji)} on {target.message_id[:8]}",
        )

    with_client(st, main)


def edit(ctx: typer.Context, message_id: MessageArg, text: TextArg) -> None:
    """Replace the text of one of your messages, for everyone (they see "edited")."""
    st = state(ctx)
    with checked(st):
        _non_empty(text)

    async def main(client: Client) -> None:
        target = await find_message(client, message_id)
        await client.edit(target.message_id, text)
        emit(
            st.json,
            {"message_id": target.message_id, "edited": True},
            f"edited {target.message_id[:8]}",
        )

    with_client(st, main)


def delete(ctx: typer.Context, message_id: MessageArg) -> None:
    """Delete one of your messages for everyone: its text leaves every member's device.

    To report a message, report it before its sender deletes it (docs/franking.md).
    """
    st = state(ctx)

    async def main(client: Client) -> None:
        target = await find_message(client, message_id)
        await client.delete(target.message_id)
        emit(
            st.json,
            {"message_id": target.message_id, "deleted": True},
            f"deleted {target.message_id[:8]}",
        )

    with_client(st, main)


def edits(ctx: typer.Context, message_id: MessageArg) -> None:
    """Show the earlier texts of an edited message, oldest first."""
    st = state(ctx)

    async def main(client: Client) -> None:
        target = await find_message(client, message_id)
        versions = await client.edit_history(target.message_id)
        emit(
            st.json,
            {
                "message_id": target.message_id,
                "versions": [
                    {"text": v.body.decode("utf-8", "replace"), "replaced_at": v.replaced_at}
                    for v in versions
                ],
            },
            lambda: (
                "\n".join(safe_text(v.body.decode("utf-8", "replace")) for v in versions)
                or "not edited"
            ),
        )

    with_client(st, main)


async def _newest_incoming(client: Client, conv: Conversation) -> MessageInfo | None:
    messages = await client.history(conv.id, limit=100)
    return next((m for m in reversed(messages) if not m.outgoing and not m.deleted), None)


def read(ctx: typer.Context, user: UserArg = None, group: GroupOption = None) -> None:
    """Tell a conversation you read it up to its newest message (a "read up to" receipt;
    nothing is sent if 'doorless config set privacy.read_receipts off')."""
    st = state(ctx)
    with checked(st):
        target = Target.of(user, group)

    async def main(client: Client) -> None:
        conv = await resolve(client, target)
        newest = await _newest_incoming(client, conv)
        sent = newest is not None and await client.mark_read(newest.message_id)
        up_to = newest.message_id if newest is not None else None
        emit(
            st.json,
            {"conversation_id": conv.id, "read_up_to": up_to, "sent": sent},
            f"read up to {up_to[:8]}" + ("" if sent else " (no receipt sent)")
            if up_to
            else "nothing to mark read",
        )

    with_client(st, main)


def typing(
    ctx: typer.Context,
    user: UserArg = None,
    group: GroupOption = None,
    stop: Annotated[bool, typer.Option("--stop", help="Say you stopped typing.")] = False,
) -> None:
    """Tell a conversation you are typing (or stopped: --stop); nothing is sent if
    'doorless config set privacy.typing off'."""
    st = state(ctx)
    with checked(st):
        target = Target.of(user, group)

    async def main(client: Client) -> None:
        conv = await resolve(client, target)
        sent = await client.typing(conv.id, not stop)
        emit(
            st.json,
            {"conversation_id": conv.id, "active": not stop, "sent": sent},
            ("typing notice sent" if sent else "typing notices are off"),
        )

    with_client(st, main)


# --- daemon methods ---------------------------------------------------------------------------


@rpc.method("reply")
async def rpc_reply(client: Client, params: rpc.Params) -> JSON:
    """Answer a message. Params: ``message_id``, ``text``. Result: the new message."""
    message_id, text = params.string("message_id"), _non_empty(params.string("text"))
    params.done()
    target = await find_message(client, message_id)
    return message_json(await client.reply(target.message_id, text))


@rpc.method("react")
async def rpc_react(client: Client, params: rpc.Params) -> JSON:
    """React to a message. Params: ``message_id``, ``emoji``, optional ``remove``."""
    message_id, emoji = params.string("message_id"), params.string("emoji")
    remove = params.flag("remove")
    params.done()
    target = await find_message(client, message_id)
    await client.react(target.message_id, emoji, remove=remove)
    return {"message_id": target.message_id, "emoji": emoji, "removed": remove}


@rpc.method("edit")
async def rpc_edit(client: Client, params: rpc.Params) -> JSON:
    """Replace the text of one of your messages. Params: ``message_id``, ``text``."""
    message_id, text = params.string("message_id"), _non_empty(params.string("text"))
    params.done()
    target = await find_message(client, message_id)
    await client.edit(target.message_id, text)
    return {"message_id": target.message_id, "edited": True}


@rpc.method("delete")
async def rpc_delete(client: Client, params: rpc.Params) -> JSON:
    """Delete one of your messages for everyone. Params: ``message_id``."""
    message_id = params.string("message_id")
    params.done()
    target = await find_message(client, message_id)
    await client.delete(target.message_id)
    return {"message_id": target.message_id, "deleted": True}


@rpc.method("editHistory")
async def rpc_edit_history(client: Client, params: rpc.Params) -> JSON:
    """The earlier texts of a message. Params: ``message_id``. Result: ``{versions}``."""
    message_id = params.string("message_id")
    params.done()
    target = await find_message(client, message_id)
    versions = await client.edit_history(target.message_id)
    return {
        "message_id": target.message_id,
        "versions": [
            {"text": v.body.decode("utf-8", "replace"), "replaced_at": v.replaced_at}
            for v in versions
        ],
    }


@rpc.method("markRead")
async def rpc_mark_read(client: Client, params: rpc.Params) -> JSON:
    """Send a "read up to" receipt. Params: ``message_id``. Result: ``{sent}`` (false if
    receipts are off or the server could not be reached)."""
    message_id = params.string("message_id")
    params.done()
    target = await find_message(client, message_id)
    return {"message_id": target.message_id, "sent": await client.mark_read(target.message_id)}


@rpc.method("typing")
async def rpc_typing(client: Client, params: rpc.Params) -> JSON:
    """Send a typing notice. Params: the conversation, optional ``active`` (default true).
    Result: ``{sent}``."""
    target, active = params.target(), params.flag("active", True)
    params.done()
    conv = await resolve(client, target)
    return {
        "conversation_id": conv.id,
        "active": active,
        "sent": await client.typing(conv.id, active),
    }


__all__ = ["delete", "edit", "edits", "react", "read", "reply", "typing"]
