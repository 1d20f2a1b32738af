"""The backup passphrase strength check."""

from __future__ import annotations

import pytest

from doorless.client.backup.errors import WeakPassphrase
from doorless.client.backup.passphrase import MIN_BITS, check_strength, estimate_bits


@pytest.mark.parametrize(
    "weak",
    [
        "",
        "short",
        "password1234",
        "Password1234!",
        "qwerty123456789",
        "aaaaaaaaaaaaaaaaaaaa",
        "abcdefghijklmnopqrstuvwxyz",
        "ababababababab",
        "1234567890123",
    ],
)
def test_weak_passphrases_are_refused(weak: str) -> None:
    with pytest.raises(WeakPassphrase) as info:
        check_strength(weak)
    assert "recovery key" in str(info.value)


@pytest.mark.parametrize(
    "strong",
    ["violet anchor mango trellis", "correct horse battery staple", "T7#qv9!Lm2@xR4"],
)
def test_strong_passphrases_pass(strong: str) -> None:
    check_strength(strong)
    assert estimate_bits(strong) >= MIN_BITS
