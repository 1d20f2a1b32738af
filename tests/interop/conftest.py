"""Fixtures for the ts-mls interop tests: install the pinned ts-mls once, share one driver.

Without node/npm the tests are skipped with a message, except in CI (``CI=true``), where a
missing Node.js is a failure: the interop suite must not silently stop running there.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from tsmls import TsMls, TsMlsUnavailable, ensure_installed, unavailable_reason


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@pytest.fixture(scope="session")
def tsmls_installed() -> None:
    """node + npm present and ``npm ci`` done (fails in CI, skips elsewhere, if not)."""
    reason = unavailable_reason()
    if reason is None:
        try:
            ensure_installed()
        except TsMlsUnavailable as exc:
            reason = str(exc)
    if reason is not None:
        if _in_ci():
            pytest.fail(f"ts-mls interop tests cannot run in CI: {reason}", pytrace=False)
        pytest.skip(f"ts-mls interop tests skipped: {reason}")


@pytest.fixture(scope="module")
def ts(tsmls_installed: None) -> Iterator[TsMls]:
    """One driver process per test module; tests use distinct member names."""
    with TsMls(timeout=60.0) as driver:
        yield driver
