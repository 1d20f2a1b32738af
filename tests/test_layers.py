"""The layers of docs/architecture.md, enforced: import-linter's contracts in pyproject.toml.

The second test proves the check can fail: it copies the package, adds one forbidden import
and expects the matching contract to break.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_every_layer_contract_is_kept() -> None:
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


# (file that gets the import, the import, the contract that must break)
FORBIDDEN = [
    ("client/events.py", "import doorless.server", "server | client"),
    ("server/log.py", "import doorless.client", "server | client"),
    ("server/log.py", "import doorless.cli", "programs >"),
    ("wire/messages.py", "import doorless.server", "wire contract"),
    ("mls/tree_math.py", "import doorless.wire", "protocol core"),
    ("mls/tree_math.py", "import asyncio", "do no I/O"),
    ("kt/merkle.py", "import sqlite3", "do no I/O"),
    ("content/_model.py", "import doorless.mls", "protocol core"),
    ("content/_cbor.py", "import socket", "do no I/O"),
    ("wire/protocol.py", "import fastapi", "do no I/O"),
]


@pytest.mark.parametrize(
    ("path", "statement", "contract"), FORBIDDEN, ids=[f[0] for f in FORBIDDEN]
)
def test_a_forbidden_import_breaks_a_contract(
    tmp_path: Path, path: str, statement: str, contract: str
) -> None:
    shutil.copytree(ROOT / "src" / "doorless", tmp_path / "src" / "doorless")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "src" / "doorless" / path
    target.write_text(target.read_text() + f"\n{statement}\n")
    result = _lint_imports(tmp_path)
    assert result.returncode != 0
    broken = [line for line in result.stdout.splitlines() if line.endswith(" BROKEN")]
    assert any(contract in line for line in broken), result.stdout
