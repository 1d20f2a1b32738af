"""The ``doorless`` command line, in-process through typer's CliRunner.

The mechanics of ``doorless vectors`` are tested with a fake vector kind whose checker is defined
here (so outcomes are known exactly); real checkers are exercised with real files and with a real
file edited to hold one wrong value.
"""

from __future__ import annotations

import importlib
import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from doorless import __version__, conformance
from doorless.cli.common import default_profile
from doorless.cli.main import app
from doorless.conformance import VectorMismatch, VectorSkip

MLS_VECTORS = Path(__file__).parents[1] / "vectors" / "mls"
runner = CliRunner()


def invoke(*args: str | Path) -> Any:
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def write(path: Path, cases: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps(cases))
    return path


# --- a fake kind: {"value": x, "want": y} passes when equal; "skip"/"crash" do what they say ---


def _fake_check(case: dict[str, Any]) -> None:
    if "skip" in case:
        raise VectorSkip(case["skip"])
    if "crash" in case:
        raise RuntimeError("checker crashed\nover two lines")
    if case["value"] != case["want"]:
        raise VectorMismatch("value", f"got {case['value']}, want {case['want']}")


@pytest.fixture
def fake_kind(monkeypatch: pytest.MonkeyPatch) -> str:
    module = types.ModuleType("doorless.conformance._fake_for_tests")
    module.check = _fake_check  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setitem(conformance.KINDS, "fake-kind", "_fake_for_tests")
    monkeypatch.setitem(conformance.KIND_KEYS, "fake-kind", frozenset({"value", "want"}))
    return "fake-kind"


PASS = {"value": 1, "want": 1}
FAIL = {"value": 1, "want": 2}


# --- help and global options ------------------------------------------------------------------


def test_help_lists_commands_and_global_options() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    for text in ("vectors", "--profile", "--json", "--version"):
        assert text in result.stdout


def test_vectors_help_explains_output_and_exit_status() -> None:
    result = invoke("vectors", "--help")
    assert result.exit_code == 0
    for text in ("PATH", "passed", "failed", "skipped", "Exit status", "--json"):
        assert text in result.stdout


def test_no_command_shows_usage() -> None:
    result = invoke()
    assert "Usage" in result.output
    assert "vectors" in result.output


def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"doorless {__version__}"


def test_profile_must_be_a_directory(tmp_path: Path, fake_kind: str) -> None:
    f = write(tmp_path / "fake-kind.json", [PASS])
    assert invoke("--profile", tmp_path, "vectors", f).exit_code == 0
    assert invoke("--profile", f, "vectors", f).exit_code == 2


def test_default_profile(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOORLESS_PROFILE", str(tmp_path))
    assert default_profile() == tmp_path
    monkeypatch.delenv("DOORLESS_PROFILE")
    assert default_profile() == Path.home() / ".doorless"


# --- doorless vectors: outcomes ---------------------------------------------------------------


def test_all_pass_exits_0(tmp_path: Path, fake_kind: str) -> None:
    f = write(tmp_path / "fake-kind.json", [PASS, PASS])
    result = invoke("vectors", f)
    assert result.exit_code == 0
    assert result.stdout == f"{f}: 2 passed, 0 failed, 0 skipped\n"
    assert result.stderr == ""  # no progress bar when stderr is not a terminal


def test_one_line_per_failure_and_skip(tmp_path: Path, fake_kind: str) -> None:
    f = write(
        tmp_path / "fake-kind.json",
        [PASS, FAIL, {"skip": "needs a feature"}, {"crash": True}],
    )
    result = invoke("vectors", f)
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        f"{f}: 1 passed, 2 failed, 1 skipped",
        "  case 1: failed: value: got 1, want 2",
        "  case 2: skipped: needs a feature",
        "  case 3: failed: RuntimeError: checker crashed over two lines",
    ]


def test_skip_alone_is_not_success(tmp_path: Path, fake_kind: str) -> None:
    f = write(tmp_path / "fake-kind.json", [PASS, {"skip": "unsupported"}])
    assert invoke("vectors", f).exit_code == 1


def test_several_files_and_a_directory(tmp_path: Path, fake_kind: str) -> None:
    d = tmp_path / "dir"
    d.mkdir()
    a = write(d / "fake-kind.json", [PASS])
    b = write(tmp_path / "other.json", [PASS, FAIL])  # kind recognised from its keys
    (d / "notes.txt").write_text("not a vector file")
    result = invoke("vectors", d, b)
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        f"{a}: 1 passed, 0 failed, 0 skipped",
        f"{b}: 1 passed, 1 failed, 0 skipped",
        "  case 1: failed: value: got 1, want 2",
        "total: 2 passed, 1 failed, 0 skipped",
    ]


def test_json_output_one_object_per_file(tmp_path: Path, fake_kind: str) -> None:
    a = write(tmp_path / "fake-kind.json", [PASS, FAIL, {"skip": "why"}])
    b = write(tmp_path / "second.json", [PASS])
    result = invoke("--json", "vectors", a, b)
    assert result.exit_code == 1
    objects = [json.loads(line) for line in result.stdout.splitlines()]
    assert objects == [
        {
            "file": str(a),
            "kind": "fake-kind",
            "cases": 3,
            "passed": 1,
            "failed": 1,
            "skipped": 1,
            "problems": [
                {"case": 1, "outcome": "failed", "detail": "value: got 1, want 2"},
                {"case": 2, "outcome": "skipped", "detail": "why"},
            ],
        },
        {
            "file": str(b),
            "kind": "fake-kind",
            "cases": 1,
            "passed": 1,
            "failed": 0,
            "skipped": 0,
            "problems": [],
        },
    ]


def test_missing_checker_fails_every_case(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(conformance.KINDS, "no-checker", "_no_such_checker_module")
    f = write(tmp_path / "no-checker.json", [PASS, PASS, PASS])
    result = invoke("vectors", f)
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0] == f"{f}: 0 passed, 3 failed, 0 skipped"
    assert lines[1].startswith("  all cases: failed: no checker for kind 'no-checker'")


# --- doorless vectors: usage errors (exit 2, nothing run) -------------------------------------


def test_unknown_kind_is_one_line_exit_2(tmp_path: Path, fake_kind: str) -> None:
    good = write(tmp_path / "fake-kind.json", [PASS])
    bad = write(tmp_path / "mystery.json", [{"colour": "blue"}])
    result = invoke("vectors", good, bad)
    assert result.exit_code == 2
    assert result.stdout == ""  # classified before anything runs
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith(f"error: {bad}: unknown vector kind")


@pytest.mark.parametrize(
    "content",
    ["not json", '{"an": "object"}', "[1, 2]"],
    ids=["not-json", "not-an-array", "not-objects"],
)
def test_unreadable_file_is_exit_2(tmp_path: Path, content: str) -> None:
    f = tmp_path / "tree-math.json"
    f.write_text(content)
    result = invoke("vectors", f)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {f}: cannot read vectors")
    assert len(result.stderr.splitlines()) == 1


def test_missing_path_is_exit_2(tmp_path: Path) -> None:
    assert invoke("vectors", tmp_path / "absent.json").exit_code == 2


def test_empty_directory_is_exit_2(tmp_path: Path) -> None:
    result = invoke("vectors", tmp_path)
    assert result.exit_code == 2
    assert "no vector files" in result.stderr


# --- kind detection ---------------------------------------------------------------------------


def test_kind_of_names_the_known_kinds() -> None:
    assert conformance.kind_of(Path("x/tree-math.json")) == "tree-math"
    with pytest.raises(conformance.UnknownKind) as info:
        conformance.kind_of(Path("x/unknown.json"))
    assert isinstance(info.value, KeyError)  # the documented API: kind_of raises KeyError
    assert str(info.value).startswith("unknown vector kind 'unknown'")


def test_every_kind_has_distinctive_keys() -> None:
    modules_with_keys = {conformance.KINDS[k] for k in conformance.KIND_KEYS}
    assert modules_with_keys == set(conformance.KINDS.values())


@pytest.mark.parametrize(
    "path", sorted(MLS_VECTORS.glob("*.json")), ids=lambda p: p.name.removesuffix(".json")
)
def test_sniffing_recognises_every_case_of_every_official_file(path: Path) -> None:
    kind = conformance.kind_of(path)
    for i, case in enumerate(conformance.load_cases(path)):
        sniffed = conformance.sniff_kind(case)
        assert sniffed is not None, f"case {i}"
        assert conformance.KINDS[sniffed] == conformance.KINDS[kind], f"case {i}"


def test_sniff_rejects_ambiguous_and_foreign_cases() -> None:
    assert conformance.sniff_kind({"colour": "blue"}) is None
    assert conformance.sniff_kind([1, 2]) is None
    both = {"psks": [], "psk_secret": "", "vlbytes_header": "", "length": 0}
    assert conformance.sniff_kind(both) is None


# --- real checkers --------------------------------------------------------------------------


def _real(kind: str) -> Path:
    importlib.import_module(f"doorless.conformance.{conformance.KINDS[kind]}")
    return MLS_VECTORS / f"{kind}.json"


def test_real_file_passes_deserialization() -> None:
    path = _real("deserialization")
    result = invoke("vectors", path)
    assert result.stdout == f"{path}: 14 passed, 0 failed, 0 skipped\n"
    assert result.exit_code == 0


def test_real_file_passes_tree_math() -> None:
    path = _real("tree-math")
    result = invoke("vectors", path)
    assert result.stdout == f"{path}: 10 passed, 0 failed, 0 skipped\n"
    assert result.exit_code == 0


def test_real_checker_reports_a_wrong_value(tmp_path: Path) -> None:
    cases = conformance.load_cases(_real("tree-math"))[:3]
    cases[2] = {**cases[2], "root": cases[2]["root"] + 1}
    f = write(tmp_path / "tree-math.json", cases)
    result = invoke("vectors", f)
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0] == f"{f}: 2 passed, 1 failed, 0 skipped"
    assert lines[1].startswith("  case 2: failed: ")
    assert "root" in lines[1]


def test_real_checker_reports_a_wrong_varint(tmp_path: Path) -> None:
    cases = conformance.load_cases(_real("deserialization"))[:2]
    cases[0] = {**cases[0], "length": cases[0]["length"] + 1}
    f = write(tmp_path / "renamed.json", cases)  # kind recognised from the keys
    result = invoke("vectors", f)
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0] == f"{f}: 1 passed, 1 failed, 0 skipped"
    assert lines[1].startswith("  case 0: failed: ")


# --- SFrame (RFC 9605): an object of arrays, kind recognised from its layout -------------------

SFRAME_VECTORS = Path(__file__).parents[1] / "vectors" / "sframe"


def test_sframe_vector_files_pass() -> None:
    result = invoke("vectors", SFRAME_VECTORS)
    assert result.exit_code == 0, result.output
    assert "test-vectors.json: 300 passed, 0 failed, 0 skipped" in result.output
    assert "test-vectors-aes256.json: 3 passed, 0 failed, 0 skipped" in result.output


def test_an_edited_sframe_vector_fails_with_its_field(tmp_path: Path) -> None:
    data = json.loads((SFRAME_VECTORS / "test-vectors.json").read_text())
    case = data["sframe"][2]
    case["sframe_salt"] = case["sframe_salt"][:-1] + (
        "0" if case["sframe_salt"][-1] != "0" else "1"
    )
    (tmp_path / "edited.json").write_text(json.dumps(data))
    result = invoke("vectors", tmp_path / "edited.json")
    assert result.exit_code == 1
    assert "299 passed, 1 failed" in result.output
    assert "case 297: failed: sframe_salt" in result.output
