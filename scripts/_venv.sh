# shellcheck shell=bash
# Sourced by the scripts in this folder. Sets ROOT (the checkout) and VENV, and defines
# ensure_venv: create $VENV if missing and install this checkout into it (editable, with the
# extras below). It does nothing when the install is already current, so every script can call it.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DOORLESS_VENV:-$ROOT/.venv}"
EXTRAS="dev,postgres"

_python_ok() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; }

_find_python() {
    local candidate
    for candidate in ${PYTHON:-} python3.11 python3.12 python3.13 python3; do
        if command -v "$candidate" >/dev/null 2>&1 && _python_ok "$candidate"; then
            echo "$candidate"
            return 0
        fi
    done
    echo "error: Doorless needs Python >= 3.11 (set PYTHON=/path/to/python3.11)" >&2
    return 1
}

ensure_venv() {
    if [[ ! -x "$VENV/bin/python" ]] || ! _python_ok "$VENV/bin/python"; then
        local python
        python="$(_find_python)"
        echo "creating $VENV with $("$python" --version)" >&2
        "$python" -m venv --clear "$VENV"
    fi
    # Reinstall when pyproject.toml, the C extension's source or the extras change, or when the
    # venv's editable install points at another checkout (a copied .venv).
    local stamp="$VENV/.doorless-install" want
    want="$(cat "$ROOT/pyproject.toml" "$ROOT/setup.py" "$ROOT"/src/doorless/*.c | sha256sum | cut -d' ' -f1) $EXTRAS $ROOT"
    if [[ "$(cat "$stamp" 2>/dev/null)" != "$want" ]] || ! "$VENV/bin/python" -c '
import pathlib, sys
import doorless
sys.exit(not pathlib.Path(doorless.__file__).resolve().is_relative_to(pathlib.Path(sys.argv[1]).resolve()))
' "$ROOT/src" >/dev/null 2>&1; then
        echo "installing Doorless into $VENV with extras [$EXTRAS] ..." >&2
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$ROOT[$EXTRAS]"
        echo "$want" >"$stamp"
    fi
}
