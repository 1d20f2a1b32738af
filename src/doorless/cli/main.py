"""The ``doorless`` command: ``doorless [--profile DIR] [--json] COMMAND ...``.

Global options live on the app callback and reach commands through `State` (``ctx.obj``).
Each command is a small module of this package; this one only wires them together.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from doorless import __version__
from doorless.cli import (
    EXIT_INTERRUPTED,
    account,
    alarms,
    backup,
    call,
    contacts,
    daemon,
    demo,
    devices,
    export,
    groups,
    messaging,
    rich,
    safety,
    search,
    vectors,
    verify,
    witness,
)
from doorless.cli import config as profile_config
from doorless.cli.app import app as app_command
from doorless.cli.common import State, default_profile
from doorless.cli.server import server_app


class _Program(typer.Typer):
    """The app, as the ``doorless`` script calls it: a Ctrl-C before a command handles it
    (while the commands are being set up) is an exit 130 with one line, like any other."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except KeyboardInterrupt:
            typer.echo("error: interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)


app = _Program(
    name="doorless",
    help=(
        "Doorless: end-to-end encrypted messaging with no back door, built on our own "
        "MLS (RFC 9420) implementation."
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,  # plain click help: stable text, no boxes
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"doorless {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    profile: Annotated[
        Path | None,
        typer.Option(
            "--profile",
            metavar="DIR",
            help=(
                "Profile directory: this device's encrypted local state (default: "
                "$DOORLESS_PROFILE or ~/.doorless). Its passphrase comes from "
                "$DOORLESS_PASSPHRASE or is asked for on the terminal."
            ),
            file_okay=False,
        ),
    ] = None,
    json_output: Annotated[
        bool,
        typer.Option("--json", help="Machine-readable output: one JSON object per line."),
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", callback=_version, is_eager=True
        ),
    ] = False,
) -> None:
    ctx.obj = State(profile=profile or default_profile(), json=json_output)


app.command(
    "vectors",
    help=vectors.HELP,
    short_help=vectors.SHORT_HELP,
    epilog=vectors.EPILOG,
    no_args_is_help=True,
)(vectors.command)
app.add_typer(server_app, name="server")
app.command("witness", help=witness.HELP, short_help="Run a key-transparency witness.")(
    witness.command
)
app.command("verify", help=verify.HELP, short_help="Show and confirm a safety number.")(
    verify.command
)

# The messenger (docs/cli.md). Each module holds its commands and the matching JSON-RPC methods
# of the daemon; registering a module here is all a new command needs.
app.add_typer(account.app, name="account")
app.add_typer(profile_config.app, name="config")
app.add_typer(devices.app, name="device")
app.add_typer(groups.app, name="group")
app.command("send", short_help="Send a text to @USER or --group NAME.")(messaging.send)
app.command("send-file", short_help="Send a file to @USER or --group NAME.")(messaging.send_file)
app.command("receive", short_help="Fetch and show incoming messages and events.")(messaging.receive)
app.command("history", short_help="Show the stored messages of a conversation.")(messaging.history)
app.command("download", short_help="Download and decrypt a received file.")(messaging.download)
app.command("conversations", short_help="List this profile's conversations.")(
    messaging.conversations
)
app.command("demo", short_help="See it work: a local server, three users, a group chat.")(demo.demo)
app.command("daemon", short_help="Serve JSON-RPC 2.0 for bots (stdin/stdout, Unix socket).")(
    daemon.daemon
)
app.command("app", short_help="Chat in a browser window served by this profile's client.")(
    app_command
)
# Contact safety (doorless.cli.safety).
app.command("report", short_help="Report received messages to the moderators.")(safety.report)
app.add_typer(safety.requests_app, name="requests")
app.command("block", short_help="Block a user on all your devices.")(safety.block)
app.command("unblock", short_help="Unblock a user.")(safety.unblock)
app.command("blocked", short_help="List the users you block.")(safety.blocked)
app.add_typer(alarms.app, name="alarms")
app.add_typer(call.app, name="call")  # audio and video calls (doorless.cli.call)
app.command("disappearing", short_help="Show or set a disappearing-message timer.")(
    safety.disappearing
)
# Local history (doorless.cli.search, .export, .contacts).
app.command("search", short_help="Search your own messages (no network).")(search.search)
app.command("export", short_help="Export a conversation to JSON or Markdown.")(export.export)
app.add_typer(contacts.app, name="contacts")
app.add_typer(backup.app, name="backup")
# Rich messages (doorless.cli.rich).
app.command("reply", short_help="Answer a message (it is quoted).")(rich.reply)
app.command("react", short_help="React to a message with an emoji (--remove: take it back).")(
    rich.react
)
app.command("edit", short_help="Replace the text of one of your messages.")(rich.edit)
app.command("delete", short_help="Delete one of your messages for everyone.")(rich.delete)
app.command("edits", short_help="Show the earlier texts of an edited message.")(rich.edits)
app.command("read", short_help="Send a 'read up to' receipt to a conversation.")(rich.read)
app.command("typing", short_help="Tell a conversation you are typing.")(rich.typing)


if __name__ == "__main__":  # pragma: no cover
    app()
