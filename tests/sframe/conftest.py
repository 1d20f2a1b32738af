"""Every SFrame test runs twice: through the C per-frame path (`doorless._sframe_native`) and
through the pure-Python reference path. The tests of the C module itself
(test_sframe_native.py) compare the two paths, so they run once."""

from __future__ import annotations

import os

import pytest

from doorless import sframe

BOTH_PATHS_EXCEPT = {"test_sframe_native"}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.module.__name__.rsplit(".", 1)[-1] not in BOTH_PATHS_EXCEPT:
        metafunc.parametrize("sframe_path", ["native", "python"], indirect=True)


@pytest.fixture(autouse=True)
def sframe_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    path: str = getattr(request, "param", "native")
    if path == "python":
        monkeypatch.setattr(sframe, "native", None)
    elif sframe.native is None:
        message = (
            "doorless._sframe_native is not built (it needs a C compiler and OpenSSL's headers:"
            " bash scripts/system-packages, then reinstall)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path
