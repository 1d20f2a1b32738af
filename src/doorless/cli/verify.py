"""``doorless verify @USER [--confirm]``: the safety number with a contact.

Prints the 60-digit safety number of this account's and the contact's key sets, both as
verified in the key-transparency log (`doorless.client.safety_number`), and a QR code to scan
instead of reading the digits. Compare them with the contact (in person, or over another
channel); ``--confirm`` records that they matched. If either key set changes later, this
command warns until it is confirmed again (``receive`` shows the change once, as a roster
notice: the transparency log proves the account's own device approved it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from doorless.cli.common import state
from doorless.cli.output import emit
from doorless.cli.session import parse_user, with_client

if TYPE_CHECKING:
    from doorless.client import Client

HELP = (
    "Show the safety number with @USER (60 digits and a QR code, from both key sets as "
    "verified in the transparency log); --confirm records that you compared it."
)


def command(
    ctx: typer.Context,
    user: Annotated[str, typer.Argument(metavar="@USER", help="The contact.")],
    confirm: Annotated[
        bool,
        typer.Option("--confirm", help="Record that you compared the number with the contact."),
    ] = False,
    qr: Annotated[bool, typer.Option("--qr/--no-qr", help="Show the QR code.")] = True,
) -> None:
    """The safety number with a contact (see the module docstring)."""
    st = state(ctx)
    username = parse_user(user)

    async def main(client: Client) -> None:
        from doorless.client import SafetyStatus

        before = await client.safety_number(username)
        result = await client.confirm_safety_number(username) if confirm else before
        number = result.number

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
            },
            text,
        )

    with_client(st, main)
