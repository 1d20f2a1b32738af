"""``doorless vectors PATH...``: check official MLS and SFrame test-vector files against this code.

The checking itself is `doorless.conformance` (shared with the test suite); this module only
finds each file's kind, runs its cases and reports.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from doorless import conformance
from doorless.cli.common import EXIT_FAILED, EXIT_OK, fail_usage, state

SHORT_HELP = "Check official MLS and SFrame test-vector files against this implementation."

HELP = (
    "Check official MLS test-vector files (mlswg/mls-implementations format) and SFrame "
    "(RFC 9605, sframe-wg/sframe test-vectors/*.json) files, and the post-quantum KEM files "
    "(X-Wing, HPKE-PQ, concrete hybrid KEMs, under their upstream names) against this "
    "implementation.\n\n"
    "Each file's kind comes from its name (tree-math.json, key-schedule.json, ...) or, failing "
    "that, from the keys of its first case (an SFrame file is an object of arrays). A directory "
    "stands for the *.json files in it.\n\n"
    "Prints 'FILE: N passed, M failed, K skipped' per file, then one line per failed or skipped "
    "case; with --json (before the command), one JSON object per file instead."
)

EPILOG = (
    "Exit status: 0 if every case passed; 1 if any case failed or was skipped (unsupported "
    "feature); 2 if a file cannot be read or its kind is unknown (then nothing runs).\n\n"
    "Example: doorless vectors tests/vectors/mls/*.json"
)

# Details are one line each; a crash message can be long.
_MAX_DETAIL = 500


@dataclass
class Outcome:
    """What checking one file gave."""

    file: str
    kind: str
    cases: int
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    # (case index or None for "all cases", "failed"/"skipped", detail)
    problems: list[tuple[int | None, str, str]] = field(default_factory=list)

    def summary(self) -> str:
        return f"{self.passed} passed, {self.failed} failed, {self.skipped} skipped"

    def as_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "kind": self.kind,
            "cases": self.cases,
            "passed": self.passed,
            "failed": self.failed,
            "skipped": self.skipped,
            "problems": [
                {"case": i, "outcome": outcome, "detail": detail}
                for i, outcome, detail in self.problems
            ],
        }


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= _MAX_DETAIL else line[: _MAX_DETAIL - 3] + "..."


def _expand(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        files.extend(sorted(path.glob("*.json")) if path.is_dir() else [path])
    return files


def _load(path: Path) -> tuple[str, list[conformance.Case]]:
    """Kind and cases of a file, or exit 2 with one line saying why not."""
    try:
        cases = conformance.load_cases(path)
    except (OSError, ValueError) as exc:  # json.JSONDecodeError is a ValueError
        fail_usage(f"{path}: cannot read vectors: {_one_line(str(exc))}")
    try:
        return conformance.detect_kind(path, cases), cases
    except conformance.UnknownKind as exc:
        fail_usage(f"{path}: {exc}")


@contextmanager
def _progress(enabled: bool) -> Iterator[Progress | None]:
    """A transient progress bar on stderr, only when stderr is a terminal."""
    if not enabled:
        yield None
        return
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    with progress:
        yield progress


def check_file(
    path: Path, kind: str, cases: list[conformance.Case], show_progress: bool
) -> Outcome:
    outcome = Outcome(file=str(path), kind=kind, cases=len(cases))
    try:
        results = conformance.run_cases(kind, cases)
        with _progress(show_progress) as progress:
            task = progress.add_task(path.name, total=len(cases)) if progress else None
            for index, result, detail in results:
                if result == "passed":
                    outcome.passed += 1
                elif result == "skipped":
                    outcome.skipped += 1
                    outcome.problems.append((index, result, _one_line(detail)))
                else:
                    outcome.failed += 1
                    outcome.problems.append((index, result, _one_line(detail)))
                if progress is not None and task is not None:
                    progress.advance(task)
    except ImportError as exc:
        # No checker for this kind yet (or one that does not import): none of its cases pass.
        outcome.failed = len(cases) - outcome.passed - outcome.skipped
        outcome.problems.append((None, "failed", _one_line(f"no checker for kind {kind!r}: {exc}")))
    return outcome


def _print_text(outcome: Outcome) -> None:
    typer.echo(f"{outcome.file}: {outcome.summary()}")
    for index, result, detail in outcome.problems:
        where = "all cases" if index is None else f"case {index}"
        typer.echo(f"  {where}: {result}: {detail}")


def command(
    ctx: typer.Context,
    paths: Annotated[
        list[Path],
        typer.Argument(
            metavar="PATH",
            help="Vector files (JSON arrays of cases), or directories of them.",
            exists=True,
            readable=True,
            show_default=False,
        ),
    ],
) -> None:
    as_json = state(ctx).json
    files = _expand(paths)
    if not files:
        fail_usage("no vector files given (directories hold no *.json)")
    # Read and classify every file first: a typo in the last path must not cost a long run.
    loaded = [(path, *_load(path)) for path in files]
    show_progress = not as_json and Console(stderr=True).is_terminal

    passed = failed = skipped = 0
    for path, kind, cases in loaded:
        outcome = check_file(path, kind, cases, show_progress)
        passed += outcome.passed
        failed += outcome.failed
        skipped += outcome.skipped
        if as_json:
            typer.echo(json.dumps(outcome.as_json()))
        else:
            _print_text(outcome)
    if not as_json and len(loaded) > 1:
        typer.echo(f"total: {passed} passed, {failed} failed, {skipped} skipped")
    raise typer.Exit(EXIT_FAILED if failed or skipped else EXIT_OK)
