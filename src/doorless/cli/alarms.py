"""``doorless alarms`` and ``doorless alarms ack ID...|--all``: the key-transparency alarms
kept in the profile until acknowledged (`doorless.client.alarms`), and the daemon methods
``listAlarms``, ``ackAlarms`` and ``takeNotices``.

An alarm is raised once per finding (``receive`` and the daemon show it as it happens); it
stays listed here until acknowledged, and an acknowledged finding is not raised again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from doorless import client as dl
from doorless.cli import rpc
from doorless.cli.common import state
from doorless.cli.output import JSON, alarm_json, alarm_text, clock, emit, event_json
from doorless.cli.session import checked, usage_error, with_client

if TYPE_CHECKING:
    from doorless.client import Client

app = typer.Typer(
    help=(
        "Key-transparency alarms: what proves that the server (or someone with its "
        "database) misbehaved, each with what to do. Listed until acknowledged."
    ),
    invoke_without_command=True,
    no_args_is_help=False,
)


@app.callback()
def alarms(
    ctx: typer.Context,
    all_: Annotated[
        bool, typer.Option("--all", help="Also list the alarms already acknowledged.")
    ] = False,
) -> None:
    """List the alarms not acknowledged yet (with --all: every alarm)."""
    if ctx.invoked_subcommand is not None:
        return
    st = state(ctx)

    async def main(client: Client) -> None:
        found = await client.alarms(acknowledged=all_)
        await client.mark_notices_shown([a.id for a in found])
        emit(
            st.json,
            {"alarms": [alarm_json(a) for a in found]},
            lambda: (
                "\n".join(f"{a.id}  {clock(a.raised_at)}  {alarm_text(a)}" for a in found)
                or "no alarms"
            ),
        )

    with_client(st, main)


@app.command("ack")
def ack(
    ctx: typer.Context,
    ids: Annotated[
        list[str] | None, typer.Argument(metavar="ID", help="The alarms to acknowledge.")
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Acknowledge every alarm.")] = False,
) -> None:
    """Acknowledge alarms (you have acted on them): they are no longer listed, and the same
    finding does not raise an alarm again."""
    st = state(ctx)
    with checked(st):
        if bool(ids) == all_:
            raise usage_error("name the alarms to acknowledge, or give --all")

    async def main(client: Client) -> None:
        done = await client.ack_alarms(None if all_ else ids)
        emit(st.json, {"acknowledged": done}, f"acknowledged {len(done)} alarm(s)")

    with_client(st, main)


@rpc.method("listAlarms")
async def rpc_list_alarms(client: Client, params: rpc.Params) -> JSON:
    """The alarms not acknowledged yet. Params: optional ``all`` (also acknowledged ones).
    Result: ``{alarms: [{id, kind, detail, advice, device, raised_at}]}``."""
    every = params.flag("all")
    params.done()
    return {"alarms": [alarm_json(a) for a in await client.alarms(acknowledged=every)]}


@rpc.method("ackAlarms")
async def rpc_ack_alarms(client: Client, params: rpc.Params) -> JSON:
    """Acknowledge alarms. Params: ``ids`` (list), or ``all``: true. Result:
    ``{acknowledged: [id, ...]}``."""
    ids = params.strings("ids", required=False)
    every = params.flag("all")
    params.done()
    if bool(ids) == every:
        raise usage_error("give the alarm ids, or all: true")
    return {"acknowledged": await client.ack_alarms(None if every else ids)}


@rpc.method("takeNotices")
async def rpc_take_notices(client: Client, params: rpc.Params) -> JSON:
    """Alarms and roster notices raised while no program showed them (e.g. during a
    ``doorless send`` before the daemon started), as event objects; they count as shown
    from now on. Result: ``{events: [{type, ...}]}``."""
    params.done()
    pending = await client.pending_notices()
    await client.mark_notices_shown([i for n in pending if (i := dl.shown_id(n)) is not None])
    return {"events": [event_json(n) for n in pending]}
