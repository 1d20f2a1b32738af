"""The strength check for backup passphrases.

A backup file can be copied anywhere and attacked offline, so its passphrase must resist a
guessing attack even through Argon2id. The estimate is deliberately simple and conservative:
at least `MIN_LENGTH` characters, at least `MIN_DISTINCT` different ones, not built on a
common password, and at least `MIN_BITS` of estimated entropy, counting each character as a
draw from the character classes the passphrase uses and a repeated run as one character.
A few random words ("correct horse battery staple") pass; "Password1234!" does not.
"""

from __future__ import annotations

import math
import re
import unicodedata

from doorless.client.backup.errors import WeakPassphrase

MIN_LENGTH = 12
MIN_DISTINCT = 6
MIN_BITS = 60.0

# The bases of the most common passwords (their digits and symbols stripped, lowercased).
_COMMON = frozenset(
    {
        "password",
        "passw",
        "passwort",
        "qwerty",
        "qwertyuiop",
        "azerty",
        "letmein",
        "welcome",
        "admin",
        "iloveyou",
        "monkey",
        "dragon",
        "sunshine",
        "princess",
        "football",
        "baseball",
        "master",
        "secret",
        "doorless",
        "backup",
        "abcdef",
        "abcdefgh",
        "abc",
        "",
    }
)
_SEQUENCES = ("abcdefghijklmnopqrstuvwxyz", "0123456789", "qwertyuiopasdfghjklzxcvbnm")


def _pool(text: str) -> int:
    size = 0
    if any(c.islower() and c.isascii() for c in text):
        size += 26
    if any(c.isupper() and c.isascii() for c in text):
        size += 26
    if any(c.isdigit() and c.isascii() for c in text):
        size += 10
    if any(c.isascii() and not c.isalnum() for c in text):
        size += 33
    if any(not c.isascii() for c in text):
        size += 100
    return size


def _runs_collapsed(text: str) -> str:
    # "aaaa" counts as one character, and so does a run along a keyboard or the alphabet.
    out: list[str] = []
    for c in text:
        prev = out[-1][-1] if out else ""
        step = prev + c.lower()
        if prev and (c == prev or any(step in seq for seq in _SEQUENCES)):
            out[-1] += c
        else:
            out.append(c)
    return "".join(chunk[0] for chunk in out)


def estimate_bits(passphrase: str) -> float:
    """A conservative estimate of the passphrase's entropy in bits."""
    text = unicodedata.normalize("NFC", passphrase)
    pool = _pool(text)
    return 0.0 if pool == 0 else len(_runs_collapsed(text)) * math.log2(pool)


def check_strength(passphrase: str) -> None:
    """`WeakPassphrase` (with the reason and what to do) unless the passphrase is strong."""
    text = unicodedata.normalize("NFC", passphrase)
    advice = "use four or more random words, or a backup with a recovery key instead"
    if len(text) < MIN_LENGTH:
        raise WeakPassphrase(
            f"the backup passphrase is too short ({len(text)} characters, at least "
            f"{MIN_LENGTH}): {advice}"
        )
    if len(set(text)) < MIN_DISTINCT:
        raise WeakPassphrase(f"the backup passphrase repeats too few characters: {advice}")
    if re.sub(r"[^a-z]", "", text.lower()) in _COMMON:
        raise WeakPassphrase(f"the backup passphrase is a common password: {advice}")
    bits = estimate_bits(text)
    if bits < MIN_BITS:
        raise WeakPassphrase(
            f"the backup passphrase is too easy to guess (about {bits:.0f} bits, at least "
            f"{MIN_BITS:.0f}): {advice}"
        )


__all__ = ["MIN_BITS", "MIN_LENGTH", "check_strength", "estimate_bits"]
