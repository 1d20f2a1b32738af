"""The profile's client settings: ``config.toml`` in the profile folder, and
``doorless config get|set|unset``.

The file holds public settings only (witness keys, a quorum, a pinned log key), never a
secret, so it is plain TOML next to the encrypted store. Every command and the daemon read it
when they open the profile (`client_options`); ``account create`` and ``device link`` write
the ``--witness`` / ``--witness-quorum`` flags they were given into it once the profile is set
up. A file that does not parse, an unknown key or a value of the wrong kind is a
`ConfigurationError` naming the key, and nothing is written.

Keys::

    kt.witnesses      witness verifier keys (cosignature/v1 vkeys, printed by
                      'doorless witness'); on the command line: comma-separated
    kt.quorum         how many of them must cosign every log head (default: all of them)
    kt.witness_wait   seconds to wait for the witnesses to cosign a new head (default 10)
    kt.log_key        the log's key (default: pinned on first contact)
    privacy.read_receipts   send "read up to" receipts (on/off, default on)
    privacy.typing          send typing notices (on/off, default on)
"""

from __future__ import annotations

import json
import math
import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from doorless.cli.common import state
from doorless.cli.output import emit
from doorless.client.kt import KtConfig
from doorless.errors import ConfigurationError
from doorless.kt.checkpoint import ed25519_verifier

CONFIG_FILE = "config.toml"
DEFAULT_WITNESS_WAIT = 10.0

Value = str | int | float | bool | tuple[str, ...]

_SWITCH = {"on": True, "true": True, "yes": True, "off": False, "false": False, "no": False}


def _switch(text: str) -> bool:
    value = _SWITCH.get(text.strip().lower())
    if value is None:
        raise ConfigurationError(f"a switch is on or off, not {text!r}")
    return value


def _witnesses(text: str) -> tuple[str, ...]:
    return tuple(w.strip() for w in text.split(",") if w.strip())


def _quorum(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ConfigurationError(f"kt.quorum is a whole number, not {text!r}") from None
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigurationError(f"kt.witness_wait is a number of seconds, not {text!r}") from None
    return value


@dataclass(frozen=True, slots=True)
class _Key:
    kind: type
    parse: Callable[[str], Value]
    help: str


KEYS: dict[str, _Key] = {
    "kt.witnesses": _Key(tuple, _witnesses, "witness keys (comma-separated vkeys)"),
    "kt.quorum": _Key(int, _quorum, "cosignatures required on every log head"),
    "kt.witness_wait": _Key(float, _seconds, "seconds to wait for a cosignature"),
    "kt.log_key": _Key(str, str, "the log's key (pinned on first contact if unset)"),
    "privacy.read_receipts": _Key(bool, _switch, "send read receipts (on/off)"),
    "privacy.typing": _Key(bool, _switch, "send typing notices (on/off)"),
}


@dataclass(frozen=True, slots=True)
class ProfileConfig:
    """The settings of one profile (only the keys that are set)."""

    values: dict[str, Value]

    def get(self, key: str) -> Value | None:
        _check_key(key)
        return self.values.get(key)

    def kt_config(self) -> KtConfig:
        """The `KtConfig` these settings ask for; `ConfigurationError` if inconsistent."""
        witnesses = self.values.get("kt.witnesses", ())
        assert isinstance(witnesses, tuple)
        quorum = self.values.get("kt.quorum", len(witnesses))
        wait = self.values.get("kt.witness_wait", DEFAULT_WITNESS_WAIT if witnesses else 0.0)
        log_key = self.values.get("kt.log_key")
        assert isinstance(quorum, int) and isinstance(wait, int | float)
        assert log_key is None or isinstance(log_key, str)
        if quorum > len(witnesses):
            raise ConfigurationError(
                f"kt.quorum is {quorum} but kt.witnesses has {len(witnesses)} key(s): set the "
                "witness keys first"
            )
        if not math.isfinite(wait) or wait < 0:
            raise ConfigurationError("kt.witness_wait is a non-negative number of seconds")
        config = KtConfig(witnesses=witnesses, quorum=quorum, log_key=log_key, witness_wait=wait)
        config.witness_verifiers()  # a key that does not parse: ConfigurationError now
        if log_key is not None:
            ed25519_verifier(log_key, "kt.log_key")
        return config

    def switch(self, key: str) -> bool:
        """An on/off setting (on unless set off)."""
        return self.values.get(key) is not False

    def replace(self, key: str, value: Value | None) -> ProfileConfig:
        _check_key(key)
        values = dict(self.values)
        if value is None:
            values.pop(key, None)
        else:
            values[key] = value
        new = ProfileConfig(values)
        new.kt_config()
        return new


def _check_key(key: str) -> None:
    if key not in KEYS:
        raise ConfigurationError(f"unknown setting {key!r} (known: {', '.join(sorted(KEYS))})")


def parse_value(key: str, text: str) -> Value:
    """A command-line value of ``key``."""
    _check_key(key)
    value = KEYS[key].parse(text)
    return value


def _from_toml(data: dict[str, object], path: Path) -> ProfileConfig:
    values: dict[str, Value] = {}
    for section, table in data.items():
        if not isinstance(table, dict):
            raise ConfigurationError(f"{path}: unknown setting {section!r}")
        for name, raw in table.items():
            key = f"{section}.{name}"
            if key not in KEYS:
                raise ConfigurationError(f"{path}: unknown setting {key!r}")
            kind = KEYS[key].kind
            if kind is bool and isinstance(raw, bool):
                values[key] = raw
            elif kind is tuple and isinstance(raw, list) and all(isinstance(w, str) for w in raw):
                values[key] = tuple(raw)
            elif kind is int and type(raw) is int:
                values[key] = raw
            elif kind is float and isinstance(raw, int | float) and not isinstance(raw, bool):
                values[key] = float(raw)
            elif kind is str and isinstance(raw, str):
                values[key] = raw
            else:
                raise ConfigurationError(f"{path}: {key} has a value of the wrong kind")
    config = ProfileConfig(values)
    try:
        config.kt_config()
    except ConfigurationError as exc:
        raise ConfigurationError(f"{path}: {exc}") from None
    return config


def load(profile: Path) -> ProfileConfig:
    """The profile's settings (none if it has no ``config.toml``)."""
    path = profile / CONFIG_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return ProfileConfig({})
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"{path} is not valid TOML: {exc}") from None
    return _from_toml(data, path)


def _toml_value(value: Value) -> str:
    # JSON strings, integers and floats are TOML values too.
    if isinstance(value, tuple):
        return "[" + ", ".join(json.dumps(v) for v in value) + "]"
    return json.dumps(value)


def save(profile: Path, config: ProfileConfig) -> None:
    """Write ``config.toml`` atomically (a reader sees the old or the new file)."""
    config.kt_config()
    sections: dict[str, list[str]] = {}
    for key in sorted(config.values):
        section, name = key.split(".", 1)
        sections.setdefault(section, []).append(f"{name} = {_toml_value(config.values[key])}")
    text = "# Doorless client settings ('doorless config set KEY VALUE')\n" + "".join(
        f"\n[{section}]\n" + "\n".join(lines) + "\n" for section, lines in sections.items()
    )
    profile.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = profile / CONFIG_FILE
    tmp = path.with_name(CONFIG_FILE + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def has_profile_data(profile: Path) -> bool:
    """Whether the profile folder holds anything but its settings (a store, a lock)."""
    return profile.is_dir() and any(p.name != CONFIG_FILE for p in profile.iterdir())


def with_flags(
    config: ProfileConfig, witnesses: list[str] | None, quorum: int | None
) -> ProfileConfig:
    """``config`` with the ``--witness`` / ``--witness-quorum`` flags of a command applied."""
    if witnesses:
        config = config.replace("kt.witnesses", tuple(witnesses))
    if quorum is not None:
        config = config.replace("kt.quorum", quorum)
    return config


WitnessOption = Annotated[
    list[str] | None,
    typer.Option(
        "--witness",
        metavar="VKEY",
        help=(
            "Require cosignatures of this key-transparency witness (its key, printed by "
            "'doorless witness'); repeat for several. Saved in the profile's config.toml."
        ),
    ),
]
QuorumOption = Annotated[
    int | None,
    typer.Option(
        "--witness-quorum",
        min=0,
        metavar="N",
        help="How many of the witnesses must cosign every log head (default: all).",
    ),
]


# --- doorless config ------------------------------------------------------------------------

app = typer.Typer(
    help=(
        "Show or change this profile's client settings (config.toml in the profile): "
        + "; ".join(f"{k}: {v.help}" for k, v in KEYS.items())
        + "."
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)


def _shown(value: Value | None) -> object:
    return list(value) if isinstance(value, tuple) else value


def _text(value: Value | None) -> str:
    if value is None:
        return "(not set)"
    if isinstance(value, tuple):
        return ",".join(value)
    return str(value)


def _guarded(ctx: typer.Context, body: Callable[[], None]) -> None:
    from doorless.cli.session import Failure, fail
    from doorless.wire.errors import ErrorCode

    try:
        body()
    except ConfigurationError as exc:
        fail(state(ctx), Failure(ErrorCode.INVALID, str(exc), 2))


@app.command("get")
def get(
    ctx: typer.Context,
    key: Annotated[str | None, typer.Argument(metavar="[KEY]", help="Default: every key.")] = None,
) -> None:
    """Show one setting, or all of them."""
    st = state(ctx)

    def body() -> None:
        config = load(st.profile)
        keys = [key] if key is not None else sorted(KEYS)
        values = {k: config.get(k) for k in keys}
        if key is not None:
            emit(st.json, {"key": key, "value": _shown(values[key])}, lambda: _text(values[key]))
        else:
            emit(
                st.json,
                {k: _shown(v) for k, v in values.items()},
                lambda: "\n".join(f"{k} = {_text(v)}" for k, v in values.items()),
            )

    _guarded(ctx, body)


@app.command("set")
def set_(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(metavar="KEY")],
    value: Annotated[str, typer.Argument(metavar="VALUE")],
) -> None:
    """Change one setting (checked with the others before anything is written)."""
    st = state(ctx)

    def body() -> None:
        config = load(st.profile).replace(key, parse_value(key, value))
        save(st.profile, config)
        shown = config.get(key)
        emit(st.json, {"key": key, "value": _shown(shown)}, lambda: f"{key} = {_text(shown)}")

    _guarded(ctx, body)


@app.command("unset")
def unset(ctx: typer.Context, key: Annotated[str, typer.Argument(metavar="KEY")]) -> None:
    """Go back to a setting's default."""
    st = state(ctx)

    def body() -> None:
        config = load(st.profile).replace(key, None)
        save(st.profile, config)
        emit(st.json, {"key": key, "value": None}, lambda: f"{key} unset")

    _guarded(ctx, body)


__all__ = [
    "CONFIG_FILE",
    "KEYS",
    "ProfileConfig",
    "QuorumOption",
    "WitnessOption",
    "app",
    "has_profile_data",
    "load",
    "parse_value",
    "save",
    "with_flags",
]
