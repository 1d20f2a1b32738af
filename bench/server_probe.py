"""Run a server (Doorless or the floor) under timing probes, for `load.py --server-probe`.

    python bench/server_probe.py OUT.json -m doorless.cli.main server --data-dir ... --port ...
    python bench/server_probe.py OUT.json bench/floor_server.py --port ...

It starts the program as ``python ARGS`` would, after wrapping the ASGI application that the
program hands to ``uvicorn.run``, and records, with wall-clock timestamps:

* ``push``: the server's own part of each delivery's latency: from the moment the ``POST
  /v1/messages`` reached the application to the moment each push of it to a recipient's
  WebSocket was handed to the transport. The load generator's messages carry a key in their
  last bytes (its own padding, not a secret: the bench's ciphertext is random bytes), which is
  how a push is matched with its request;
* ``post``: request received to response started, for each ``POST /v1/messages``;
* ``loop_lag``: how late a 10 ms timer of the server's event loop fires (event-loop stalls);
* ``gc``: each garbage collection's generation, pause and CPU time.

On SIGUSR1 it writes them to ``OUT.json`` (``load.py`` asks before it stops the server). The
wrapper costs CPU (a JSON parse per request and per push), so runs with it are not the ones
whose per-core rate is compared; the server itself has no such instrumentation.
`read_probe` and `summarize_probes` are how ``load.py`` reads the file back.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import json
import os
import runpy
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
TICK = 0.010


def bench_key(data: bytes) -> str | None:
    """The key `load.py` puts in a message's last bytes (``|scheduled|key|``), or None."""
    parts = data[-48:].split(b"|")
    return parts[2].decode() if len(parts) >= 4 else None


class Probe:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.received: dict[str, float] = {}  # bench key -> when its POST reached the app
        self.push: list[tuple[float, float]] = []
        self.post: list[tuple[float, float]] = []
        self.loop_lag: list[tuple[float, float]] = []
        self.gc: list[tuple[float, int, float, float]] = []
        self._gc_start = (0.0, 0.0)
        self._ticker: asyncio.Task[None] | None = None
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_start = (time.perf_counter(), time.thread_time())
        else:
            # The pause, and the CPU it took (the pause less any time the process was not
            # running: on a busy machine the two differ).
            wall, cpu = (
                time.perf_counter() - self._gc_start[0],
                time.thread_time() - self._gc_start[1],
            )
            self.gc.append((time.time(), info["generation"], wall, cpu))

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + TICK
            await asyncio.sleep(TICK)
            self.loop_lag.append((time.time(), loop.time() - due))

    def dump(self) -> None:
        fields = ("push", "post", "loop_lag", "gc")
        data = {name: getattr(self, name) for name in fields}
        data["gc_threshold"] = list(gc.get_threshold())
        data["gc_frozen"] = gc.get_freeze_count()
        data["gc_tracked"] = len(gc.get_objects())
        tmp = self.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(self.out)

    def wrap(self, app: Any) -> Any:
        async def probed(scope: Scope, receive: Receive, send: Send) -> None:
            if self._ticker is None:
                self._ticker = asyncio.create_task(self._tick())
                asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, self.dump)
            if scope["type"] == "http" and scope["path"] == "/v1/messages":
                await self._http(app, scope, receive, send)
            elif scope["type"] == "websocket":
                await app(scope, receive, self._pushes(send))
            else:
                await app(scope, receive, send)

        return probed

    async def _http(self, app: Any, scope: Scope, receive: Receive, send: Send) -> None:
        start = time.time()
        body: list[bytes] = []

        async def receiving() -> dict[str, Any]:
            message = await receive()
            body.append(message.get("body", b""))
            if not message.get("more_body"):
                key = _key_of_request(b"".join(body))
                if key is not None:
                    self.received[key] = start
            return message

        async def sending(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                self.post.append((start, time.time() - start))
            await send(message)

        await app(scope, receiving, sending)

    def _pushes(self, send: Send) -> Send:
        async def sending(message: dict[str, Any]) -> None:
            await send(message)
            text = message.get("text")
            if message["type"] == "websocket.send" and text and '"message"' in text[:40]:
                key = bench_key(base64.b64decode(json.loads(text)["data"]))
                start = self.received.get(key) if key is not None else None
                if start is not None:
                    now = time.time()
                    self.push.append((now, now - start))

        return sending


def _key_of_request(body: bytes) -> str | None:
    try:
        return bench_key(base64.b64decode(json.loads(body)["data"]))
    except (ValueError, KeyError, TypeError):
        return None


# --- read by load.py -------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    """The ``p`` quantile of sorted ``values`` (0 if empty), nearest rank."""
    return values[min(len(values) - 1, int(p * len(values)))] if values else 0.0


def read_probe(
    path: Path, process: subprocess.Popen[bytes], start: float, end: float
) -> dict[str, Any]:
    """For `load.py`: a probed server's timings (written to ``path`` on SIGUSR1) within the
    wall-clock window ``start``-``end``."""
    path.unlink(missing_ok=True)
    process.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 30
    while not path.exists():
        if time.monotonic() > deadline:
            raise RuntimeError("the server probe wrote nothing")
        time.sleep(0.1)
    data = json.loads(path.read_text())
    within = {k: [x for x in data[k] if start <= x[0] <= end] for k in ("push", "post", "loop_lag")}
    return {**data, **within, "gc": [g for g in data["gc"] if start <= g[0] <= end]}


def summarize_probes(probes: list[dict[str, Any]]) -> dict[str, Any]:
    """For `load.py`: the ``server_*`` keys of a run, over its servers' probes."""
    if not probes:
        return {}

    def ms(key: str, p: float) -> float:
        return percentile(sorted(x[1] for d in probes for x in d[key]), p) * 1000

    gcs = [g for d in probes for g in d["gc"]]
    by_generation = {
        str(gen): {
            "count": len(pauses := [g[2] for g in gcs if g[1] == gen]),
            "max_ms": max(pauses, default=0.0) * 1000,
            "total_ms": sum(pauses) * 1000,
            "max_cpu_ms": max((g[3] for g in gcs if g[1] == gen), default=0.0) * 1000,
        }
        for gen in (0, 1, 2)
    }
    return {
        "server_push_p50_ms": ms("push", 0.50),
        "server_push_p95_ms": ms("push", 0.95),
        "server_push_p99_ms": ms("push", 0.99),
        "server_push_count": sum(len(d["push"]) for d in probes),
        "server_post_p99_ms": ms("post", 0.99),
        "server_loop_lag_p50_ms": ms("loop_lag", 0.50),
        "server_loop_lag_p99_ms": ms("loop_lag", 0.99),
        "server_loop_lag_max_ms": ms("loop_lag", 1.0),
        "server_gc": by_generation,
        "server_gc_full_count": by_generation["2"]["count"],
        "server_gc_full_max_cpu_ms": by_generation["2"]["max_cpu_ms"],
        "server_gc_max_ms": max((g[2] for g in gcs), default=0.0) * 1000,
        "server_gc_max_cpu_ms": max((g[3] for g in gcs), default=0.0) * 1000,
        "server_gc_tracked": [d["gc_tracked"] for d in probes],
        "server_gc_frozen": [d["gc_frozen"] for d in probes],
    }


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit(__doc__.split("\n\n")[1])  # the usage lines
    out, *argv = sys.argv[1:]
    probe = Probe(Path(out))
    import uvicorn

    run = uvicorn.run

    def probed_run(app: Any, **kwargs: Any) -> None:
        run(probe.wrap(app), **kwargs)

    uvicorn.run = probed_run
    if argv[:1] == ["-m"]:
        sys.argv = [argv[1], *argv[2:]]
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = argv
        sys.path.insert(0, os.path.dirname(os.path.abspath(argv[0])))
        runpy.run_path(argv[0], run_name="__main__")


if __name__ == "__main__":
    main()
