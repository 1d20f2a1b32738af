"""The structure of ``doorless.server``: delivery rules in ``server/delivery.py`` (not in the
routes), no route module importing another, and every exception class the server defines
inside the one tree of `doorless.errors`. (That the server imports no client or CLI code is
a layer contract: tests/test_layers.py.)
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import doorless.server
from doorless.errors import DoorlessError

SERVER = Path(doorless.server.__file__).resolve().parent


def _modules(path: Path) -> set[str]:
    """The modules ``path`` imports from (``from m import x`` gives ``m``)."""
    tree = ast.parse(path.read_text())
    return {
        node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    } | {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}


def test_routes_hold_no_delivery_rules() -> None:
    for path in sorted((SERVER / "routes").glob("*.py")):
        source = path.read_text()
        assert "storage.deliver(" not in source, path.name
        assert "blocking_devices" not in source, path.name
        assert "stamper" not in source, path.name
        # No route module imports another route module.
        assert not any(
            m.startswith("doorless.server.routes.") and m != "doorless.server.routes.common"
            for m in _modules(path)
        ), path.name


def test_every_server_exception_is_in_the_doorless_tree() -> None:
    seen = 0
    for info in pkgutil.walk_packages(doorless.server.__path__, "doorless.server."):
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == info.name and issubclass(cls, BaseException):
                seen += 1
                assert issubclass(cls, DoorlessError), f"{info.name}.{cls.__name__}"
    assert seen >= 5
