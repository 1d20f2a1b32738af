"""``doorless server ...``: run the server, mint invite codes, print the OpenAPI document.

The web stack is imported inside the commands, so other ``doorless`` commands start fast and
work without the ``server`` extra installed.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from doorless.cli.common import fail_usage, state
from doorless.server.config import ANON_RATE_BURST, MIB, RATE_BURST, Registration, ServerConfig

server_app = typer.Typer(
    help=(
        "Run the Doorless server (delivery service, KeyPackage directory, device registry, "
        "attachment store). It stores only ciphertext and public keys."
    ),
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)

if TYPE_CHECKING:
    from doorless.server.storage.base import Storage

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
    rate_limit: Annotated[
        float,
        typer.Option(
            min=0,
            metavar="N",
            help=(
                f"Requests per second per device (bursts of {RATE_BURST} seconds' worth); "
                "0: no limit."
            ),
        ),
    ] = 20.0,
    anon_rate_limit: Annotated[
        float,
        typer.Option(
            min=0,
            metavar="N",
            help=(
                "Requests per second per client address before login (registration, login; "
                f"bursts of {ANON_RATE_BURST} seconds' worth); 0: no limit (trusted networks, "
                "tests). Many users behind one NAT address need more than the default."
            ),
        ),
    ] = 2.0,
    relay_port: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=65535,
            metavar="UDP_PORT",
            help=(
                "UDP port of the media relay's QUIC listener (calls); without it calls use the "
                "WebSocket fallback only. Its certificate is made in DATA_DIR/relay/."
            ),
        ),
    ] = None,
    relay_host: Annotated[
        str | None,
        typer.Option(metavar="ADDRESS", help="Address of the QUIC relay (default: --host)."),
    ] = None,
    relay_public_host: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help="Host name clients dial for the QUIC relay (default: the API's host name).",
        ),
    ] = None,
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config",
            metavar="FILE",
            exists=True,
            dir_okay=False,
            help=(
                'TOML file of settings: any option above by its name (data-dir = "/srv", '
                "rate-limit = 50, kt-witness = [...]). Options given on the command line win."
            ),
        ),
    ] = None,
) -> None:
    """Serve HTTP and WebSocket: ``doorless server --data-dir DIR [--host H] [--port P]``."""
    if ctx.invoked_subcommand is not None:
        return
    if config_file is not None:
        values = _from_config_file(ctx, config_file)
        data_dir = values["data_dir"]
        host = values["host"]
        port = values["port"]
        registration = values["registration"]
        tls_cert = values["tls_cert"]
        tls_key = values["tls_key"]
        max_message_size = values["max_message_size"]
        max_attachment_size = values["max_attachment_size"]
        attachment_ttl = values["attachment_ttl"]
        log_level = values["log_level"]
        franking_rotation = values["franking_rotation"]
        franking_retention = values["franking_retention"]
        database = values["database"]
        kt_witness = values["kt_witness"]
        redis = values["redis"]
        rate_limit = values["rate_limit"]
        anon_rate_limit = values["anon_rate_limit"]
        relay_port = values["relay_port"]
        relay_host = values["relay_host"]
        relay_public_host = values["relay_public_host"]
    if data_dir is None:
        fail_usage("--data-dir is required")
    if (tls_cert is None) != (tls_key is None):
        fail_usage("--tls-cert and --tls-key go together")
    if log_level.lower() not in ("debug", "info", "warning", "error"):
        fail_usage(f"unknown log level {log_level!r}")

    import uvicorn

    from doorless.errors import ConfigurationError
    from doorless.server.app import create_app
    from doorless.server.backends import make_fanout, make_relay_bridge, make_storage
    from doorless.server.log import configure_logging
    from doorless.server.runtime import tune_gc

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
        rate_per_second=rate_limit,
        rate_burst=max(1, round(RATE_BURST * rate_limit)),
        anon_rate_per_second=anon_rate_limit,
        anon_rate_burst=max(1, round(ANON_RATE_BURST * anon_rate_limit)),
        relay_port=relay_port,
        relay_host=relay_host or host,
        relay_public_host=relay_public_host,
    )
    try:
        storage, fanout = make_storage(config, database), make_fanout(redis)
        bridge = make_relay_bridge(redis)
    except ConfigurationError as exc:
        fail_usage(str(exc))
    try:
        application = create_app(
            config, storage=storage, fanout=fanout, relay_bridge=bridge, on_started=tune_gc
        )
    except ConfigurationError as exc:
        fail_usage(str(exc))
    configure_logging(log_level)
    uvicorn.run(
        application,
        host=host,
        port=port,
        ssl_certfile=str(tls_cert) if tls_cert else None,
        ssl_keyfile=str(tls_key) if tls_key else None,
        log_config=None,  # ours: JSON lines
        access_log=False,  # it would log raw paths and query strings
        server_header=False,
        ws_max_size=64 * 1024,
        ws_per_message_deflate=False,  # frames carry ciphertext, which does not compress
        lifespan="on",
    )


def _positive(minimum: int) -> Any:
    def convert(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"an integer >= {minimum}")
        return value

    return convert


def _rate(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError("a number >= 0")
    return float(value)


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("a string")
    return value


def _path(value: Any) -> Path:
    return Path(_text(value))


def _port(value: Any) -> int:
    port = _positive(0)(value)
    if port > 65535:
        raise ValueError("a port number (0-65535)")
    return int(port)


def _registration(value: Any) -> Registration:
    try:
        return Registration(_text(value))
    except ValueError:
        raise ValueError("'open' or 'invite'") from None


def _texts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise ValueError("a string or a list of strings")
    return [_text(v) for v in value]


# The settings a --config file may hold: every option of `doorless server`, by its name.
_SETTINGS: dict[str, Any] = {
    "data_dir": _path,
    "host": _text,
    "port": _port,
    "registration": _registration,
    "tls_cert": _path,
    "tls_key": _path,
    "max_message_size": _positive(1),
    "max_attachment_size": _positive(1),
    "attachment_ttl": _positive(1),
    "log_level": _text,
    "franking_rotation": _positive(1),
    "franking_retention": _positive(1),
    "database": _text,
    "kt_witness": _texts,
    "redis": _text,
    "rate_limit": _rate,
    "anon_rate_limit": _rate,
    "relay_port": _port,
    "relay_host": _text,
    "relay_public_host": _text,
}


def _from_config_file(ctx: typer.Context, path: Path) -> dict[str, Any]:
    """The options' values: from the command line (or environment) where given there, else
    from the TOML file, else the defaults. Unknown keys and invalid values: usage error."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        fail_usage(f"--config {path}: {exc}")
    values = dict(ctx.params)
    for key, raw in data.items():
        name = key.replace("-", "_")
        convert = _SETTINGS.get(name)
        if convert is None:
            known = ", ".join(n.replace("_", "-") for n in _SETTINGS)
            fail_usage(f"--config {path}: unknown setting {key!r} (known: {known})")
        source = ctx.get_parameter_source(name)
        if source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP"):
            continue  # the command line (or the environment) wins
        try:
            values[name] = convert(raw)
        except ValueError as exc:
            fail_usage(f"--config {path}: {key} must be {exc}")
    for name in ("tls_cert", "tls_key"):
        if values[name] is not None and not values[name].is_file():
            fail_usage(f"--config {path}: {name.replace('_', '-')}: no such file")
    return values


@server_app.command("check")
def check(
    ctx: typer.Context,
    data_dir: DataDir = None,
    database: Database = None,
) -> None:
    """Check the database: SQLite's full integrity and foreign-key checks, or for PostgreSQL
    the schema version and the key-transparency log's consistency; then replay the
    transparency log against its stored prefix trees. Exit status 0 if sound, 1 if not
    (the problems are listed). The server runs a quick check at every start on its own."""
    storage = _storage(data_dir, database)
    problems = asyncio.run(_check(storage))
    if state(ctx).json:
        typer.echo(json.dumps({"ok": not problems, "problems": problems}))
    elif problems:
        for problem in problems:
            typer.echo(f"problem: {problem}")
    else:
        typer.echo("ok: the database passed every check")
    if problems:
        raise typer.Exit(1)


async def _check(storage: Storage) -> list[str]:
    from doorless.errors import DoorlessError
    from doorless.server.kt_service import KtService
    from doorless.server.storage.base import StorageDamaged

    try:
        await storage.open()
    except StorageDamaged as exc:
        return [str(exc)]
    try:
        problems = await storage.check(full=True)
        if not problems:
            kt = KtService(storage, time.time)
            try:
                await kt.open_read_only(await storage.server_id())
            except DoorlessError as exc:
                problems.append(f"key transparency log: {exc}")
        return problems
    finally:
        await storage.close()


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
    from doorless.server.auth import invite_hash

    storage = _storage(data_dir, database)
    raw = ["".join(secrets.choice(INVITE_ALPHABET) for _ in range(16)) for _ in range(count)]
    now = int(time.time())

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
    from doorless.cli.safety import show_reports

    config = ServerConfig(data_dir or Path("."))
    storage = _storage(data_dir, database)
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
    from doorless.cli.safety import rotate_franking_key as rotate

    storage = _storage(data_dir, database)
    asyncio.run(rotate(storage, state(ctx).json))


def _storage(data_dir: Path | None, database: str | None) -> Storage:
    """The store an operator command works on: ``--database`` or the data directory's SQLite
    (a usage error, exit 2, without either or for a bad URL)."""
    if data_dir is None and database is None:
        fail_usage("--data-dir or --database is required")
    from doorless.errors import ConfigurationError
    from doorless.server.backends import make_storage

    try:
        return make_storage(ServerConfig(data_dir or Path(".")), database)
    except ConfigurationError as exc:
        fail_usage(str(exc))


@server_app.command("openapi")
def openapi() -> None:
    """Print the OpenAPI document of the HTTP API (JSON)."""
    import tempfile

    from doorless.server.app import create_app

    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(ServerConfig(Path(tmp)))
        typer.echo(json.dumps(app.openapi(), indent=2, sort_keys=True))


__all__ = ["server_app"]
