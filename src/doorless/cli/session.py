"""What the client commands and the daemon share: opening a profile, the passphrase, running a
coroutine as a command, turning any error into one line and an exit code, and finding the
conversation a command names (``@user``, ``--group NAME``).

Everything here goes through the public client API (`doorless.client`), nothing past it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import getpass
import logging
import os
import sys
import traceback
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TypeVar

import typer

from doorless import client as dl
from doorless.cli import EXIT_INTERRUPTED
from doorless.cli import config as profile_config
from doorless.cli.common import EXIT_FAILED, EXIT_USAGE, State
from doorless.cli.output import emit_json, one_line, safe
from doorless.errors import ConfigurationError, DoorlessError, RemoteError, StateError
from doorless.wire import protocol
from doorless.wire.errors import ErrorCode

if TYPE_CHECKING:
    from doorless.cli.config import ProfileConfig
    from doorless.client import Client, Conversation, MessageInfo

T = TypeVar("T")

PASSPHRASE_ENV = "DOORLESS_PASSPHRASE"
DEBUG_ENV = "DOORLESS_DEBUG"
LOG_LEVEL_ENV = "DOORLESS_LOG_LEVEL"
# The `doorless receive` cursor: the highest local message id already shown (app setting).
RECEIVE_CURSOR = "cli.receive_cursor"


# --- errors -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Failure:
    """What went wrong, for people (``message``) and programs (``code``, the exit status)."""

    code: ErrorCode
    message: str
    exit_code: int = EXIT_FAILED


class CliError(DoorlessError):
    """A failure the programs detect themselves (unknown group name, bad argument, ...)."""

    def __init__(self, code: ErrorCode, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.failure = Failure(code, message, exit_code)


def usage_error(message: str) -> CliError:
    return CliError(ErrorCode.USAGE, message, EXIT_USAGE)


def _server_error(exc: dl.ServerError) -> Failure:
    by_class: list[tuple[type[dl.ServerError], ErrorCode]] = [
        (dl.NotFound, ErrorCode.NOT_FOUND),
        (dl.RateLimited, ErrorCode.RATE_LIMITED),
        (dl.Conflict, ErrorCode.CONFLICT),
        (dl.Forbidden, ErrorCode.FORBIDDEN),
        (dl.Unauthorized, ErrorCode.UNAUTHORIZED),
        (dl.PayloadTooLarge, ErrorCode.TOO_LARGE),
        (dl.InvalidRequest, ErrorCode.REJECTED),
    ]
    code = next((c for cls, c in by_class if isinstance(exc, cls)), ErrorCode.SERVER_ERROR)
    text = f"the server refused: {exc.message}"
    if isinstance(exc, dl.RateLimited):
        text = f"rate limited by the server; retry in {exc.retry_after:.0f} s"
    elif isinstance(exc, dl.PayloadTooLarge):
        text = f"too large for the server: {exc.message}"
    elif exc.code == ErrorCode.INVITE_REQUIRED:
        text = "this server needs an invite code (--invite)"
    elif exc.code == ErrorCode.USERNAME_TAKEN:
        text = "this username is taken"
    elif exc.code == ErrorCode.DEVICE_REVOKED:
        return Failure(
            ErrorCode.DEVICE_REVOKED,
            "this device was revoked from its account (by another of its devices): it can no "
            "longer send or receive; what it received stays readable here ('doorless history'). "
            "To use it again, link it anew from a fresh profile ('doorless device link')",
        )
    return Failure(code, text)


def classify(exc: BaseException, profile: Path | None = None) -> Failure:
    """One line (never a traceback, never message content) and a stable code for an error."""
    try:
        return _classify(exc, profile)
    except ImportError:  # the client library itself cannot be imported
        return _internal(exc)


def _internal(exc: BaseException) -> Failure:
    return Failure(
        ErrorCode.INTERNAL,
        f"internal error: {type(exc).__name__}: {one_line(str(exc), 200)} "
        f"(set {DEBUG_ENV}=1 for details)",
    )


def _classify(exc: BaseException, profile: Path | None) -> Failure:
    where = f" {profile}" if profile is not None else ""
    if isinstance(exc, CliError):
        return exc.failure
    if isinstance(exc, dl.WrongPassphrase):
        return Failure(ErrorCode.WRONG_PASSPHRASE, f"wrong passphrase for profile{where}")
    if isinstance(exc, dl.ProfileLocked):
        return Failure(
            ErrorCode.PROFILE_LOCKED,
            f"profile{where} is in use by another doorless process (a running daemon? talk to "
            "it through its socket)",
        )
    if isinstance(exc, dl.KeyUnavailable):
        return Failure(
            ErrorCode.NO_PASSPHRASE,
            f"profile{where} needs its passphrase: set {PASSPHRASE_ENV} or run in a terminal",
        )
    if isinstance(exc, dl.SetupIncomplete):
        return Failure(
            ErrorCode.SETUP_INCOMPLETE,
            f"the setup of profile{where} did not finish: run the same 'account create' or "
            "'device link' command again",
        )
    if isinstance(exc, dl.ServerUnreachable):
        return Failure(
            ErrorCode.SERVER_UNREACHABLE, f"cannot reach the server: {one_line(str(exc))}"
        )
    if isinstance(exc, dl.CannotUpgrade):
        return Failure(ErrorCode.USER_UNAVAILABLE, one_line(str(exc)))
    if isinstance(exc, dl.UserUnavailable):
        return Failure(ErrorCode.USER_UNAVAILABLE, f"{exc} (no device of theirs can be added now)")
    if isinstance(exc, dl.UnknownConversation):
        return Failure(ErrorCode.UNKNOWN_CONVERSATION, one_line(str(exc)))
    if isinstance(exc, dl.UnknownMessage):
        return Failure(ErrorCode.NOT_FOUND, one_line(str(exc)))
    if isinstance(exc, dl.NotYourMessage):
        return Failure(ErrorCode.FORBIDDEN, one_line(str(exc)))
    if isinstance(exc, dl.NotAMember):
        return Failure(ErrorCode.NOT_A_MEMBER, "you are no longer a member of this conversation")
    if isinstance(exc, dl.ServerError):
        return _server_error(exc)
    if isinstance(exc, dl.CommitFailed | dl.SendFailed):
        return Failure(ErrorCode.FAILED, one_line(str(exc)))
    if isinstance(exc, dl.StoreError):
        return Failure(ErrorCode.STORE_ERROR, f"profile{where}: {one_line(str(exc))}")
    if isinstance(exc, ConfigurationError):
        return Failure(ErrorCode.INVALID, one_line(str(exc)))
    if isinstance(exc, StateError):
        return Failure(ErrorCode.INVALID_STATE, one_line(str(exc)))
    if isinstance(exc, dl.KtViolation):
        kind = (
            dl.AlarmKind.ROLLBACK
            if isinstance(exc, dl.KtRollback)
            else dl.AlarmKind.FORK
            if isinstance(exc, dl.KtFork)
            else dl.AlarmKind.LOG_VIOLATION
        )
        return Failure(
            ErrorCode.REMOTE_ERROR,
            f"KEY TRANSPARENCY ALARM: {one_line(str(exc))}. {dl.ALARM_ADVICE[kind]}",
        )
    if isinstance(exc, RemoteError):
        return Failure(ErrorCode.REMOTE_ERROR, one_line(str(exc)))
    if isinstance(exc, DoorlessError):
        return Failure(ErrorCode.ERROR, one_line(str(exc)))
    if isinstance(exc, TimeoutError):
        return Failure(ErrorCode.TIMEOUT, "timed out")
    if isinstance(exc, OSError):
        return Failure(ErrorCode.OS_ERROR, one_line(str(exc)))
    return _internal(exc)


def fail(st: State, failure: Failure) -> NoReturn:
    """Print the failure as one line on stderr (a JSON object with ``--json``) and exit."""
    if st.json:
        emit_json({"error": failure.code, "message": failure.message}, sys.stderr)
    else:
        typer.echo(f"error: {safe(failure.message)}", err=True)
    raise typer.Exit(failure.exit_code)


@contextmanager
def checked(st: State) -> Iterator[None]:
    """Turn a `CliError` raised while reading a command's arguments into its exit."""
    try:
        yield
    except CliError as exc:
        fail(st, exc.failure)


class _StderrLines(logging.Handler):
    """``warning: ...`` on whatever ``sys.stderr`` is when a record comes (a program that
    runs commands in-process may swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(f"{record.levelname.lower()}: {one_line(record.getMessage())}\n")
            sys.stderr.flush()
        except (OSError, ValueError):  # stderr closed: nowhere to say it
            pass


def configure_logging() -> None:
    """What the libraries log goes to stderr as ``warning: ...`` lines (level from
    ``DOORLESS_LOG_LEVEL``, default warning). Nothing is configured twice, and a program that
    configured logging itself keeps its own."""
    logger = logging.getLogger("doorless")
    if logger.handlers or logging.getLogger().handlers:
        return
    logger.addHandler(_StderrLines())
    level = os.environ.get(LOG_LEVEL_ENV, "warning").upper()
    logger.setLevel(level if level in ("DEBUG", "INFO", "WARNING", "ERROR") else "WARNING")


def run(st: State, main: Callable[[], Awaitable[None]]) -> None:
    """Run a command's coroutine; any error becomes one line and a non-zero exit status."""
    configure_logging()
    try:
        asyncio.run(_as_coroutine(main))
    except typer.Exit:
        raise
    except KeyboardInterrupt:
        fail(st, Failure(ErrorCode.INTERRUPTED, "interrupted", EXIT_INTERRUPTED))
    except Exception as exc:  # noqa: BLE001 - the program's last boundary: one line, exit 1
        if os.environ.get(DEBUG_ENV):
            traceback.print_exc()
        fail(st, classify(exc, st.profile))


async def _as_coroutine(main: Callable[[], Awaitable[None]]) -> None:
    await main()


# --- opening a profile ------------------------------------------------------------------------


# What every command's client starts from; a program embedding these commands (or a test)
# may replace it, e.g. with a cheaper Argon2id for throwaway profiles.
base_options: dl.ClientOptions | None = None


def client_options(
    *, push: bool = False, profile: Path | None = None, config: ProfileConfig | None = None
) -> dl.ClientOptions:
    """One-shot commands fetch by hand (`Client.sync`); long-running ones (``receive
    --timeout``, the daemon) use the WebSocket. The key-transparency settings (witnesses,
    quorum) come from ``config``, else from the profile's ``config.toml``
    (`doorless.cli.config`); without either, the base options' are kept."""
    base = base_options if base_options is not None else dl.ClientOptions()
    options = dataclasses.replace(base, push=push)
    if config is None and profile is not None:
        config = profile_config.load(profile)
    if config is not None and config.values:
        options = dataclasses.replace(
            options,
            kt=config.kt_config(),
            read_receipts=config.switch("privacy.read_receipts"),
            typing_notices=config.switch("privacy.typing"),
        )
    return options


def _prompt(profile: Path, new: bool) -> str:
    value = getpass.getpass(f"Passphrase for Doorless profile {profile}: ")
    if new:
        if not value:
            raise usage_error("an empty passphrase is not allowed")
        if getpass.getpass("Repeat the passphrase: ") != value:
            raise usage_error("the two passphrases differ")
    return value


async def with_passphrase(
    profile: Path, open_with: Callable[[str | None], Awaitable[T]], *, new: bool
) -> T:
    """``open_with(None)`` lets the client library find the key (``DOORLESS_PASSPHRASE``, or
    the OS keyring); only if it has none and stdin is a terminal is the passphrase asked for
    (twice for a new profile). The passphrase is never a command-line argument."""
    try:
        return await open_with(None)
    except dl.KeyUnavailable:
        if not sys.stdin.isatty():
            raise
    passphrase = await asyncio.to_thread(_prompt, profile, new)
    return await open_with(passphrase)


def require_profile(profile: Path) -> None:
    if not profile_config.has_profile_data(profile):
        raise CliError(
            ErrorCode.NO_ACCOUNT,
            f"no Doorless profile in {profile}: create one with 'doorless account create' or "
            "'doorless device link' (or choose one with --profile / DOORLESS_PROFILE)",
        )


async def open_client(
    st: State, *, push: bool = False, config: ProfileConfig | None = None
) -> Client:
    """Open the profile's client with its settings (``config``: instead of its
    ``config.toml``)."""
    require_profile(st.profile)
    options = client_options(push=push, profile=st.profile, config=config)

    async def open_with(passphrase: str | None) -> Client:
        return await dl.Client.open(st.profile, passphrase, options=options)

    try:
        return await with_passphrase(st.profile, open_with, new=False)
    except ConfigurationError as exc:
        if "no Doorless account" in str(exc):
            raise CliError(
                ErrorCode.NO_ACCOUNT, f"no Doorless account in profile {st.profile}"
            ) from exc
        raise


def with_client(
    st: State, body: Callable[[Client], Awaitable[None]], *, push: bool = False
) -> None:
    """Run ``body(client)`` as the command, with the profile open (and closed afterwards)."""

    async def main() -> None:
        client = await open_client(st, push=push)
        async with client:
            await body(client)

    run(st, main)


# --- naming conversations ---------------------------------------------------------------------


USERNAME_HINT = (
    "usernames are 2 to 32 lowercase ASCII letters, digits, '.', '_' or '-', starting with a "
    "letter or digit"
)


def parse_user(value: str) -> str:
    """``@bob`` or ``bob`` -> ``bob``. Usernames are lowercase ASCII, so ``@Bob`` can only mean
    ``bob``: ASCII capitals are lowered; anything else that is not a username is refused with a
    hint (never folded: a non-ASCII look-alike such as the Kelvin sign must not become ``k``)."""
    name = value[1:] if value.startswith("@") else value
    if name.isascii() and protocol.is_username(name.lower()):
        return name.lower()
    raise usage_error(f"not a username: {safe(value)!r} ({USERNAME_HINT})")


@dataclass(frozen=True, slots=True)
class Target:
    """The conversation a command is about: a user's direct conversation, a group (by name or
    id), or a conversation id. Exactly one is set."""

    user: str | None = None
    group: str | None = None
    conversation_id: str | None = None

    @classmethod
    def of(cls, user: str | None, group: str | None, conversation_id: str | None = None) -> Target:
        given = [v for v in (user, group, conversation_id) if v is not None]
        if len(given) != 1:
            raise usage_error("name one conversation: @USER or --group NAME")
        return cls(parse_user(user) if user is not None else None, group, conversation_id)

    def __str__(self) -> str:
        if self.user is not None:
            return f"@{self.user}"
        if self.group is not None:
            return f"group {self.group!r}"
        return f"conversation {self.conversation_id}"


async def resolve_users(client: Client, action: Callable[[], Awaitable[T]], users: list[str]) -> T:
    """Run an action that looks users up on the server; its 404 means an unknown user."""
    try:
        return await action()
    except dl.NotFound as exc:
        names = ", ".join(f"@{u}" for u in users)
        what = f"unknown user {names}" if len(users) == 1 else f"unknown user among {names}"
        raise CliError(ErrorCode.UNKNOWN_USER, what) from exc


def _current(c: Conversation) -> bool:
    return c.status is dl.ConversationStatus.ACTIVE and c.upgraded_to is None


def _find_group(conversations: list[Conversation], name: str) -> Conversation:
    groups = [c for c in conversations if c.kind is dl.ConversationKind.GROUP]
    for pool in (
        [c for c in groups if c.id == name.lower()],
        # An upgraded group's successor has its name (doorless.client.upgrade): it is the one.
        [c for c in groups if c.name == name and _current(c)],
        [c for c in groups if c.name == name and c.status is dl.ConversationStatus.ACTIVE],
        [c for c in groups if c.name == name],
        [c for c in groups if len(name) >= 6 and c.id.startswith(name.lower())],
    ):
        if len(pool) == 1:
            return pool[0]
        if len(pool) > 1:
            ids = ", ".join(c.id[:12] for c in pool)
            raise CliError(
                ErrorCode.AMBIGUOUS,
                f"{len(pool)} groups match {name!r}: name one by its id ({ids})",
            )
    raise CliError(ErrorCode.UNKNOWN_CONVERSATION, f"no group named {name!r}")


def _find_direct(conversations: list[Conversation], me: str, user: str) -> Conversation | None:
    direct = [
        c
        for c in conversations
        if c.kind is dl.ConversationKind.DIRECT and set(c.members) == {me, user}
    ]
    direct.sort(key=lambda c: (c.status is dl.ConversationStatus.ACTIVE, _current(c), c.updated_at))
    return direct[-1] if direct else None


async def resolve(client: Client, target: Target, *, create: bool = False) -> Conversation:
    """The conversation ``target`` names. With ``create`` (the commands that send), what is
    not found locally is looked for again after fetching what is queued (an invitation may be
    waiting), and the direct conversation with a user is started if there is none yet (that
    needs the user to exist and have a device). What that fetch brings is shown by the next
    ``receive`` (its cursor)."""
    if target.conversation_id is not None:
        return await client.conversation(target.conversation_id)
    if target.group is not None:
        try:
            return _find_group(await client.conversations(), target.group)
        except CliError as exc:
            if exc.failure.code != ErrorCode.UNKNOWN_CONVERSATION or not create:
                raise
        # Perhaps an invitation is waiting on the server: fetch, then look again.
        await client.sync()
        return _find_group(await client.conversations(), target.group)
    assert target.user is not None
    user = target.user
    if user == client.username:
        raise usage_error("that is you; name another user")
    existing = _find_direct(await client.conversations(), client.username, user)
    if existing is None and create:
        # Join the conversation the user may have started with us, rather than start a
        # second one.
        await client.sync()
        existing = _find_direct(await client.conversations(), client.username, user)
    if existing is not None and (existing.status is dl.ConversationStatus.ACTIVE or not create):
        return existing
    if not create:
        raise CliError(ErrorCode.UNKNOWN_CONVERSATION, f"no conversation with @{user}")
    return await resolve_users(client, lambda: client.start_direct(user), [user])


async def find_message(client: Client, message_id: str) -> MessageInfo:
    """A stored message by its id (or a unique prefix of at least 8 hex digits)."""
    wanted = message_id.lower()
    if len(wanted) < 8:
        raise usage_error("give at least 8 characters of the message id")
    found: list[MessageInfo] = []
    for conv in await client.conversations():
        for m in await client.history(conv.id, limit=None):
            if m.message_id == wanted:
                return m
            if m.message_id.startswith(wanted):
                found.append(m)
    if len(found) == 1:
        return found[0]
    if found:
        raise CliError(ErrorCode.AMBIGUOUS, f"{len(found)} messages start with {message_id}")
    raise CliError(ErrorCode.NOT_FOUND, f"no message {message_id} in this profile")


__all__ = [
    "EXIT_INTERRUPTED",
    "PASSPHRASE_ENV",
    "RECEIVE_CURSOR",
    "USERNAME_HINT",
    "CliError",
    "Failure",
    "Target",
    "checked",
    "classify",
    "client_options",
    "fail",
    "find_message",
    "open_client",
    "parse_user",
    "require_profile",
    "resolve",
    "resolve_users",
    "run",
    "usage_error",
    "with_client",
    "with_passphrase",
]
