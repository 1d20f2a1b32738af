"""Messages: ``send``, ``send-file``, ``receive``, ``history``, ``download``, ``conversations``,
and the daemon methods that do the same (``send``, ``sendFile``, ``receive``, ``history``,
``download``, ``sync``, ``listConversations``, ``getConversation``).

``receive`` shows every incoming message once: the profile keeps a cursor (the highest local
message id shown, an app setting of the encrypted store), so messages that another command
happened to fetch (a ``send`` that had to catch up with the group first) are shown by the next
``receive`` all the same.
"""

from __future__ import annotations

import asyncio
import base64
import sys
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from doorless import client as dl
from doorless.cli import rpc
from doorless.cli.common import State, state
from doorless.cli.output import (
    JSON,
    conversation_json,
    conversation_label,
    emit,
    emit_json,
    event_json,
    event_text,
    message_json,
    message_text,
    progress_bar,
    request_label,
    safe,
    short_ids,
    size,
    stderr_is_terminal,
    users,
)
from doorless.cli.session import (
    RECEIVE_CURSOR,
    CliError,
    Target,
    checked,
    find_message,
    open_client,
    resolve,
    run,
    usage_error,
    with_client,
)
from doorless.wire.errors import ErrorCode

if TYPE_CHECKING:
    from doorless.client import Client, Conversation, Event, MessageInfo

UserArg = Annotated[
    str | None,
    typer.Argument(
        metavar="@USER",
        help="The user to write to (their direct conversation).",
        show_default=False,
    ),
]
GroupOption = Annotated[
    str | None,
    typer.Option("--group", "-g", metavar="NAME", help="A group conversation, by name or id."),
]


async def _check_sent(closed: Client, info: MessageInfo) -> None:
    """After a send with a closed client: refused -> an error with the reason (from the
    client's `DeliveryFailed` event); not sent yet -> a warning."""
    if info.state is dl.MessageState.FAILED:
        detail = "refused by the server"
        async for event in closed.events():
            if isinstance(event, dl.DeliveryFailed) and event.message_id == info.message_id:
                detail = f"{event.reason.value}: {event.detail}"
        raise CliError(ErrorCode.REJECTED, f"the message was not sent: {detail}")
    if info.state is dl.MessageState.PENDING:
        typer.echo(
            "warning: the server is unreachable; the message is kept and will be sent by the "
            "next 'doorless receive' (or the daemon)",
            err=True,
        )


def _refused(info: MessageInfo) -> MessageInfo:
    """For the daemon: a message the server refused is an error (the details are in the
    ``delivery_failed`` notification)."""
    if info.state is dl.MessageState.FAILED:
        raise CliError(
            ErrorCode.REJECTED, "the message was not sent (see the delivery_failed notification)"
        )
    return info


def _sent_text(info: MessageInfo, label: str) -> str:
    what = f"file {safe(info.file.name)} ({size(info.file.size)})" if info.file else "message"
    verb = "queued" if info.state is dl.MessageState.PENDING else "sent"
    return f"{verb} {what} to {label} (message {info.message_id[:8]})"


# --- send -------------------------------------------------------------------------------------


def _text_and_target(user: str | None, text: str | None, group: str | None) -> tuple[Target, str]:
    if group is not None:
        if user is not None and text is not None:
            raise usage_error("with --group, give only the TEXT")
        text = user if text is None else text
        user = None
    elif user is None:
        raise usage_error("name one conversation: @USER or --group NAME")
    if text is None:
        if sys.stdin.isatty():
            raise usage_error("no TEXT given (give it as an argument, or on stdin)")
        text = sys.stdin.read().removesuffix("\n")
    if not text:
        raise usage_error("the message is empty")
    return Target.of(user, group), text


def send(
    ctx: typer.Context,
    user: UserArg = None,
    text: Annotated[
        str | None,
        typer.Argument(
            metavar="TEXT", help="The message (read from stdin if omitted).", show_default=False
        ),
    ] = None,
    group: GroupOption = None,
) -> None:
    """Send a text: 'doorless send @bob TEXT' or 'doorless send --group NAME TEXT'.

    A direct conversation with @bob is started if there is none. Without TEXT, the message is
    read from stdin.
    """
    st = state(ctx)
    with checked(st):
        target, body = _text_and_target(user, text, group)

    async def main() -> None:
        client = await open_client(st)
        async with client:
            conv = await resolve(client, target, create=True)
            info = await client.send_text(conv.id, body)
            label = conversation_label(conv, client.username)
        await _check_sent(client, info)
        emit(st.json, message_json(info), lambda: _sent_text(info, label))

    run(st, main)


def send_file(
    ctx: typer.Context,
    user: UserArg = None,
    path: Annotated[
        Path | None,
        typer.Argument(metavar="PATH", help="The file to send.", show_default=False),
    ] = None,
    group: GroupOption = None,
    name: Annotated[
        str | None, typer.Option("--name", help="File name shown to the recipients.")
    ] = None,
    media_type: Annotated[
        str | None, typer.Option("--type", metavar="MIME", help="Media type (default: guessed).")
    ] = None,
) -> None:
    """Send a file: 'doorless send-file @bob PATH' or 'doorless send-file --group NAME PATH'.

    The file is encrypted with a fresh key, uploaded, and its key sent in the conversation.
    A progress bar is shown on stderr when it is a terminal.
    """
    st = state(ctx)
    with checked(st):
        if group is not None:
            if user is not None and path is not None:
                raise usage_error("with --group, give only the PATH")
            path = Path(user) if path is None and user is not None else path
            user = None
        if path is None:
            raise usage_error("no PATH given")
        if not path.is_file():
            raise usage_error(f"{path}: no such file")
        target = Target.of(user, group)
    file_path = path

    async def main() -> None:
        client = await open_client(st)
        async with client:
            conv = await resolve(client, target, create=True)
            show = not st.json and stderr_is_terminal()
            with progress_bar(f"uploading {file_path.name}", show) as progress:
                info = await client.send_file(
                    conv.id, file_path, name=name, media_type=media_type, progress=progress
                )
            label = conversation_label(conv, client.username)
        await _check_sent(client, info)
        emit(st.json, message_json(info), lambda: _sent_text(info, label))

    run(st, main)


# --- receive ----------------------------------------------------------------------------------


def _free_path(directory: Path, name: str) -> Path:
    """``directory/name``, or ``name (1)``, ``name (2)``... if taken. Names from the network
    are reduced to their last path component (the client library already refuses paths)."""
    base = Path(name).name or "file"
    candidate = directory / base
    stem, suffix = Path(base).stem, Path(base).suffix
    n = 1
    while candidate.exists():
        candidate = directory / f"{stem} ({n}){suffix}"
        n += 1
    return candidate


@dataclass
class _Printer:
    """Prints what ``receive`` shows, in text or JSON, and downloads files if asked."""

    st: State
    me: str
    download_dir: Path | None
    conversations: dict[str, Conversation] = field(default_factory=dict)
    saved: dict[int, Path] = field(default_factory=dict)
    nicknames: dict[str, str] = field(default_factory=dict)  # local ones (contacts nick)

    async def refresh(self, client: Client) -> None:
        self.conversations = {c.id: c for c in await client.conversations()}
        self.nicknames = await client.nicknames()

    async def save_file(self, client: Client, m: MessageInfo) -> None:
        if self.download_dir is None or m.file is None or m.local_id in self.saved:
            return
        conv = self.conversations.get(m.conversation_id)
        if conv is not None and conv.is_request:
            return  # a message request: nothing is downloaded until it is accepted
        target = _free_path(self.download_dir, m.file.name)
        await client.download_to(m, target)
        self.saved[m.local_id] = target

    def _saved_to(self, m: MessageInfo) -> Path | None:
        return self.saved.get(m.local_id)

    def message(self, m: MessageInfo) -> None:
        saved = self._saved_to(m)
        conv = self.conversations.get(m.conversation_id)
        if self.st.json:
            data: JSON = {"type": "message_received", "message": message_json(m)}
            if saved is not None:
                data["saved_to"] = str(saved)
            if conv is not None and conv.is_request:
                data["request"] = True
            emit_json(data)
            return
        label = request_label(conv, self.me, m.conversation_id, self.nicknames)
        line = message_text(m, label, self.nicknames)
        typer.echo(line + (f" -> saved to {safe(str(saved))}" if saved is not None else ""))

    def event(self, event: Event) -> None:
        if isinstance(event, dl.MessageReceived):
            self.message(event.message)
            return
        if self.st.json:
            emit_json(event_json(event))
        else:  # the text says what changed, from the conversation as known before
            typer.echo(event_text(event, self.me, self.conversations))
        if isinstance(event, dl.ConversationJoined | dl.ConversationUpdated | dl.MembershipChanged):
            self.conversations[event.conversation.id] = event.conversation


async def _unseen(client: Client, cursor: int) -> list[MessageInfo]:
    """Incoming messages stored after the cursor, in the order this device stored them."""
    found: list[MessageInfo] = []
    for conv in await client.conversations():
        found.extend(
            m for m in await client.history(conv.id, after=cursor, limit=None) if not m.outgoing
        )
    return sorted(found, key=lambda m: m.local_id)


class ReceiveCursor:
    """The highest local id of an incoming message already shown (by ``receive``, or as a
    daemon notification), kept in the profile. Updates are serialized."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._lock = asyncio.Lock()
        self._value: int | None = None

    async def value(self) -> int:
        if self._value is None:
            stored = await self._client.get_app_setting(RECEIVE_CURSOR)
            self._value = int(stored) if stored and stored.isdigit() else 0
        return self._value

    async def advance(self, messages: list[MessageInfo]) -> None:
        async with self._lock:
            current = await self.value()
            new = max([current, *(m.local_id for m in messages)])
            if new != current:
                await self._client.set_app_setting(RECEIVE_CURSOR, str(new))
                self._value = new

    async def unseen(self) -> list[MessageInfo]:
        return await _unseen(self._client, await self.value())

    async def take_unseen(self) -> list[MessageInfo]:
        """The messages not shown yet; they count as shown from now on."""
        async with self._lock:
            found = await self.unseen()
        await self.advance(found)
        return found


_CURSORS: weakref.WeakKeyDictionary[Client, ReceiveCursor] = weakref.WeakKeyDictionary()


def receive_cursor(client: Client) -> ReceiveCursor:
    """The one cursor object of an open client (the daemon and its methods share it)."""
    cursor = _CURSORS.get(client)
    if cursor is None:
        cursor = _CURSORS[client] = ReceiveCursor(client)
    return cursor


async def _show(client: Client, printer: _Printer, cursor: ReceiveCursor, m: MessageInfo) -> None:
    """Show one incoming message, marked shown just before its line is written: a ``receive``
    killed while printing a backlog shows the rest next time and never one twice. (Saving the
    mark takes a disk write, writing the line does not: a kill lands in the former, when
    the message counts as not shown yet, far more often than between the two, the one moment
    where a message would count as shown without its line; it stays in ``history`` then.)"""
    await printer.save_file(client, m)
    await cursor.advance([m])
    printer.message(m)


async def _show_missed(client: Client, printer: _Printer, cursor: ReceiveCursor) -> None:
    """The messages stored but not shown yet (fetched by another command, or by a ``receive``
    that was stopped while printing), oldest first."""
    for m in await cursor.unseen():
        await _show(client, printer, cursor, m)


async def _show_notices(client: Client, printer: _Printer) -> None:
    """Alarms and roster notices stored and not shown yet (raised by this run, or by an
    earlier command that shows no events, such as ``send``): each is shown once."""
    pending = await client.pending_notices()
    for notice in pending:
        printer.event(notice)
    await client.mark_notices_shown([i for n in pending if (i := dl.shown_id(n)) is not None])


async def _queued(events: AsyncIterator[Event]) -> AsyncIterator[Event]:
    """The events already emitted, without waiting for more (nothing emits while this runs:
    no background task in this mode). A queued event is taken without suspending, so a step
    still pending after one turn of the loop means there is none left."""
    while True:
        step = asyncio.ensure_future(anext(events))
        await asyncio.sleep(0)
        if not step.done():
            step.cancel()
            await asyncio.gather(step, return_exceptions=True)
            return
        yield step.result()


async def _receive_once(client: Client, printer: _Printer) -> None:
    cursor = receive_cursor(client)
    await printer.refresh(client)
    await _show_missed(client, printer, cursor)
    events = client.events()  # from now on, the events of this sync, in order
    await client.sync()
    # What the background task of a long-running client does: add this account's new devices
    # to the conversations, and report devices this one has not seen (I3).
    await client.sync_devices()
    async for event in _queued(events):
        if isinstance(event, dl.MessageReceived):
            if event.message.local_id > await cursor.value():
                await _show(client, printer, cursor, event.message)
            continue
        if dl.shown_id(event) is not None:
            continue  # a stored alarm or notice: shown by _show_notices
        printer.event(event)
    await _show_missed(client, printer, cursor)  # anything stored without an event
    await _show_notices(client, printer)


async def _receive_follow(client: Client, printer: _Printer, timeout: float) -> None:
    cursor = receive_cursor(client)
    await printer.refresh(client)
    await _show_missed(client, printer, cursor)
    shown = await cursor.value()
    events = client.events()
    await _show_notices(client, printer)
    await client.sync()  # the first round in the foreground, so that errors are reported
    await client.start()
    step: asyncio.Future[Event] | None = None
    try:
        while True:
            step = asyncio.ensure_future(anext(events))
            done, _ = await asyncio.wait({step}, timeout=None if timeout < 0 else timeout)
            if not done:
                return
            try:
                event = step.result()
            except StopAsyncIteration:
                return
            if isinstance(event, dl.MessageReceived):
                if event.message.local_id <= shown:
                    continue
                await _show(client, printer, cursor, event.message)
            else:
                printer.event(event)
                if (notice := dl.shown_id(event)) is not None:
                    await client.mark_notices_shown([notice])
    finally:
        # Timed out or interrupted (Ctrl-C): the pending wait ends here, before the client
        # closes (else it would end on its own, with an exception nobody retrieves).
        if step is not None and not step.done():
            step.cancel()
            await asyncio.gather(step, return_exceptions=True)


def receive(
    ctx: typer.Context,
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout",
            metavar="S",
            help=(
                "Keep listening until S seconds pass without anything new (negative: until "
                "interrupted). Without it: fetch what is waiting and exit."
            ),
        ),
    ] = None,
    download: Annotated[
        Path | None,
        typer.Option(
            "--download",
            metavar="DIR",
            file_okay=False,
            help="Save received files into DIR (decrypted, hash-checked).",
        ),
    ] = None,
) -> None:
    """Fetch and show incoming messages and events (each message once).

    Files are announced with their message id: 'doorless download ID' saves one. With --json,
    one JSON object per line (the daemon's event notifications have the same shape).
    """
    st = state(ctx)
    if download is not None:
        download.mkdir(parents=True, exist_ok=True)

    async def main() -> None:
        follow = timeout is not None and timeout != 0
        client = await open_client(st, push=follow)
        async with client:
            printer = _Printer(st, client.username, download)
            if follow:
                assert timeout is not None
                await _receive_follow(client, printer, timeout)
            else:
                await _receive_once(client, printer)

    run(st, main)


# --- history, download, conversations ---------------------------------------------------------


def history(
    ctx: typer.Context,
    user: UserArg = None,
    group: GroupOption = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="How many (newest).")] = 50,
) -> None:
    """Show the stored messages of a conversation, oldest first (no network needed)."""
    st = state(ctx)
    with checked(st):
        target = Target.of(user, group)

    async def main(client: Client) -> None:
        conv = await resolve(client, target)
        await client.purge_expired()  # disappearing messages whose time has come (no network)
        messages = await client.history(conv.id, limit=limit)
        nicknames = await client.nicknames()
        label = request_label(conv, client.username, nicknames=nicknames)
        ids = short_ids(messages)
        emit(
            st.json,
            {
                "conversation": conversation_json(conv),
                "messages": [message_json(m) for m in messages],
            },
            lambda: (
                "\n".join(message_text(m, label, nicknames, ids[m.message_id]) for m in messages)
                or f"{label}: no messages"
            ),
        )

    with_client(st, main)


def download(
    ctx: typer.Context,
    message_id: Annotated[
        str, typer.Argument(metavar="MESSAGE_ID", help="As 'receive' shows it (8+ characters).")
    ],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", metavar="PATH", help="File or directory (default: here)."),
    ] = None,
) -> None:
    """Download, decrypt and check a received file (its size and SHA-256 must match)."""
    st = state(ctx)

    async def main(client: Client) -> None:
        m = await find_message(client, message_id)
        if m.file is None:
            raise usage_error(f"message {message_id} has no file")
        if output is None or output.is_dir():
            target = _free_path(output or Path.cwd(), m.file.name)
        else:
            target = output
        show = not st.json and stderr_is_terminal()
        with progress_bar(f"downloading {m.file.name}", show) as progress:
            await client.download_to(m, target, progress=progress)
        result = {"path": str(target), **message_json(m)}
        emit(
            st.json,
            result,
            f"saved {safe(m.file.name)} ({size(m.file.size)}) to {safe(str(target))}",
        )

    with_client(st, main)


def _conversation_line(c: Conversation, me: str, nicknames: dict[str, str]) -> str:
    label = request_label(c, me, nicknames=nicknames)
    status = "" if c.status is dl.ConversationStatus.ACTIVE else f"  [{c.status.value}]"
    suite = f"{c.cipher_suite} (post-quantum)" if c.post_quantum else c.cipher_suite
    if c.upgraded_to is not None:
        status += f"  [upgraded to {c.upgraded_to[:12]}]"
    if c.upgraded_from is not None:
        status += f"  [upgraded from {c.upgraded_from[:12]}]"
    return f"{c.id[:12]}  {label:<24}  {users(c.members)}  {suite}{status}"


def conversations(ctx: typer.Context) -> None:
    """List this profile's conversations (id prefix, name, members, MLS cipher suite)."""
    st = state(ctx)

    async def main(client: Client) -> None:
        convs = await client.conversations()
        nicknames = await client.nicknames()
        emit(
            st.json,
            {"conversations": [conversation_json(c) for c in convs]},
            lambda: (
                "\n".join(_conversation_line(c, client.username, nicknames) for c in convs)
                or "no conversations"
            ),
        )

    with_client(st, main)


# --- daemon methods ---------------------------------------------------------------------------


@rpc.method("send")
async def rpc_send(client: Client, params: rpc.Params) -> JSON:
    """Send a text. Params: one of ``user``/``group``/``conversation_id``, and ``text``.
    Result: the message (``state`` is ``pending`` if the server was unreachable)."""
    target, text = params.target(), params.string("text")
    params.done()
    if not text:
        raise usage_error("the message is empty")  # as 'doorless send' refuses it
    conv = await resolve(client, target, create=True)
    return message_json(_refused(await client.send_text(conv.id, text)))


@rpc.method("sendFile")
async def rpc_send_file(client: Client, params: rpc.Params) -> JSON:
    """Send a file. Params: the conversation, ``path`` (a file the daemon can read), optional
    ``name`` and ``media_type``. Result: the message."""
    target, path = params.target(), Path(params.string("path"))
    name, media_type = params.opt_string("name"), params.opt_string("media_type")
    params.done()
    if not path.is_file():
        raise usage_error(f"{path}: no such file")
    conv = await resolve(client, target, create=True)
    info = await client.send_file(conv.id, path, name=name, media_type=media_type)
    return message_json(_refused(info))


@rpc.method("history")
async def rpc_history(client: Client, params: rpc.Params) -> JSON:
    """Stored messages of a conversation, oldest first. Params: the conversation, optional
    ``limit`` (default 100), ``before``/``after`` (local ids). Result: ``{messages}``."""
    target = params.target()
    limit = params.opt_int("limit")
    before, after = params.opt_int("before"), params.opt_int("after")
    params.done()
    conv = await resolve(client, target)
    await client.purge_expired()  # disappearing messages whose time has come
    messages = await client.history(
        conv.id, limit=100 if limit is None else limit, before=before, after=after
    )
    return {"messages": [message_json(m) for m in messages]}


@rpc.method("download")
async def rpc_download(client: Client, params: rpc.Params) -> JSON:
    """Download and check a received file. Params: ``message_id``; ``path`` (a file or a
    directory to save into) or none, to get the bytes as base64 ``data``."""
    message_id, path = params.string("message_id"), params.opt_string("path")
    params.done()
    m = await find_message(client, message_id)
    if m.file is None:
        raise usage_error(f"message {message_id} has no file")
    result: dict[str, Any] = {"file": message_json(m)["file"]}
    if path is None:
        result["data"] = base64.b64encode(await client.download(m)).decode("ascii")
    else:
        target = Path(path)
        if target.is_dir():
            target = _free_path(target, m.file.name)
        await client.download_to(m, target)
        result["path"] = str(target)
    return result


@rpc.method("receive")
async def rpc_receive(client: Client, params: rpc.Params) -> JSON:
    """Incoming messages not shown yet (neither as a notification nor by an earlier
    ``receive``), oldest first; they count as shown afterwards. For a client that was not
    connected for a while. Result: ``{messages}``."""
    params.done()
    return {"messages": [message_json(m) for m in await receive_cursor(client).take_unseen()]}


@rpc.method("sync")
async def rpc_sync(client: Client, params: rpc.Params) -> JSON:
    """Fetch and process what is queued now (events follow as notifications); retry pending
    sends. Result: ``{processed}``. The daemon also receives by itself (WebSocket)."""
    params.done()
    return {"processed": await client.sync()}


@rpc.method("listConversations")
async def rpc_list_conversations(client: Client, params: rpc.Params) -> JSON:
    """Every conversation of the profile. Result: ``{conversations}``."""
    params.done()
    return {"conversations": [conversation_json(c) for c in await client.conversations()]}


@rpc.method("getConversation")
async def rpc_get_conversation(client: Client, params: rpc.Params) -> JSON:
    """One conversation. Params: one of ``user``/``group``/``conversation_id``; with ``user``,
    ``create: true`` starts the direct conversation if needed."""
    target, create = params.target(), params.flag("create")
    params.done()
    return conversation_json(await resolve(client, target, create=create))


__all__ = [
    "ReceiveCursor",
    "conversations",
    "download",
    "history",
    "receive",
    "receive_cursor",
    "send",
    "send_file",
]
