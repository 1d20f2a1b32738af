"""Shared test configuration: Hypothesis profiles.

Profiles (choose with HYPOTHESIS_PROFILE=name; CI=true selects "ci"):

* ``dev`` (default): 100 examples per property, no deadline.
* ``ci``: the same amount of work, no deadline (xdist workers on 2 shared cores make timings
  noisy), no slow-input health check, and a reproduction blob printed for every failure.
* ``thorough``: 5000 examples, for a fuzzing session by hand.

Child processes (the real server and ``doorless`` programs of the end-to-end tests, several
hundred per run) import the package from source. Under ``PYTHONDONTWRITEBYTECODE`` each of
them would compile ~200 modules again (about half a second of CPU each); they share one
bytecode cache outside the source tree instead (``PYTHONPYCACHEPREFIX``), which keeps the
tree free of ``__pycache__`` as that setting intends.

Order: the long tests (real processes: ``e2e/``, ``scale/``, and those marked ``slow``) run
first. xdist hands each worker a contiguous share and an idle worker steals the tail of a busy
one's queue, so what runs last is what decides whether one worker finishes alone; short tests
there even out the end, a two-minute end-to-end test there does not.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("dev", max_examples=100, deadline=None)
settings.register_profile(
    "ci",
    max_examples=100,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("thorough", max_examples=5000, deadline=None)

_default = "ci" if os.environ.get("CI", "").lower() in {"1", "true", "yes"} else "dev"
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", _default))

if os.environ.pop("PYTHONDONTWRITEBYTECODE", None) is not None:
    _cache = Path(tempfile.gettempdir()) / f"doorless-test-pycache-{os.getuid()}"
    os.environ.setdefault("PYTHONPYCACHEPREFIX", str(_cache))
    # This process too: the modules the tests import next are cached for the next run.
    sys.pycache_prefix = os.environ["PYTHONPYCACHEPREFIX"]
    sys.dont_write_bytecode = False


_LONG_FOLDERS = frozenset({"e2e", "scale"})


def _runs_long(item: pytest.Item) -> bool:
    folders = item.path.relative_to(item.config.rootpath).parts[:-1]
    return item.get_closest_marker("slow") is not None or not _LONG_FOLDERS.isdisjoint(folders)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A stable sort: each module's tests stay together (module-scoped fixtures start once).
    items.sort(key=lambda item: not _runs_long(item))
