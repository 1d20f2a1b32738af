"""`doorless.cli.output.safe` / `safe_text`: peer-controlled text as a terminal shows it."""

from __future__ import annotations

import io
import json
import unicodedata

import pytest

from doorless.cli.output import CONTINUATION, emit_json, one_line, safe, safe_text

# Everything that could drive the terminal, start a line, or reorder what is shown.
DANGEROUS = (
    [chr(c) for c in range(0x00, 0x20)]
    + ["\x7f"]
    + [chr(c) for c in range(0x80, 0xA0)]
    + ["\u2028", "\u2029"]  # line / paragraph separators
    + [chr(c) for c in range(0x202A, 0x202F)]  # LRE RLE PDF LRO RLO
    + [chr(c) for c in range(0x2066, 0x206A)]  # LRI RLI FSI PDI
    + ["\u200e", "\u200f", "\u061c", "\u200b", "\u2060", "\ufeff", "\u00ad"]
)


@pytest.mark.parametrize("ch", DANGEROUS, ids=lambda c: f"U+{ord(c):04X}")
def test_every_dangerous_character_is_made_visible(ch: str) -> None:
    shown = safe(f"a{ch}b")
    assert ch not in shown
    assert shown.startswith("a") and shown.endswith("b") and len(shown) > 3
    assert all(c.isprintable() for c in shown)


def test_the_escapes_people_see() -> None:
    assert safe("a\nb") == "a\\nb"
    assert safe("\x1b[31mred\x1b]0;title\x07") == "\\x1b[31mred\\x1b]0;title\\x07"
    assert safe("\r\t\x00\x9b\x7f") == "\\r\\t\\x00\\x9b\\x7f"
    assert safe("abc\u202edef\u2066") == "abc<U+202E>def<U+2066>"
    assert safe("line\u2028sep") == "line<U+2028>sep"


def test_ordinary_text_is_unchanged() -> None:
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"
    for text in ["hello", "grüße 👋", "你好", "مرحبا", "[bold]not markup[/]", "a\\nb", family]:
        assert safe(text) == text
        assert safe_text(text) == text


def test_safe_is_idempotent() -> None:
    once = safe("\x1b\n\u202e")
    assert safe(once) == once


def test_a_multi_line_message_keeps_its_lines_each_marked() -> None:
    forged = "see you\n2026-01-01 10:00:00  #team  carol: send me the keys\r\nbye"
    shown = safe_text(forged)
    first, *rest = shown.split("\n")
    assert first == "see you"
    assert rest == [
        CONTINUATION + "2026-01-01 10:00:00  #team  carol: send me the keys",
        CONTINUATION + "bye",
    ]


def test_a_message_cannot_end_or_start_a_line_otherwise() -> None:
    shown = safe_text("a\rb\u2028c\x85d\x0be\x0cf")
    assert "\n" not in shown
    assert all(c.isprintable() for c in shown)


def test_one_line_is_safe() -> None:
    assert one_line("bad\x1b[2Jname\u202e\n x") == "bad\\x1b[2Jname<U+202E> x"


def test_no_format_character_passes_but_the_joiners() -> None:
    """Every Unicode format character (Cf) is escaped except ZWJ/ZWNJ (emoji, scripts)."""
    for code in range(0x110000):
        ch = chr(code)
        if unicodedata.category(ch) == "Cf" and ch not in "\u200c\u200d":
            assert ch not in safe(ch), f"U+{code:04X}"


def test_json_lines_stay_one_line_and_exact() -> None:
    """``--json`` is exact, and a line separator in peer text does not split its line."""
    out = io.StringIO()
    value = {"text": "a\u2028b\x85c\u2029d\n\x1b"}
    emit_json(value, out)
    assert len(out.getvalue().splitlines()) == 1
    assert json.loads(out.getvalue()) == value
