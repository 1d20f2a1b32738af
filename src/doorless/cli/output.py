"""How the programs show the client library's objects: JSON shapes and one-line texts.

One vocabulary for every program: ``doorless --json ...`` prints these JSON objects, the
JSON-RPC daemon returns them as results and sends events as notifications with them. Keys are
snake_case, like the HTTP API; times are Unix milliseconds, as in the client library.

The client library is imported lazily (``doorless.client`` loads its modules on first use), so
that ``doorless --help`` and commands that do not need it start fast.
"""

from __future__ import annotations

import json
import re
import sys
import time
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

import typer

from doorless import client as dl

if TYPE_CHECKING:
    from doorless.client import (
        Conversation,
        DeviceInfo,
        DeviceRef,
        Event,
        FileInfo,
        MessageInfo,
    )

JSON = dict[str, Any]


# --- JSON shapes ------------------------------------------------------------------------------


def device_ref_json(ref: DeviceRef | None) -> JSON | None:
    if ref is None:
        return None
    return {"user": ref.user, "device_id": ref.device_id}


def fingerprint(device_id: str) -> str:
    """A device id in groups of four, as the client library shows it."""
    return " ".join(device_id[i : i + 4] for i in range(0, len(device_id), 4))


def file_json(file: FileInfo | None) -> JSON | None:
    if file is None:
        return None
    return {
        "name": file.name,
        "media_type": file.media_type,
        "size": file.size,
        "sha256": file.sha256,
    }


def message_json(m: MessageInfo) -> JSON:
    return {
        "conversation_id": m.conversation_id,
        "message_id": m.message_id,
        "local_id": m.local_id,
        "sender": device_ref_json(m.sender),
        "outgoing": m.outgoing,
        "kind": m.kind.value,
        "text": m.text,
        "file": file_json(m.file),
        "sent_at": m.sent_at,
        "received_at": m.received_at,
        "state": m.state.value,
        "transferred": m.transferred,
        "reply_to": m.reply_to,
        "reply_text": m.reply_text,
        "edited": m.edited,
        "deleted": m.deleted,
        "mentions": list(m.mentions),
        "mentions_me": m.mentions_me,
        "reactions": [{"user": r.user, "emoji": r.emoji} for r in m.reactions],
    }


def conversation_json(c: Conversation) -> JSON:
    return {
        "id": c.id,
        "kind": c.kind.value,
        "name": c.name,
        "members": list(c.members),
        "devices": [device_ref_json(d) for d in c.devices],
        "epoch": c.epoch,
        "status": c.status.value,
        "created_at": c.created_at,
        "updated_at": c.updated_at,
        "request_from": c.request_from,
        "disappearing_seconds": c.disappearing_seconds,
        "cipher_suite": c.cipher_suite,
        "post_quantum": c.post_quantum,
        "upgraded_to": c.upgraded_to,
        "upgraded_from": c.upgraded_from,
    }


def device_json(d: DeviceInfo, me: str | None = None, name: str = "") -> JSON:
    return {
        "device_id": d.device_id,
        "fingerprint": fingerprint(d.device_id),
        "name": name,
        "approved_by": d.approved_by,
        "created_at": d.created_at,
        "revoked_at": d.revoked_at,
        "this_device": d.device_id == me,
    }


def _refs(refs: tuple[DeviceRef, ...]) -> list[JSON | None]:
    return [device_ref_json(r) for r in refs]


# Event class name -> (the "type" it has in JSON, its other fields). Table-driven, so a new
# event kind of the client library needs one line here (and a test fails until it has one).
_EVENT_FIELDS: dict[str, tuple[str, Callable[[Any], JSON]]] = {
    "MessageReceived": ("message_received", lambda e: {"message": message_json(e.message)}),
    "MessageSent": ("message_sent", lambda e: {"message": message_json(e.message)}),
    "ConversationJoined": (
        "conversation_joined",
        lambda e: {"conversation": conversation_json(e.conversation), "by": device_ref_json(e.by)},
    ),
    "ConversationUpdated": (
        "conversation_updated",
        lambda e: {"conversation": conversation_json(e.conversation), "by": device_ref_json(e.by)},
    ),
    "MembershipChanged": (
        "membership_changed",
        lambda e: {
            "conversation": conversation_json(e.conversation),
            "added": _refs(e.added),
            "removed": _refs(e.removed),
            "added_users": list(e.added_users),
            "removed_users": list(e.removed_users),
            "by": device_ref_json(e.by),
        },
    ),
    "DeviceChanged": (
        "device_changed",
        lambda e: {
            "device": device_ref_json(e.device),
            "change": e.change.value,
            "conversation_id": e.conversation_id,
            "by": device_ref_json(e.by),
            "notice": e.notice,
        },
    ),
    "DeviceSkipped": (
        "device_skipped",
        lambda e: {"device": device_ref_json(e.device), "detail": e.detail, "notice": e.notice},
    ),
    "TransparencyAlarm": (
        "transparency_alarm",
        lambda e: alarm_json(e),
    ),
    "MessageChanged": (
        "message_changed",
        lambda e: {
            "change": e.change.value,
            "by": device_ref_json(e.by),
            "emoji": e.emoji,
            "message": message_json(e.message),
        },
    ),
    "ReadUpTo": (
        "read_up_to",
        lambda e: {
            "conversation_id": e.conversation_id,
            "reader": device_ref_json(e.reader),
            "message_id": e.message_id,
        },
    ),
    "Typing": (
        "typing",
        lambda e: {
            "conversation_id": e.conversation_id,
            "user": device_ref_json(e.user),
            "active": e.active,
        },
    ),
    "DeliveryFailed": (
        "delivery_failed",
        lambda e: {
            "reason": e.reason.value,
            "detail": e.detail,
            "conversation_id": e.conversation_id,
            "message_id": e.message_id,
            "sender": device_ref_json(e.sender),
            "outgoing": e.outgoing,
        },
    ),
    "CallSignalReceived": (
        "call_signal",
        lambda e: {
            "conversation_id": e.conversation_id,
            "sender": device_ref_json(e.sender),
            "signal": e.signal.type.name,
            "call_id": e.signal.call_id.hex(),
        },
    ),
    "CallUpdated": (
        "call_updated",
        lambda e: {
            "call_id": e.call_id,
            "conversation_id": e.conversation_id,
            "state": e.state.value,
            "participants": _refs(e.participants),
            "privacy_code": e.privacy_code,
            "reason": e.reason,
            "stats": [p.to_json() for p in e.stats],
        },
    ),
}


def alarm_json(e: Any) -> JSON:
    """A `TransparencyAlarm` (an event, or a stored one of ``doorless alarms``)."""
    return {
        "id": e.id,
        "kind": e.kind.value,
        "detail": e.detail,
        "advice": e.advice,
        "device": device_ref_json(e.device),
        "raised_at": e.raised_at,
    }


def event_type(event: Event) -> str:
    entry = _EVENT_FIELDS.get(type(event).__name__)
    return entry[0] if entry is not None else "unknown"


def event_json(event: Event) -> JSON:
    """``{"type": "message_received", ...}``: the params of a daemon notification, and one line
    of ``doorless --json receive``. An event kind this version does not know is ``unknown``."""
    entry = _EVENT_FIELDS.get(type(event).__name__)
    if entry is None:
        return {"type": "unknown", "event": type(event).__name__}
    name, fields = entry
    return {"type": name, **fields(event)}


# --- text -------------------------------------------------------------------------------------


def clock(ms: int | None) -> str:
    if ms is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000))


def size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


# --- peer-controlled text on a terminal -------------------------------------------------------
#
# Every string another party chose (message text, group and file names, media types, device
# names, report notes, usernames, error details quoting them) goes through `safe` (one line) or
# `safe_text` (a message body) before it reaches a terminal. Nothing that can move the cursor,
# start a new line, drive the terminal (ESC/CSI/OSC, C1) or reorder what is shown (bidi
# overrides and isolates) is printed as itself: it is shown as a visible escape (``\x1b``,
# ``\n``, ``<U+202E>``). The ``--json`` output is never rendered: it is exact.

# Continuation lines of a multi-line message start with this, so they can never pass for a line
# of their own (those start with a time, an event word or ``!``).
CONTINUATION = "    | "
# Invisible format characters (Unicode category Cf) that are kept: they join letters (Persian,
# Indic scripts) and emoji sequences, and cannot reorder text or fake a line.
_KEPT_FORMAT = frozenset({"\u200c", "\u200d"})
_ESCAPE_NAMES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\x1b": "\\x1b"}
_LINE_BREAK = re.compile(r"\r\n|\n")
_JSON_LINE_BREAKS = ("\x85", "\u2028", "\u2029")


def _hidden(ch: str) -> bool:
    """Control characters (C0, DEL, C1), surrogates, line and paragraph separators, and format
    characters (bidi embeddings/overrides/isolates/marks, zero-width and other invisible ones)."""
    category = unicodedata.category(ch)
    if category in ("Cc", "Cs", "Zl", "Zp"):
        return True
    return category == "Cf" and ch not in _KEPT_FORMAT


def _visible(ch: str) -> str:
    code = ord(ch)
    if code < 0x20 or 0x7F <= code <= 0x9F:
        return _ESCAPE_NAMES.get(ch, f"\\x{code:02x}")
    return f"<U+{code:04X}>"


def safe(text: str) -> str:
    """A peer-controlled string as one line a terminal shows as it is: every control, line
    separator and invisible format character (bidi overrides, isolates...) is replaced by a
    visible escape (``\\x1b``, ``\\n``, ``<U+202E>``). Markup means nothing to `typer.echo`;
    text for Rich must also go through ``rich.markup.escape``."""
    return "".join(_visible(ch) if _hidden(ch) else ch for ch in text)


def safe_text(text: str) -> str:
    """A message body: like `safe`, but its line breaks are kept, each continuation line
    marked with `CONTINUATION` (it belongs to the same message, never looks like a new one)."""
    return ("\n" + CONTINUATION).join(safe(line) for line in _LINE_BREAK.split(text))


def duration_text(seconds: int | None) -> str:
    """A disappearing-message timer: ``off``, ``30s``, ``5m``, ``1h``, ``2d``, ``1w``."""
    if seconds is None:
        return "off"
    for unit, length in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % length == 0:
            return f"{seconds // length}{unit}"
    return f"{seconds}s"


def one_line(text: str, limit: int = 500) -> str:
    """Whitespace collapsed, at most ``limit`` characters, rendered `safe`."""
    line = " ".join(text.split())
    return safe(line if len(line) <= limit else line[: limit - 3] + "...")


# A local nickname (doorless.client.contacts) is shown as ``~Bobby (@bob)``: after this mark
# and followed by the real username. No name a peer chooses can look like that: usernames
# ([a-z0-9_.-]) are shown bare or after ``@``, group names after ``#``.
NICKNAME_MARK = "~"


def nicknamed(user: str, nicknames: Mapping[str, str] | None, plain: str) -> str:
    """``~Bobby (@bob)`` if this profile calls ``user`` "Bobby", else ``plain``."""
    nickname = nicknames.get(user) if nicknames else None
    return f"{NICKNAME_MARK}{safe(nickname)} (@{safe(user)})" if nickname else plain


def conversation_label(
    c: Conversation | None,
    me: str,
    conversation_id: str = "",
    nicknames: Mapping[str, str] | None = None,
) -> str:
    """``@bob`` (or ``~Bobby (@bob)``, `nicknamed`) for a direct conversation, ``#name`` for a
    group (``#<id prefix>`` unnamed)."""
    if c is None:
        return f"#{conversation_id[:8]}"
    if c.kind is dl.ConversationKind.DIRECT:
        peer = next((m for m in c.members if m != me), me)
        return nicknamed(peer, nicknames, "@" + safe(peer))
    return f"#{safe(c.name)}" if c.name else f"#{c.id[:8]}"


REQUEST_MARK = " (request)"


def request_label(
    c: Conversation | None,
    me: str,
    conversation_id: str = "",
    nicknames: Mapping[str, str] | None = None,
) -> str:
    """`conversation_label`, marked `` (request)`` for a message request (a conversation
    started by someone not accepted yet)."""
    label = conversation_label(c, me, conversation_id, nicknames)
    return label + REQUEST_MARK if c is not None and c.is_request else label


def _joined_text(e: Any, ctx: _TextContext) -> str:
    c = e.conversation
    if c.is_request:
        who = safe(c.request_from or "?")
        return (
            f"message request from @{who} in {conversation_label(c, ctx.me)}: nothing is "
            f"answered until you accept ('doorless requests accept @{who}'; or block them: "
            f"'doorless requests block @{who}')"
        )
    return f"joined {conversation_label(c, ctx.me)} ({users(c.members)}){_by(e.by)}"


QUOTE_LENGTH = 60


def message_text(
    m: MessageInfo,
    label: str,
    nicknames: Mapping[str, str] | None = None,
    short_id: str | None = None,
) -> str:
    """One message: time, id (``short_id``: a unique prefix, to copy into reply, react, edit,
    delete), conversation, sender (with a local nickname), text; a reply quotes what it
    answers; then [@you] if it mentions this user, [edited], and the reactions."""
    who = "me" if m.outgoing else nicknamed(m.sender.user, nicknames, safe(m.sender.user))
    if m.deleted:
        body = "(deleted)"
    elif m.kind is dl.MessageKind.FILE and m.file is not None:
        f = m.file
        body = (
            f"[file] {safe(f.name)} ({size(f.size)}, {safe(f.media_type)}) - "
            f"doorless download {m.message_id}"
        )
    else:
        body = safe_text(m.text or "")
    if m.reply_to is not None:
        quoted = (
            "(deleted)" if m.reply_text is None else f'"{one_line(m.reply_text, QUOTE_LENGTH)}"'
        )
        body = f"> {m.reply_to[:8]} {quoted}\n{CONTINUATION}{body}"
    tags = [
        *(["@you"] if m.mentions_me else []),
        *(["edited"] if m.edited and not m.deleted else []),
    ]
    if m.reactions:
        tags.append(" ".join(f"{safe(r.emoji)} {safe(r.user)}" for r in m.reactions))
    extra = "".join(f" [{t}]" for t in tags)
    mark = " (transferred)" if m.transferred else ""
    sid = short_id or m.message_id[:8]
    return f"{clock(m.sent_at)}  {sid}  {label}  {who}{mark}: {body}{extra}"


def short_ids(messages: list[MessageInfo], minimum: int = 8) -> dict[str, str]:
    """message id -> its shortest prefix (at least ``minimum``) unique among ``messages``,
    as git shortens commit ids."""
    ids = sorted({m.message_id for m in messages})
    short: dict[str, str] = {}
    for i, mid in enumerate(ids):
        length = minimum
        for other in (ids[i - 1] if i else "", ids[i + 1] if i + 1 < len(ids) else ""):
            common = next(
                (k for k, (a, b) in enumerate(zip(mid, other, strict=False)) if a != b), None
            )
            if other and common is not None:
                length = max(length, common + 1)
        short[mid] = mid[:length]
    return short


@dataclass(frozen=True, slots=True)
class _TextContext:
    me: str
    conversations: dict[str, Conversation]

    def label(self, conversation_id: str | None) -> str:
        if conversation_id is None:
            return "-"
        known = self.conversations.get(conversation_id)
        return conversation_label(known, self.me, conversation_id)


def _by(ref: DeviceRef | None) -> str:
    return f" by {safe(ref.user)}" if ref is not None else ""


def users(names: tuple[str, ...] | list[str]) -> str:
    """Usernames, comma-separated, each rendered `safe`."""
    return ", ".join(safe(n) for n in names)


def _updated_text(e: Any, ctx: _TextContext) -> str:
    """What changed, from the conversation as it was known before (``ctx.conversations``):
    the name, the disappearing-message timer, or both."""
    new = e.conversation
    old = ctx.conversations.get(new.id)
    label = conversation_label(new, ctx.me)
    old_name, old_timer = (old.name, old.disappearing_seconds) if old else ("", None)
    changes = []
    if new.kind is dl.ConversationKind.GROUP and old_name != new.name:
        changes.append(f"renamed to #{safe(new.name)}" if new.name else "name removed")
    if old_timer != new.disappearing_seconds:
        changes.append(f"disappearing messages {duration_text(new.disappearing_seconds)}")
    return f"{label}: {'; '.join(changes) or 'updated'}{_by(e.by)}"


def _membership_text(e: Any, ctx: _TextContext) -> str:
    parts = []
    if e.added_users:
        parts.append("added " + users(e.added_users))
    if e.removed_users:
        parts.append("removed " + users(e.removed_users))
    if not parts:
        parts.append(f"{len(e.added)} device(s) in, {len(e.removed)} out")
    return f"{conversation_label(e.conversation, ctx.me)}: {'; '.join(parts)}{_by(e.by)}"


def _device_text(e: Any, ctx: _TextContext) -> str:
    d = e.device
    where = f" in {ctx.label(e.conversation_id)}" if e.conversation_id else ""
    hint = (
        " (check that it was you: doorless device list)"
        if e.change == "linked" and d.user == ctx.me
        else ""
    )
    if e.notice is not None and d.user != ctx.me:  # a roster notice: the peer's account
        what = "linked a new device" if e.change == "linked" else "revoked device"
        return f"{safe(d.user)} {what} {fingerprint(d.device_id)} (approved by their own device)"
    return f"device {safe(d.user)}/{fingerprint(d.device_id)} {e.change.value}{where}{hint}"


def _skipped_text(e: Any, ctx: _TextContext) -> str:
    d = e.device
    return (
        f"! warning: device {safe(d.user)}/{fingerprint(d.device_id)} was left out: "
        f"{one_line(e.detail, 200)}"
    )


def alarm_text(e: Any) -> str:
    """An alarm in one line: what, what was seen, what to do, and how to acknowledge it."""
    who = f" ({safe(e.device.user)}/{fingerprint(e.device.device_id)})" if e.device else ""
    ack = f" [doorless alarms ack {e.id}]" if e.id else ""
    return (
        f"!! KEY TRANSPARENCY ALARM: {e.kind.value}{who}: {one_line(e.detail, 300)}. "
        f"{e.advice}{ack}"
    )


def _changed_text(e: Any, ctx: _TextContext) -> str:
    m = e.message
    what = {
        "edited": f'edited: "{one_line(m.text or "", QUOTE_LENGTH)}"',
        "deleted": "deleted a message",
        "reacted": f"reacted {safe(e.emoji or '')}",
        "unreacted": f"took back {safe(e.emoji or '')}",
    }[e.change.value]
    return f"{ctx.label(m.conversation_id)}  {safe(e.by.user)} {what}  ({m.message_id[:8]})"


def _failure_text(e: Any, ctx: _TextContext) -> str:
    where = f" in {ctx.label(e.conversation_id)}" if e.conversation_id else ""
    direction = "could not send a message" if e.outgoing else "could not read a message"
    return f"! {direction}{where}: {e.reason.value}: {one_line(e.detail, 200)}"


# Event class name -> its line of text (by name, like `_EVENT_FIELDS`).
_EVENT_TEXT: dict[str, Callable[[Any, _TextContext], str]] = {
    "MessageReceived": lambda e, ctx: message_text(
        e.message,
        request_label(ctx.conversations.get(e.conversation_id), ctx.me, e.conversation_id),
    ),
    "MessageSent": lambda e, ctx: (
        f"{clock(e.message.sent_at)}  {ctx.label(e.message.conversation_id)}  "
        f"sent {e.message.message_id[:8]}"
    ),
    "ConversationJoined": lambda e, ctx: _joined_text(e, ctx),
    "ConversationUpdated": _updated_text,
    "MembershipChanged": _membership_text,
    "DeviceChanged": _device_text,
    "DeviceSkipped": _skipped_text,
    "TransparencyAlarm": lambda e, ctx: alarm_text(e),
    "DeliveryFailed": _failure_text,
    "CallSignalReceived": lambda e, ctx: (
        f"call {e.signal.type.name} from @{safe(e.sender.user)} in {ctx.label(e.conversation_id)}"
    ),
    "CallUpdated": lambda e, ctx: (
        f"call {e.call_id[:8]} {e.state.value}"
        + (f" ({safe(e.reason)})" if e.reason else "")
        + (f", privacy code {e.privacy_code}" if e.privacy_code else "")
    ),
    "MessageChanged": _changed_text,
    "ReadUpTo": lambda e, ctx: (
        f"{ctx.label(e.conversation_id)}  {safe(e.reader.user)} read up to {e.message_id[:8]}"
    ),
    "Typing": lambda e, ctx: (
        f"{ctx.label(e.conversation_id)}  {safe(e.user.user)} "
        + ("is typing..." if e.active else "stopped typing")
    ),
}


def event_text(event: Event, me: str, conversations: dict[str, Conversation] | None = None) -> str:
    """One human-readable line for an event (``conversations`` names them, by id)."""
    render = _EVENT_TEXT.get(type(event).__name__)
    if render is None:
        return f"event {type(event).__name__}"
    return render(event, _TextContext(me, conversations or {}))


# --- printing ---------------------------------------------------------------------------------


def emit_json(obj: Any, stream: TextIO | None = None) -> None:
    """One JSON object on one line (flushed: readers of a pipe see it at once)."""
    out = stream or sys.stdout
    line = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    # JSON leaves these unescaped, but line readers (str.splitlines, some terminals) break on
    # them: escaped, one object stays one line (and the same value once parsed).
    for ch in _JSON_LINE_BREAKS:
        line = line.replace(ch, f"\\u{ord(ch):04x}")
    out.write(line + "\n")
    out.flush()


def emit(as_json: bool, obj: Any, text: str | Callable[[], str]) -> None:
    """The one result of a command: ``obj`` with ``--json``, else ``text``."""
    if as_json:
        emit_json(obj)
    else:
        typer.echo(text() if callable(text) else text)


def stderr_is_terminal() -> bool:
    return sys.stderr.isatty()


@contextmanager
def progress_bar(
    description: str, enabled: bool
) -> Iterator[Callable[[int, int | None], None] | None]:
    """A transient progress bar on stderr (only when ``enabled``, i.e. stderr is a terminal);
    yields the ``progress(done, total)`` callback for the client library, or None."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TransferSpeedColumn,
    )

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    with progress:
        task = progress.add_task(escape(safe(description)), total=None)

        def update(done: int, total: int | None) -> None:
            progress.update(task, completed=done, total=total or None)

        yield update


__all__ = [
    "JSON",
    "NICKNAME_MARK",
    "alarm_json",
    "alarm_text",
    "clock",
    "conversation_json",
    "conversation_label",
    "device_json",
    "device_ref_json",
    "duration_text",
    "emit",
    "emit_json",
    "event_json",
    "event_text",
    "event_type",
    "file_json",
    "fingerprint",
    "message_json",
    "message_text",
    "nicknamed",
    "one_line",
    "progress_bar",
    "request_label",
    "safe",
    "safe_text",
    "size",
    "stderr_is_terminal",
    "users",
]
