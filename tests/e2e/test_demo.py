"""``doorless demo`` (the README's main job) as a separate process: it finishes in well under
30 seconds, every message reaches every member, no plaintext is found on the server's disk
or in its log, and it leaves nothing behind."""

from __future__ import annotations

import re
import tempfile
import time
from pathlib import Path

from .helpers import run_cli


def test_demo_runs_and_cleans_up() -> None:
    before = set(Path(tempfile.gettempdir()).glob("doorless-demo-*"))
    started = time.monotonic()
    r = run_cli(None, "demo", passphrase=None, timeout=120)
    elapsed = time.monotonic() - started
    assert r.returncode == 0, r.stderr
    out = " ".join(r.stdout.split())  # rich wraps lines to the terminal's width
    assert "What each client read, and what the server stored" in out
    for user in ("alice", "bob", "carol"):
        assert f"{user} read" in out
    assert "every message reached every member: yes" in out
    assert "(0 still queued)" in out
    assert re.search(r"searched \d+ files", out)
    assert "none found" in out and "FOUND" not in out
    assert elapsed < 60  # < 30 s on an idle machine; test machines are shared
    assert set(Path(tempfile.gettempdir()).glob("doorless-demo-*")) == before
