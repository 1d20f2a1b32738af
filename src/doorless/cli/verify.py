"""``doorless verify @USER [--confirm]``: the safety number with a contact.

Prints the 60-digit safety number of this account's and the contact's key sets, both as
verified in the key-transparency log (`doorless.client.safety_number`), and a QR code to scan
instead of reading the digits. Compare them with the contact (in person, or over another
channel); ``--confirm`` records that they matched. If either key set changes later, this
command warns until it is confirmed again (``receive`` shows the change once, as a roster
notice: the transparency log proves the account's own device approved it).

It also shows this device's view of the key-transparency log: the fingerprint of the log's
key and the latest verified log head, with that head's checkpoint in base64. Both of you should
see the same log key fingerprint; giving the contact's checkpoint to ``--checkpoint`` compares
the two views (as every message does on its own, docs/key-transparency.md): a server that
showed you different logs is caught (exit 1, a fork).
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING, Annotated

import typer

from doorless.cli import rpc
from doorless.cli.common import state
from doorless.cli.output import JSON, emit
from doorless.cli.session import CliError, checked, parse_user, usage_error, with_client
from doorless.wire.errors import ErrorCode

if TYPE_CHECKING:
    from doorless.client import Client, GossipResult, LogView

HELP = (
    "Show the safety number with @USER (60 digits and a QR code, from both key sets as "
    "verified in the transparency log); --confirm records that you compared it."
)


def decode_checkpoint(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        raise usage_error("the checkpoint is the base64 text 'doorless verify' shows") from None


async def compare(client: Client, username: str, checkpoint: bytes) -> GossipResult:
    """A contact's checkpoint against this device's view; a fork or a checkpoint of another
    log is a `CliError` with what to do."""
    from doorless.client import GossipResult, KtViolation

    try:
        compared = await client.compare_checkpoint(checkpoint)
    except KtViolation as exc:
        raise CliError(
            ErrorCode.REMOTE_ERROR,
            f"KEY TRANSPARENCY ALARM: the server showed you and {username} different "
            f"logs ({exc}). Keys it showed either of you may not be real: do not send "
            "anything sensitive until this is resolved",
        ) from None
    if compared is GossipResult.UNVERIFIABLE:
        raise CliError(
            ErrorCode.INVALID,
            "that checkpoint is not signed by this server's log key: it cannot be "
            "compared (is it from another server, or mistyped?)",
        )
    return compared


def log_json(log: LogView) -> JSON:
    return {
        "log_key": log.log_key,
        "log_key_fingerprint": log.fingerprint,
        "log_size": log.size,
        "log_root": log.root.hex(),
        "checkpoint": base64.b64encode(log.checkpoint).decode("ascii"),
    }


def command(
    ctx: typer.Context,
    user: Annotated[str, typer.Argument(metavar="@USER", help="The contact.")],
    confirm: Annotated[
        bool,
        typer.Option("--confirm", help="Record that you compared the number with the contact."),
    ] = False,
    qr: Annotated[bool, typer.Option("--qr/--no-qr", help="Show the QR code.")] = True,
    checkpoint: Annotated[
        str | None,
        typer.Option(
            "--checkpoint",
            metavar="BASE64",
            help=(
                "The contact's log checkpoint (as their 'doorless verify' prints it): check "
                "that the server showed you both the same log."
            ),
        ),
    ] = None,
) -> None:
    """The safety number with a contact (see the module docstring)."""
    st = state(ctx)
    with checked(st):
        username = parse_user(user)
    theirs = None
    if checkpoint is not None:
        with checked(st):
            theirs = decode_checkpoint(checkpoint)

    async def main(client: Client) -> None:
        from doorless.client import SafetyStatus

        before = await client.safety_number(username)
        log = await client.log_view()
        compared = None if theirs is None else await compare(client, username, theirs)
        result = await client.confirm_safety_number(username) if confirm else before
        number = result.number
        shown = log_json(log)
        encoded = shown["checkpoint"]

        def text() -> str:
            lines = [f"Safety number with {username}:", "", number.display(), ""]
            if before.status is SafetyStatus.CHANGED:
                lines.insert(
                    0,
                    f"!! WARNING: the safety number with {username} CHANGED since you verified "
                    "it: a device was added, removed or replaced on one of the two accounts. "
                    "Compare it again before trusting this conversation.\n",
                )
            if qr:
                lines.append(number.qr_text())
            lines += [
                "",
                f"Transparency log key: {log.fingerprint} (the same for {username}?)",
                f"Log head you verified: size {log.size}, root {log.root.hex()[:16]}",
                f"Your checkpoint (for their --checkpoint): {encoded}",
            ]
            if compared is not None:
                lines.append(
                    f"Their checkpoint is of the same log as yours: no split view between "
                    f"you and {username}."
                )
            if confirm:
                lines.append(f"Recorded: you verified {username}.")
            elif before.status is SafetyStatus.VERIFIED:
                lines.append(f"You verified {username}; their keys have not changed since.")
            else:
                lines.append(f"Compare it with {username}, then run with --confirm.")
            return "\n".join(lines)

        emit(
            st.json,
            {
                "user": username,
                "safety_number": number.digits,
                "status": before.status.value,
                "confirmed": confirm,
                "qr_payload": number.qr_payload().hex(),
                **shown,
                "checkpoint_compared": None if compared is None else compared.value,
            },
            text,
        )

    with_client(st, main)


@rpc.method("safetyNumber")
async def rpc_safety_number(client: Client, params: rpc.Params) -> JSON:
    """The safety number with a contact. Params: ``user``, optional ``confirm`` (record that
    you compared it). Result: ``{user, safety_number, display, status, confirmed,
    qr_payload}`` (``status`` before confirming: ``unverified``, ``verified``, ``changed``)."""
    username = parse_user(params.string("user"))
    confirm = params.flag("confirm")
    params.done()
    before = await client.safety_number(username)
    number = (await client.confirm_safety_number(username)).number if confirm else before.number
    return {
        "user": username,
        "safety_number": number.digits,
        "display": number.display(),
        "status": before.status.value,
        "confirmed": confirm,
        "qr_payload": number.qr_payload().hex(),
    }


@rpc.method("logView")
async def rpc_log_view(client: Client, params: rpc.Params) -> JSON:
    """This device's view of the transparency log: ``{log_key, log_key_fingerprint,
    log_size, log_root, checkpoint}`` (as ``doorless verify`` shows it)."""
    params.done()
    return log_json(await client.log_view())


@rpc.method("compareCheckpoint")
async def rpc_compare_checkpoint(client: Client, params: rpc.Params) -> JSON:
    """``{user, checkpoint}``: compare a contact's checkpoint (base64) with this device's
    view; ``{result: "consistent"}``, or an error (a fork: ``remote_error`` with an alarm)."""
    username = parse_user(params.string("user"))
    theirs = decode_checkpoint(params.string("checkpoint"))
    params.done()
    return {"result": (await compare(client, username, theirs)).value}
