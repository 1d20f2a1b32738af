"""``doorless server ...``: run the server, mint invite codes, print the OpenAPI document.

The web stack is imported inside the commands, so other ``doorless`` commands start fast and
work without the ``server`` extra installed.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from pathlib import Path
from typing import Annotated

import typer

from doorless.cli.common import fail_usage, state
from doorless.server.config import MIB, Registration, ServerConfig

server_app = typer.Typer(
    help=(
        "Run the Doorless server (delivery service, KeyPackage directory, device registry, "
        "attachment store). It stores only ciphertext and public keys."
    ),
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)

INVITE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"

Database = Annotated[
    str | None,
    typer.Option(
        "--database",
        metavar="URL",
        envvar="DOORLESS_DATABASE",
        help=(
            "postgresql://user@host:5432/db: a database that several server processes share "
            "(default: SQLite in --data-dir). See docs/deploy.md."
        ),
    ),
]

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        metavar="DIR",
        envvar="DOORLESS_DATA_DIR",
        file_okay=False,
        help="Directory of the database and attachment blobs (created if missing).",
    ),
]


@server_app.callback(invoke_without_command=True)
def serve(
    ctx: typer.Context,
    data_dir: DataDir = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port.")] = 8080,
    registration: Annotated[
        Registration,
        typer.Option(help="'open': anyone may register; 'invite': a code is needed."),
    ] = Registration.open,
    tls_cert: Annotated[
        Path | None, typer.Option(metavar="PEM", exists=True, dir_okay=False)
    ] = None,
    tls_key: Annotated[
        Path | None, typer.Option(metavar="PEM", exists=True, dir_okay=False)
    ] = None,
    max_message_size: Annotated[int, typer.Option(min=1, metavar="BYTES")] = 1 * MIB,
    max_attachment_size: Annotated[int, typer.Option(min=1, metavar="BYTES")] = 100 * MIB,
    attachment_ttl: Annotated[int, typer.Option(min=1, metavar="SECONDS")] = 30 * 24 * 3600,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    franking_rotation: Annotated[
        int, typer.Option(min=1, metavar="SECONDS", help="Replace the franking key this often.")
    ] = 7 * 24 * 3600,
    franking_retention: Annotated[
        int,
        typer.Option(
            min=1, metavar="SECONDS", help="Reports stay verifiable this long after a rotation."
        ),
    ] = 30 * 24 * 3600,
    database: Database = None,
    kt_witness: Annotated[
        list[str] | None,
        typer.Option(
            "--kt-witness",
            metavar="VKEY",
            help=(
                "Key of a witness whose cosignatures the transparency log keeps and serves "
                "(repeat for several; printed by 'doorless witness')."
            ),
        ),
    ] = None,
    redis: Annotated[
        str | None,
        typer.Option(
            "--redis",
            metavar="URL",
            envvar="DOORLESS_REDIS",
            help="redis://host:6379/0: wakes the process holding a device's socket (multi-node).",
        ),
    ] = None,
) -> None:
    """Serve HTTP and WebSocket: ``doorless server --data-dir DIR [--host H] [--port P]``."""
    if ctx.invoked_subcommand is not None:
        return
    if data_dir is None:
        fail_usage("--data-dir is required")
    if (tls_cert is None) != (tls_key is None):
        fail_usage("--tls-cert and --tls-key go together")
    if log_level.lower() not in ("debug", "info", "warning", "error"):
        fail_usage(f"unknown log level {log_level!r}")

    import uvicorn

    from doorless.errors import ConfigurationError
    from doorless.server.app import create_app
    from doorless.server.backends import make_fanout, make_storage
    from doorless.server.log import configure_logging

    config = ServerConfig(
        data_dir=data_dir,
        registration=registration,
        max_message_size=max_message_size,
        max_json_body=max(4 * MIB, 2 * max_message_size + MIB),
        max_attachment_size=max_attachment_size,
        attachment_ttl=attachment_ttl,
        kt_witnesses=tuple(kt_witness or ()),
        franking_rotation=franking_rotation,
        franking_retention=franking_retention,
    )
    try:
        storage, fanout = make_storage(config, database), make_fanout(redis)
    except ConfigurationError as exc:
        fail_usage(str(exc))
    configure_logging(log_level)
    uvicorn.run(
        create_app(config, storage=storage, fanout=fanout),
        host=host,
        port=port,
        ssl_certfile=str(tls_cert) if tls_cert else None,
        ssl_keyfile=str(tls_key) if tls_key else None,
        log_config=None,  # ours: JSON lines
        access_log=False,  # it would log raw paths and query strings
        server_header=False,
        ws_max_size=64 * 1024,
        lifespan="on",
    )


@server_app.command("invite")
def invite(
    ctx: typer.Context,
    data_dir: DataDir = None,
    database: Database = None,
    expires_in: Annotated[
        int, typer.Option(min=60, metavar="SECONDS", help="Validity (default 7 days).")
    ] = 7 * 24 * 3600,
    count: Annotated[int, typer.Option(min=1, max=1000, help="How many codes.")] = 1,
) -> None:
    """Mint single-use invite codes (for ``--registration invite``); prints one per line."""
    if data_dir is None and database is None:
        fail_usage("--data-dir or --database is required")
    from doorless.errors import ConfigurationError
    from doorless.server.auth import invite_hash
    from doorless.server.backends import make_storage

    raw = ["".join(secrets.choice(INVITE_ALPHABET) for _ in range(16)) for _ in range(count)]
    now = int(time.time())

    try:
        storage = make_storage(ServerConfig(data_dir or Path(".")), database)
    except ConfigurationError as exc:
        fail_usage(str(exc))

    async def mint() -> None:
        await storage.open()
        try:
            for code in raw:
                await storage.create_invite(invite_hash(code), now, now + expires_in)
        finally:
            await storage.close()

    asyncio.run(mint())
    for code in raw:
        shown = "-".join(code[i : i + 4] for i in range(0, 16, 4))
        if state(ctx).json:
            typer.echo(json.dumps({"invite_code": shown, "expires_at": now + expires_in}))
        else:
            typer.echo(shown)


@server_app.command("reports")
def reports(
    ctx: typer.Context,
    data_dir: DataDir = None,
    database: Database = None,
    after: Annotated[
        int, typer.Option(min=0, metavar="ID", help="Only reports after this id.")
    ] = 0,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many.")] = 100,
    delete: Annotated[
        list[int] | None,
        typer.Option("--delete", metavar="ID", help="Delete a handled report (repeatable)."),
    ] = None,
    save_attachments: Annotated[
        Path | None,
        typer.Option(metavar="DIR", file_okay=False, help="Decrypt reported attachments here."),
    ] = None,
) -> None:
    """For moderators: the abuse reports users filed (each one verified message)."""
    if data_dir is None and database is None:
        fail_usage("--data-dir or --database is required")
    from doorless.cli.safety import show_reports
    from doorless.errors import ConfigurationError
    from doorless.server.backends import make_storage

    config = ServerConfig(data_dir or Path("."))
    try:
        storage = make_storage(config, database)
    except ConfigurationError as exc:
        fail_usage(str(exc))
    asyncio.run(
        show_reports(
            storage,
            as_json=state(ctx).json,
            after=after,
            limit=limit,
            delete=delete or [],
            save_attachments=save_attachments,
            attachments_dir=config.attachments_dir,
        )
    )


@server_app.command("rotate-franking-key")
def rotate_franking_key(
    ctx: typer.Context, data_dir: DataDir = None, database: Database = None
) -> None:
    """Stamp messages with a fresh franking key from now on (the server also rotates on its
    own, see --franking-rotation); the old key verifies reports until its retention ends."""
    if data_dir is None and database is None:
        fail_usage("--data-dir or --database is required")
    from doorless.cli.safety import rotate_franking_key as rotate
    from doorless.errors import ConfigurationError
    from doorless.server.backends import make_storage

    try:
        storage = make_storage(ServerConfig(data_dir or Path(".")), database)
    except ConfigurationError as exc:
        fail_usage(str(exc))
    asyncio.run(rotate(storage, state(ctx).json))


@server_app.command("openapi")
def openapi() -> None:
    """Print the OpenAPI document of the HTTP API (JSON)."""
    import tempfile

    from doorless.server.app import create_app

    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(ServerConfig(Path(tmp)))
        typer.echo(json.dumps(app.openapi(), indent=2, sort_keys=True))


__all__ = ["server_app"]
