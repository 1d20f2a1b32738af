"""Running the server, as an operator does: a damaged SQLite database is refused at start with
a clear message, ``doorless server check`` reports it, and a ``--config`` TOML file with rate
limits sets up a real ``doorless server`` process (an office behind one NAT address)."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from doorless.client.errors import RateLimited
from doorless.client.transport import DeviceIdentity, Transport
from support.servers import ServerProcess, doorless_command, free_port
from support.sqlite_damage import damage, filled_database


def test_a_damaged_database_is_refused_at_start_and_by_check(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    asyncio.run(filled_database(data_dir / "doorless.sqlite3"))
    check = [*doorless_command(), "server", "check", "--data-dir", str(data_dir)]
    sound = subprocess.run(check, capture_output=True, text=True, timeout=60)
    assert sound.returncode == 0, sound.stderr
    assert "ok" in sound.stdout

    damage(data_dir / "doorless.sqlite3")
    command = [*doorless_command(), "server", "--data-dir", str(data_dir), "--port"]
    started = subprocess.run(
        [*command, str(free_port())], capture_output=True, text=True, timeout=60
    )
    assert started.returncode != 0
    assert '"event":"database damaged"' in started.stderr
    assert "is damaged (quick_check:" in started.stderr
    assert "doorless server check" in started.stderr

    checked = subprocess.run(check, capture_output=True, text=True, timeout=60)
    assert checked.returncode == 1
    assert checked.stdout.startswith("problem: ")


async def _register_from_one_address(url: str, count: int) -> int:
    """Register accounts from this one address until one is refused; returns how many."""
    for i in range(count):
        t = Transport(url, DeviceIdentity.generate(), retries=0)
        try:
            await t.register(f"office{i}")
        except RateLimited:
            return i
        finally:
            await t.aclose()
    return count


@pytest.mark.parametrize("limit", ["0", None])
def test_a_config_file_sets_the_rate_limits(tmp_path: Path, limit: str | None) -> None:
    """By default (2/s, bursts of 30) an office behind one NAT address is cut off after ~30
    registrations; ``anon-rate-limit = 0`` in the config file lifts the limit."""
    config = tmp_path / "doorless.toml"
    setting = "" if limit is None else f"anon-rate-limit = {limit}\n"
    config.write_text(setting + "rate-limit = 100\n")
    server = ServerProcess(
        data_dir=tmp_path / "data",
        log_path=tmp_path / "server.log",
        args=("--config", str(config)),
        log_level="info",
    )
    server.start()
    try:
        registered = asyncio.run(_register_from_one_address(server.url, 45))
    finally:
        server.stop()
    if limit == "0":
        assert registered == 45
    else:
        assert 10 <= registered < 45  # cut off by the burst of 30 anonymous requests
