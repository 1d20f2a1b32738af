"""``doorless app``: a chat window in the browser, served by this profile's own client.

The client runs in this process (as with ``doorless daemon``) and serves a static page on
127.0.0.1; the page talks to it over a WebSocket with the daemon's JSON-RPC methods. The keys
never leave this process: the browser is only the screen. See ``docs/app.md``.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
import webbrowser
from typing import Annotated

import typer

from doorless.cli import config as profile_config
from doorless.cli.common import state
from doorless.cli.output import emit_json
from doorless.cli.session import CliError, run
from doorless.wire.errors import ErrorCode

log = logging.getLogger("doorless.app")


def _listen(port: int) -> socket.socket:
    """A loopback-only listening socket (port 0: any free port)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as exc:
        sock.close()
        raise CliError(
            ErrorCode.INVALID_STATE, f"cannot listen on 127.0.0.1:{port}: {exc}"
        ) from None
    sock.listen(64)
    return sock


def app(
    ctx: typer.Context,
    port: Annotated[
        int,
        typer.Option("--port", min=0, max=65535, help="Port on 127.0.0.1 (default: any free one)."),
    ] = 0,
    no_browser: Annotated[
        bool, typer.Option("--no-browser", help="Only print the link; do not open a browser.")
    ] = False,
    log_level: Annotated[
        str, typer.Option(help="Log level on stderr: debug, info, warning or error.")
    ] = "warning",
) -> None:
    """Chat (and manage devices, groups, safety numbers) in a browser window.

    Runs this profile's client and serves the app on 127.0.0.1 only, then opens the default
    browser at a link holding a one-time secret (printed too: open it yourself with
    --no-browser). A profile without an account is set up from the window (create an account,
    or link this profile as a new device of yours). Ctrl-C stops the app.
    """
    st = state(ctx)
    level = getattr(logging, log_level.upper(), None)
    if not isinstance(level, int):
        typer.echo(f"error: unknown log level {log_level!r}", err=True)
        raise typer.Exit(2)
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )

    # The web server and the call media stack are loaded by this command, not by every other.
    import uvicorn

    from doorless.cli.app.guard import Guard
    from doorless.cli.app.runtime import AppRuntime
    from doorless.cli.app.web import build_app

    async def main() -> None:
        sock = _listen(port)
        guard = Guard(port=sock.getsockname()[1])
        runtime = AppRuntime(st, profile_config.load(st.profile))
        try:
            await runtime.start()
            server = uvicorn.Server(
                uvicorn.Config(
                    build_app(runtime, guard),
                    log_level=logging.getLevelName(max(level, logging.WARNING)).lower(),
                    lifespan="off",
                    ws_per_message_deflate=False,
                    access_log=False,
                )
            )
            url = guard.opening_url()
            if st.json:
                emit_json({"type": "app_started", "url": url, "profile": str(st.profile)})
            else:
                typer.echo(f"Doorless app for profile {st.profile}:\n  {url}")
                typer.echo("Keep this running while you use the window; Ctrl-C stops it.")
            sys.stdout.flush()
            if not no_browser:
                await asyncio.to_thread(webbrowser.open, url)
            await server.serve(sockets=[sock])
        finally:
            await runtime.close()
            sock.close()

    run(st, main)


__all__ = ["app"]
