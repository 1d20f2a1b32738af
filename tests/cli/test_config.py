"""``doorless config get|set|unset`` and the profile's ``config.toml``: clear errors for
unknown keys and bad values, and nothing written when a change is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from doorless.cli import config as profile_config
from doorless.cli.main import app
from doorless.cli.session import client_options
from doorless.errors import ConfigurationError
from doorless.kt.checkpoint import NoteVerifier, SignatureType, ed25519_public_key

WITNESS = NoteVerifier("w", SignatureType.COSIGNATURE_V1, ed25519_public_key(bytes(32))).vkey()
LOG_KEY = NoteVerifier("log", SignatureType.ED25519, ed25519_public_key(bytes(32))).vkey()


def cli(profile: Path, *args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(app, ["--profile", str(profile), *args], catch_exceptions=False)
    return r.exit_code, r.stdout, r.stderr


def test_set_get_unset_round_trip(tmp_path: Path) -> None:
    assert cli(tmp_path, "config", "set", "kt.witnesses", WITNESS)[0] == 0
    assert cli(tmp_path, "config", "get", "kt.witnesses")[1].strip() == WITNESS
    out = cli(tmp_path, "--json", "config", "get", "kt.witnesses")[1]
    assert json.loads(out) == {"key": "kt.witnesses", "value": [WITNESS]}
    kt = profile_config.load(tmp_path).kt_config()
    assert (kt.witnesses, kt.quorum, kt.witness_wait) == ((WITNESS,), 1, 10.0)  # all required
    assert cli(tmp_path, "config", "set", "kt.log_key", LOG_KEY)[0] == 0
    assert cli(tmp_path, "config", "set", "kt.witness_wait", "2.5")[0] == 0
    assert profile_config.load(tmp_path).kt_config().witness_wait == 2.5
    assert cli(tmp_path, "config", "unset", "kt.witness_wait")[0] == 0
    assert cli(tmp_path, "config", "get", "kt.witness_wait")[1].strip() == "(not set)"


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        ("kt.bogus", "1", "unknown setting 'kt.bogus'"),
        ("kt.quorum", "two", "whole number"),
        ("kt.quorum", "2", "set the witness keys first"),
        ("kt.quorum", "-1", "cannot be negative"),
        ("kt.witnesses", "not-a-key", "invalid witness key"),
        ("kt.witnesses", LOG_KEY, "cosignature/v1"),
        ("kt.witness_wait", "-3", "non-negative"),
        ("kt.witness_wait", "nan", "non-negative"),
        ("kt.log_key", WITNESS, "Ed25519"),
    ],
)
def test_bad_settings_are_refused_and_nothing_is_written(
    tmp_path: Path, key: str, value: str, says: str
) -> None:
    assert cli(tmp_path, "config", "set", "kt.witnesses", WITNESS)[0] == 0
    before = (tmp_path / "config.toml").read_bytes()
    code, _, err = cli(tmp_path, "config", "set", "--", key, value)
    assert code == 2
    assert says in err
    assert (tmp_path / "config.toml").read_bytes() == before


@pytest.mark.parametrize(
    "text",
    [
        "not toml [",
        "[kt]\nunknown = 1\n",
        "[kt]\nquorum = 'one'\n",
        "[kt]\nquorum = 1\n",  # more than the (no) witnesses
        "kt = 1\n",
    ],
)
def test_a_bad_file_is_a_clear_error(tmp_path: Path, text: str) -> None:
    (tmp_path / "config.toml").write_text(text)
    with pytest.raises(ConfigurationError, match=r"config\.toml"):
        profile_config.load(tmp_path)
    code, _, err = cli(tmp_path, "config", "get")
    assert code == 2 and "config.toml" in err


def test_account_create_refuses_a_bad_witness_before_any_setup(tmp_path: Path) -> None:
    profile = tmp_path / "p"
    code, _, err = cli(
        profile, "account", "create", "alice", "--server", "http://127.0.0.1:9", "--witness", "x"
    )
    assert code != 0 and "invalid witness key" in err
    assert not profile.exists() or not any(profile.iterdir())


def test_privacy_switches_reach_the_client_options(tmp_path: Path) -> None:
    assert client_options(profile=tmp_path).read_receipts  # on unless switched off
    assert cli(tmp_path, "config", "set", "privacy.read_receipts", "off")[0] == 0
    assert cli(tmp_path, "config", "set", "privacy.typing", "No")[0] == 0
    assert "read_receipts = false" in (tmp_path / "config.toml").read_text()
    options = client_options(profile=tmp_path)
    assert (options.read_receipts, options.typing_notices) == (False, False)
    assert cli(tmp_path, "config", "set", "privacy.typing", "on")[0] == 0
    assert client_options(profile=tmp_path).typing_notices
    code, _, err = cli(tmp_path, "config", "set", "privacy.typing", "maybe")
    assert code == 2 and "on or off" in err
    (tmp_path / "config.toml").write_text("[privacy]\ntyping = 1\n")
    with pytest.raises(ConfigurationError, match="wrong kind"):
        profile_config.load(tmp_path)
