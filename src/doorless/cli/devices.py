"""``doorless device ...``: link this profile as a new device of an account, approve a new
device from an existing one, list and revoke devices; and the daemon methods ``listDevices``,
``getLink``, ``approveLink``, ``revokeDevice``.

Linking is the only way to add a device: the new device shows a code and its fingerprint, the
owner enters the code on a device they already have, compares the fingerprint, and approves.
The approving device then adds the new one to every conversation (visible to all members).
"""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from doorless import client as dl
from doorless.cli import config as profile_config
from doorless.cli import rpc
from doorless.cli.account import DeviceNameOption, ServerOption, account_json
from doorless.cli.common import state
from doorless.cli.config import QuorumOption, WitnessOption
from doorless.cli.output import JSON, clock, device_json, emit, emit_json, fingerprint, safe
from doorless.cli.session import (
    CliError,
    checked,
    client_options,
    parse_user,
    run,
    usage_error,
    with_client,
    with_passphrase,
)
from doorless.errors import ConfigurationError, DoorlessError
from doorless.wire.errors import ErrorCode

if TYPE_CHECKING:
    from doorless.client import Client, DeviceInfo, DeviceLink, HistorySent, PendingLink

app = typer.Typer(
    help="Link, approve, list and revoke the devices of this account.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)


def _same_fingerprint(given: str, device_id: str) -> bool:
    return "".join(given.split()).lower() == device_id.lower()


def link_json(pending: PendingLink) -> JSON:
    return {
        "code": pending.code,
        "username": pending.username,
        "device_id": pending.device_id,
        "fingerprint": pending.fingerprint(),
        "expires_at": pending.expires_at,
        "approved": pending.approved,
    }


@app.command("link")
def link(
    ctx: typer.Context,
    username: Annotated[str, typer.Argument(metavar="USERNAME", help="Your existing account.")],
    server: ServerOption,
    device_name: DeviceNameOption = "",
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout",
            metavar="S",
            help="Give up after S seconds (default: wait until the code expires).",
        ),
    ] = None,
    witness: WitnessOption = None,
    witness_quorum: QuorumOption = None,
) -> None:
    """Make this (new, empty) profile another device of USERNAME.

    Prints a code and this device's fingerprint, then waits: on a device you already have, run
    'doorless device approve CODE' and check that it shows the same fingerprint. With --json,
    two lines: {"type": "link_requested", ...} at once, {"type": "linked", ...} once approved.
    """
    st = state(ctx)
    with checked(st):
        name = parse_user(username)
    new = not profile_config.has_profile_data(st.profile)

    async def main() -> None:
        config = profile_config.with_flags(profile_config.load(st.profile), witness, witness_quorum)

        async def open_with(passphrase: str | None) -> DeviceLink:
            return await dl.Client.begin_link(
                st.profile,
                passphrase,
                server_url=server,
                username=name,
                device_name=device_name,
                options=client_options(config=config),
            )

        pending = await with_passphrase(st.profile, open_with, new=new)
        if witness or witness_quorum is not None:
            profile_config.save(st.profile, config)  # kept for a resumed link and afterwards
        shown = {
            "code": pending.code,
            "device_id": pending.device_id,
            "fingerprint": pending.fingerprint(),
            "expires_at": pending.expires_at,
        }
        if st.json:
            emit_json({"type": "link_requested", **shown})
        else:
            typer.echo(f"link code:   {pending.code}")
            typer.echo(f"fingerprint: {pending.fingerprint()}")
            typer.echo(
                f"On a device of @{name}, run 'doorless device approve {pending.code}' and "
                f"check the fingerprint. Waiting (the code expires at "
                f"{clock(pending.expires_at * 1000)}) ..."
            )
        try:
            client = await pending.complete(timeout=timeout)
        except TimeoutError:
            await pending.cancel()
            raise CliError(
                ErrorCode.TIMEOUT,
                "not approved in time; run the same command again to keep waiting",
            ) from None
        except BaseException:
            await pending.cancel()
            raise
        async with client:
            data = account_json(client)
        emit(
            st.json,
            {"type": "linked", **data},
            f"linked: this profile is now a device of @{data['username']}",
        )

    run(st, main)


def _confirm(pending: PendingLink) -> bool:
    typer.echo(f"new device of @{safe(pending.username)}")
    typer.echo(f"fingerprint: {pending.fingerprint()}")
    return typer.confirm("Does the new device show the same fingerprint? Approve it")


@app.command("approve")
def approve(
    ctx: typer.Context,
    code: Annotated[str, typer.Argument(metavar="CODE", help="The code the new device shows.")],
    expect: Annotated[
        str | None,
        typer.Option(
            "--fingerprint",
            metavar="FP",
            help="The fingerprint the new device shows: approve only if it matches.",
        ),
    ] = None,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Approve without asking (scripts).")
    ] = False,
    history: Annotated[
        str,
        typer.Option(
            "--history",
            metavar="none|days:N|all",
            help=(
                "Hand the new device your conversation history (the last N days, or all), "
                "encrypted to it alone (default: none)."
            ),
        ),
    ] = "none",
) -> None:
    """Approve a new device of your account (it then joins all your conversations).

    Shows the new device's fingerprint and asks to confirm that the new device shows the
    same; --fingerprint checks it for you, --yes skips the question. --history also sends it
    the chosen history, which it shows marked as transferred.
    """
    st = state(ctx)
    with checked(st):
        choice = _history_choice(history)

    async def main(client: Client) -> None:
        pending = await client.get_link(code)
        if expect is not None:
            if not _same_fingerprint(expect, pending.device_id):
                raise CliError(
                    ErrorCode.FINGERPRINT_MISMATCH,
                    f"the fingerprint is {pending.fingerprint()}, not the one given: not approved",
                )
        elif not yes:
            if not sys.stdin.isatty():
                raise usage_error(
                    "compare the fingerprint: pass --fingerprint FP (or --yes) when not on a "
                    "terminal"
                )
            if not await asyncio.to_thread(_confirm, pending):
                raise CliError(ErrorCode.CANCELLED, "not approved")
        ref = await client.approve_link(pending)
        sent = await _hand_over(client, ref.device_id, choice)
        text = f"approved device {fingerprint(ref.device_id)} of @{ref.user}"
        if sent is not None:
            text += f"; handed it {sent.messages} messages of {sent.conversations} conversations"
        emit(
            st.json,
            {
                "device_id": ref.device_id,
                "fingerprint": fingerprint(ref.device_id),
                "history": history_json(sent),
            },
            text,
        )

    with_client(st, main)


def _history_choice(value: str) -> dl.HistoryChoice:
    try:
        return dl.HistoryChoice.parse(value)
    except ConfigurationError as e:
        raise usage_error(str(e)) from None


def history_json(sent: HistorySent | None) -> JSON | None:
    if sent is None:
        return None
    return {
        "messages": sent.messages,
        "conversations": sent.conversations,
        "since": sent.since_ms,
    }


async def _hand_over(
    client: Client, device_id: str, choice: dl.HistoryChoice
) -> HistorySent | None:
    """The history handoff after an approval; its failure says the approval stands."""
    if choice.none:
        return None
    try:
        return await client.send_history(device_id, choice)
    except DoorlessError as e:
        raise CliError(
            ErrorCode.FAILED,
            f"approved device {fingerprint(device_id)}, but its history was not sent: {e}",
        ) from e


def _device_line(d: DeviceInfo, me: str, name: str) -> str:
    mark = "*" if d.device_id == me else " "
    state_ = f"revoked {clock(d.revoked_at * 1000)}" if d.revoked_at else "active"
    shown = f"  {safe(name)}" if name else ""
    return (
        f"{mark} {fingerprint(d.device_id)}  linked {clock(d.created_at * 1000)}  {state_}{shown}"
    )


@app.command("list")
def list_(ctx: typer.Context) -> None:
    """List this account's devices (* marks this one); the approval chain is checked."""
    st = state(ctx)

    async def main(client: Client) -> None:
        devices = await client.devices()
        names = await client.device_names()
        emit(
            st.json,
            {
                "devices": [
                    device_json(d, client.device_id, names.get(d.device_id, "")) for d in devices
                ]
            },
            lambda: "\n".join(
                _device_line(d, client.device_id, names.get(d.device_id, "")) for d in devices
            ),
        )

    with_client(st, main)


async def _device_id(client: Client, given: str) -> str:
    wanted = "".join(given.split()).lower()
    matches = [d.device_id for d in await client.devices() if d.device_id.startswith(wanted)]
    if len(wanted) < 8 or len(matches) != 1:
        raise CliError(
            ErrorCode.NOT_FOUND,
            f"no device {given!r} of this account (give 8+ characters of its fingerprint)",
        )
    return matches[0]


@app.command("revoke")
def revoke(
    ctx: typer.Context,
    device: Annotated[
        str, typer.Argument(metavar="DEVICE", help="Its fingerprint (or 8+ characters of it).")
    ],
) -> None:
    """Revoke another device of this account and remove it from every conversation."""
    st = state(ctx)

    async def main(client: Client) -> None:
        device_id = await _device_id(client, device)
        await client.revoke_device(device_id)
        emit(
            st.json,
            {"device_id": device_id, "revoked": True},
            f"revoked device {fingerprint(device_id)}",
        )

    with_client(st, main)


# --- daemon methods ---------------------------------------------------------------------------


@rpc.method("listDevices")
async def rpc_list_devices(client: Client, params: rpc.Params) -> JSON:
    """This account's devices (approval chain checked). Result: ``{devices}``."""
    params.done()
    devices = await client.devices()
    names = await client.device_names()
    return {
        "devices": [device_json(d, client.device_id, names.get(d.device_id, "")) for d in devices]
    }


@rpc.method("getLink")
async def rpc_get_link(client: Client, params: rpc.Params) -> JSON:
    """A new device's pending request. Params: ``code``. Result: ``{code, username,
    device_id, fingerprint, expires_at, approved}``: compare the fingerprint."""
    code = params.string("code")
    params.done()
    return link_json(await client.get_link(code))


@rpc.method("approveLink")
async def rpc_approve_link(client: Client, params: rpc.Params) -> JSON:
    """Approve a new device. Params: ``code``, ``fingerprint`` (what the new device shows;
    required, so that a bot cannot approve blindly). Result: ``{device_id, fingerprint}``."""
    code, expect = params.string("code"), params.string("fingerprint")
    choice = _history_choice(params.opt_string("history") or "none")
    params.done()
    pending = await client.get_link(code)
    if not _same_fingerprint(expect, pending.device_id):
        raise CliError(
            ErrorCode.FINGERPRINT_MISMATCH, "the fingerprint does not match: not approved"
        )
    ref = await client.approve_link(pending)
    sent = await _hand_over(client, ref.device_id, choice)
    return {
        "device_id": ref.device_id,
        "fingerprint": fingerprint(ref.device_id),
        "history": history_json(sent),
    }


@rpc.method("revokeDevice")
async def rpc_revoke_device(client: Client, params: rpc.Params) -> JSON:
    """Revoke another device of this account. Params: ``device_id`` (or 8+ characters)."""
    given = params.string("device_id")
    params.done()
    device_id = await _device_id(client, given)
    await client.revoke_device(device_id)
    return {"device_id": device_id, "revoked": True}


__all__ = ["app", "history_json", "link_json"]
