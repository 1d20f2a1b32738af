"""What the validating delivery service costs per commit (`doorless.server.groups`).

For a group of N members (built by one Add commit), the creator commits a self-update (an
UpdatePath, as every Doorless commit has). Measured, one server core, medians over ``--runs``:

* **validate**: `groups.judge_commit` — exactly what the server runs for a commit for the
  stored epoch: decode the stored `PublicGroup` (*cold*: another process stored it, or after a
  restart; *warm*: this process validated the previous commit and has it in `STATES`),
  `process_commit` (signature, proposals, path merge with parent hashes, new tree hash,
  transcript hashes), the GroupInfo checks (context, tag, signature), encode the new state,
  the member-device diff;
* **floor**: the primitives it cannot avoid, measured right after on inputs of the same sizes:
  three Ed25519 verifications with the public key parsed from bytes (the commit's signature
  over a message of the commit's size, the new leaf's over the leaf's size, the GroupInfo's
  over its size).

Usage: ``python bench/validate_bench.py [--sizes 1000 10000] [--runs 5]``. Prints a Markdown
table (wall and process-CPU milliseconds).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric import ed25519

from doorless.codec import decode, encode
from doorless.crypto import cipher_suite
from doorless.mls.credential import BasicCredential
from doorless.mls.framing import MLSMessage, PublicMessage
from doorless.mls.group import Group, generate_key_package
from doorless.mls.proposals import Add, Commit
from doorless.mls.public_group import PublicGroup
from doorless.mls.types import GroupConfig
from doorless.secret import PrivateKeyBytes
from doorless.server.groups import STATES, judge_commit
from doorless.server.storage.base import GroupState
from doorless.wire import protocol
from doorless.wire.kt import credential_identity

SUITE = cipher_suite(1)
NOW = int(time.time())
CONFIG = GroupConfig(private_handshakes=False)


class Device:
    username = "bench"

    def __init__(self, device_id: str) -> None:
        self.device_id = device_id


def public(data: bytes) -> PublicMessage:
    body = decode(MLSMessage, data).body
    assert isinstance(body, PublicMessage)
    return body


def build(n: int) -> tuple[GroupState, PublicMessage, bytes, Device, PublicGroup]:
    """A group of ``n`` whose server state came from validating the creator's previous commit
    (as in a server that follows the group), the creator's next self-update commit with its
    GroupInfo, and that validated state (as the process that stored it keeps it)."""
    keys = SUITE.generate_signature_key_pair()
    device = Device(protocol.device_id_of(keys.public_key))
    creator = generate_key_package(
        SUITE,
        BasicCredential(credential_identity(device.username, device.device_id)),
        PrivateKeyBytes(keys.private_key),
        now=NOW,
    )
    others = []
    for i in range(n - 1):
        sk = PrivateKeyBytes(SUITE.generate_signature_key_pair().private_key)
        kp = generate_key_package(SUITE, BasicCredential(b"member-%d" % i), sk, now=NOW)
        others.append(Add(kp.key_package))
    group = Group.create(
        SUITE,
        os.urandom(32),
        creator.key_package.leaf_node,
        creator.encryption_private_key,
        creator.signature_private_key,
        config=CONFIG,
    )
    group = group.merge_pending_commit(group.commit(others, now=NOW).pending)
    first = GroupState(group.group_id, group.epoch, group.public.to_bytes(), group.group_info())
    previous = group.commit([], now=NOW)
    STATES.clear()
    stored = judge_commit(first, public(previous.commit), previous.group_info, device).state
    warm = STATES.load(stored.state)
    group = group.merge_pending_commit(previous.pending)
    out = group.commit([], now=NOW)
    return stored, public(out.commit), out.group_info, device, warm


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return (time.perf_counter() - wall) * 1000, (time.process_time() - cpu) * 1000


def floor_step(sizes: tuple[int, int, int]) -> Callable[[], None]:
    key = ed25519.Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes_raw()
    signed = [(m, key.sign(m)) for m in (os.urandom(size) for size in sizes)]

    def run() -> None:
        for message, signature in signed:
            ed25519.Ed25519PublicKey.from_public_bytes(public).verify(signature, message)

    return run


def bench(n: int, runs: int) -> dict[str, float]:
    stored, body, group_info, device, warm = build(n)
    commit = body.content.content
    assert isinstance(commit, Commit) and commit.path is not None
    sizes = (len(encode(body)), len(encode(commit.path.leaf_node)), len(group_info))
    floor = floor_step(sizes)
    keys = ("cold_wall", "cold_cpu", "wall", "cpu", "fwall", "fcpu")
    results: dict[str, list[float]] = {k: [] for k in keys}
    for _ in range(runs):
        STATES.clear()  # cold: the state is decoded from its stored bytes
        cold_wall, cold_cpu = timed(lambda: judge_commit(stored, body, group_info, device))
        STATES.remember(stored.state, warm)  # warm: as validated by this process
        wall, cpu = timed(lambda: judge_commit(stored, body, group_info, device))
        fwall, fcpu = timed(floor)
        for k, v in zip(results, (cold_wall, cold_cpu, wall, cpu, fwall, fcpu), strict=True):
            results[k].append(v)
    return {k: statistics.median(v) for k, v in results.items()} | {
        "state_kib": len(stored.state) / 1024
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(
        "| N | cold | cold CPU | warm | warm CPU | floor | floor CPU "
        "| ratio cold (CPU) | ratio warm (CPU) | state |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in args.sizes:
        r = bench(n, args.runs)
        print(
            f"| {n:,} | {r['cold_wall']:.2f} | {r['cold_cpu']:.2f} | {r['wall']:.2f} | "
            f"{r['cpu']:.2f} | {r['fwall']:.3f} | {r['fcpu']:.3f} | "
            f"{r['cold_cpu'] / r['fcpu']:.0f}x | {r['cpu'] / r['fcpu']:.0f}x | "
            f"{r['state_kib']:.0f} KiB |",
            flush=True,
        )


if __name__ == "__main__":
    main()
