"""How nicknames are shown (doorless.cli.people, doorless.cli.output.nicknamed): marked, next
to the real username, and never imitable by a name a peer chooses."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from doorless.cli.output import conversation_label, message_text
from doorless.cli.people import person
from doorless.client import (
    Conversation,
    ConversationKind,
    ConversationStatus,
    DeviceRef,
    MessageInfo,
    MessageKind,
    MessageState,
)
from doorless.wire.protocol import USERNAME_PATTERN

usernames = st.from_regex(USERNAME_PATTERN.strip("^$"), fullmatch=True)


def conv(kind: ConversationKind, name: str, members: tuple[str, ...]) -> Conversation:
    return Conversation(
        id="ab" * 32,
        kind=kind,
        name=name,
        members=members,
        devices=(),
        epoch=0,
        status=ConversationStatus.ACTIVE,
        created_at=0,
        updated_at=0,
    )


def test_nickname_is_marked_and_escaped() -> None:
    assert person("bob", {}) == "@bob"
    assert person("bob", {"bob": "Bobby"}) == "~Bobby (@bob)"
    assert person("bob", {"bob": "x\x1b[2J\u202e"}) == "~x\\x1b[2J<U+202E> (@bob)"
    direct = conv(ConversationKind.DIRECT, "", ("alice", "bob"))
    assert conversation_label(direct, "alice", nicknames={"bob": "B"}) == "~B (@bob)"
    assert conversation_label(direct, "alice") == "@bob"


@given(usernames, st.text(max_size=30))
def test_peer_chosen_names_never_look_like_a_nickname(user: str, group_name: str) -> None:
    """A username is shown bare or after @, a group name after #: neither starts with the
    nickname mark, whatever the peer chose."""
    group = conv(ConversationKind.GROUP, group_name, ("alice", user))
    direct = conv(ConversationKind.DIRECT, "", ("alice", user))
    message = MessageInfo(
        conversation_id="ab" * 32,
        message_id="00" * 16,
        local_id=1,
        sender=DeviceRef(user, "d" * 32),
        outgoing=False,
        kind=MessageKind.TEXT,
        text="hi",
        file=None,
        sent_at=0,
        received_at=0,
        state=MessageState.RECEIVED,
    )
    for shown in (
        person(user, {}),
        conversation_label(group, "alice"),
        conversation_label(direct, "alice"),
        message_text(message, "#x").split("  ")[3],
    ):
        assert not shown.startswith("~"), shown
