"""A command loads only what it uses: the call stack (aioquic, PyAV, PortAudio) and the web
stack (uvicorn, starlette, FastAPI) are imported by the commands that need them, not by every
program start (they were ~0.2 s of each `doorless` command's start)."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("aioquic", "av", "sounddevice", "uvicorn", "starlette", "fastapi")


def test_the_cli_starts_without_the_call_and_web_stacks() -> None:
    probe = (
        "import sys, doorless.cli.main, doorless.client\n"
        f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.split() == []


def test_a_call_still_finds_its_stack() -> None:
    """The deferred imports resolve (a typo in one would only show in a call)."""
    from doorless.client.calls.engine import CallEngine
    from doorless.client.calls.media import VideoFileSink, WavFileSource
    from doorless.client.calls.runner import CALL_VIDEO, MediaRunner
    from doorless.client.transport.relay_quic_link import QuicClient, QuicLink

    assert all((CallEngine, VideoFileSink, WavFileSource, CALL_VIDEO, MediaRunner))
    assert all((QuicClient, QuicLink))
