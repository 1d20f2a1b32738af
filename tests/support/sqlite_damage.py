"""A Doorless SQLite database with some rows, and a way to damage it (for the integrity checks:
``tests/server/test_operability.py``, ``tests/cli/test_server_command.py``, ``tests/e2e``)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from doorless.server.storage.sqlite import SQLiteStorage


async def filled_database(path: Path) -> None:
    """Create the database at ``path`` with enough invites to span several pages."""
    storage = SQLiteStorage(path)
    await storage.open()
    try:
        for i in range(400):
            await storage.create_invite(i.to_bytes(32, "big"), 0, 10**10)
    finally:
        await storage.close()


def damage(path: Path) -> None:
    """Overwrite the cell pointers of the invites table's root page (an interior page)."""
    conn = sqlite3.connect(path)
    try:
        root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'invites'").fetchone()
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    finally:
        conn.close()
    with path.open("r+b") as f:
        f.seek((int(root[0]) - 1) * int(page_size) + 12)
        f.write(b"\xff" * 64)
