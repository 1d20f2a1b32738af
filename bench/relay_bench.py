"""The media relay's forwarding throughput per core, over QUIC and over the WebSocket fallback,
against a bare aioquic forwarder measured in the same run.

The server runs in a child process; this process runs the participants (connections opened
with `RelayConnection`, the real client; frames pre-built and counted in batches so that the
load generator costs less than the server) and counts the frames they receive. With S
concurrent streams there are S/2 calls of two participants, each sending one stream of
audio-sized frames (100 bytes of SFrame) in bursts, so every frame is forwarded once. The
figure of merit is **frames forwarded per second of the server process's CPU time** (user +
system, from ``/proc``): frames per second per core, which the other load on the machine
does not inflate (it can only slow the wall clock). Wall-clock throughput is shown too.

* ``relay``: the real app (`create_app` with ``relay_port``; uvicorn for the WebSocket), with
  admission replaced by "everyone is a member" (admission is not on the forwarding path);
* ``bare``: the floor — an aioquic server that pairs the connections of a call and copies every
  DATAGRAM to the other connections: no header check, no counters, no forwarder, no bridge.

The second table is the added latency of encrypt + relay + decrypt at 10 concurrent calls
(`call_latency_bench.run_calls`: the same calls as there, one shorter run per transport).

    PYTHONPATH=src python bench/relay_bench.py                  # print the table
    PYTHONPATH=src python bench/relay_bench.py --update-doc docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _report import machine, update_doc

from doorless.client.transport.relay import RelayConnection, RelayInfo
from doorless.server.relay.cert import load_or_create
from doorless.sframe import SFrameSuite, encode_header
from doorless.wire.calls import ALPN, CallId, FrameEnvelope, StreamKind

SECTION = "## Media relay forwarding (issue #13)"
STREAMS = (10, 50, 200)
TARGET = 10_000
FRAME = 100
LATENCY_CALLS = 10
LATENCY_TARGET_MS = 5.0
SUITE = SFrameSuite.AES_128_GCM_SHA256_128


# --- the server side (child process) ---------------------------------------------------------


class _AllMembers:
    async def group_access(self, group_id: bytes, device_id: str) -> Any:
        from doorless.server.storage.base import GroupAccess

        return GroupAccess(epoch=1, member=True)


def serve_relay(data_dir: Path, port: int, udp: int) -> None:
    import uvicorn

    from doorless.server.app import create_app
    from doorless.server.config import ServerConfig

    config = ServerConfig(
        data_dir=data_dir,
        relay_port=udp,
        rate_per_second=0,
        anon_rate_per_second=0,
    )
    app = create_app(config, background_sweeper=False)
    relay = app.state.ctx.relay

    async def anyone(token: str) -> str:
        return token

    relay._storage = _AllMembers()  # the bench measures forwarding, not admission
    relay._authenticate = anyone
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")


def serve_bare(data_dir: Path, udp: int) -> None:
    """A bare aioquic forwarder speaking just enough of the relay protocol for the client."""
    from aioquic.asyncio.protocol import QuicConnectionProtocol
    from aioquic.asyncio.server import serve
    from aioquic.quic import events

    from doorless.server.relay.quic import configuration
    from doorless.wire.calls import ControlReader, JoinAccepted, JoinRequest, encode_control

    calls: dict[bytes, list[Any]] = {}

    class Bare(QuicConnectionProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.peers: list[Any] = []
            self.reader = ControlReader()

        def quic_event_received(self, event: events.QuicEvent) -> None:
            if isinstance(event, events.DatagramFrameReceived):
                for peer in self.peers:
                    if peer is not self:
                        peer._quic.send_datagram_frame(event.data)
                        peer._transmit_soon()
            elif isinstance(event, events.StreamDataReceived):
                for message in self.reader.feed(event.data):
                    if isinstance(message, JoinRequest):
                        self.peers = calls.setdefault(message.call_id.value, [])
                        self.peers.append(self)
                        answer = encode_control(JoinAccepted(len(self.peers), len(self.peers)))
                        self._quic.send_stream_data(event.stream_id, answer)

    async def main() -> None:
        cert = load_or_create(data_dir / "relay")
        await serve("127.0.0.1", udp, configuration=configuration(cert), create_protocol=Bare)
        print("ready", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


# --- the participants (this process) ----------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run_load(
    info: RelayInfo, transport: str, streams: int, seconds: float, pid: int
) -> dict[str, float]:
    conns: list[RelayConnection] = []
    for _ in range(streams // 2):
        call = CallId.random()
        for _ in range(2):
            conns.append(
                await RelayConnection.open(
                    info,
                    token=os.urandom(8).hex(),
                    group_id=b"bench-group",
                    call_id=call,
                    transport=transport,  # type: ignore[arg-type]
                    timeout=10.0,
                )
            )
    received = 0
    stop = asyncio.Event()

    async def receive(conn: RelayConnection) -> None:
        # Counted off the connection's queue in batches: the load generator must cost less
        # than the server it loads (the machine has 2 cores).
        nonlocal received
        queue = conn._inbox.queue
        while True:
            await asyncio.sleep(0.02)
            while not queue.empty():
                queue.get_nowait()
                received += 1

    async def send(conn: RelayConnection, kid: int) -> None:
        # Pre-built envelopes (distinct SFrame headers), handed to the connection's link
        # eight at a time.
        payload = os.urandom(FRAME - 4)
        burst = [
            FrameEnvelope(StreamKind.audio, encode_header(kid, ctr) + payload).to_bytes()
            for ctr in range(1, 9)
        ]
        while not stop.is_set():
            conn._link.send_all(burst)  # one transmit: a burst leaves together
            await asyncio.sleep(0.002)

    readers = [asyncio.create_task(receive(c)) for c in conns]
    await asyncio.sleep(0.5)
    senders = [asyncio.create_task(send(c, i)) for i, c in enumerate(conns)]
    await asyncio.sleep(1.0)  # warm up
    start_received, start_cpu, start_wall = received, cpu_seconds(pid), time.perf_counter()
    await asyncio.sleep(seconds)
    frames = received - start_received
    cpu = cpu_seconds(pid) - start_cpu
    wall = time.perf_counter() - start_wall
    stop.set()
    await asyncio.gather(*senders)
    for c in conns:
        await c.close()
    for r in readers:
        r.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    return {
        "frames": frames,
        "per_cpu_second": frames / cpu if cpu > 0 else float("nan"),
        "per_wall_second": frames / wall,
        "server_cpu": cpu / wall,
    }


def start_child(args: list[str], port: int | None) -> subprocess.Popen[bytes]:
    child = subprocess.Popen(
        [sys.executable, __file__, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", "src")},
    )
    time.sleep(0.5)
    if port is not None:
        wait_for_http(port)
    else:
        assert child.stdout is not None
        child.stdout.readline()
    return child


def wait_for_http(port: int) -> None:
    """Until the server on ``port`` answers (at most ~20 s)."""
    import httpx

    for _ in range(200):
        try:
            httpx.get(f"http://127.0.0.1:{port}/v1/info", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)


def start_relay(data: Path) -> tuple[subprocess.Popen[bytes], RelayInfo]:
    """A server with its relay in a child process, its state in ``data``, and how to reach
    its relay (QUIC and WebSocket)."""
    port, udp = free_port(), free_port()
    child = start_child(["--serve", str(data), str(port), str(udp)], port)
    fingerprint = load_or_create(data / "relay").fingerprint
    return child, RelayInfo(
        "127.0.0.1", udp, fingerprint, ALPN, f"ws://127.0.0.1:{port}/v1/calls/ws"
    )


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def measure_latency(seconds: float) -> dict[str, list[float]]:
    """The same calls as ``call_latency_bench.py`` (its code: the two benchmarks agree), over
    QUIC and over the WebSocket fallback, one short run each."""
    from call_latency_bench import percentile, run_calls  # it imports this module

    out: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="relay-bench-") as tmp:
        data = Path(tmp) / "latency"
        data.mkdir()
        child, info = start_relay(data)
        try:
            for transport in ("quic", "websocket"):
                out[transport] = asyncio.run(
                    run_calls(info, seconds, encrypted=True, transport=transport)
                )
                v = out[transport]
                print(
                    f"latency {transport}: p50 {percentile(v, 50):.2f} ms, "
                    f"p95 {percentile(v, 95):.2f} ms ({len(v)} frames)",
                    flush=True,
                )
        finally:
            child.terminate()
            child.wait(10)
    return out


def measure(seconds: float) -> dict[str, dict[int, dict[str, float]]]:
    results: dict[str, dict[int, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="relay-bench-") as tmp:
        root = Path(tmp)
        for kind in ("bare", "quic", "websocket"):
            results[kind] = {}
            for streams in STREAMS:
                port, udp = free_port(), free_port()
                data = root / f"{kind}-{streams}"
                data.mkdir()
                if kind == "bare":
                    child = start_child(["--serve-bare", str(data), str(udp)], None)
                else:
                    child = start_child(["--serve", str(data), str(port), str(udp)], port)
                try:
                    fingerprint = load_or_create(data / "relay").fingerprint
                    info = RelayInfo(
                        "127.0.0.1", udp, fingerprint, ALPN, f"ws://127.0.0.1:{port}/v1/calls/ws"
                    )
                    transport = "websocket" if kind == "websocket" else "quic"
                    results[kind][streams] = asyncio.run(
                        run_load(info, transport, streams, seconds, child.pid)
                    )
                finally:
                    child.terminate()
                    child.wait(10)
                r = results[kind][streams]
                print(
                    f"{kind:9} {streams:4} streams: {r['per_cpu_second']:9.0f} frames/CPU-s, "
                    f"{r['per_wall_second']:8.0f} frames/s, server CPU {r['server_cpu']:.2f}",
                    flush=True,
                )
    return results


def section(
    results: dict[str, dict[int, dict[str, float]]],
    latency: dict[str, list[float]],
    info: dict[str, Any],
) -> str:
    lines = [
        SECTION,
        "",
        f"`bench/relay_bench.py`, {info['date']}: {info['cpu']}, {info['nproc']} cores, Python "
        f"{info['python']}, load average {info['load']:.1f} at the start. The server and the "
        "load generator share the cores: read the ratios; the absolute numbers are low bounds.",
        "",
        "Frames forwarded per second of server CPU time (user + system of the server process), "
        f"{FRAME}-byte audio frames, S streams = S/2 two-party calls, each participant sending. "
        "`bare`: aioquic copying datagrams between the connections of a call, nothing else "
        f"(the floor). Target (issue #13): at least {TARGET:,} frames/s per core over QUIC.",
        "",
        "| streams | bare aioquic (frames/CPU-s) | relay QUIC | relay QUIC / bare | "
        "relay WebSocket | WebSocket / QUIC | QUIC frames/s (wall) | target met |",
        "|---:|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    for s in STREAMS:
        bare, quic, ws = (results[k][s] for k in ("bare", "quic", "websocket"))
        q = quic["per_cpu_second"]
        lines.append(
            f"| {s} | {bare['per_cpu_second']:,.0f} | {q:,.0f} | "
            f"{q / bare['per_cpu_second']:.2f} | {ws['per_cpu_second']:,.0f} | "
            f"{ws['per_cpu_second'] / q:.2f} | {quic['per_wall_second']:,.0f} | "
            f"{'yes' if q >= TARGET else 'no'} |"
        )
    lines += [
        "",
        f"Added latency of encrypt + relay + decrypt (SFrame {SUITE.name}, 80-byte audio "
        f"payloads), {LATENCY_CALLS} concurrent two-party calls, both participants sending 50 "
        "frames/s, each on its own phase, the send time inside the plaintext, clients and "
        "server on loopback: `call_latency_bench.py`'s calls, one shorter run. Target "
        f"(issue #13): p95 below {LATENCY_TARGET_MS} ms.",
        "",
        "| transport | frames | p50 (ms) | p95 (ms) | p99 (ms) | target met |",
        "|---|---:|---:|---:|---:|:---:|",
    ]
    from call_latency_bench import percentile  # the same percentiles as there

    for transport, v in latency.items():
        p95 = percentile(v, 95)
        lines.append(
            f"| {transport} | {len(v)} | {percentile(v, 50):.2f} | {p95:.2f} | "
            f"{percentile(v, 99):.2f} | {'yes' if p95 < LATENCY_TARGET_MS else 'no'} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--update-doc", type=Path)
    parser.add_argument("--serve", nargs=3, metavar=("DATA", "PORT", "UDP"), help=argparse.SUPPRESS)
    parser.add_argument("--serve-bare", nargs=2, metavar=("DATA", "UDP"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_relay(Path(args.serve[0]), int(args.serve[1]), int(args.serve[2]))
        return
    if args.serve_bare:
        serve_bare(Path(args.serve_bare[0]), int(args.serve_bare[1]))
        return
    info = machine()
    results = measure(args.seconds)
    latency = measure_latency(args.seconds)
    text = section(results, latency, info)
    print(text)
    if args.update_doc:
        update_doc(args.update_doc, SECTION, text)


if __name__ == "__main__":
    main()
