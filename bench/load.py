"""Load generator: N connected devices in M groups, a target send rate, real server processes.

For each configuration it starts ``doorless server`` process(es) on a fresh database, registers
N devices (each in one of M groups, round robin), opens one push WebSocket per device, and
then, for ``--duration`` seconds, sends application messages at ``--rate`` messages per second
(a random device to the rest of its group; each message reaches ``group size - 1`` devices).
Receivers ack in batches every 250 ms (one frame), as a real client would (one ticker acks a
slice of the devices every 10 ms, so the acks are spread evenly over the interval).

Reported: delivered msgs/s (pushed frames received), latency from each send's *scheduled* time
to the receipt of the push (p50/p95/p99, over every delivery; a send that starts late, because
the generator's loop was busy or no connection was free, counts from when it was due: no
coordinated omission), the same from the moment the request was written (``write_p*_ms``) and
the generator's lateness in between (``send_lag_*``), the server processes' CPU (cores busy,
from /proc) and so delivered msgs/s per server core. The load generator runs in ``--workers``
processes of its own (their CPU is not the server's), on uvloop with keep-alive raw HTTP/1.1
connections for the sends; it reports its own health, so a reader can tell whether the
latencies are the server's: each worker's CPU (``gen_worker_busy``: near 1.0 is a saturated
generator), how late a 10 ms timer of its event loop fires (``gen_loop_lag_*``) and its
longest GC pause. ``--server-probe`` runs the servers under `server_probe.py` and adds their
own part of the latency (POST received to push written, ``server_push_*``), their event-loop
lag and their GC pauses by generation (``server_gc``); the probe costs the server CPU, so
compare per-core rates only between runs without it.

Each configuration is also run against the floor (`floor_server.py`: the same delivery
semantics with nothing else, one process), interleaved with Doorless in the same invocation
(``--rounds N`` pairs, alternating which goes first; ``--no-floor`` skips it), and the ratio of
delivered msgs/s per server core is printed. ``--json``: only one JSON object per configuration
(``delivered_per_s``, ``per_core``, ``p50_ms``, ``p95_ms``, ``p99_ms``, ``floor_per_core``,
``ratio``, the generator's and the probe's keys, ...).

    python bench/load.py --backend postgres --nodes 2 --devices 1000 --groups 100 --rate 500
    python bench/load.py --suite --update-doc docs/benchmarks.md   # the documented table

Needs PostgreSQL (``--postgres``, default the test database) for the postgres backend and Redis
(``--redis``) for more than one node. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import gc
import json
import multiprocessing as mp
import os
import platform
import random
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvloop
from server_probe import percentile, read_probe, summarize_probes

from doorless.client.errors import ServerUnreachable
from doorless.client.transport import DeviceIdentity, Transport
from doorless.codec import encode
from doorless.franking import FrankingAAD
from doorless.mls.framing import ContentType, MLSMessage, PrivateMessage
from doorless.wire import protocol

SECTION = "## Scale-out: delivery throughput and latency"
PG_DEFAULT = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_DEFAULT = "redis://127.0.0.1:6379/0"
ACK_INTERVAL = 0.25  # receivers ack what they got every this many seconds (one frame)
ACK_TICK = 0.010  # the acker's tick: a 1/25 slice of the devices acks at each
LAG_TICK = 0.010  # the event-loop lag probe's timer
PAD = 64  # the bytes at the end of each message that carry its key and send times


# --- server processes ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


PROBE = Path(__file__).with_name("server_probe.py")


def probe_file(root: Path, i: int) -> Path:
    return root / f"probe{i}.json"


def start_servers(
    root: Path, count: int, database: str | None, redis: str | None, probe: bool = False
) -> list[Server]:
    servers = []
    for i in range(count):
        data_dir = root / f"node{i}"
        profile = os.environ.get("DOORLESS_BENCH_PROFILE")  # cProfile output of node 0
        wrap = ["-m", "cProfile", "-o", profile] if profile and i == 0 else []
        if probe:
            wrap = [str(PROBE), str(probe_file(root, i))]
        command = [
            sys.executable, *wrap, "-m", "doorless.cli.main", "server",
            "--data-dir", str(data_dir), "--port", str(port := free_port()),
            "--log-level", os.environ.get("DOORLESS_BENCH_LOG_LEVEL", "warning"),
        ]  # fmt: skip
        if database:
            command += ["--database", database]
        if redis:
            command += ["--redis", redis]
        servers.append(_spawn(root, i, port, command))
        if i == 0:
            wait_ready(servers[0])  # the first one migrates the database
    for s in servers:
        wait_ready(s)
    return servers


def start_floor(root: Path, postgres: str | None, schema: str, probe: bool = False) -> Server:
    """The floor server (`floor_server.py`): one process, SQLite or PostgreSQL."""
    floor = Path(__file__).with_name("floor_server.py")
    wrap = [str(PROBE), str(probe_file(root, 0))] if probe else []
    command = [sys.executable, *wrap, str(floor), "--port", str(port := free_port())]
    command += ["--data-dir", str(root / "floor")]
    if postgres:
        command += ["--database", postgres, "--schema", schema]
    server = _spawn(root, 0, port, command)
    wait_ready(server)
    return server


def _spawn(root: Path, i: int, port: int, command: list[str]) -> Server:
    log = (root / f"node{i}.log").open("ab")
    return Server(port, subprocess.Popen(command, stdout=log, stderr=log))


def wait_ready(server: Server) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert server.process.poll() is None, "server exited"
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{server.url}/v1/info", timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError("server did not start")


# --- setup: accounts ---------------------------------------------------------------------------


async def register_all(urls: list[str], devices: int, groups: int) -> list[dict[str, Any]]:
    gate = asyncio.Semaphore(32)

    async def one(i: int) -> dict[str, Any]:
        address = f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"
        for attempt in range(3):
            identity = DeviceIdentity.generate()
            async with gate:
                # One node registers everyone: concurrent KT log appends from several nodes
                # contend (see the report); sockets and sends still spread over all nodes.
                t = Transport(urls[0], identity, retries=3, timeout=60)
                t._http.headers["X-Forwarded-For"] = address  # one client address per device
                try:
                    await t.register(f"load{i}-{secrets.token_hex(3)}")
                    await t.authenticate()
                except ServerUnreachable:
                    # On a starved machine a kept-alive connection can close under a request
                    # (not retried: registration is not idempotent); a new account instead.
                    if attempt == 2:
                        raise
                    continue
                finally:
                    await t.aclose()
            break
        return {"id": identity.device_id, "token": t._token, "group": i % groups, "addr": address}

    return list(await asyncio.gather(*(one(i) for i in range(devices))))


def register_floor(url: str, devices: int, groups: int) -> list[dict[str, Any]]:
    made = httpx.post(f"{url}/floor/devices", json={"count": devices}, timeout=120).json()
    return [
        {
            "id": d["id"],
            "token": d["token"],
            "group": i % groups,
            "addr": f"10.0.{i >> 8}.{i & 255}",
        }
        for i, d in enumerate(made)
    ]


def message(group: int, body: bytes) -> bytes:
    return encode(
        MLSMessage(
            PrivateMessage(
                group_id=f"load-group-{group}".encode(),
                epoch=0,
                content_type=ContentType.application,
                authenticated_data=encode(FrankingAAD(secrets.token_bytes(32))),
                encrypted_sender_data=b"\x01" * 16,
                ciphertext=body,
            )
        )
    )


# --- a worker process: some devices' sockets and sends -----------------------------------------


class RawHttp:
    """Keep-alive HTTP/1.1 POSTs over asyncio streams: a load generator cheaper than httpx."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> int:
        """One request; reconnects once if the server closed the idle connection."""
        head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        request = head.encode() + f"Content-Length: {len(body)}\r\n\r\n".encode() + body
        for attempt in range(2):
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
            assert self.reader is not None
            self.writer.write(request)
            status_line = await self.reader.readline()
            if not status_line:  # closed by the server (keep-alive timeout): reconnect
                self.close()
                if attempt == 0:
                    continue
                raise ConnectionError("server closed the connection")
            length = 0
            keep = True
            while (line := await self.reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length":
                    length = int(value)
                elif name.lower() == b"connection" and value.strip().lower() == b"close":
                    keep = False
            await self.reader.readexactly(length)
            if not keep:
                self.close()
            return int(status_line.split()[1])
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def pad(key: str, scheduled: float, written: float) -> bytes:
    """A message's last bytes: its key and its send's scheduled and written wall-clock times.

    `server_probe.py` reads the key; receivers read the times."""
    return f"|{key}|{scheduled:.6f}|{written:.6f}|".encode().rjust(PAD, b"#")


class Watch:
    """A worker's (or any process's) own health: how late a 10 ms timer of its event loop
    fires, and its garbage collections' pauses, while ``on`` (the measured window)."""

    def __init__(self) -> None:
        self.on = False
        self.loop_lag: list[float] = []
        self.gc_pauses: list[float] = []
        self._gc_start = 0.0
        gc.callbacks.append(self._gc)

    def _gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_start = time.perf_counter()
        elif self.on:
            self.gc_pauses.append(time.perf_counter() - self._gc_start)

    async def tick(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + LAG_TICK
            await asyncio.sleep(LAG_TICK)
            if self.on:
                self.loop_lag.append(loop.time() - due)


async def worker_main(spec: dict[str, Any]) -> dict[str, Any]:
    from websockets.asyncio.client import connect

    mine: list[dict[str, Any]] = spec["mine"]
    members: dict[int, list[str]] = {}
    for d in spec["all"]:
        members.setdefault(d["group"], []).append(d["id"])
    ports: list[int] = spec["ports"]
    latencies: list[float] = []  # from the send's scheduled time to the push's receipt
    from_write: list[float] = []  # from the moment the request was written
    send_lag: list[float] = []  # scheduled -> written: this generator's own lateness
    delivered = 0
    errors = 0
    statuses: dict[int | str, int] = {}
    watch = Watch()
    # Acks: each device acks what it got every ACK_INTERVAL, as a real client would; one
    # ticker does it for all, a slice of the devices per tick, so the acks of 1000 sockets
    # are spread evenly over the interval (not 1000 timers, and not one burst).
    pending: list[list[int]] = [[] for _ in mine]
    sockets: list[Any] = [None] * len(mine)

    async def receive(index: int, device: dict[str, Any], port: int) -> None:
        nonlocal delivered
        headers = {"Authorization": f"Bearer {device['token']}", "X-Forwarded-For": device["addr"]}
        async with connect(
            f"ws://127.0.0.1:{port}/v1/ws",
            additional_headers=headers,
            max_size=2**22,
            open_timeout=120,  # 1000 handshakes at once on a busy server
        ) as ws:
            sockets[index] = ws
            connected.append(1)
            mine_pending = pending[index]
            async for raw in ws:
                now = time.time()  # first: parsing is the generator's time, not the server's
                frame = json.loads(raw)
                if frame["type"] != "message":
                    continue
                _, _, scheduled, written, _ = (
                    protocol.b64decode(frame["data"])[-PAD:].lstrip(b"#").split(b"|")
                )
                if watch.on:
                    delivered += 1
                    latencies.append(now - float(scheduled))
                    from_write.append(now - float(written))
                mine_pending.append(frame["seq"])

    async def acker() -> None:
        slices = max(1, round(ACK_INTERVAL / ACK_TICK))
        tick = 0
        while True:
            await asyncio.sleep(ACK_TICK)
            for i in range(tick % slices, len(mine), slices):
                seqs = pending[i]
                if seqs and sockets[i] is not None:
                    batch = seqs[:1000]
                    del seqs[:1000]
                    await sockets[i].send(json.dumps({"type": "ack", "seqs": batch}))
            tick += 1

    connected: list[int] = []
    receivers = [
        asyncio.create_task(receive(i, d, ports[i % len(ports)])) for i, d in enumerate(mine)
    ]
    while len(connected) < len(mine):
        await asyncio.sleep(0.05)
        for r in receivers:
            if r.done() and r.exception() is not None:
                raise r.exception()  # type: ignore[misc]
    background = [asyncio.create_task(acker()), asyncio.create_task(watch.tick())]
    # The sockets and their state live until the end: out of the collector's way, so that
    # the generator's own collections stay short (the servers are measured as they are).
    gc.collect()
    gc.freeze()
    spec["ready"].set()
    spec["go"].wait()

    # Sends: this worker's share of the rate, each at its scheduled time (the latency counts
    # from then, so a late loop or a send waiting for a free connection is not hidden:
    # no coordinated omission), up to 64 in flight.
    rate = spec["rate"]
    conns = [RawHttp(ports[i % len(ports)]) for i in range(64)]
    free = asyncio.Queue[RawHttp]()
    for c in conns:
        free.put_nowait(c)
    pid = os.getpid()

    async def one_send(device: dict[str, Any], n: int, scheduled: float) -> None:
        nonlocal errors
        conn = await free.get()
        try:
            recipients = [r for r in members[device["group"]] if r != device["id"]]
            written = time.time()
            if watch.on:
                send_lag.append(written - scheduled)
            ciphertext = os.urandom(64) + pad(f"{pid}-{n}", scheduled, written)
            body = json.dumps(
                {
                    "message_id": f"msg-{pid}-{n:07d}",
                    "data": protocol.b64encode(message(device["group"], ciphertext)),
                    "recipients": recipients,
                }
            ).encode()
            headers = {
                "Authorization": f"Bearer {device['token']}",
                "X-Forwarded-For": device["addr"],
            }
            status = await conn.post("/v1/messages", body, headers)
            if status != 201:
                errors += 1
                statuses[status] = statuses.get(status, 0) + 1
        except (OSError, ValueError, IndexError, asyncio.IncompleteReadError) as exc:  # counted
            errors += 1
            statuses[type(exc).__name__] = statuses.get(type(exc).__name__, 0) + 1
            conn.close()
        finally:
            free.put_nowait(conn)

    warmup, duration = spec["warmup"], spec["duration"]
    start = time.monotonic()
    wall_start = time.time()
    n = 0
    tasks: set[asyncio.Task[None]] = set()
    while (elapsed := time.monotonic() - start) < warmup + duration:
        if not watch.on and elapsed >= warmup:
            watch.on = True
            measure_start = time.monotonic()
            cpu_start = time.process_time()
            delivered_at_start = delivered
        while n <= elapsed * rate:  # send n is due at n / rate
            scheduled = wall_start + n / rate
            t = asyncio.create_task(one_send(random.choice(mine), n, scheduled))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
            n += 1
        await asyncio.sleep(0.002)
    measured = time.monotonic() - measure_start
    cpu = time.process_time() - cpu_start
    await asyncio.sleep(0.5)  # the last sends' pushes
    watch.on = False
    for task in background:
        if task.done():  # the acker failed: the server saw no acks from then on
            raise RuntimeError(f"acker failed: {task.exception()!r}")
    for task in (*receivers, *background):
        task.cancel()
    return {
        "delivered": delivered - delivered_at_start,
        "seconds": measured,
        "latencies": latencies,
        "from_write": from_write,
        "send_lag": send_lag,
        "loop_lag": watch.loop_lag,
        "gc_pauses": watch.gc_pauses,
        "cpu_seconds": cpu,
        "sent": n,
        "errors": errors,
        "statuses": statuses,
    }


def worker(spec: dict[str, Any], out: Any) -> None:
    try:
        out.put(uvloop.run(worker_main(spec)))  # the servers run on uvloop too (uvicorn)
    except BaseException as exc:
        out.put({"error": repr(exc)})
        raise


# --- one configuration ---------------------------------------------------------------------------


def run(args: argparse.Namespace, backend: str, nodes: int, floor: bool = False) -> dict[str, Any]:
    """One measured run of Doorless (or of the floor server, one process) in a configuration."""
    root = Path(tempfile.mkdtemp(prefix="doorless-load-"))
    schema = f"dl_load_{secrets.token_hex(4)}"
    database = None
    if backend == "postgres":
        separator = "&" if "?" in args.postgres else "?"
        database = f"{args.postgres}{separator}schema={schema}&pool_size={args.pool_size}"
    redis = args.redis if nodes > 1 else None
    if floor:
        postgres = args.postgres if backend == "postgres" else None
        servers = [start_floor(root, postgres, schema, args.server_probe)]
    else:
        servers = start_servers(root, nodes, database, redis, args.server_probe)
    probes: list[dict[str, Any]] = []
    try:
        urls = [s.url for s in servers]
        if floor:
            devices = register_floor(urls[0], args.devices, args.groups)
        else:
            devices = asyncio.run(register_all(urls, args.devices, args.groups))
        ctx = mp.get_context("spawn")
        ready = [ctx.Event() for _ in range(args.workers)]
        go = ctx.Event()
        out = ctx.Queue()
        procs = []
        for w in range(args.workers):
            spec = {
                "mine": devices[w :: args.workers],
                "all": devices,
                "ports": [s.port for s in servers],
                "rate": args.rate / args.workers,
                "warmup": args.warmup,
                "duration": args.duration,
                "ready": ready[w],
                "go": go,
            }
            p = ctx.Process(target=worker, args=(spec, out))
            p.start()
            procs.append(p)
        deadline = time.monotonic() + 300
        while not all(e.is_set() for e in ready):
            if not out.empty():  # a worker failed before it was ready
                raise RuntimeError(f"worker failed: {out.get()}")
            if time.monotonic() > deadline or any(p.exitcode for p in procs):
                raise RuntimeError("workers did not connect")
            time.sleep(0.1)
        cpu0 = sum(s.cpu_seconds() for s in servers)
        t0 = time.monotonic()
        go.set()
        time.sleep(args.warmup)
        cpu_w = sum(s.cpu_seconds() for s in servers)
        tw, wall_w = time.monotonic(), time.time()
        results = [out.get(timeout=args.warmup + args.duration + 300) for _ in procs]
        cpu1 = sum(s.cpu_seconds() for s in servers)
        t1, wall_1 = time.monotonic(), time.time()
        if args.server_probe:
            probes = [
                read_probe(probe_file(root, i), s.process, wall_w, wall_1)
                for i, s in enumerate(servers)
            ]
        for p in procs:
            p.join(30)
        del cpu0, t0
        failed = [r["error"] for r in results if "error" in r]
        if failed:
            raise RuntimeError(f"worker failed: {failed}")
    finally:
        for s in servers:
            s.process.terminate()
        for s in servers:
            with contextlib.suppress(subprocess.TimeoutExpired):
                s.process.wait(10)
        if not os.environ.get("DOORLESS_BENCH_KEEP"):
            shutil.rmtree(root, ignore_errors=True)
        if backend == "postgres":
            asyncio.run(_drop(args.postgres, schema))
    seconds = statistics.mean(r["seconds"] for r in results)
    delivered = sum(r["delivered"] for r in results)
    latencies = sorted(x for r in results for x in r["latencies"])
    cores = (cpu1 - cpu_w) / (t1 - tw)  # includes the few idle tail seconds: conservative

    def pct(p: float) -> float:
        return percentile(latencies, p) * 1000

    def ms(key: str, p: float) -> float:
        return percentile(sorted(x for r in results for x in r[key]), p) * 1000

    group_size = args.devices / args.groups
    return {
        "server": "floor" if floor else "doorless",
        "load_average": os.getloadavg()[0],
        "backend": backend,
        "nodes": 1 if floor else nodes,
        "devices": args.devices,
        "groups": args.groups,
        "group_size": group_size,
        "target_rate": args.rate,
        "target_delivered": args.rate * (group_size - 1),
        "sent": sum(r["sent"] for r in results),
        "errors": sum(r["errors"] for r in results),
        "error_statuses": [r["statuses"] for r in results],
        "delivered_per_s": delivered / seconds,
        "p50_ms": pct(0.50),
        "p95_ms": pct(0.95),
        "p99_ms": pct(0.99),
        "server_cores": cores,
        "per_core": delivered / seconds / cores if cores else 0.0,
        # The latency above counts from each send's scheduled time; from the moment the
        # request was written, and the generator's lateness in between:
        "write_p50_ms": ms("from_write", 0.50),
        "write_p95_ms": ms("from_write", 0.95),
        "write_p99_ms": ms("from_write", 0.99),
        "send_lag_p99_ms": ms("send_lag", 0.99),
        "send_lag_max_ms": ms("send_lag", 1.0),
        # The load generator's own health: if its loop lags or a worker is near a whole core,
        # the latencies above are partly the generator's.
        "gen_loop_lag_p50_ms": ms("loop_lag", 0.50),
        "gen_loop_lag_p99_ms": ms("loop_lag", 0.99),
        "gen_loop_lag_max_ms": ms("loop_lag", 1.0),
        "gen_worker_busy": [r["cpu_seconds"] / r["seconds"] for r in results],
        "gen_worker_busy_max": max(r["cpu_seconds"] / r["seconds"] for r in results),
        "gen_cores": sum(r["cpu_seconds"] for r in results) / seconds,
        "gen_gc_max_ms": ms("gc_pauses", 1.0),
        **summarize_probes(probes),
    }


async def _drop(dsn: str, schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await conn.close()


def row(r: dict[str, Any]) -> str:
    where = "SQLite" if r["backend"] == "sqlite" else "PostgreSQL"
    if r["nodes"] > 1:
        where += f" + Redis, {r['nodes']} nodes"
    if r["server"] == "floor":
        where = f"floor, {where}"
    return (
        f"| {where} | {r['devices']} / {r['groups']} | {r['target_rate']:.0f} "
        f"({r['target_delivered']:.0f}) | {r['delivered_per_s']:.0f} | {r['p50_ms']:.1f} | "
        f"{r['p95_ms']:.1f} | {r['p99_ms']:.1f} | {r['server_cores']:.2f} | {r['per_core']:.0f} "
        f"| {r['errors']} | {r['load_average']:.1f} | {r['gen_loop_lag_p99_ms']:.1f} / "
        f"{r['gen_worker_busy_max']:.2f} |"
    )


HEADER = (
    "| server, store | devices / groups | sends/s target (deliveries/s) | delivered msgs/s | "
    "p50 ms | p95 ms | p99 ms | server cores busy | delivered/s per server core | send errors "
    "| load avg | generator loop lag p99 ms / busiest worker's cores |\n"
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
)

RATIO_HEADER = (
    "| store | sends/s target | Doorless delivered/s | Doorless per core | floor per core | "
    "ratio | Doorless p50 / p95 / p99 ms | floor p50 / p95 / p99 ms |\n"
    "|---|---:|---:|---:|---:|---:|---:|---:|"
)


# Carried into a configuration's summary (means over its runs, and the floor's with "floor_").
HEALTH = (
    "write_p50_ms",
    "write_p95_ms",
    "write_p99_ms",
    "send_lag_p99_ms",
    "gen_loop_lag_p99_ms",
    "gen_loop_lag_max_ms",
    "gen_cores",
    "gen_worker_busy_max",
    "gen_gc_max_ms",
    "server_push_p50_ms",
    "server_push_p95_ms",
    "server_push_p99_ms",
    "server_loop_lag_p99_ms",
    "server_loop_lag_max_ms",
    "server_gc_max_ms",
    "server_gc_max_cpu_ms",
    "server_gc_full_count",
    "server_gc_full_max_cpu_ms",
)


def combine(runs: list[dict[str, Any]], floors: list[dict[str, Any]]) -> dict[str, Any]:
    """One configuration: the means over its interleaved Doorless and floor runs."""

    def mean(rs: list[dict[str, Any]], key: str) -> float:
        return statistics.mean(r[key] for r in rs) if rs else 0.0

    first = runs[0]
    floor_per_core = mean(floors, "per_core")
    return {
        "backend": first["backend"],
        "nodes": first["nodes"],
        "devices": first["devices"],
        "groups": first["groups"],
        "target_rate": first["target_rate"],
        "rounds": len(runs),
        **{k: mean(runs, k) for k in ("delivered_per_s", "per_core", "p50_ms", "p95_ms")},
        "p99_ms": mean(runs, "p99_ms"),
        "server_cores": mean(runs, "server_cores"),
        "errors": sum(r["errors"] for r in runs),
        "floor_delivered_per_s": mean(floors, "delivered_per_s"),
        "floor_per_core": floor_per_core,
        "floor_p50_ms": mean(floors, "p50_ms"),
        "floor_p95_ms": mean(floors, "p95_ms"),
        "floor_p99_ms": mean(floors, "p99_ms"),
        "ratio": mean(runs, "per_core") / floor_per_core if floor_per_core else None,
        "load_average": mean([*runs, *floors], "load_average"),
        **{k: mean(runs, k) for k in HEALTH if k in first},
        **{f"floor_{k}": mean(floors, k) for k in HEALTH if floors and k in floors[0]},
    }


def ratio_row(c: dict[str, Any]) -> str:
    where = "SQLite" if c["backend"] == "sqlite" else "PostgreSQL"
    if c["nodes"] > 1:
        where += f" + Redis, {c['nodes']} nodes"
    ratio = "-" if c["ratio"] is None else f"{c['ratio']:.2f}"
    return (
        f"| {where} | {c['target_rate']:.0f} | {c['delivered_per_s']:.0f} | {c['per_core']:.0f} "
        f"| {c['floor_per_core']:.0f} | {ratio} | {c['p50_ms']:.1f} / {c['p95_ms']:.1f} / "
        f"{c['p99_ms']:.1f} | {c['floor_p50_ms']:.1f} / {c['floor_p95_ms']:.1f} / "
        f"{c['floor_p99_ms']:.1f} |"
    )


def machine() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return (
        f"{os.cpu_count()} × {cpu}, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="postgres")
    parser.add_argument("--nodes", type=int, default=1)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--groups", type=int, default=100)
    parser.add_argument("--rate", type=float, default=300.0, help="sends per second")
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--workers", type=int, default=2, help="load generator processes")
    parser.add_argument("--postgres", default=PG_DEFAULT)
    parser.add_argument("--redis", default=REDIS_DEFAULT)
    parser.add_argument("--pool-size", type=int, default=20, help="PostgreSQL connections/node")
    parser.add_argument("--suite", action="store_true", help="SQLite 1, PostgreSQL 1 and 2 nodes")
    parser.add_argument("--update-doc", type=Path, metavar="MARKDOWN")
    parser.add_argument(
        "--rounds", type=int, default=1, help="Doorless/floor pairs per configuration"
    )
    parser.add_argument("--no-floor", action="store_true", help="measure Doorless only")
    parser.add_argument(
        "--server-probe",
        action="store_true",
        help="run the servers under bench/server_probe.py: their own push latency, event-loop "
        "lag and GC pauses (server_* keys); costs them CPU, so per-core rates are not comparable",
    )
    parser.add_argument(
        "--json", action="store_true", help="print only one JSON object per configuration"
    )
    args = parser.parse_args()
    configs = (
        [("sqlite", 1), ("postgres", 1), ("postgres", 2)]
        if args.suite
        else [(args.backend, args.nodes)]
    )
    results, combined = [], []
    for backend, nodes in configs:
        runs: list[dict[str, Any]] = []
        floors: list[dict[str, Any]] = []
        for i in range(args.rounds):
            # Interleaved, alternating which goes first, so both see the same machine load.
            order = [False] if args.no_floor else [False, True] if i % 2 == 0 else [True, False]
            for floor in order:
                r = run(args, backend, nodes, floor)
                if not args.json:
                    print(json.dumps(r), flush=True)
                (floors if floor else runs).append(r)
                results.append(r)
        c = combine(runs, floors)
        combined.append(c)
        print(json.dumps(c), flush=True)
    table = "\n".join([HEADER, *(row(r) for r in results)])
    table += "\n\n" + "\n".join([RATIO_HEADER, *(ratio_row(c) for c in combined)])
    if not args.json:
        print(table)
    if args.update_doc is not None:
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
        command = " ".join(["python bench/load.py", *sys.argv[1:]])
        text = f"Run `{command}` — {stamp}, {machine()}.\n\n{table}\n"
        doc = args.update_doc.read_text() if args.update_doc.exists() else "# Benchmarks\n"
        marker = "<!-- load.py results -->"
        if marker in doc:
            head, _, rest = doc.partition(marker)
            _, _, tail = rest.partition("<!-- /load.py results -->")
            doc = f"{head}{marker}\n{text}<!-- /load.py results -->{tail}"
        else:
            doc = doc.rstrip() + f"\n\n{SECTION}\n\n{marker}\n{text}<!-- /load.py results -->\n"
        args.update_doc.write_text(doc)


if __name__ == "__main__":
    main()
