"""Where a call frame's latency goes: the frames of ``call_latency_bench.py`` (10 two-party
calls over QUIC on loopback, plain frames so the relay can read the send time) timed at each
hop, and the timers and packets of the relay and the clients counted per frame.

Hops of one frame (``perf_counter_ns``, one clock for every process on Linux):

* ``client send``: the send time in the frame -> the client's packet handed to the socket;
* ``to relay``: -> the relay's ``datagram_received`` (the kernel, and the relay's loop busy
  with other datagrams or preempted);
* ``relay forward``: -> the frame queued for its recipient (QUIC open and parse, the relay's
  header check and fan-out);
* ``relay send``: -> the recipient's packet handed to the socket;
* ``to client``: -> the receiving client's ``datagram_received`` (its loop, as above);
* ``client open``: -> the envelope in the connection's queue (QUIC open and parse);
* ``to reader``: -> the reading task has it (one loop turn).

Timers: the relay's QUIC timer callbacks (aioquic's ``get_timer``) per forwarded frame, by
what was due (``ack``: a delayed ACK; ``loss``: loss detection or PTO; ``pacing``; ``other``:
idle or path timers) and whether they sent anything; re-arms (a cancel and a ``call_at``) per
frame. Private aioquic and Doorless methods are wrapped: a measuring tool, not an example.

    PYTHONPATH=src python bench/call_hops.py [--aligned] [--one-way] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from time import perf_counter_ns
from typing import Any

from call_latency_bench import percentile, run_calls
from relay_bench import free_port, serve_relay, wait_for_http

from doorless.client.transport.relay import RelayInfo
from doorless.server.relay.cert import load_or_create
from doorless.wire.calls import ALPN


def stamp_of_envelope(data: bytes) -> int:
    # envelope: type, stream kind, then the media frame (17-byte header, 2-byte length)
    return int.from_bytes(data[19:27], "big")


class TimerCounts:
    """Wraps aioquic's timer callback and re-arming for one process."""

    def __init__(self) -> None:
        self.fires: Counter[str] = Counter()
        self.rearms = 0
        self.packets = 0
        self.held = [0, 0]  # transmits that left datagrams queued, the most left

    def install(self) -> None:
        from aioquic import tls
        from aioquic.asyncio.protocol import QuicConnectionProtocol
        from aioquic.quic.connection import QuicConnection

        counts = self
        to_send = QuicConnection.datagrams_to_send
        transmit = QuicConnectionProtocol.transmit
        handle_timer = QuicConnectionProtocol._handle_timer

        def datagrams_to_send(quic: QuicConnection, now: float) -> Any:
            out = to_send(quic, now)
            counts.packets += len(out)
            return out

        def counted_transmit(p: QuicConnectionProtocol) -> None:
            old = p._timer
            transmit(p)
            counts.rearms += p._timer is not None and p._timer is not old
            left = len(p._quic._datagrams_pending)  # held back by the pacer or the window
            if left:
                counts.held[0] += 1
                counts.held[1] = max(counts.held[1], left)

        def counted_timer(p: QuicConnectionProtocol) -> None:
            quic, due = p._quic, p._timer_at
            space = quic._spaces.get(tls.Epoch.ONE_RTT)
            if space is not None and space.ack_at is not None and space.ack_at <= due:
                what = "ack"
            elif quic._loss_at is not None and quic._loss_at <= due:
                what = "loss"
            elif quic._pacing_at is not None and quic._pacing_at <= due:
                what = "pacing"
            else:
                what = "other"
            before = counts.packets
            handle_timer(p)
            counts.fires[what + ("" if counts.packets > before else ", nothing sent")] += 1

        QuicConnection.datagrams_to_send = datagrams_to_send  # type: ignore[method-assign]
        QuicConnectionProtocol.transmit = counted_transmit  # type: ignore[method-assign]
        QuicConnectionProtocol._handle_timer = counted_timer  # type: ignore[method-assign]


def serve_traced(data_dir: Path, port: int, udp: int, out: Path) -> None:
    """The relay of ``relay_bench.py``, with its hops and timers recorded (written on SIGUSR1)."""
    from doorless.server.relay import quic

    counts = TimerCounts()
    counts.install()
    arrived = [0]
    queued: dict[Any, list[tuple[int, int, int]]] = {}
    hops: list[tuple[int, int, int, int]] = []  # stamp, datagram in, queued, sent
    received = quic.RelayQuicProtocol.datagram_received
    send_frame = quic.RelayQuicProtocol.send_frame
    transmit = quic.RelayQuicProtocol.transmit

    def datagram_received(p: Any, data: Any, addr: Any) -> None:
        arrived[0] = perf_counter_ns()
        received(p, data, addr)

    def traced_send_frame(p: Any, data: bytes) -> bool:
        queued.setdefault(p, []).append((stamp_of_envelope(data), arrived[0], perf_counter_ns()))
        return send_frame(p, data)

    def traced_transmit(p: Any) -> None:
        transmit(p)
        sent = perf_counter_ns()
        hops.extend((*frame, sent) for frame in queued.pop(p, ()))

    quic.RelayQuicProtocol.datagram_received = datagram_received  # type: ignore[method-assign]
    quic.RelayQuicProtocol.send_frame = traced_send_frame  # type: ignore[method-assign]
    quic.RelayQuicProtocol.transmit = traced_transmit  # type: ignore[method-assign]

    def dump(*_: Any) -> None:
        state = {"hops": hops, "fires": counts.fires, "rearms": counts.rearms, "held": counts.held}
        out.write_text(json.dumps({**state, "packets": counts.packets}))

    signal.signal(signal.SIGUSR1, dump)
    serve_relay(data_dir, port, udp)


def trace_clients(info: RelayInfo, seconds: float, aligned: bool, one_way: bool) -> dict[str, Any]:
    from doorless.client.transport import relay, relay_quic_link

    counts = TimerCounts()
    counts.install()
    sent: dict[int, int] = {}
    opened: dict[int, tuple[int, int]] = {}
    read: dict[int, int] = {}
    arrived = [0]
    send_envelopes = relay_quic_link.QuicClient.send_envelopes
    received = relay_quic_link.QuicClient.datagram_received
    frame = relay.Inbox.frame
    anext_ = relay.RelayConnection.__anext__

    def traced_send(p: Any, envelopes: list[bytes]) -> int:
        n = send_envelopes(p, envelopes)
        now = perf_counter_ns()
        sent.update((stamp_of_envelope(e), now) for e in envelopes)
        return n

    def traced_received(p: Any, data: Any, addr: Any) -> None:
        arrived[0] = perf_counter_ns()
        received(p, data, addr)

    def traced_frame(inbox: Any, data: bytes) -> None:
        opened[stamp_of_envelope(data)] = (arrived[0], perf_counter_ns())
        frame(inbox, data)

    async def traced_anext(conn: Any) -> Any:
        envelope = await anext_(conn)
        read[int.from_bytes(envelope.frame[17:25], "big")] = perf_counter_ns()
        return envelope

    relay_quic_link.QuicClient.send_envelopes = traced_send  # type: ignore[method-assign]
    relay_quic_link.QuicClient.datagram_received = traced_received  # type: ignore[method-assign]
    relay.Inbox.frame = traced_frame  # type: ignore[method-assign]
    relay.RelayConnection.__anext__ = traced_anext  # type: ignore[method-assign]
    latencies = asyncio.run(
        run_calls(info, seconds, encrypted=False, aligned=aligned, one_way=one_way)
    )
    return {
        "sent": sent,
        "opened": opened,
        "read": read,
        "fires": counts.fires,
        "packets": counts.packets,
        "held": counts.held,
        "latencies": latencies,
    }


HOPS = (
    "client send",
    "to relay",
    "relay forward",
    "relay send",
    "to client",
    "client open",
    "to reader",
    "total",
)


def report(relay: dict[str, Any], clients: dict[str, Any], seconds: float) -> None:
    sent, opened, read = clients["sent"], clients["opened"], clients["read"]
    first = min(read) if read else 0
    rows = []
    for stamp, tin, tq, tout in relay["hops"]:
        if stamp < first + 1_000_000_000 or stamp not in sent or stamp not in read:
            continue  # the warm-up second
        if stamp not in opened:
            continue
        cin, cq = opened[stamp]
        times = (stamp, sent[stamp], tin, tq, tout, cin, cq, read[stamp])
        row = [(b - a) / 1e6 for a, b in itertools.pairwise(times)]
        rows.append([*row, (read[stamp] - stamp) / 1e6])
    total = [r[-1] for r in rows]
    tail = [r for r in rows if r[-1] >= percentile(total, 95)]
    print(f"{len(rows)} frames after the warm-up; per hop in ms:")
    print(f"{'hop':15} {'p50':>7} {'p95':>7} {'p99':>7} {'mean in the 5% slowest':>24}")
    for i, name in enumerate(HOPS):
        values = [r[i] for r in rows]
        print(
            f"{name:15} {percentile(values, 50):7.3f} {percentile(values, 95):7.3f} "
            f"{percentile(values, 99):7.3f} {statistics.mean(r[i] for r in tail):24.3f}"
        )
    frames = len(relay["hops"])  # every frame forwarded, warm-up included, as the counts
    print(
        f"relay, per forwarded frame: {relay['packets'] / frames:.2f} packets out, "
        f"{relay['rearms'] / frames:.2f} timer re-arms, timer callbacks "
        + ", ".join(f"{k} {v / frames:.3f}" for k, v in sorted(relay["fires"].items()))
    )
    for name, side in (("relay", relay), ("clients", clients)):
        held, most = side["held"]
        print(f"{name}: {held} transmits left datagrams queued (pacer or window), at most {most}")
    print(
        f"clients, per frame sent: {clients['packets'] / len(sent):.2f} packets out, timer "
        "callbacks "
        + ", ".join(f"{k} {v / len(sent):.3f}" for k, v in sorted(clients["fires"].items()))
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--aligned", action="store_true", help="senders in lockstep")
    parser.add_argument("--one-way", action="store_true", help="one speaker per call")
    parser.add_argument("--serve", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        data, port, udp, out = args.serve
        serve_traced(Path(data), int(port), int(udp), Path(out))
        return
    with tempfile.TemporaryDirectory(prefix="call-hops-") as tmp:
        port, udp, out = free_port(), free_port(), Path(tmp) / "relay.json"
        child = subprocess.Popen(
            [sys.executable, __file__, "--serve", tmp, str(port), str(udp), str(out)],
            env={**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", "src")},
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for_http(port)
            fingerprint = load_or_create(Path(tmp) / "relay").fingerprint
            info = RelayInfo("127.0.0.1", udp, fingerprint, ALPN, "")
            load = os.getloadavg()[0]
            clients = trace_clients(info, args.seconds, args.aligned, args.one_way)
            child.send_signal(signal.SIGUSR1)
            for _ in range(100):
                time.sleep(0.05)
                if out.exists() and out.stat().st_size:
                    break
            time.sleep(0.2)
            relay = json.loads(out.read_text())
        finally:
            child.terminate()
            child.wait(10)
    layout = "in lockstep" if args.aligned else "on independent phases"
    speakers = "one speaker per call" if args.one_way else "both participants speak"
    print(f"senders {layout}, {speakers}; load average {load:.1f} at the start")
    report(relay, clients, args.seconds)


if __name__ == "__main__":
    main()
