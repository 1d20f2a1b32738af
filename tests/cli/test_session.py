"""`doorless.cli.session` without a server: how errors become one line, a stable code and an
exit status; naming conversations (``@user``, ``--group``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from doorless.cli import session
from doorless.cli.session import CliError, Target, classify, parse_user
from doorless.client import (
    CommitFailed,
    Conversation,
    ConversationKind,
    ConversationStatus,
    KeyUnavailable,
    NotAMember,
    ProfileLocked,
    RateLimited,
    ServerUnreachable,
    SetupIncomplete,
    StoreError,
    UnknownConversation,
    UserUnavailable,
    WrongPassphrase,
)
from doorless.client.errors import Conflict, Forbidden, NotFound
from doorless.errors import ConfigurationError, DecodeError, StateError

PROFILE = Path("/profiles/alice")


@pytest.mark.parametrize(
    ("exc", "code", "exit_code"),
    [
        (WrongPassphrase("wrong passphrase or key"), "wrong_passphrase", 1),
        (ProfileLocked("locked"), "profile_locked", 1),
        (KeyUnavailable("no key"), "no_passphrase", 1),
        (SetupIncomplete("not done"), "setup_incomplete", 1),
        (ServerUnreachable("POST request got no answer (ConnectError)"), "server_unreachable", 1),
        (UserUnavailable("bob has no device"), "user_unavailable", 1),
        (UnknownConversation("no conversation ab"), "unknown_conversation", 1),
        (NotAMember("removed"), "not_a_member", 1),
        (NotFound(404, "not_found", "no such user", {}), "not_found", 1),
        (Conflict(409, "username_taken", "taken", {}), "conflict", 1),
        (Forbidden(403, "invite_required", "invite", {}), "forbidden", 1),
        (RateLimited(429, "rate_limited", "slow", {}, 3.0), "rate_limited", 1),
        (CommitFailed("lost 6 times"), "failed", 1),
        (StoreError("disk full"), "store_error", 1),
        (ConfigurationError("invalid username 'Bob'"), "invalid", 1),
        (StateError("closed"), "invalid_state", 1),
        (DecodeError("short"), "remote_error", 1),
        (TimeoutError(), "timeout", 1),
        (PermissionError("denied"), "os_error", 1),
        (RuntimeError("boom\nwith a second line"), "internal", 1),
        (CliError("usage", "bad", 2), "usage", 2),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_every_error_is_one_line_with_a_code(exc: BaseException, code: str, exit_code: int) -> None:
    failure = classify(exc, PROFILE)
    assert (failure.code, failure.exit_code) == (code, exit_code)
    assert failure.message and "\n" not in failure.message


def test_messages_people_read() -> None:
    assert classify(WrongPassphrase("x"), PROFILE).message == (
        "wrong passphrase for profile /profiles/alice"
    )
    assert classify(Conflict(409, "username_taken", "x", {}), PROFILE).message == (
        "this username is taken"
    )
    assert classify(Forbidden(403, "invite_required", "x", {})).message == (
        "this server needs an invite code (--invite)"
    )
    assert "retry in 3 s" in classify(RateLimited(429, "rate_limited", "x", {}, 3.0)).message
    assert "DOORLESS_DEBUG" in classify(RuntimeError("boom")).message


def test_classify_survives_a_broken_client_library(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(exc: BaseException, profile: Path | None) -> session.Failure:
        raise ImportError("the client library cannot be imported")

    monkeypatch.setattr(session, "_classify", broken)
    failure = classify(NameError("name 'x' is not defined"))
    assert failure.code == "internal" and "NameError" in failure.message


@pytest.mark.parametrize(
    ("args", "want"),
    [
        (("@bob", None), Target(user="bob")),
        (("bob", None), Target(user="bob")),
        ((None, "team"), Target(group="team")),
        ((None, None, "ab" * 32), Target(conversation_id="ab" * 32)),
    ],
)
def test_targets(args: tuple[str | None, ...], want: Target) -> None:
    assert Target.of(*args) == want


@pytest.mark.parametrize("args", [(None, None), ("@bob", "team"), ("@", None)])
def test_bad_targets_are_usage_errors(args: tuple[str | None, ...]) -> None:
    with pytest.raises(CliError) as info:
        Target.of(*args)
    assert info.value.failure.exit_code == 2


def test_parse_user() -> None:
    assert parse_user("@carol") == "carol"
    with pytest.raises(CliError):
        parse_user("@")


def group(
    id_: str, name: str, status: ConversationStatus = ConversationStatus.ACTIVE
) -> Conversation:
    return Conversation(
        id=id_,
        kind=ConversationKind.GROUP,
        name=name,
        members=("alice",),
        devices=(),
        epoch=1,
        status=status,
        created_at=0,
        updated_at=0,
    )


def test_finding_groups() -> None:
    a = group("aa11" + "0" * 60, "team")
    b = group("bb22" + "0" * 60, "team")
    c = group("cc33" + "0" * 60, "solo")
    old = group("dd44" + "0" * 60, "solo", ConversationStatus.REMOVED)
    convs = [a, b, c, old]
    find = session._find_group
    assert find(convs, "solo") == c  # the active one wins over a group we were removed from
    assert find(convs, a.id) == a
    assert find(convs, a.id.upper()) == a
    assert find(convs, "bb2200") == b  # an id prefix (6+ hex digits)
    with pytest.raises(CliError) as info:
        find(convs, "team")
    assert info.value.failure.code == "ambiguous" and "aa110000" in info.value.failure.message
    with pytest.raises(CliError) as info:
        find(convs, "nope")
    assert info.value.failure.code == "unknown_conversation"
    with pytest.raises(CliError):
        find(convs, "bb2")  # too short for a prefix
