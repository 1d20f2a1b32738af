"""``doorless account ...``: create an account (this profile becomes its first device), show it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from doorless import client as dl
from doorless.cli import config as profile_config
from doorless.cli import rpc
from doorless.cli.common import state
from doorless.cli.config import QuorumOption, WitnessOption
from doorless.cli.output import JSON, emit, fingerprint
from doorless.cli.session import (
    checked,
    client_options,
    open_client,
    parse_user,
    run,
    with_passphrase,
)

if TYPE_CHECKING:
    from doorless.client import Client

app = typer.Typer(
    help="Create or show the account of this profile.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)

ServerOption = Annotated[
    str,
    typer.Option(
        "--server",
        metavar="URL",
        envvar="DOORLESS_SERVER",
        help="The Doorless server, e.g. https://chat.example (or $DOORLESS_SERVER).",
    ),
]
DeviceNameOption = Annotated[
    str,
    typer.Option(
        "--device-name", metavar="NAME", help="A name for this device (kept in this profile)."
    ),
]


def account_json(client: Client) -> JSON:
    return {
        "username": client.username,
        "device_id": client.device_id,
        "fingerprint": fingerprint(client.device_id),
        "server_url": client.server_url,
        "profile": str(client.profile_dir),
    }


def _account_text(info: JSON) -> str:
    return (
        f"@{info['username']} on {info['server_url']}\n"
        f"this device: {info['fingerprint']}\n"
        f"profile: {info['profile']}"
    )


@app.command("create")
def create(
    ctx: typer.Context,
    username: Annotated[
        str, typer.Argument(metavar="USERNAME", help="Lowercase letters, digits, . _ -")
    ],
    server: ServerOption,
    invite: Annotated[
        str | None,
        typer.Option("--invite", metavar="CODE", help="Invite code, if the server needs one."),
    ] = None,
    device_name: DeviceNameOption = "",
    witness: WitnessOption = None,
    witness_quorum: QuorumOption = None,
) -> None:
    """Register USERNAME on the server, with this profile as its first device.

    The profile (--profile, $DOORLESS_PROFILE or ~/.doorless) is encrypted with a key from
    the passphrase in $DOORLESS_PASSPHRASE, or asked for on the terminal. With --witness, every
    log head this device accepts (from the registration on) must be cosigned by those
    witnesses; the keys are saved in the profile's config.toml ('doorless config').
    """
    st = state(ctx)
    with checked(st):
        name = parse_user(username)

    async def main() -> None:
        config = profile_config.with_flags(profile_config.load(st.profile), witness, witness_quorum)

        async def open_with(passphrase: str | None) -> Client:
            return await dl.Client.create_account(
                st.profile,
                passphrase,
                server_url=server,
                username=name,
                invite_code=invite,
                device_name=device_name,
                options=client_options(config=config),
            )

        client = await with_passphrase(st.profile, open_with, new=True)
        async with client:
            info = account_json(client)
        if witness or witness_quorum is not None:
            profile_config.save(st.profile, config)
        emit(st.json, info, lambda: "created " + _account_text(info))

    run(st, main)


@app.command("info")
def info(ctx: typer.Context) -> None:
    """Show this profile's account: user, server, this device's fingerprint."""
    st = state(ctx)

    async def main() -> None:
        client = await open_client(st)
        async with client:
            data = account_json(client)
        emit(st.json, data, lambda: _account_text(data))

    run(st, main)


@rpc.method("whoami")
async def rpc_whoami(client: Client, params: rpc.Params) -> JSON:
    """The daemon's account: ``{username, device_id, fingerprint, server_url, profile}``."""
    params.done()
    return account_json(client)


__all__ = ["account_json", "app"]
