"""``doorless backup create|restore``: an encrypted backup of the profile, and restoring one
into a fresh profile folder; and the daemon method ``createBackup``.

A backup opens with a recovery key shown once when it is made, or (``--passphrase``) with a
passphrase that must pass a strength check. Restoring rejoins the conversations by external
commit and says which ones it could not rejoin. There is no daemon method for restoring: a
daemon serves a profile that is open, and a restore makes the profile before anything opens
it.
"""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from doorless import client as dl
from doorless.cli import config as profile_config
from doorless.cli import rpc
from doorless.cli.common import state
from doorless.cli.output import JSON, clock, emit, progress_bar, safe, stderr_is_terminal
from doorless.cli.session import (
    client_options,
    run,
    usage_error,
    with_client,
    with_passphrase,
)

if TYPE_CHECKING:
    from doorless.client import BackupSummary, Client, RestoreReport

BACKUP_PASSPHRASE_ENV = "DOORLESS_BACKUP_PASSPHRASE"
RECOVERY_KEY_ENV = "DOORLESS_RECOVERY_KEY"
# Files of the profile folder a backup carries besides the store's content.
PROFILE_FILES = (profile_config.CONFIG_FILE,)

app = typer.Typer(
    help="Make an encrypted backup of this profile, or restore one into a new profile.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)


def _ask(prompt: str, *, twice: bool) -> str:
    value = getpass.getpass(prompt)
    if twice and getpass.getpass("Repeat it: ") != value:
        raise usage_error("the two passphrases differ")
    return value


def _backup_passphrase(*, new: bool) -> str:
    value = os.environ.get(BACKUP_PASSPHRASE_ENV)
    if value:
        return value
    if not sys.stdin.isatty():
        raise usage_error(f"give the backup passphrase in {BACKUP_PASSPHRASE_ENV}")
    return _ask("Backup passphrase: ", twice=new)


def summary_json(summary: BackupSummary) -> JSON:
    return {
        "file": str(summary.path),
        "size": summary.size,
        "conversations": summary.conversations,
        "messages": summary.messages,
        "attachments": summary.attachments,
        "recovery_key": summary.recovery_key,
    }


def _summary_text(summary: BackupSummary) -> str:
    what = (
        f"backup written to {safe(str(summary.path))}: {summary.conversations} conversations, "
        f"{summary.messages} messages, {summary.attachments} files ({summary.size} bytes)"
    )
    if summary.recovery_key is None:
        return f"{what}\nIt opens with the passphrase you chose."
    return (
        f"{what}\n\nRecovery key (shown only now; without it the backup cannot be opened):\n\n"
        f"    {summary.recovery_key}\n\nWrite it down and keep it apart from the backup file."
    )


@app.command("create")
def create(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(metavar="FILE", help="Where to write the backup.")],
    passphrase: Annotated[
        bool,
        typer.Option(
            "--passphrase",
            help=(
                f"Encrypt under a passphrase (from ${BACKUP_PASSPHRASE_ENV}, or asked twice) "
                "instead of a new recovery key; weak passphrases are refused."
            ),
        ),
    ] = False,
    attachments: Annotated[
        bool, typer.Option("--attachments", help="Also include the files of your messages.")
    ] = False,
) -> None:
    """Write an encrypted backup of this profile to FILE.

    It holds your identity, devices, contacts, settings and message history (not the
    conversations' MLS keys: a restored profile rejoins them). Without --passphrase a recovery
    key is printed once (with --json, as "recovery_key"): keep it, it is the only way in.
    """
    st = state(ctx)
    secret = _backup_passphrase(new=True) if passphrase else None

    async def main(client: Client) -> None:
        with progress_bar("backing up", stderr_is_terminal() and not st.json) as progress:
            summary = await client.create_backup(
                file,
                passphrase=secret,
                attachments=attachments,
                profile_files=PROFILE_FILES,
                progress=progress,
            )
        emit(st.json, summary_json(summary), _summary_text(summary))

    with_client(st, main)


def report_json(report: RestoreReport) -> JSON:
    return {
        "profile": str(report.profile),
        "username": report.username,
        "device_id": report.device_id,
        "backup_created_at": report.backup_created_at,
        "conversations": report.conversations,
        "messages": report.messages,
        "attachments": report.attachments,
        "rejoined": list(report.rejoined),
        "not_restored": [
            {"conversation_id": n.conversation_id, "name": n.name, "reason": n.reason}
            for n in report.not_restored
        ],
    }


def _report_text(report: RestoreReport) -> str:
    lines = [
        f"restored @{safe(report.username)} from the backup of "
        f"{clock(report.backup_created_at)}: {report.conversations} conversations, "
        f"{report.messages} messages, {report.attachments} files; "
        f"{len(report.rejoined)} conversations rejoined"
    ]
    if report.not_restored:
        lines.append("not rejoined (their history is kept, read-only):")
        for n in report.not_restored:
            name = safe(n.name) or n.conversation_id[:12]
            lines.append(f"  {name}: {safe(n.reason)}")
    lines.append("Messages sent to you between the backup and now cannot be recovered.")
    return "\n".join(lines)


@app.command("restore")
def restore(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(metavar="FILE", help="The backup file.")],
    recovery_key: Annotated[
        str | None,
        typer.Option(
            "--recovery-key",
            metavar="KEY",
            help=(
                f"The backup's recovery key (else ${RECOVERY_KEY_ENV}, or asked). A passphrase "
                f"backup takes its passphrase from ${BACKUP_PASSPHRASE_ENV} or asks."
            ),
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Replace the profile in --profile (all of it is lost)."),
    ] = False,
) -> None:
    """Restore a backup into the profile named by --profile (a new folder), then rejoin its
    conversations.

    The restored profile's store is encrypted under $DOORLESS_PASSPHRASE (or a passphrase
    asked twice), as for any new profile. A damaged, truncated or wrong-key backup is refused
    and nothing is written; a folder that already holds a profile is refused without --force.
    """
    st = state(ctx)

    async def main() -> None:
        if dl.backup_key_kind(file) is dl.KeyKind.recovery_key:
            key = recovery_key or os.environ.get(RECOVERY_KEY_ENV)
            if not key:
                if not sys.stdin.isatty():
                    raise usage_error(
                        f"give the recovery key: --recovery-key or {RECOVERY_KEY_ENV}"
                    )
                key = _ask("Recovery key: ", twice=False)
        elif recovery_key is not None:
            raise usage_error(
                f"this backup opens with its passphrase (${BACKUP_PASSPHRASE_ENV}), not a "
                "recovery key"
            )
        else:
            key = _backup_passphrase(new=False)
        options = client_options(profile=st.profile)

        async def restore_with(passphrase: str | None) -> RestoreReport:
            show = stderr_is_terminal() and not st.json
            with progress_bar("rejoining conversations", show) as progress:
                return await dl.Client.restore_backup(
                    st.profile,
                    file,
                    key,
                    passphrase,
                    force=force,
                    options=options,
                    progress=progress,
                )

        report = await with_passphrase(st.profile, restore_with, new=True)
        emit(st.json, report_json(report), _report_text(report))

    run(st, main)


# --- daemon methods ---------------------------------------------------------------------------


@rpc.method("createBackup")
async def rpc_create_backup(client: Client, params: rpc.Params) -> JSON:
    """Write an encrypted backup of the profile. Params: ``file``, ``passphrase`` (optional:
    else a new recovery key), ``attachments`` (bool). Result: ``{file, size, conversations,
    messages, attachments, recovery_key}`` (``recovery_key`` null for a passphrase backup)."""
    file = params.string("file")
    passphrase = params.opt_string("passphrase")
    attachments = params.flag("attachments")
    params.done()
    summary = await client.create_backup(
        file, passphrase=passphrase, attachments=attachments, profile_files=PROFILE_FILES
    )
    return summary_json(summary)


__all__ = ["app", "report_json", "summary_json"]
