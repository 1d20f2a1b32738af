"""Contact safety: ``report``, ``requests``, ``block``/``unblock``/``blocked``,
``disappearing``, the daemon methods that do the same (``report``, ``listRequests``,
``acceptRequest``, ``blockRequest``, ``reportRequest``, ``block``, ``unblock``,
``listBlocked``, ``setDisappearing``), and the moderator's side for ``doorless server
reports`` and ``doorless server rotate-franking-key`` (`show_reports`, `rotate_franking_key`).

A report sends the chosen received messages (each one's franked content and the server's
frank, ``docs/franking.md``) to the server, which checks them and files them for its
moderators; nothing else leaves the device.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from doorless import client as dl
from doorless.cli import rpc
from doorless.cli.common import state
from doorless.cli.output import (
    JSON,
    clock,
    conversation_label,
    duration_text,
    emit,
    emit_json,
    safe,
    safe_text,
    size,
)
from doorless.cli.session import (
    CliError,
    Target,
    checked,
    find_message,
    parse_user,
    resolve,
    usage_error,
    with_client,
)
from doorless.wire.errors import ErrorCode

if TYPE_CHECKING:
    from doorless.client import Client, Conversation, ReportReceipt
    from doorless.server.storage.base import ReportRecord, Storage

ReasonOption = Annotated[
    str,
    typer.Option(
        "--reason",
        "-r",
        metavar="REASON",
        help="spam, harassment, threat, sexual_content, child_safety, impersonation or other.",
    ),
]
NoteOption = Annotated[
    str, typer.Option("--note", metavar="TEXT", help="A note for the moderators.")
]
UserArg = Annotated[str, typer.Argument(metavar="@USER", help="The user.")]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(value: str) -> int | None:
    """``off`` -> None; ``90``, ``90s``, ``5m``, ``1h``, ``2d``, ``1w`` -> seconds."""
    text = value.strip().lower()
    if text in ("off", "0", "none"):
        return None
    match = re.fullmatch(r"(\d+)([smhdw]?)", text)
    if match is None:
        raise usage_error(f"not a duration: {value!r} (e.g. 30s, 5m, 1h, 1d, 1w or off)")
    seconds = int(match.group(1)) * _UNITS[match.group(2) or "s"]
    if not 0 < seconds < 2**32:
        raise usage_error("a timer is 1 second to 136 years")
    return seconds


def receipt_json(r: ReportReceipt) -> JSON:
    return {
        "message_id": r.message_id,
        "report_id": r.report_id,
        "sender": r.sender,
        "attachments": list(r.attachments),
    }


def request_json(c: Conversation) -> JSON:
    return {
        "conversation_id": c.id,
        "kind": c.kind.value,
        "name": c.name,
        "from": c.request_from,
        "members": list(c.members),
        "created_at": c.created_at,
    }


def _receipts_text(receipts: list[ReportReceipt]) -> str:
    lines = []
    for r in receipts:
        attached = ", ".join(safe(a) for a in r.attachments)
        files = f", attachments: {attached}" if r.attachments else ""
        lines.append(
            f"reported message {r.message_id[:8]} from @{safe(r.sender)} "
            f"(report {r.report_id}{files})"
        )
    return "\n".join(lines) or "nothing reported"


def _report_failure(exc: dl.ServerError) -> CliError:
    if exc.code == ErrorCode.REPORT_EXPIRED:
        return CliError(
            ErrorCode.REPORT_EXPIRED,
            "the server can no longer verify this message: the franking key that stamped it "
            "was deleted (see docs/franking.md)",
        )
    return CliError(ErrorCode.REJECTED, f"the server refused the report: {exc.message}")


async def _report(
    client: Client, message_ids: list[str], reason: str, note: str
) -> list[ReportReceipt]:
    full = [(await find_message(client, m)).message_id for m in message_ids]
    try:
        return await client.report(full, reason, note)
    except dl.InvalidRequest as exc:
        raise _report_failure(exc) from exc


# --- report -----------------------------------------------------------------------------------


def report(
    ctx: typer.Context,
    message_ids: Annotated[
        list[str],
        typer.Argument(
            metavar="MESSAGE_ID...", help="Received messages (8+ hex digits of the id)."
        ),
    ],
    reason: ReasonOption,
    note: NoteOption = "",
) -> None:
    """Report received messages to the server's moderators.

    Only the messages you name are sent (their content, sender, time and the server's
    stamp); the server checks that they were really sent so and files the report.
    """
    st = state(ctx)
    with checked(st):
        if reason not in dl.REPORT_REASONS:
            raise usage_error(f"unknown reason {reason!r} (one of {', '.join(dl.REPORT_REASONS)})")

    async def main(client: Client) -> None:
        receipts = await _report(client, message_ids, reason, note)
        emit(st.json, {"reports": [receipt_json(r) for r in receipts]}, _receipts_text(receipts))

    with_client(st, main)


# --- message requests -------------------------------------------------------------------------

requests_app = typer.Typer(
    help="Message requests: conversations started by people you have not accepted.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)
RequestArg = Annotated[
    str,
    typer.Argument(
        metavar="REQUEST", help="@USER who sent it, or the conversation id (6+ hex digits)."
    ),
]


async def _find_request(client: Client, name: str) -> Conversation:
    pending = await client.requests()
    if name.startswith("@"):
        user = parse_user(name)
        found = [c for c in pending if c.request_from == user]
    else:
        wanted = name.lower()
        found = [
            c for c in pending if c.id == wanted or (len(wanted) >= 6 and c.id.startswith(wanted))
        ]
    if len(found) == 1:
        return found[0]
    if found:
        raise CliError(
            ErrorCode.AMBIGUOUS, f"{len(found)} requests match {name!r}: name one by its id"
        )
    raise CliError(ErrorCode.NOT_FOUND, f"no message request {name!r}")


def _request_line(c: Conversation, me: str, count: int) -> str:
    where = "direct" if c.kind is dl.ConversationKind.DIRECT else f"group {c.name!r}"
    return f"{c.id[:12]}  from @{safe(c.request_from or '?')}  ({where}, {count} messages)"


@requests_app.command("list")
def requests_list(ctx: typer.Context) -> None:
    """Pending message requests (no receipts, typing or downloads until you accept)."""
    st = state(ctx)

    async def main(client: Client) -> None:
        pending = await client.requests()
        counts = [len(await client.history(c.id, limit=None)) for c in pending]
        emit(
            st.json,
            {"requests": [request_json(c) for c in pending]},
            lambda: (
                "\n".join(
                    _request_line(c, client.username, n)
                    for c, n in zip(pending, counts, strict=True)
                )
                or "no message requests"
            ),
        )

    with_client(st, main)


@requests_app.command("accept")
def requests_accept(ctx: typer.Context, request: RequestArg) -> None:
    """Accept a request: it becomes a normal conversation."""
    st = state(ctx)

    async def main(client: Client) -> None:
        conv = await client.accept_request((await _find_request(client, request)).id)
        label = conversation_label(conv, client.username)
        emit(st.json, {"accepted": request_json(conv)}, f"accepted {label}")

    with_client(st, main)


@requests_app.command("block")
def requests_block(ctx: typer.Context, request: RequestArg) -> None:
    """Decline a request: block its sender (all your devices); its messages are deleted and
    it stays hidden while they are blocked."""
    st = state(ctx)

    async def main(client: Client) -> None:
        conv = await _find_request(client, request)
        user = await client.block_request(conv.id)
        emit(st.json, {"blocked": user, "conversation_id": conv.id}, f"blocked @{safe(user)}")

    with_client(st, main)


@requests_app.command("report")
def requests_report(
    ctx: typer.Context, request: RequestArg, reason: ReasonOption, note: NoteOption = ""
) -> None:
    """Report the sender's messages in a request to the moderators, then block them."""
    st = state(ctx)
    with checked(st):
        if reason not in dl.REPORT_REASONS:
            raise usage_error(f"unknown reason {reason!r} (one of {', '.join(dl.REPORT_REASONS)})")

    async def main(client: Client) -> None:
        conv = await _find_request(client, request)
        try:
            receipts = await client.report_request(conv.id, reason, note)
        except dl.InvalidRequest as exc:
            raise _report_failure(exc) from exc
        emit(
            st.json,
            {"reports": [receipt_json(r) for r in receipts], "blocked": conv.request_from},
            _receipts_text(receipts) + f"\nblocked @{safe(conv.request_from or '?')}",
        )

    with_client(st, main)


# --- blocking ---------------------------------------------------------------------------------


def block(ctx: typer.Context, user: UserArg) -> None:
    """Block a user on all your devices: the server stops delivering their messages and
    invitations to you. They are not told."""
    st = state(ctx)
    with checked(st):
        name = parse_user(user)

    async def main(client: Client) -> None:
        await client.block(name)
        emit(st.json, {"blocked": name}, f"blocked @{name}")

    with_client(st, main)


def unblock(ctx: typer.Context, user: UserArg) -> None:
    """Unblock a user."""
    st = state(ctx)
    with checked(st):
        name = parse_user(user)

    async def main(client: Client) -> None:
        await client.unblock(name)
        emit(st.json, {"unblocked": name}, f"unblocked @{name}")

    with_client(st, main)


def blocked(ctx: typer.Context) -> None:
    """List the users you block (as the server has it for your account)."""
    st = state(ctx)

    async def main(client: Client) -> None:
        users = await client.sync_blocks()
        emit(
            st.json,
            {"blocked": users},
            lambda: "\n".join(f"@{safe(u)}" for u in users) or "nobody is blocked",
        )

    with_client(st, main)


# --- disappearing messages --------------------------------------------------------------------


def disappearing(
    ctx: typer.Context,
    user: Annotated[
        str | None,
        typer.Argument(metavar="@USER", help="A direct conversation.", show_default=False),
    ] = None,
    timer: Annotated[
        str | None,
        typer.Argument(
            metavar="[TIMER]",
            help="30s, 5m, 1h, 1d, 1w or off. Without it, show the current timer.",
            show_default=False,
        ),
    ] = None,
    group: Annotated[
        str | None,
        typer.Option("--group", "-g", metavar="NAME", help="A group, by name or id."),
    ] = None,
) -> None:
    """Show or set a conversation's disappearing-message timer (every member's devices apply
    the same one; new messages are deleted that long after they were sent or received)."""
    st = state(ctx)
    with checked(st):
        if group is not None and user is not None and timer is None:
            user, timer = None, user  # 'disappearing --group NAME 1h'
        target = Target.of(user, group)
        seconds = parse_duration(timer) if timer is not None else None

    async def main(client: Client) -> None:
        conv = await resolve(client, target)
        if timer is not None:
            conv = await client.set_disappearing(conv.id, seconds)
        label = conversation_label(conv, client.username)
        emit(
            st.json,
            {"conversation_id": conv.id, "disappearing_seconds": conv.disappearing_seconds},
            f"{label}: disappearing messages {duration_text(conv.disappearing_seconds)}",
        )

    with_client(st, main)


# --- daemon methods ---------------------------------------------------------------------------


@rpc.method("report")
async def rpc_report(client: Client, params: rpc.Params) -> JSON:
    """Report received messages. Params: ``message_ids`` (list), ``reason`` (spam,
    harassment, threat, sexual_content, child_safety, impersonation, other), optional
    ``note``. Result: ``{reports: [{message_id, report_id, sender, attachments}]}``."""
    ids, reason = params.strings("message_ids"), params.string("reason")
    note = params.opt_string("note") or ""
    params.done()
    if not ids:
        raise usage_error("name at least one message")
    return {"reports": [receipt_json(r) for r in await _report(client, ids, reason, note)]}


@rpc.method("listRequests")
async def rpc_list_requests(client: Client, params: rpc.Params) -> JSON:
    """Pending message requests. Result: ``{requests: [{conversation_id, from, ...}]}``."""
    params.done()
    return {"requests": [request_json(c) for c in await client.requests()]}


@rpc.method("acceptRequest")
async def rpc_accept_request(client: Client, params: rpc.Params) -> JSON:
    """Accept a message request. Params: ``request`` (@user or conversation id)."""
    name = params.string("request")
    params.done()
    conv = await client.accept_request((await _find_request(client, name)).id)
    return {"accepted": request_json(conv)}


@rpc.method("blockRequest")
async def rpc_block_request(client: Client, params: rpc.Params) -> JSON:
    """Decline a message request: block its sender, delete its messages, hide it while they
    stay blocked. Params: ``request``."""
    name = params.string("request")
    params.done()
    conv = await _find_request(client, name)
    return {"blocked": await client.block_request(conv.id), "conversation_id": conv.id}


@rpc.method("reportRequest")
async def rpc_report_request(client: Client, params: rpc.Params) -> JSON:
    """Report the sender's messages in a request, then block them. Params: ``request``,
    ``reason``, optional ``note``."""
    name, reason = params.string("request"), params.string("reason")
    note = params.opt_string("note") or ""
    params.done()
    conv = await _find_request(client, name)
    try:
        receipts = await client.report_request(conv.id, reason, note)
    except dl.InvalidRequest as exc:
        raise _report_failure(exc) from exc
    return {"reports": [receipt_json(r) for r in receipts], "blocked": conv.request_from}


@rpc.method("block")
async def rpc_block(client: Client, params: rpc.Params) -> JSON:
    """Block a user (all devices of this account). Params: ``user``."""
    user = parse_user(params.string("user"))
    params.done()
    await client.block(user)
    return {"blocked": user}


@rpc.method("unblock")
async def rpc_unblock(client: Client, params: rpc.Params) -> JSON:
    """Unblock a user. Params: ``user``."""
    user = parse_user(params.string("user"))
    params.done()
    await client.unblock(user)
    return {"unblocked": user}


@rpc.method("listBlocked")
async def rpc_list_blocked(client: Client, params: rpc.Params) -> JSON:
    """The users this account blocks. Result: ``{blocked: [...]}``."""
    params.done()
    return {"blocked": await client.sync_blocks()}


@rpc.method("setDisappearing")
async def rpc_set_disappearing(client: Client, params: rpc.Params) -> JSON:
    """Set a conversation's disappearing timer. Params: the conversation (``user``, ``group``
    or ``conversation_id``) and ``seconds`` (null: off)."""
    target, seconds = params.target(), params.opt_int("seconds")
    params.done()
    conv = await resolve(client, target)
    conv = await client.set_disappearing(conv.id, seconds)
    return {"conversation_id": conv.id, "disappearing_seconds": conv.disappearing_seconds}


# --- the moderator's side (doorless server ...) -----------------------------------------------


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace")


def report_view(record: ReportRecord) -> JSON:
    """What a moderator sees of a filed report (its message decoded)."""
    from doorless.codec import decode
    from doorless.errors import DecodeError, ValidationError
    from doorless.franking import AbuseReport, FrankedContent
    from doorless.server.franking import report_fingerprint
    from doorless.wire import rich
    from doorless.wire.payload import PayloadKind, content_of, file_of, payload_of

    report = decode(AbuseReport, record.report)
    content = decode(FrankedContent, report.franked_content)
    view: JSON = {
        "report_id": record.report_id,
        "created_at": record.created_at,
        "reason": record.reason,
        "note": report.note,
        "reporter": {"user": record.reporter_username, "device_id": record.reporter_device_id},
        "sender": {"user": record.sender_username, "device_id": record.sender_device_id},
        "group_id": record.group_id.hex(),
        "server_seq": record.server_seq,
        "message": report_fingerprint(record),
        "accepted_at_ms": report.frank.accepted_at_ms,
        "sent_at_ms": content.sent_at_ms,
        "key_id": report.frank.key_id,
        "kind": "unknown",
        "text": None,
        "attachments": [
            {
                "attachment_id": _text(a.locator),
                "media_type": _text(a.media_type),
                "size": a.size,
                "sha256": a.plaintext_sha256.hex(),
                "verdict": verdict,
            }
            for a, verdict in zip(content.attachments, record.attachments, strict=False)
        ],
    }
    try:
        payload = payload_of(content)
        action = rich.classify(content_of(payload)) if payload.kind == PayloadKind.content else None
    except (DecodeError, ValidationError):
        view["text"] = _text(content.body)
        return view
    if payload.kind == PayloadKind.text:
        view["kind"], view["text"] = "text", _text(payload.body)
    elif payload.kind == PayloadKind.file:
        view["kind"], view["file_name"] = "file", file_of(payload).name
    elif isinstance(action, rich.Post | rich.Edit):  # a MIMI container (docs/content.md)
        view["kind"] = "text" if action.text is not None else "file"
        view["text"] = action.text
        if isinstance(action, rich.Post) and action.file_name is not None:
            view["file_name"] = action.file_name
    return view


def _report_text(v: JSON) -> str:
    sender, reporter = v["sender"], v["reporter"]
    lines = [
        f"report {v['report_id']}  {clock(v['created_at'] * 1000)}  reason: {safe(v['reason'])}",
        f"  from @{safe(sender['user'])} (device {safe(sender['device_id'][:8])}), "
        f"reported by @{safe(reporter['user'])}",
        f"  sent {clock(v['accepted_at_ms'])} in group {v['group_id'][:12]} "
        f"(message {v['message']})",
    ]
    if v["kind"] == "file":
        lines.append(f"  [file] {safe(str(v.get('file_name')))}")
    if v["text"] is not None:
        lines.append("  | " + safe_text(str(v["text"])))
    for a in v["attachments"]:
        lines.append(
            f"  attachment {safe(a['attachment_id'])} {safe(a['media_type'])} "
            f"{size(a['size'])}: {a['verdict']}"
        )
    if v["note"]:
        lines.append(f"  note: {safe_text(v['note'])}")
    return "\n".join(lines)


async def show_reports(
    storage: Storage,
    *,
    as_json: bool,
    after: int,
    limit: int,
    delete: list[int],
    save_attachments: Path | None,
    attachments_dir: Path,
) -> None:
    """``doorless server reports``: list filed reports (and delete handled ones)."""
    await storage.open()
    try:
        if delete:
            count = await storage.delete_reports(delete)
            emit(as_json, {"deleted": count}, f"deleted {count} report(s)")
            return
        records = await storage.list_reports(after, limit)
        views = [report_view(r) for r in records]
        if save_attachments is not None:
            for record, view in zip(records, views, strict=True):
                await _save_attachments(record, view, attachments_dir, save_attachments)
        if as_json:
            for view in views:
                emit_json(view)
        else:
            typer.echo("\n\n".join(_report_text(v) for v in views) or "no reports")
    finally:
        await storage.close()


async def _save_attachments(record: ReportRecord, view: JSON, blobs: Path, out: Path) -> None:
    """Decrypt a report's attachments (with the keys the reporter revealed) into ``out``."""
    from doorless.codec import decode
    from doorless.errors import DoorlessError
    from doorless.franking import AbuseReport, FrankedContent, open_attachment
    from doorless.server.blobs import BlobStore

    content = decode(FrankedContent, decode(AbuseReport, record.report).franked_content)
    store = BlobStore(blobs)
    out.mkdir(parents=True, exist_ok=True)
    for i, (descriptor, entry) in enumerate(
        zip(content.attachments, view["attachments"], strict=False)
    ):
        try:
            f = store.open(_text(descriptor.locator))
        except ValueError:
            f = None
        if f is None:
            continue
        with f:
            ciphertext = await asyncio.to_thread(f.read)
        try:
            plaintext = open_attachment(descriptor, ciphertext)
        except DoorlessError:
            continue
        path = out / f"report-{record.report_id}-{i}"
        path.write_bytes(plaintext)
        entry["saved_to"] = str(path)


async def rotate_franking_key(storage: Storage, as_json: bool) -> None:
    """``doorless server rotate-franking-key``: a fresh HMAC key stamps from now on; the old
    one keeps verifying reports for the retention period."""
    from doorless.server.franking import FrankingService

    await storage.open()
    try:
        service = FrankingService(
            storage, rotation_ms=1, retention_ms=1, clock_ms=lambda: int(time.time() * 1000)
        )
        await service.load()
        key_id = await service.rotate()
    finally:
        await storage.close()
    emit(as_json, {"franking_key_id": key_id}, f"franking key {key_id} now stamps messages")


__all__ = [
    "block",
    "blocked",
    "disappearing",
    "duration_text",
    "parse_duration",
    "report",
    "report_view",
    "requests_app",
    "rotate_franking_key",
    "show_reports",
    "unblock",
]
