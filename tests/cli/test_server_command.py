"""``doorless server ...`` argument handling (the running server is in test_real_server)."""

from __future__ import annotations

import asyncio
import gc
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from doorless.cli.main import app
from doorless.server.config import Registration, ServerConfig
from doorless.server.runtime import GC_THRESHOLDS

runner = CliRunner()


def test_data_dir_is_required() -> None:
    result = runner.invoke(app, ["server"])
    assert result.exit_code == 2
    assert "--data-dir is required" in result.output


def test_tls_options_go_together(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    result = runner.invoke(app, ["server", "--data-dir", str(tmp_path), "--tls-cert", str(cert)])
    assert result.exit_code == 2
    assert "--tls-cert and --tls-key go together" in result.output


def test_invite_prints_codes(tmp_path: Path) -> None:
    result = runner.invoke(app, ["server", "invite", "--data-dir", str(tmp_path), "--count", "3"])
    assert result.exit_code == 0, result.output
    codes = result.output.split()
    assert len(codes) == 3 and len(set(codes)) == 3
    assert all(len(c) == 19 and c.count("-") == 3 for c in codes)


def test_openapi_prints_the_document() -> None:
    result = runner.invoke(app, ["server", "openapi"])
    assert result.exit_code == 0
    spec = json.loads(result.output)
    assert "/v1/messages" in spec["paths"]


# --- settings: --rate-limit, --anon-rate-limit, --config FILE ---------------------------------


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[ServerConfig]:
    """Run ``doorless server`` up to uvicorn and keep the configuration it built."""
    import uvicorn

    configs: list[ServerConfig] = []

    def run(app: Any, **_kwargs: Any) -> None:
        configs.append(app.state.ctx.config)

    monkeypatch.setattr(uvicorn, "run", run)
    monkeypatch.setattr("doorless.server.log.configure_logging", lambda *_a, **_k: None)
    return configs


def test_rate_limit_flags(tmp_path: Path, served: list[ServerConfig]) -> None:
    args = ["server", "--data-dir", str(tmp_path), "--rate-limit", "50", "--anon-rate-limit", "0"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    [config] = served
    assert (config.rate_per_second, config.rate_burst) == (50, 500)
    assert config.anon_rate_per_second == 0  # off
    default = runner.invoke(app, ["server", "--data-dir", str(tmp_path)])
    assert default.exit_code == 0, default.output
    assert (served[1].rate_per_second, served[1].rate_burst) == (20, 200)
    assert (served[1].anon_rate_per_second, served[1].anon_rate_burst) == (2, 30)
    bad = runner.invoke(app, ["server", "--data-dir", str(tmp_path), "--rate-limit", "-1"])
    assert bad.exit_code == 2


def test_config_file_sets_every_option_and_flags_win(
    tmp_path: Path, served: list[ServerConfig]
) -> None:
    file = tmp_path / "doorless.toml"
    file.write_text(
        f'data-dir = "{tmp_path / "data"}"\n'
        'registration = "invite"\n'
        "anon-rate-limit = 40\n"
        "rate_limit = 7.5\n"  # underscores work too
        "max-message-size = 2048\n"
        "attachment-ttl = 60\n"
        'kt-witness = ["w+1234+AAAA"]\n'
    )
    result = runner.invoke(app, ["server", "--config", str(file), "--rate-limit", "9"])
    assert result.exit_code == 2  # the witness key is not a valid key ...
    assert "witness" in result.output
    file.write_text(file.read_text().replace('kt-witness = ["w+1234+AAAA"]\n', ""))
    result = runner.invoke(app, ["server", "--config", str(file), "--rate-limit", "9"])
    assert result.exit_code == 0, result.output
    [config] = served
    assert config.data_dir == tmp_path / "data"
    assert config.registration == Registration.invite
    assert config.anon_rate_per_second == 40 and config.anon_rate_burst == 600
    assert config.rate_per_second == 9  # the flag wins over the file
    assert config.max_message_size == 2048 and config.attachment_ttl == 60


@pytest.mark.parametrize(
    ("content", "error"),
    [
        ("rate-limits = 5\n", "unknown setting 'rate-limits'"),
        ("port = 70000\n", "port must be a port number"),
        ('port = "80"\n', "port must be an integer"),
        ("rate-limit = -2\n", "rate-limit must be a number >= 0"),
        ('registration = "closed"\n', "registration must be 'open' or 'invite'"),
        ("data-dir = [1\n", "--config"),
    ],
)
def test_config_file_refuses_unknown_keys_and_bad_values(
    tmp_path: Path, served: list[ServerConfig], content: str, error: str
) -> None:
    file = tmp_path / "doorless.toml"
    file.write_text(
        f'data-dir = "{tmp_path}"\n' + content if "data-dir" not in content else content
    )
    result = runner.invoke(app, ["server", "--config", str(file)])
    assert result.exit_code == 2, result.output
    assert error in result.output
    assert served == []


# --- doorless server check ---------------------------------------------------------------------


def test_check_passes_a_sound_database_and_fails_a_damaged_one(tmp_path: Path) -> None:
    import asyncio

    from support.sqlite_damage import damage, filled_database

    asyncio.run(filled_database(tmp_path / "doorless.sqlite3"))
    result = runner.invoke(app, ["server", "check", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "ok" in result.output
    damage(tmp_path / "doorless.sqlite3")
    result = runner.invoke(app, ["--json", "server", "check", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1, result.output
    report = json.loads(result.output)
    assert report["ok"] is False and "is damaged" in report["problems"][0]


def test_the_server_tunes_the_collector_once_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`runtime.tune_gc` is applied by the lifespan, after the startup, not at import."""
    import uvicorn

    seen: list[tuple[int, tuple[int, int, int]]] = []

    def run(application: Any, **_kwargs: Any) -> None:
        seen.append((gc.get_freeze_count(), gc.get_threshold()))  # before the startup

        async def lifespan() -> None:
            async with application.router.lifespan_context(application):
                seen.append((gc.get_freeze_count(), gc.get_threshold()))

        asyncio.run(lifespan())

    monkeypatch.setattr(uvicorn, "run", run)
    monkeypatch.setattr("doorless.server.log.configure_logging", lambda *_a, **_k: None)
    threshold = gc.get_threshold()
    gc.unfreeze()
    try:
        result = runner.invoke(app, ["server", "--data-dir", str(tmp_path)])
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
    assert result.exit_code == 0, result.output
    (frozen_before, _), (frozen_after, threshold_after) = seen
    assert frozen_before == 0
    assert frozen_after > 0 and threshold_after == GC_THRESHOLDS
