"""What every benchmark in this folder shares: the machine it ran on, and writing its section
of ``docs/benchmarks.md`` (scripts run as ``python bench/NAME.py``, so this folder is on
``sys.path``)."""

from __future__ import annotations

import datetime
import os
import platform
from pathlib import Path
from typing import Any

import cryptography


def machine() -> dict[str, Any]:
    """Date, cores, CPU model, Python, pyca/cryptography and the 1-minute load average."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "cryptography": cryptography.__version__,
        "load": os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan"),
    }


def update_doc(path: Path, heading: str, section: str, notes: str = "") -> None:
    """Replace the section starting at ``heading`` in ``path`` (or append it), keeping
    everything else. Text under ``### Notes`` in the old section (hand-written analysis) is
    kept unless ``notes`` replaces it."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    start = text.find(heading + "\n")
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + len(heading))
        old = text[start:] if end < 0 else text[start : end + 1]
        n = old.find("\n### Notes\n")
        if n >= 0 and not notes:
            notes = old[n + 1 :].rstrip("\n") + "\n"
        rest = "" if end < 0 else text[end + 1 :]
        text = text[:start] + section + ("\n" + notes if notes else "")
        text += ("\n" + rest) if rest else ""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
