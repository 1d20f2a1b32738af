"""Property tests at the HTTP boundary: whatever arrives, the answer is typed, never a 500.

One server serves every example (starting one per example would be slow); each example checks
the response and that a refused request left the database as it was.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from doorless.client.transport import Transport
from doorless.wire import protocol

from .helpers import FakeClock, Harness, commit, make_config, running


@dataclass
class Live:
    runner: asyncio.Runner
    server: Harness
    alice: Transport
    bob_id: str

    def post(self, path: str, body: Any) -> tuple[int, Any]:
        async def go() -> tuple[int, Any]:
            async with self.server.http() as http:
                r = await http.post(
                    path,
                    headers={
                        "Authorization": f"Bearer {self.alice._token}",
                        "Content-Type": "application/json",
                    },
                    content=json.dumps(body),  # NaN and Infinity included, as Python writes them
                )
                return r.status_code, r.json()

        return self.runner.run(go())


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    data_dir: Path = tmp_path_factory.mktemp("fuzz") / "data"
    with asyncio.Runner() as runner:
        context = running(make_config(data_dir), FakeClock())
        server = runner.run(context.__aenter__())
        try:
            alice = runner.run(server.user("alice"))
            bob = runner.run(server.user("bob"))
            assert bob.device is not None
            yield Live(runner, server, alice, bob.device.device_id)
        finally:
            runner.run(context.__aexit__(None, None, None))


FUZZ = settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@FUZZ
@given(
    data=st.binary(max_size=200)
    | st.builds(commit, st.binary(max_size=8), st.integers(0, 2**64 - 1))
)
def test_arbitrary_message_bytes(live: Live, data: bytes) -> None:
    """Random bytes (and random-header commits) as the MLSMessage of a send."""
    before = live.server.db_dump()
    status, body = live.post(
        "/v1/messages",
        {
            "message_id": "fuzz-message",
            "data": protocol.b64encode(data),
            "recipients": [live.bob_id],
        },
    )
    if status in (200, 201):
        return
    assert status in (400, 409, 413), body
    assert isinstance(body["error"], str) and isinstance(body["message"], str)
    assert live.server.db_dump() == before


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=10,
)
paths = st.sampled_from(
    [
        "/v1/messages",
        "/v1/messages/ack",
        "/v1/keypackages",
        "/v1/accounts",
        "/v1/auth/token",
        "/v1/links",
        "/v1/links/ABCD-EFGH/approve",
    ]
)


@FUZZ
@given(path=paths, body=json_values)
def test_arbitrary_json_bodies(live: Live, path: str, body: Any) -> None:
    before = live.server.db_dump()
    status, answer = live.post(path, body)
    assert status < 500, answer
    if status < 400:  # e.g. an empty upload or ack: valid, and a no-op
        assert live.server.db_dump() == before
        return
    assert isinstance(answer["error"], str)
    assert live.server.db_dump() == before


@FUZZ
@given(
    body=st.fixed_dictionaries(
        {
            "message_id": st.from_regex(protocol.MESSAGE_ID_PATTERN, fullmatch=True),
            "data": st.binary(max_size=64).map(protocol.b64encode),
            "recipients": st.lists(
                st.from_regex(protocol.DEVICE_ID_PATTERN, fullmatch=True), max_size=3
            ),
        }
    )
)
def test_schema_valid_sends_with_junk_content(live: Live, body: dict[str, Any]) -> None:
    before = live.server.db_dump()
    status, answer = live.post("/v1/messages", body)
    assert status in (400, 409, 413), answer
    assert live.server.db_dump() == before
