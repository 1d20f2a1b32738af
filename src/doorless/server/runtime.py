"""Process-level settings of a server process: how its garbage collector runs.

CPython's cycle collector runs on the event loop's thread and stops every connection while it
scans. A young collection scans only what was allocated since the last one (well under a
millisecond), but a full one (the oldest generation) scans every tracked object of the
process: the imported modules, the application and, once devices connect, each socket's
tasks and buffers. With a thousand connected devices that is some 350,000 objects and a stall
of 100-190 ms of CPU, every few seconds under load (measured with ``bench/load.py
--server-probe``): the tail of the delivery latency (``docs/benchmarks.md``, issue #16).

`tune_gc`, applied by ``doorless server`` once the application has started, does two things:

* what is alive then (modules, the app, the loaded state) lives as long as the process, so it
  is collected once more and then moved out of the collector's reach (`gc.freeze`): no later
  collection scans it again;
* full collections are made rarer (`GC_THRESHOLDS`): the oldest generation is collected after
  ``GC_THRESHOLDS[2]`` collections of the middle one instead of 10, so its pause, which grows
  with the number of connected devices, comes tens of seconds apart under load rather than every
  few seconds (CPython still also waits until a quarter of the oldest generation is new).
  Young collections stay as frequent (and as short) as CPython's default. Reference counting
  still frees every object that is not in a cycle at once, so memory is not held longer; only
  cyclic garbage waits for the (rarer) full collection.

Tests and embedders that call `doorless.server.app.create_app` themselves are left alone.
"""

from __future__ import annotations

import gc

# (young, middle, oldest): CPython's default is (700, 10, 10).
GC_THRESHOLDS = (700, 10, 100)


def tune_gc() -> None:
    """Freeze what is alive now and make full collections rarer (see the module docstring)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


__all__ = ["GC_THRESHOLDS", "tune_gc"]
