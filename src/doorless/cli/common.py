"""What every command shares: the global options (`State`) and how to print errors."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import typer

# Exit codes of every command.
EXIT_OK = 0
EXIT_FAILED = 1  # the command ran and found a problem (a vector failed, ...)
EXIT_USAGE = 2  # the command could not run as asked (bad option, unknown file kind, ...)


def default_profile() -> Path:
    """``$DOORLESS_PROFILE``, else ``~/.doorless``."""
    env = os.environ.get("DOORLESS_PROFILE")
    return Path(env) if env else Path.home() / ".doorless"


@dataclass(frozen=True, slots=True)
class State:
    """Global options (``doorless [--profile DIR] [--json] COMMAND``), in ``ctx.obj``."""

    profile: Path
    json: bool


def state(ctx: typer.Context) -> State:
    obj = ctx.find_object(State)
    return obj if obj is not None else State(profile=default_profile(), json=False)


def fail_usage(message: str) -> NoReturn:
    """One line on stderr, exit code 2."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(EXIT_USAGE)
