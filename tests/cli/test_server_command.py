"""``doorless server ...`` argument handling (the running server is in test_real_server)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from doorless.cli.main import app

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
