"""Added latency of a call's media path: SFrame encrypt + relay + SFrame decrypt, with 10
concurrent two-party calls over QUIC on loopback (target: p95 < 5 ms).

The relay runs in a child process (the real app, as in ``relay_bench.py``: admission replaced by
"everyone is a member", which is not on the forwarding path). This process runs the 20
participants with the real client connection (`RelayConnection`, QUIC with the pinned
certificate). Each participant sends one audio frame every 20 ms (an 80-byte Opus-sized
payload in a media frame, as in a call), stamped with ``perf_counter_ns`` inside the
plaintext; the other side decrypts it and takes the difference. Both runs are in the same
process on the same clock, so the figures are one-way latencies:

* ``sframe``: encrypt (`SFrameSender`, MLS-derived KID layout, AES-128-GCM) + relay + decrypt
  (`SFrameReceiver` with its replay window) — what a call adds;
* ``plain``: the same frames through the same relay without SFrame (the floor of this run);
* ``crypto only``: encrypt + decrypt of the same frame without the network.

    PYTHONPATH=src python bench/call_latency_bench.py
    PYTHONPATH=src python bench/call_latency_bench.py --update-doc docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from _report import machine, update_doc
from relay_bench import free_port, start_child

from doorless.client.calls.keys import CALL_SFRAME_SUITE, KID_LAYOUT
from doorless.client.calls.media import MediaFrame, StreamKind, encode_frame
from doorless.client.transport.relay import RelayConnection, RelayInfo
from doorless.server.relay.cert import load_or_create
from doorless.sframe import BaseKey, SFrameReceiver, SFrameSender
from doorless.wire.calls import ALPN, CallId
from doorless.wire.calls import StreamKind as WireStream

SECTION = "## Call latency: encrypt + relay + decrypt (issue #13)"
CALLS = 10
PERIOD = 0.020
TARGET_P95_MS = 5.0


def frame_bytes(seq: int) -> bytes:
    stamp = time.perf_counter_ns().to_bytes(8, "big")
    return encode_frame(MediaFrame(StreamKind.audio, seq, 0, stamp + os.urandom(72)))


def stamp_of(plaintext: bytes) -> int:
    # The media frame's payload starts after its 17-byte header and 2-byte length.
    return int.from_bytes(plaintext[17:25], "big")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def join(info: RelayInfo, call: CallId) -> RelayConnection:
    token = os.urandom(8).hex()
    return await RelayConnection.open(
        info, token=token, group_id=b"bench-group", call_id=call, transport="quic", timeout=10.0
    )


async def run_calls(info: RelayInfo, seconds: float, encrypted: bool) -> list[float]:
    base_key = BaseKey(os.urandom(16))
    latencies: list[float] = []
    stop = asyncio.Event()
    pairs = []
    for _ in range(CALLS):
        call = CallId.random()
        conns = [await join(info, call) for _ in range(2)]
        pairs.append(conns)

    async def send(conn: RelayConnection, leaf: int) -> None:
        sender = SFrameSender(CALL_SFRAME_SUITE, KID_LAYOUT.kid(leaf, 1), base_key)
        sender.reserve(1 << 20)
        seq = 0
        while not stop.is_set():
            data = frame_bytes(seq)
            await conn.send(WireStream.audio, sender.encrypt(data) if encrypted else data)
            seq += 1
            await asyncio.sleep(PERIOD)

    async def receive(conn: RelayConnection, peer_leaf: int) -> None:
        receiver = SFrameReceiver(CALL_SFRAME_SUITE, window=256)
        receiver.add_key(KID_LAYOUT.kid(peer_leaf, 1), base_key)
        async for envelope in conn:
            plaintext = receiver.decrypt(envelope.frame).plaintext if encrypted else envelope.frame
            latencies.append((time.perf_counter_ns() - stamp_of(plaintext)) / 1e6)

    tasks = []
    for a, b in pairs:
        tasks += [asyncio.create_task(send(a, 0)), asyncio.create_task(send(b, 1))]
        tasks += [asyncio.create_task(receive(a, 1)), asyncio.create_task(receive(b, 0))]
    await asyncio.sleep(1.0)  # warm up
    latencies.clear()
    await asyncio.sleep(seconds)
    stop.set()
    collected = list(latencies)
    for conns in pairs:
        for c in conns:
            await c.close()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return collected


def crypto_only(n: int = 20_000) -> list[float]:
    base_key = BaseKey(os.urandom(16))
    sender = SFrameSender(CALL_SFRAME_SUITE, KID_LAYOUT.kid(0, 1), base_key)
    sender.reserve(n)
    receiver = SFrameReceiver(CALL_SFRAME_SUITE, window=256)
    receiver.add_key(KID_LAYOUT.kid(0, 1), base_key)
    out = []
    for seq in range(n):
        data = frame_bytes(seq)
        start = time.perf_counter_ns()
        receiver.decrypt(sender.encrypt(data))
        out.append((time.perf_counter_ns() - start) / 1e6)
    return out


def measure(seconds: float) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="call-bench-") as tmp:
        for kind in ("plain", "sframe"):
            port, udp = free_port(), free_port()
            data = Path(tmp) / kind
            data.mkdir()
            child = start_child(["--serve", str(data), str(port), str(udp)], port)
            try:
                fingerprint = load_or_create(data / "relay").fingerprint
                info = RelayInfo(
                    "127.0.0.1", udp, fingerprint, ALPN, f"ws://127.0.0.1:{port}/v1/calls/ws"
                )
                results[kind] = asyncio.run(run_calls(info, seconds, kind == "sframe"))
            finally:
                child.terminate()
                child.wait(10)
    results["crypto only"] = crypto_only()
    return results


def row(name: str, values: list[float]) -> str:
    return (
        f"| {name} | {len(values)} | {statistics.median(values):.3f} | "
        f"{percentile(values, 95):.3f} | {percentile(values, 99):.3f} |"
    )


def section(results: dict[str, list[float]], info: dict[str, Any]) -> str:
    sframe = percentile(results["sframe"], 95)
    added = sframe - percentile(results["plain"], 95)
    verdict = "met" if sframe < TARGET_P95_MS else "NOT met"
    return "\n".join(
        [
            SECTION,
            "",
            f"`bench/call_latency_bench.py`: {CALLS} concurrent two-party calls over QUIC on "
            f"loopback, one audio frame per participant every 20 ms, one-way latency from "
            f"before encryption to after decryption. Machine: {info['cpu']}, Python "
            f"{info['python']}, load average {info['load']:.1f} when run (latencies include "
            "whatever else the machine was doing).",
            "",
            "| path | frames | p50 ms | p95 ms | p99 ms |",
            "|---|---:|---:|---:|---:|",
            row("sframe: encrypt + relay + decrypt", results["sframe"]),
            row("plain: relay only (same run)", results["plain"]),
            row("crypto only: encrypt + decrypt", results["crypto only"]),
            "",
            f"Target p95 < {TARGET_P95_MS:g} ms for encrypt + relay + decrypt: **{verdict}** "
            f"({sframe:.3f} ms); SFrame's share of p95 against the plain relay of the same run: "
            f"{added:+.3f} ms.",
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--update-doc", type=Path)
    args = parser.parse_args()
    info = machine()
    results = measure(args.seconds)
    text = section(results, info)
    print(text)
    if args.update_doc:
        update_doc(args.update_doc, SECTION, text)


if __name__ == "__main__":
    main()
