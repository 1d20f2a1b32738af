"""Schemathesis against the OpenAPI document (``docs/openapi.json``, which a server test keeps
equal to the live one): for every operation, generated requests, valid and invalid, sent
with a logged-in device's token to the server over loopback. No answer may be a 5xx, and
every error answer is the protocol's ``{"error", "message"}`` object.

The server runs in this process (uvicorn in a thread) so that its rate limits can be lifted;
otherwise most requests would be answered 429.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from doorless.client.transport import DeviceIdentity, Transport
from support.servers import ThreadServer

SPEC = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
SCHEMA = schemathesis.openapi.from_path(str(SPEC))
OPERATIONS: list[Any] = [result.ok() for result in SCHEMA.get_all_operations()]  # type: ignore[union-attr]
EXAMPLES = int(os.environ.get("DOORLESS_FUZZ_EXAMPLES", "20"))
_SHM = Path("/dev/shm")


@dataclass
class Live:
    url: str
    headers: dict[str, str]


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    root = Path(tempfile.mkdtemp(prefix="doorless-fuzz-", dir=_SHM if _SHM.is_dir() else None))
    server = ThreadServer(root / "data")
    server.start()

    async def login() -> str:
        t = Transport(server.url, DeviceIdentity.generate(), retries=0)
        try:
            await t.register("fuzzer")
            await t.authenticate()
            assert t._token is not None
            return t._token
        finally:
            await t.aclose()

    try:
        token = asyncio.run(login())
        yield Live(server.url, {"Authorization": f"Bearer {token}"})
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: op.label)
def test_no_server_errors(live: Live, operation: Any) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    @given(
        case=st.one_of(
            operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
            operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
        )
    )
    def check(case: Any) -> None:
        response = case.call(base_url=live.url, headers=live.headers, timeout=30)
        assert response.status_code < 500, (case.as_curl_command(), response.text)
        if response.status_code >= 400 and response.content:
            body = response.json()
            assert isinstance(body.get("error"), str) and isinstance(body.get("message"), str)

    check()
