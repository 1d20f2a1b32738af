"""RFC 9162 proof vectors (transparency-dev/merkle testdata): one case per file.

Every file, valid and invalid, must get the verdict it names (``wantErr``); the checker is
`doorless.conformance.rfc9162.check`. For the valid proofs drawn from the RFC 6962 test tree,
the proof our `MerkleLog` generates must also equal the vector's, element for element.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from doorless.conformance.rfc9162 import b64, check, is_inclusion, proof_of
from doorless.kt.merkle import MerkleLog

VECTORS = Path(__file__).parents[1] / "vectors" / "rfc9162"
FILES = sorted(VECTORS.rglob("*.json"))

# The leaves of the RFC 6962 / certificate-transparency test tree, from which transparency-dev
# generated its numbered vector folders.
CT_LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]


def _load(path: Path) -> dict[str, Any]:
    with path.open("rb") as f:
        case: dict[str, Any] = json.load(f)
    return case


def _id(path: Path) -> str:
    return path.relative_to(VECTORS).with_suffix("").as_posix()


def test_all_vector_files_are_collected() -> None:
    # 98 inclusion and 98 consistency cases in the upstream testdata
    assert len(FILES) == 196
    assert sum(is_inclusion(_load(p)) for p in FILES) == 98


@pytest.mark.parametrize("path", FILES, ids=_id)
def test_rfc9162_vector(path: Path) -> None:
    check(_load(path))


HAPPY = [p for p in FILES if p.name == "happy-path.json"]


@pytest.mark.parametrize("path", HAPPY, ids=_id)
def test_generated_proof_matches_vector(path: Path) -> None:
    case = _load(path)
    log = MerkleLog.from_entries(CT_LEAVES)
    if is_inclusion(case):
        size, index = case["treeSize"], case["leafIdx"]
        assert log.root(size) == b64(case["root"])
        assert log.leaf_hash(index) == b64(case["leafHash"])
        assert log.inclusion_proof(index, size) == proof_of(case)
    else:
        size1, size2 = case["size1"], case["size2"]
        assert log.root(size1) == b64(case["root1"])
        assert log.root(size2) == b64(case["root2"])
        assert log.consistency_proof(size1, size2) == proof_of(case)
