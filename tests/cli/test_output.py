"""The JSON shapes and text lines of `doorless.cli.output`, for every event kind of the client
library (a new kind without a shape fails here), without a server."""

from __future__ import annotations

import base64
import dataclasses
import json
import typing
from typing import Any

import pytest

from doorless import client as dl
from doorless.cli import output
from doorless.client import (
    Conversation,
    ConversationKind,
    ConversationStatus,
    DeviceRef,
    FileInfo,
    MessageInfo,
    MessageKind,
    MessageState,
)
from doorless.client.events import CallSignalReceived, CallState, CallUpdated
from doorless.franking import AttachmentDescriptor
from doorless.wire.call_signal import CallSignal, CallSignalType

ALICE = DeviceRef("alice", "a" * 32)
BOB = DeviceRef("bob", "b" * 32)
KEY = bytes(range(32))

GROUP = Conversation(
    id="c0" * 32,
    kind=ConversationKind.GROUP,
    name="team",
    members=("alice", "bob"),
    devices=(ALICE, BOB),
    epoch=3,
    status=ConversationStatus.ACTIVE,
    created_at=1_700_000_000_000,
    updated_at=1_700_000_000_000,
)
DIRECT = Conversation(
    id="d0" * 32,
    kind=ConversationKind.DIRECT,
    name="",
    members=("alice", "bob"),
    devices=(ALICE, BOB),
    epoch=1,
    status=ConversationStatus.ACTIVE,
    created_at=1_700_000_000_000,
    updated_at=1_700_000_000_000,
)
FILE = FileInfo(
    name="report.pdf",
    media_type="application/pdf",
    size=1_234_567,
    sha256="ab" * 32,
    attachment_id="f" * 32,
    descriptor=AttachmentDescriptor(
        b"f" * 32, b"application/pdf", KEY, bytes(12), bytes(32), bytes(32), 1_234_567
    ),
)


def message(
    kind: MessageKind = MessageKind.TEXT, conversation: Conversation = GROUP
) -> MessageInfo:
    return MessageInfo(
        conversation_id=conversation.id,
        message_id="1f" * 16,
        local_id=7,
        sender=ALICE,
        outgoing=False,
        kind=kind,
        text="hello\nthere" if kind is MessageKind.TEXT else None,
        file=FILE if kind is MessageKind.FILE else None,
        sent_at=1_700_000_000_000,
        received_at=1_700_000_001_000,
        state=MessageState.RECEIVED,
    )


# One example of every event kind, by class name.
EXAMPLES: dict[str, Any] = {
    "MessageReceived": dl.MessageReceived(message(MessageKind.FILE)),
    "MessageSent": dl.MessageSent(message()),
    "ConversationJoined": dl.ConversationJoined(GROUP, ALICE),
    "ConversationUpdated": dl.ConversationUpdated(GROUP, None),
    "MembershipChanged": dl.MembershipChanged(GROUP, (BOB,), (), ALICE, ("bob",), ()),
    "DeviceChanged": dl.DeviceChanged(BOB, dl.DeviceChange.LINKED, None, BOB),
    "DeviceSkipped": dl.DeviceSkipped(BOB, "not in the\nlog", "n1"),
    "DeliveryFailed": dl.DeliveryFailed(dl.FailureReason.UNDECRYPTABLE, "bad\nmac", GROUP.id),
    "CallSignalReceived": CallSignalReceived(
        GROUP.id, ALICE, CallSignal(CallSignalType.ring, bytes(16))
    ),
    "CallUpdated": CallUpdated(
        "00" * 16, GROUP.id, CallState.ACTIVE, (ALICE, BOB), "12345 " * 5 + "12345", "a\nb"
    ),
    "MessageChanged": dl.MessageChanged(message(), dl.ChangeKind.REACTED, ALICE, "\x1b[2J"),
    "ReadUpTo": dl.ReadUpTo(GROUP.id, ALICE, "1f" * 16),
    "Typing": dl.Typing(GROUP.id, ALICE, True),
}


def event_classes() -> list[type]:
    return list(typing.get_args(dl.Event))


def example(cls: type) -> Any:
    if cls.__name__ in EXAMPLES:
        return EXAMPLES[cls.__name__]
    if cls.__name__ == "TransparencyAlarm":
        kind = typing.get_type_hints(cls)["kind"]
        return cls(kind=next(iter(kind)), detail="a ghost\ndevice", device=BOB)
    raise AssertionError(f"add an example of {cls.__name__} to this test")


@pytest.mark.parametrize("cls", event_classes(), ids=lambda c: c.__name__)
def test_every_event_kind_has_a_json_shape_and_a_line(cls: type) -> None:
    event = example(cls)
    data = output.event_json(event)
    assert data["type"] != "unknown", f"no JSON shape for {cls.__name__}"
    assert json.loads(json.dumps(data)) == data
    line = output.event_text(event, "bob", {GROUP.id: GROUP})
    assert not line.startswith("event "), f"no text for {cls.__name__}"
    assert "\n" not in line.replace("hello\nthere", "")


def test_unknown_events_are_passed_on_as_unknown() -> None:
    class Future:
        pass

    event: Any = Future()
    assert output.event_json(event) == {"type": "unknown", "event": "Future"}
    assert output.event_text(event, "bob") == "event Future"


def test_message_json_never_holds_the_file_key() -> None:
    data = json.dumps(output.message_json(message(MessageKind.FILE)))
    for encoded in (KEY.hex(), base64.b64encode(KEY).decode(), repr(KEY)):
        assert encoded not in data
    assert json.loads(data)["file"] == {
        "name": "report.pdf",
        "media_type": "application/pdf",
        "size": 1_234_567,
        "sha256": "ab" * 32,
    }


def test_text_lines() -> None:
    file_line = output.event_text(EXAMPLES["MessageReceived"], "bob", {GROUP.id: GROUP})
    assert "#team  alice: [file] report.pdf (1.2 MB, application/pdf)" in file_line
    assert file_line.endswith("doorless download " + "1f" * 16)
    direct = output.message_text(message(conversation=DIRECT), "@alice")
    assert direct.endswith("@alice  alice: hello\n    | there")  # a marked continuation
    joined = output.event_text(EXAMPLES["ConversationJoined"], "bob")
    assert joined == "joined #team (alice, bob) by alice"
    linked = output.event_text(EXAMPLES["DeviceChanged"], "bob")
    assert linked.startswith("device bob/bbbb bbbb") and "check that it was you" in linked
    failed = output.event_text(EXAMPLES["DeliveryFailed"], "bob", {GROUP.id: GROUP})
    assert failed == "! could not read a message in #team: undecryptable: bad mac"
    # A contact's device change, approved by their own device: a roster notice, no alarm.
    notice = dl.DeviceChanged(BOB, dl.DeviceChange.LINKED, notice="n2")
    assert output.event_text(notice, "alice").startswith("bob linked a new device bbbb bbbb")
    skipped = output.event_text(EXAMPLES["DeviceSkipped"], "alice")
    assert skipped.startswith("! warning: device bob/bbbb bbbb")
    assert skipped.endswith("was left out: not in the log")
    alarm = dl.TransparencyAlarm(dl.AlarmKind.ROLLBACK, "went back", id="ab12")
    line = output.event_text(alarm, "alice")
    assert line.startswith("!! KEY TRANSPARENCY ALARM: rollback: went back. The server went back")
    assert line.endswith("[doorless alarms ack ab12]")
    assert output.event_json(alarm)["advice"] == alarm.advice


@pytest.mark.parametrize(
    ("conversation", "me", "label"),
    [(GROUP, "bob", "#team"), (DIRECT, "bob", "@alice"), (DIRECT, "alice", "@bob")],
)
def test_conversation_labels(conversation: Conversation, me: str, label: str) -> None:
    assert output.conversation_label(conversation, me) == label
    assert output.conversation_label(None, me, conversation.id) == "#" + conversation.id[:8]


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (999, "999 B"),
        (1000, "1.0 KB"),
        (5_242_880, "5.2 MB"),
        (3 * 10**12, "3000.0 GB"),
    ],
)
def test_sizes(n: int, text: str) -> None:
    assert output.size(n) == text


def test_rich_message_lines() -> None:
    """A reply quotes what it answers, flags a mention of me, "edited", the reactions and
    the short id; a deleted message shows no text; peer text stays safe everywhere."""
    m = dataclasses.replace(
        message(conversation=DIRECT),
        text="sure @bob",
        reply_to="2e" * 16,
        reply_text="lunch\x1b[2J today?",
        edited=True,
        mentions=("bob",),
        mentions_me=True,
        reactions=(dl.ReactionInfo("carol", "👍"), dl.ReactionInfo("eve", "\u202e!")),
    )
    line = output.message_text(m, "@alice", short_id="1f1f1f1f1")
    assert line.split("  ")[1] == "1f1f1f1f1"
    assert '> 2e2e2e2e "lunch\\x1b[2J today?"\n    | sure @bob' in line
    assert line.endswith("[@you] [edited] [👍 carol <U+202E>! eve]")
    gone = dataclasses.replace(m, deleted=True, text=None, reply_to=None, reactions=())
    assert output.message_text(gone, "@alice").endswith("alice: (deleted) [@you]")
    data = output.message_json(m)
    assert data["reply_to"] == "2e" * 16 and data["mentions_me"] and data["edited"]
    assert data["reactions"] == [
        {"user": "carol", "emoji": "👍"},
        {"user": "eve", "emoji": "\u202e!"},
    ]
    changed = output.event_text(EXAMPLES["MessageChanged"], "bob", {GROUP.id: GROUP})
    assert changed == "#team  alice reacted \\x1b[2J  (1f1f1f1f)"


def test_short_ids_are_unique_prefixes() -> None:
    a = dataclasses.replace(message(), message_id="abcdef0123" + "0" * 22)
    b = dataclasses.replace(message(), message_id="abcdef0199" + "0" * 22)
    c = dataclasses.replace(message(), message_id="12345678" + "0" * 24)
    assert output.short_ids([a, b, c]) == {
        a.message_id: "abcdef012",
        b.message_id: "abcdef019",
        c.message_id: "12345678",
    }
