"""Checker for the RFC 9162 proof vectors of transparency-dev/merkle (``tests/vectors/rfc9162``).

Each vector file is one case: an inclusion case (``leafIdx``, ``treeSize``, ``root``,
``leafHash``, ``proof``) or a consistency case (``size1``, ``size2``, ``root1``, ``root2``,
``proof``), with ``wantErr`` the expected verdict. Hashes are standard base64. `check` raises
`VectorMismatch` when `doorless.kt.merkle` reaches the other verdict.
"""

from __future__ import annotations

import base64
from typing import Any

from doorless.conformance import VectorMismatch
from doorless.kt.errors import InvalidProof
from doorless.kt.merkle import verify_consistency, verify_inclusion

Case = dict[str, Any]


def b64(value: str) -> bytes:
    return base64.b64decode(value, validate=True)


def proof_of(case: Case) -> list[bytes]:
    # transparency-dev writes a missing proof as JSON null
    return [b64(p) for p in case["proof"] or []]


def is_inclusion(case: Case) -> bool:
    return "leafIdx" in case


def _verify(case: Case) -> None:
    if is_inclusion(case):
        verify_inclusion(
            b64(case["leafHash"]),
            case["leafIdx"],
            case["treeSize"],
            proof_of(case),
            b64(case["root"]),
        )
    else:
        verify_consistency(
            case["size1"], case["size2"], b64(case["root1"]), b64(case["root2"]), proof_of(case)
        )


def check(case: Case) -> None:
    want_err: bool = case["wantErr"]
    try:
        _verify(case)
    except InvalidProof as exc:
        if not want_err:
            raise VectorMismatch(
                "verdict", f"rejected a valid proof ({case['desc']}): {exc}"
            ) from exc
        return
    if want_err:
        raise VectorMismatch("verdict", f"accepted an invalid proof ({case['desc']})")
