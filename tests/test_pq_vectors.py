"""Post-quantum KEM vectors (tests/vectors/pq/, copied unchanged): one case per vector, through
`doorless.conformance.pq_kems` (the checker `doorless vectors` uses). Cases of KEMs and KDFs no
MLS suite here uses are skipped by the checker and counted below."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from doorless.conformance import SFRAME_SECTION, VectorMismatch, VectorSkip, detect_kind, load_cases
from doorless.conformance.pq_kems import check

VECTORS = Path(__file__).resolve().parent / "vectors" / "pq"
XWING = VECTORS / "draft-connolly-cfrg-xwing-kem-test-vectors.json"
HPKE_PQ = VECTORS / "draft-ietf-hpke-pq-test-vectors.json"
HYBRID = VECTORS / "draft-irtf-cfrg-concrete-hybrid-kems-test-vectors.json"


def _name(case: dict[str, Any], i: int) -> str:
    if "kem_id" in case:
        return f"kem={case['kem_id']:#06x}-kdf={case['kdf_id']:#06x}-aead={case['aead_id']}"
    return f"{case.get(SFRAME_SECTION, 'xwing')}-{i}"


def _params() -> list[Any]:
    return [
        pytest.param(case, id=f"{path.stem}:{_name(case, i)}")
        for path in (XWING, HPKE_PQ, HYBRID)
        for i, case in enumerate(load_cases(path))
    ]


CASES = _params()


def _outcomes(path: Path) -> tuple[int, int]:
    passed = skipped = 0
    for case in load_cases(path):
        try:
            check(case)
        except VectorSkip:
            skipped += 1
        else:
            passed += 1
    return passed, skipped


def test_files_are_recognised() -> None:
    assert all(detect_kind(p) in {p.name.removesuffix(".json")} for p in (XWING, HPKE_PQ, HYBRID))


@pytest.mark.parametrize(
    ("path", "want"),
    [
        (XWING, (3, 0)),
        # ML-KEM-768 and X-Wing with HKDF-SHA256; the rest are other KEMs or SHAKE KDFs.
        (HPKE_PQ, (2, 11)),
        (HYBRID, (10, 20)),  # the 10 MLKEM768-X25519 cases
    ],
    ids=["xwing", "hpke-pq", "hybrid-kems"],
)
def test_counts(path: Path, want: tuple[int, int]) -> None:
    assert _outcomes(path) == want


@pytest.mark.parametrize("case", CASES)
def test_vector(case: dict[str, Any]) -> None:
    try:
        check(case)
    except VectorSkip as exc:
        pytest.skip(str(exc))


@pytest.mark.parametrize(
    ("path", "index", "field"),
    [
        (XWING, 0, "pk"),
        (XWING, 1, "ss"),
        (HYBRID, 10, "shared_secret"),
        (HYBRID, 11, "encapsulation_key"),
        (HPKE_PQ, 1, "pkRm"),
        (HPKE_PQ, 4, "shared_secret"),
    ],
)
def test_checker_fails_on_a_changed_value(path: Path, index: int, field: str) -> None:
    case = dict(load_cases(path)[index])
    value = bytearray(bytes.fromhex(case[field]))
    value[-1] ^= 1
    case[field] = value.hex()
    with pytest.raises(VectorMismatch, match=field):
        check(case)


def test_checker_fails_on_a_changed_encryption() -> None:
    case = dict(load_cases(HPKE_PQ)[4])
    encryptions = [dict(e) for e in case["encryptions"]]
    encryptions[3]["pt"] = "00" + encryptions[3]["pt"][2:]
    case["encryptions"] = encryptions
    with pytest.raises(VectorMismatch, match=r"encryptions\[3\]"):
        check(case)
