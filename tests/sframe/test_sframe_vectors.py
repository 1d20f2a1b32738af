"""RFC 9605 Appendix C vectors (sframe-wg/sframe test-vectors/, copied unchanged into
tests/vectors/sframe/): one case per vector, every intermediate value checked by
`doorless.conformance.sframe` (header; enc_key/auth_key/ct/pt; labels, sframe_secret,
sframe_key, sframe_salt, nonce, aad, ct, pt)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from doorless.conformance import SFRAME_SECTION, VectorMismatch, detect_kind, load_cases
from doorless.conformance.sframe import check

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "sframe"
FILES = sorted(VECTORS.glob("*.json"))


def _cases() -> list[Any]:
    params = []
    for path in FILES:
        for case in load_cases(path):
            section = case[SFRAME_SECTION]
            if section == "header":
                name = f"kid={case['kid']:#x}-ctr={case['ctr']:#x}"
            else:
                name = f"suite={case['cipher_suite']}"
            params.append(pytest.param(case, id=f"{path.stem}:{section}:{name}"))
    return params


CASES = _cases()


def test_every_file_and_section_is_present() -> None:
    # test-vectors.json: 289 header, 3 + 3 AES-CTR-HMAC, 5 SFrame; test-vectors-aes256.json: 3.
    assert [p.name for p in FILES] == ["test-vectors-aes256.json", "test-vectors.json"]
    assert len(CASES) == 303
    assert all(detect_kind(path) == "sframe" for path in FILES)


@pytest.mark.parametrize("case", CASES)
def test_vector(case: dict[str, object]) -> None:
    check(case)


@pytest.mark.parametrize(
    "field", ["encoded", "ct", "sframe_key", "sframe_salt", "nonce", "sframe_secret", "pt"]
)
def test_checker_fails_on_a_changed_value(field: str) -> None:
    """The checker can fail: flip one bit of one expected value per kind of field."""
    case = next(
        dict(c)
        for path in FILES
        for c in load_cases(path)
        if field in c and (field != "encoded" or c["kid"] > 7)
    )
    value = bytearray(bytes.fromhex(str(case[field])))
    value[-1] ^= 1
    case[field] = value.hex()
    # A changed plaintext shows first as a different ciphertext.
    with pytest.raises(VectorMismatch, match={"pt": "ct"}.get(field, field)):
        check(case)
