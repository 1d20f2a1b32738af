"""Operable under faults: atomic registration, 503 + Retry-After when the database is away,
unexpected exceptions logged with type and place (never a message-less 500) and rate limits that
can be turned off. (A damaged SQLite database refused at start: ``test_storage``.)"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from doorless.client.errors import Conflict, ServerFailure
from doorless.client.transport import DeviceIdentity, Transport
from doorless.errors import StateError
from doorless.server.auth import invite_hash
from doorless.server.config import Registration
from doorless.server.log import JsonFormatter
from doorless.server.ratelimit import RateLimiter
from doorless.server.storage.base import StorageUnavailable

from .helpers import BASE_URL, FakeClock, Harness, make_config, running

pytestmark = pytest.mark.asyncio


def _no_raise(server: Harness) -> httpx.ASGITransport:
    """The app's answers as a real client sees them (a 500, not the exception)."""
    return httpx.ASGITransport(app=server.app, raise_app_exceptions=False)


# --- atomic registration ---------------------------------------------------------------------


def _failing_publish(server: Harness, exc: BaseException) -> Any:
    real = server.ctx.kt.publish
    calls = 0

    async def publish() -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise exc
        return await real()

    server.ctx.kt.publish = publish  # type: ignore[method-assign]
    return real


@pytest.mark.parametrize(
    ("failure", "status"),
    [(StorageUnavailable("the database is unavailable (test)"), 503), (StateError("bug"), 500)],
)
async def test_a_failed_kt_publish_leaves_no_account(
    server: Harness, failure: BaseException, status: int
) -> None:
    before = server.db_dump()
    _failing_publish(server, failure)
    device = DeviceIdentity.generate()
    t = Transport(BASE_URL, device, http_transport=_no_raise(server), retries=0)
    with pytest.raises(ServerFailure) as e:
        await t.register("alice")
    assert e.value.status == status
    assert server.db_dump() == before  # no account, device or KT version left behind
    assert await server.ctx.storage.list_devices("alice") is None
    # The client's retry registers the name (instead of 409 username_taken).
    await t.register("alice")
    await t.authenticate()
    await t.aclose()
    assert [d.device_id for d in await server.ctx.storage.list_devices("alice") or []] == [
        device.device_id
    ]
    with pytest.raises(Conflict) as taken:
        await server.client().register("alice")
    assert taken.value.code == "username_taken"


async def test_a_failed_kt_publish_gives_the_invite_back(data_dir: Path, clock: FakeClock) -> None:
    config = make_config(data_dir, registration=Registration.invite)
    async with running(config, clock) as server:
        code = "ABCDEFGHJKMNPQRS"
        now = int(clock())
        await server.ctx.storage.create_invite(invite_hash(code), now, now + 3600)
        _failing_publish(server, StorageUnavailable("test"))
        t = server.client()
        with pytest.raises(ServerFailure):
            await t.register("alice", invite_code=code)
        await t.register("alice", invite_code=code)  # the same code works again
        with pytest.raises(Exception, match="invite"):
            await server.client().register("bob", invite_code=code)  # and is used up now


async def test_an_account_logged_meanwhile_stands(server: Harness) -> None:
    """Another process logged the version before the failed publish's undo: 201."""

    async def publish() -> int:
        await real()  # "another node" logs it
        raise StorageUnavailable("test")

    real = server.ctx.kt.publish
    server.ctx.kt.publish = publish  # type: ignore[method-assign]
    t = server.client()
    await t.register("alice")
    server.ctx.kt.publish = real  # type: ignore[method-assign]
    await t.authenticate()
    assert await server.ctx.storage.list_devices("alice")


# --- the database away: 503 + Retry-After -----------------------------------------------------


async def test_storage_unavailable_answers_503_with_retry_after(
    server: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    alice = await server.user("alice")

    async def unavailable(*_args: Any, **_kwargs: Any) -> Any:
        raise StorageUnavailable("the database is unavailable (ConnectionRefusedError)")

    real = server.ctx.storage.fetch
    server.ctx.storage.fetch = unavailable  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="doorless.server"):
        async with server.http() as http:
            r = await http.get("/v1/messages", headers={"Authorization": f"Bearer {alice._token}"})
    assert r.status_code == 503
    assert r.headers["retry-after"] == "2"
    assert r.json()["error"] == "unavailable"
    assert not any(rec.levelno >= logging.ERROR for rec in caplog.records)
    server.ctx.storage.fetch = real  # type: ignore[method-assign]
    await alice.fetch()  # back


# --- unexpected exceptions: type, place and (own errors) message in the log ----------------


async def test_an_unexpected_exception_is_logged_with_type_place_and_message(
    server: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    alice = await server.user("alice")

    async def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise StateError("the stored KT log has a gap")

    async def leaky(*_args: Any, **_kwargs: Any) -> Any:
        raise ValueError("row content SECRET-ROW-TEXT")

    headers = {"Authorization": f"Bearer {alice._token}"}
    cases = (
        (broken, "doorless.errors.StateError", "the stored KT log has a gap"),
        (leaky, "builtins.ValueError", None),
    )
    for fault, exception, message in cases:
        server.ctx.storage.fetch = fault  # type: ignore[method-assign]
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="doorless.server"):
            async with httpx.AsyncClient(transport=_no_raise(server), base_url=BASE_URL) as http:
                r = await http.get("/v1/messages", headers=headers)
        assert r.status_code == 500 and r.json()["error"] == "internal"
        [record] = [rec for rec in caplog.records if rec.getMessage() == "unhandled exception"]
        fields = record.fields  # type: ignore[attr-defined]
        assert fields["exception"] == exception
        assert fields["where"].startswith("test_operability.py:")
        assert fields.get("message") == message
        assert "SECRET-ROW-TEXT" not in repr(fields)  # a foreign exception's text is never logged


# --- rate limits -------------------------------------------------------------------------------


async def test_a_rate_of_zero_turns_the_limit_off() -> None:
    limiter = RateLimiter(0, 1, lambda: 0.0)
    assert all(limiter.take("10.0.0.1") is None for _ in range(10_000))
    assert len(limiter) == 0
    limited = RateLimiter(1.0, 1, lambda: 0.0)
    assert limited.take("a") is None and limited.take("a") is not None


async def test_anonymous_limit_off_lets_one_address_register_many(
    data_dir: Path, clock: FakeClock
) -> None:
    """An office behind one NAT address (the harness's one client address)."""
    config = make_config(data_dir, anon_rate_per_second=0, anon_rate_burst=1)
    async with running(config, clock) as server:
        for i in range(60):
            await server.user(f"office{i}")


async def test_the_json_log_of_an_exception_names_it_without_foreign_text() -> None:
    """uvicorn's own "Exception in ASGI application" line goes through the same formatter."""
    formatter = JsonFormatter()

    def line(exc: Exception) -> dict[str, Any]:
        try:
            raise exc
        except (StateError, KeyError):
            record = logging.LogRecord(
                "uvicorn.error", logging.ERROR, __file__, 1, "boom", (), None
            )
            record.exc_info = sys.exc_info()
        return dict(json.loads(formatter.format(record)))

    own = line(StateError("could not append to the KT log (too much contention)"))
    assert own["exception"] == "doorless.errors.StateError"
    assert own["message"] == "could not append to the KT log (too much contention)"
    assert own["where"].startswith("test_operability.py:line:")
    foreign = line(KeyError("SECRET-KEY-TEXT"))
    assert foreign["exception"] == "builtins.KeyError" and "message" not in foreign
    assert "SECRET-KEY-TEXT" not in json.dumps(foreign)


async def test_the_transport_waits_out_a_503_on_idempotent_calls(server: Harness) -> None:
    alice = await server.user("alice")
    patient = Transport(
        BASE_URL, alice.device, http_transport=_no_raise(server), retries=2, max_backoff=0.01
    )
    real = server.ctx.storage.fetch
    failures = 0

    async def flaky(*args: Any, **kwargs: Any) -> Any:
        nonlocal failures
        if failures < 2:
            failures += 1
            raise StorageUnavailable("the database is unavailable (test)")
        return await real(*args, **kwargs)

    server.ctx.storage.fetch = flaky  # type: ignore[method-assign]
    try:
        await patient.authenticate()
        assert await patient.fetch() is not None  # two 503s waited out
        failures = 0
        impatient = Transport(BASE_URL, alice.device, http_transport=_no_raise(server), retries=0)
        try:
            with pytest.raises(ServerFailure) as e:  # no retries: the 503 surfaces
                await impatient.fetch()
        finally:
            await impatient.aclose()
        assert e.value.status == 503 and e.value.retry_after == 2
    finally:
        await patient.aclose()
