"""``doorless daemon``: the profile's client, kept running, driven by JSON-RPC 2.0.

Requests and answers are JSON objects, one per line (UTF-8), on stdin/stdout (``--json-rpc``)
and/or on a Unix socket (``--socket PATH``, any number of connections). Every connection gets
the notifications ``{"jsonrpc": "2.0", "method": "event", "params": {...}}`` of what the client
receives (the JSON of `doorless.cli.output.event_json`, as ``doorless --json receive`` prints
it). Requests run concurrently; answers come when ready, matched by ``id``. The methods are
in `doorless.cli.rpc.METHODS` and ``docs/json-rpc.md``.

The daemon holds the profile (other ``doorless`` commands on it wait for it to stop). It ends
on EOF of stdin (with ``--json-rpc``), SIGINT or SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import stat
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from doorless import __version__
from doorless import client as dl
from doorless.cli import config as profile_config
from doorless.cli import rpc
from doorless.cli.common import state
from doorless.cli.messaging import receive_cursor
from doorless.cli.output import event_json
from doorless.cli.session import CliError, open_client, run, usage_error
from doorless.wire.errors import ErrorCode

if TYPE_CHECKING:
    from doorless.client import Client, Event

log = logging.getLogger("doorless.daemon")

# A request line may carry a long text; nothing legitimate comes near this.
MAX_LINE = 4 * 1024 * 1024


class Connection:
    """Where answers and notifications of one peer go."""

    def __init__(self, name: str, write: Callable[[bytes], Awaitable[None]]) -> None:
        self.name = name
        self._write = write
        self._lock = asyncio.Lock()
        self.open = True

    async def send(self, line: str) -> None:
        if not self.open:
            return
        async with self._lock:
            try:
                await self._write(line.encode("utf-8") + b"\n")
            except (OSError, ConnectionError, RuntimeError):
                self.open = False


class Daemon:
    """Dispatches request lines to the methods and broadcasts the client's events."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.connections: set[Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.stopped = asyncio.Event()

    def spawn(self, job: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(job)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def handle_line(self, connection: Connection, line: bytes) -> None:
        if not line.strip():
            return
        answer = await rpc.dispatch(self.client, line)
        if answer is not None:
            await connection.send(answer)

    async def broadcast(self, event: Event) -> bool:
        """Send an event to every open connection; True if anyone was there to get it."""
        line = rpc.notification("event", event_json(event))
        targets = [c for c in self.connections if c.open]
        for connection in targets:
            await connection.send(line)
        return any(c.open for c in targets)

    async def pump_events(self, events: AsyncIterator[Event]) -> None:
        cursor = receive_cursor(self.client)
        async for event in events:
            try:
                delivered = await self.broadcast(event)
                if delivered and isinstance(event, dl.MessageReceived):
                    await cursor.advance([event.message])
                if delivered and (notice := dl.shown_id(event)) is not None:
                    await self.client.mark_notices_shown([notice])
            except Exception:  # one bad event must not end the notifications
                log.exception("could not pass on a %s event", type(event).__name__)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


# --- stdin/stdout -----------------------------------------------------------------------------


def _read_stdin(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[bytes | None]) -> None:
    """In a thread: stdin may be a file, a pipe or a terminal, and a blocking read is fine."""
    try:
        for line in sys.stdin.buffer:
            loop.call_soon_threadsafe(queue.put_nowait, line)
    finally:
        with contextlib.suppress(RuntimeError):  # the loop is closed already
            loop.call_soon_threadsafe(queue.put_nowait, None)


async def serve_stdio(daemon: Daemon) -> None:
    """Serve stdin/stdout until stdin ends."""

    async def write(data: bytes) -> None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()

    connection = Connection("stdio", write)
    daemon.connections.add(connection)
    queue: asyncio.Queue[bytes | None] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    threading.Thread(target=_read_stdin, args=(loop, queue), daemon=True).start()
    pending: set[asyncio.Task[None]] = set()
    while (line := await queue.get()) is not None:
        task = daemon.spawn(daemon.handle_line(connection, line))
        pending.add(task)
        task.add_done_callback(pending.discard)
    # EOF: answer what was asked before stopping (`echo '{...}' | doorless daemon --json-rpc`).
    await asyncio.gather(*pending, return_exceptions=True)
    daemon.stopped.set()


# --- Unix socket ------------------------------------------------------------------------------


def _claim_socket_path(path: Path) -> None:
    """Remove a stale socket file (no one listening); refuse anything else in the way."""
    if not path.exists():
        return
    if not stat.S_ISSOCK(path.stat().st_mode):
        raise usage_error(f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        path.unlink()
        return
    finally:
        probe.close()
    raise CliError(ErrorCode.SOCKET_IN_USE, f"another process listens on {path}")


async def serve_socket(daemon: Daemon, path: Path) -> asyncio.AbstractServer:
    """Listen on a Unix socket that only this user can open (mode 0600)."""
    _claim_socket_path(path)

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def write(data: bytes) -> None:
            writer.write(data)
            await writer.drain()

        connection = Connection("socket", write)
        daemon.connections.add(connection)
        try:
            while line := await reader.readline():
                daemon.spawn(daemon.handle_line(connection, line))
        except (ValueError, ConnectionError) as exc:  # ValueError: a line over the limit
            log.warning("closing a socket connection: %s", type(exc).__name__)
        finally:
            connection.open = False
            daemon.connections.discard(connection)
            writer.close()
            with contextlib.suppress(OSError, ConnectionError):
                await writer.wait_closed()

    old_umask = os.umask(0o177)
    try:
        server = await asyncio.start_unix_server(on_connect, path=str(path), limit=MAX_LINE)
    finally:
        os.umask(old_umask)
    path.chmod(0o600)
    return server


# --- the command ------------------------------------------------------------------------------


async def run_daemon(client: Client, *, stdio: bool, socket_path: Path | None) -> None:
    daemon = Daemon(client)
    server: asyncio.AbstractServer | None = None
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, daemon.stopped.set)
    try:
        events = client.events()  # subscribed before anything can happen
        daemon.spawn(daemon.pump_events(events))
        if socket_path is not None:
            server = await serve_socket(daemon, socket_path)
        await client.start()
        if socket_path is not None:
            log.warning("doorless daemon: listening on %s", socket_path)
        if stdio:
            daemon.spawn(serve_stdio(daemon))
        await daemon.stopped.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signum)
        if server is not None:
            server.close()
            with contextlib.suppress(OSError):
                assert socket_path is not None
                socket_path.unlink()
        await daemon.close()


def daemon(
    ctx: typer.Context,
    json_rpc: Annotated[
        bool,
        typer.Option("--json-rpc", help="Speak JSON-RPC 2.0 on stdin/stdout (one per line)."),
    ] = False,
    socket_path: Annotated[
        Path | None,
        typer.Option(
            "--socket",
            metavar="PATH",
            dir_okay=False,
            help="Also (or only) listen on this Unix socket (mode 0600).",
        ),
    ] = None,
    log_level: Annotated[
        str, typer.Option(help="Log level on stderr: debug, info, warning or error.")
    ] = "warning",
    witness: Annotated[
        list[str] | None,
        typer.Option(
            "--witness",
            metavar="VKEY",
            help=(
                "Require this witness's cosignatures for this run (repeatable; instead of "
                "kt.witnesses of the profile's config.toml, which is not changed)."
            ),
        ),
    ] = None,
    witness_quorum: Annotated[
        int | None,
        typer.Option(
            "--witness-quorum",
            min=0,
            metavar="N",
            help="How many witnesses must cosign (default: kt.quorum, else all).",
        ),
    ] = None,
) -> None:
    """Keep the client running and serve JSON-RPC 2.0 (for bots and other programs).

    Methods: everything the commands do (send, sendFile, receive, history, createGroup, ...;
    see docs/json-rpc.md). Incoming messages and other events arrive as notifications
    {"jsonrpc":"2.0","method":"event","params":{...}}. Ends on EOF of stdin, SIGINT or SIGTERM.
    """
    st = state(ctx)
    if not json_rpc and socket_path is None:
        typer.echo("error: say --json-rpc (stdin/stdout) and/or --socket PATH", err=True)
        raise typer.Exit(2)
    level = getattr(logging, log_level.upper(), None)
    if not isinstance(level, int):
        typer.echo(f"error: unknown log level {log_level!r}", err=True)
        raise typer.Exit(2)
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )

    async def main() -> None:
        config = None
        if witness or witness_quorum is not None:
            config = profile_config.with_flags(
                profile_config.load(st.profile), witness, witness_quorum
            )
        client = await open_client(st, push=True, config=config)
        async with client:
            await run_daemon(client, stdio=json_rpc, socket_path=socket_path)

    run(st, main)


@rpc.method("version")
async def rpc_version(client: Client, params: rpc.Params) -> dict[str, str]:
    """``{version}`` of this program."""
    params.done()
    return {"version": __version__}


@rpc.method("listMethods")
async def rpc_list_methods(client: Client, params: rpc.Params) -> dict[str, list[str]]:
    """``{methods}``: the names of every method this daemon serves."""
    params.done()
    return {"methods": sorted(rpc.METHODS)}


__all__ = ["Connection", "Daemon", "daemon", "run_daemon", "serve_socket", "serve_stdio"]
