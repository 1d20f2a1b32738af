"""The ``doorless`` command: ``doorless [--profile DIR] [--json] COMMAND ...``.

Global options live on the app callback and reach commands through `State` (``ctx.obj``).
Each command is a small module of this package; this one only wires them together.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from doorless import __version__
from doorless.cli import vectors
from doorless.cli.common import State, default_profile
from doorless.server.cli import server_app

app = typer.Typer(
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
                "Profile directory holding local state (default: $DOORLESS_PROFILE or "
                "~/.doorless). No command uses it yet."
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


if __name__ == "__main__":  # pragma: no cover
    app()
