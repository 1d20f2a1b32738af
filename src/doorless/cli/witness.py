"""``doorless witness --server URL --state DIR``: run a key-transparency witness
(`doorless.witness`). It prints its verifier key first: give it to the server operator
(``doorless server --kt-witness KEY``) and to the clients that should require it
(``doorless account create --witness KEY`` or ``doorless config set kt.witnesses KEY``).
``--print-key`` prints the key (creating the witness's state if needed) without contacting
any server, so the server can be started with it before the witness runs."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Annotated

import typer

from doorless.cli.common import EXIT_FAILED, fail_usage, state

HELP = (
    "Run a key-transparency witness: replay the server's log, check it only grows, and "
    "cosign its checkpoints (refusing any that would fork, roll back or drop entries)."
)


def command(
    ctx: typer.Context,
    server: Annotated[
        str | None, typer.Option("--server", metavar="URL", help="The server to watch.")
    ] = None,
    *,
    state_dir: Annotated[
        Path,
        typer.Option(
            "--state", metavar="DIR", file_okay=False, help="Where the witness keeps its state."
        ),
    ],
    name: Annotated[
        str, typer.Option(help="The witness's key name (no spaces or '+').")
    ] = "doorless-witness",
    log_key: Annotated[
        str | None,
        typer.Option(metavar="VKEY", help="The log's key (default: pinned on first contact)."),
    ] = None,
    interval: Annotated[
        float, typer.Option(min=0.1, metavar="SECONDS", help="Polling interval.")
    ] = 10.0,
    once: Annotated[bool, typer.Option("--once", help="Poll once and exit.")] = False,
    print_key: Annotated[
        bool,
        typer.Option(
            "--print-key", help="Print this witness's key and exit (no server is contacted)."
        ),
    ] = False,
) -> None:
    """Watch one server's transparency log and cosign its consistent checkpoints."""
    from doorless.client.transport import Transport
    from doorless.errors import ConfigurationError, RemoteError
    from doorless.kt.checkpoint import NoteVerifier, SignatureType, ed25519_public_key
    from doorless.witness import Witness, WitnessRefused, WitnessState

    json_output = state(ctx).json
    if print_key:
        store = WitnessState(state_dir)
        try:
            seed = store.seed()
        finally:
            store.close()
        try:
            vkey = NoteVerifier(name, SignatureType.COSIGNATURE_V1, ed25519_public_key(seed)).vkey()
        except ConfigurationError as exc:
            fail_usage(str(exc))
        typer.echo(json.dumps({"witness_key": vkey}) if json_output else vkey)
        return
    if server is None:
        fail_usage("say which server to watch: --server URL")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    async def main() -> int:
        assert server is not None
        transport = Transport(server)
        store = WitnessState(state_dir)
        try:
            witness = Witness(transport, store, name=name, log_key=log_key)
            if json_output:
                typer.echo(json.dumps({"witness_key": witness.vkey}))
            else:
                typer.echo(f"witness key: {witness.vkey}")
            if not once:
                await witness.run(interval)
                return 0
            try:
                result = await witness.step()
            except WitnessRefused as exc:
                typer.echo(f"REFUSED: {exc}", err=True)
                return EXIT_FAILED
            if json_output:
                typer.echo(json.dumps({"size": result.size, "cosigned": result.cosigned}))
            else:
                typer.echo(f"size {result.size}: {'cosigned' if result.cosigned else 'unchanged'}")
            return 0
        except RemoteError as exc:
            typer.echo(f"error: {exc}", err=True)
            return EXIT_FAILED
        finally:
            await transport.aclose()
            store.close()

    try:
        code = asyncio.run(main())
    except ConfigurationError as exc:
        fail_usage(str(exc))
    except KeyboardInterrupt:
        code = 0
    raise typer.Exit(code)
