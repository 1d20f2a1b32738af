"""One pytest case per official MLS vector (tests/vectors/mls), checked by doorless.conformance."""

from __future__ import annotations

from pathlib import Path

import pytest

from doorless.conformance import KINDS, VectorSkip, checker, load_cases

VECTORS = Path(__file__).parents[1] / "vectors" / "mls"


def _params() -> list[object]:
    params: list[object] = []
    for kind in KINDS:
        path = VECTORS / f"{kind}.json"
        if not path.exists():
            continue
        for i, case in enumerate(load_cases(path)):
            params.append(pytest.param(kind, case, id=f"{kind}[{i}]"))
    return params


@pytest.mark.parametrize(("kind", "case"), _params())
def test_vector(kind: str, case: dict[str, object]) -> None:
    try:
        check = checker(kind)
    except ModuleNotFoundError as exc:
        pytest.fail(f"no checker for {kind}: {exc}")
    try:
        check(case)
    except VectorSkip as exc:
        pytest.skip(f"unsupported: {exc}")
