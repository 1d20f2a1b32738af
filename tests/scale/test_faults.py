"""I5 under faults: three server processes over PostgreSQL and Redis carry a steady load while
a random node is SIGKILLed and restarted, again and again (>= 20 times), and Redis itself is
killed and restarted in the middle of the run. Clients reconnect to any node.

Afterwards every message that the server acknowledged to its sender was delivered exactly once
to every recipient device: counted, printed, asserted (0 lost, 0 duplicated after the client's
dedupe by seq). Redis here is our own ``redis-server`` on a free port, never the shared one.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from .conftest import OwnRedis, PgSchema
from .nodes import (
    Device,
    Inbox,
    Node,
    SendFailed,
    body_of,
    fetch_all,
    make_nodes,
    mls_message,
    receive_forever,
    register_many,
    send,
    start_all,
)

pytestmark = pytest.mark.asyncio

KILLS = 20
GROUPS = 3
PER_GROUP = 3
SEND_INTERVAL = 0.3  # seconds between two sends of one device
GIVE_UP = 30.0  # a sender stops retrying one message after this long


@dataclass
class Ledger:
    """What the senders know: acknowledged messages and their recipients."""

    acked: dict[str, tuple[str, ...]] = field(default_factory=dict)  # body -> recipient ids
    acked_at: dict[str, float] = field(default_factory=dict)
    unacknowledged: set[str] = field(default_factory=set)
    attempts: int = 0
    retries: int = 0
    duplicates_answered: int = 0  # retries the server recognised (200 duplicate)


async def sender_loop(
    k: int,
    me: Device,
    group: list[Device],
    urls: list[str],
    http: httpx.AsyncClient,
    ledger: Ledger,
    stop: asyncio.Event,
) -> None:
    recipients = tuple(d.device_id for d in group if d is not me)
    n = 0
    while not stop.is_set():
        body = f"{k}:{n}"
        message = mls_message(f"fault-group-{k // PER_GROUP}".encode(), 0, body.encode())
        message_id = f"fault-{k}-{n}"
        started = time.monotonic()
        while True:
            ledger.attempts += 1
            try:
                result = await send(
                    http, random.choice(urls), me, message, recipients, message_id, timeout=5
                )
            except SendFailed as exc:
                # no answer (node killed) or 5xx: unknown outcome, retry the same id anywhere
                assert exc.status is None or exc.status >= 500, exc
                if time.monotonic() - started > GIVE_UP:
                    ledger.unacknowledged.add(body)
                    break
                ledger.retries += 1
                await asyncio.sleep(0.05 + random.random() * 0.1)
                continue
            ledger.duplicates_answered += bool(result["duplicate"])
            ledger.acked[body] = recipients
            ledger.acked_at[body] = time.monotonic()
            break
        n += 1
        await asyncio.sleep(SEND_INTERVAL * (0.5 + random.random()))


async def wait_ready(node: Node) -> None:
    """Until the node answers (it may be killed and respawned meanwhile)."""
    deadline = time.monotonic() + 90
    async with httpx.AsyncClient() as http:
        while True:
            assert time.monotonic() < deadline, node.log_text()
            if node.alive:
                try:
                    if (await http.get(f"{node.url}/v1/info", timeout=2)).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
            await asyncio.sleep(0.1)


async def test_sigkill_and_redis_restart_under_load_lose_nothing(
    pg_schema_sync: PgSchema, own_redis: OwnRedis, tmp_path: Path
) -> None:
    rng = random.Random()
    nodes = make_nodes(tmp_path, 3, pg_schema_sync.url + "&pool_size=6", own_redis.url)
    await asyncio.to_thread(start_all, nodes)
    urls = [n.url for n in nodes]
    try:
        devices = await register_many(urls[0], "fault", GROUPS * PER_GROUP)
        groups = [devices[g * PER_GROUP : (g + 1) * PER_GROUP] for g in range(GROUPS)]
        inboxes = {d.device_id: Inbox(d) for d in devices}

        def pick() -> str:
            return rng.choice(urls)

        receivers = [
            asyncio.create_task(receive_forever(inbox, pick)) for inbox in inboxes.values()
        ]
        ledger = Ledger()
        stop = asyncio.Event()
        async with httpx.AsyncClient() as http:
            senders = [
                asyncio.create_task(
                    sender_loop(k, d, groups[k // PER_GROUP], urls, http, ledger, stop)
                )
                for k, d in enumerate(devices)
            ]
            # --- the faults -----------------------------------------------------------------
            kills = 0
            killed_serving = 0
            restarts: list[asyncio.Task[None]] = []
            redis_restarted_at = None
            started = time.monotonic()
            last_kill = time.monotonic()
            while kills < KILLS:
                await asyncio.sleep(rng.uniform(0.5, 1.5))
                # Any node may die, even one still starting up, as long as another one is
                # serving (so the load goes on); mostly nodes that hold sockets and serve sends.
                serving = [n for n in nodes if n.alive and n not in _starting(restarts, nodes)]
                if not serving:
                    continue
                keep = rng.choice(serving)
                busy = [n for n in serving if n is not keep]
                if busy:
                    victim = rng.choice(busy)
                    killed_serving += 1
                elif time.monotonic() - last_kill > 6.0:
                    victim = rng.choice([n for n in nodes if n is not keep])  # mid-startup
                else:
                    continue
                last_kill = time.monotonic()
                victim.kill()
                kills += 1
                victim.spawn()
                for task in restarts:
                    if task.get_name() == victim.name:
                        task.cancel()
                restarts = [t for t in restarts if t.get_name() != victim.name]
                restarts.append(asyncio.create_task(wait_ready(victim), name=victim.name))
                if kills == KILLS // 2:
                    own_redis.stop()
                    await asyncio.sleep(2.0)
                    await asyncio.to_thread(own_redis.start)
                    redis_restarted_at = time.monotonic()
            fault_phase = time.monotonic() - started
            await asyncio.gather(*restarts)
            assert redis_restarted_at is not None

            # --- after the faults: delivery in real time again ------------------------------
            await asyncio.sleep(2.5)  # the fan-out reconnects (backoff <= 2 s)
            stop.set()
            await asyncio.gather(*senders)
            probe_latencies = []
            for i in range(10):
                sender, receiver = devices[0], devices[1]
                body = f"probe:{i}"
                t0 = time.monotonic()
                await send(
                    http,
                    urls[i % 3],
                    sender,
                    mls_message(b"fault-group-0", 0, body.encode()),
                    [receiver.device_id],
                )
                inbox = inboxes[receiver.device_id]
                while not any(body_of(data).decode() == body for _, data, _ in inbox.frames):
                    assert time.monotonic() - t0 < 10, "probe not delivered"
                    await asyncio.sleep(0.002)
                probe_latencies.append(time.monotonic() - t0)

            # --- drain and count ------------------------------------------------------------
            expected = Counter[tuple[str, str]]()
            for body, recipients in ledger.acked.items():
                for r in recipients:
                    expected[(r, body)] += 1
            deadline = time.monotonic() + 60
            while True:
                received = Counter(
                    (device_id, body_of(data).decode())
                    for device_id, inbox in inboxes.items()
                    for _, data, _ in inbox.frames
                )
                if all(received[key] >= 1 for key in expected) or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(1.0)  # let the last acks land
            for task in receivers:
                task.cancel()
            await asyncio.gather(*receivers, return_exceptions=True)
            leftovers = {
                d.device_id: await fetch_all(http, urls[0], d) for d in devices
            }  # everything delivered was also acknowledged by the clients

        received = Counter(
            (device_id, body_of(data).decode())
            for device_id, inbox in inboxes.items()
            for _, data, _ in inbox.frames
        )
        lost = [key for key in expected if received[key] == 0]
        doubled = [key for key, count in received.items() if count > 1]
        unexpected = [
            key
            for key in received
            if key not in expected
            and key[1].split(":")[0] != "probe"
            and key[1] not in ledger.unacknowledged
        ]
        out_of_order = []
        for device_id, inbox in inboxes.items():
            last: dict[str, int] = {}
            for _, data, _ in inbox.frames:
                sender_k, n = body_of(data).decode().split(":")
                if sender_k != "probe":
                    if int(n) <= last.get(sender_k, -1):
                        out_of_order.append((device_id, sender_k, n))
                    last[sender_k] = int(n)
        reconnects = sum(i.connects for i in inboxes.values()) - len(inboxes)
        print(
            f"\nfault run: {kills} SIGKILLs ({killed_serving} of serving nodes, the others "
            f"during a restart) + 1 Redis restart in {fault_phase:.0f} s, "
            f"{sum(n.starts for n in nodes)} node starts, {reconnects} socket reconnects\n"
            f"senders: {ledger.attempts} attempts, {ledger.retries} retries, "
            f"{len(ledger.acked)} acknowledged ({ledger.duplicates_answered} as duplicate "
            f"retries), {len(ledger.unacknowledged)} given up\n"
            f"deliveries: expected {sum(expected.values())}, delivered "
            f"{sum(1 for k in expected if received[k])}, lost {len(lost)}, duplicated after "
            f"dedupe {len(doubled)}, redelivered seqs dropped by dedupe "
            f"{sum(i.redelivered for i in inboxes.values())}, unexpected {len(unexpected)}, "
            f"out of order {len(out_of_order)}\n"
            f"after the faults: push latency median "
            f"{statistics.median(probe_latencies) * 1000:.0f} ms, max "
            f"{max(probe_latencies) * 1000:.0f} ms; still queued "
            f"{sum(len(v) for v in leftovers.values())}"
        )
        assert kills >= 20 and killed_serving >= 5
        assert len(ledger.acked) > 200  # a real load went through
        assert lost == [], lost[:10]
        assert doubled == [], doubled[:10]
        assert unexpected == [], unexpected[:10]
        assert out_of_order == [], out_of_order[:10]
        assert all(v == [] for v in leftovers.values())
        # Redis is back and pushes are real time again (not the 1 s polling fallback).
        assert statistics.median(probe_latencies) < 0.3
    finally:
        for node in nodes:
            node.stop()


def _starting(restarts: list[asyncio.Task[None]], nodes: list[Node]) -> list[Node]:
    """Nodes restarted but not answering yet."""
    pending = {t.get_name() for t in restarts if not t.done()}
    return [n for n in nodes if n.name in pending]
