"""Shared test configuration: Hypothesis profiles.

Profiles (choose with HYPOTHESIS_PROFILE=name; CI=true selects "ci"):

* ``dev`` (default): 100 examples per property, no deadline.
* ``ci``: the same amount of work, no deadline (xdist workers on 2 shared cores make timings
  noisy), no slow-input health check, and a reproduction blob printed for every failure.
* ``thorough``: 5000 examples, for a fuzzing session by hand.
"""

from __future__ import annotations

import os

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
