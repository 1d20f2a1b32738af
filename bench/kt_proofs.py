"""Key-transparency proof sizes and verification times as the log grows.

For each size N (default 10^3, 10^4, 10^5, 10^6) the benchmark grows, in one run:

* an RFC 9162 log of N `LogEntry` leaves (`doorless.kt.merkle.MerkleLog`), and
* a prefix tree of N label-version entries (`doorless.kt.prefix_tree.PrefixTree`), one of which
  is a label with versions 0..5, so that its greatest-version search is a 6-lookup ladder
  (versions 0, 1, 3, 7, 5, 6).

and measures, over random samples: inclusion proof bytes (a random leaf), consistency proof
bytes (a random earlier size to N), prefix proof bytes (one lookup, and the encoded
`PrefixProof` of the ladder), and median verification times. The primitive floor (one SHA-256
of a 65-byte node, as the trees hash) is measured in the same run.

    python bench/kt_proofs.py            # Markdown table
    python bench/kt_proofs.py --json     # JSON
    python bench/kt_proofs.py --update-doc docs/benchmarks.md   # (re)write its section

Not part of the test suite; 10^6 takes about a minute or two.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from _report import machine, update_doc

from doorless.codec import encode
from doorless.kt.commitment import commit, search_key
from doorless.kt.ladder import prove_greatest_version, verify_greatest_version
from doorless.kt.log_entry import LogEntry
from doorless.kt.merkle import MerkleLog, verify_consistency, verify_inclusion
from doorless.kt.prefix_tree import PrefixLookup, PrefixTree, verify_prefix_proof

SECTION = "## Key transparency proofs"
TARGET = b"u:bench-target"
TARGET_VERSION = 5
PASSES = 5


def median_us(fn: Callable[..., object], calls: Sequence[tuple[Any, ...]], passes: int) -> float:
    """Median wall time of one ``fn(*args)`` over ``passes`` passes through ``calls``, in µs."""
    times = []
    for _ in range(passes):
        for args in calls:
            t0 = time.perf_counter_ns()
            fn(*args)
            times.append(time.perf_counter_ns() - t0)
    return statistics.median(times) / 1000


def opening(v: int) -> bytes:
    return hashlib.sha256(b"bench opening %d" % v).digest()[:16]


def value(v: int) -> bytes:
    return b"device list version %d" % v


def run(sizes: list[int], samples: int, seed: int) -> dict[str, Any]:
    rnd = random.Random(seed)
    node = rnd.randbytes(65)
    floor_us = median_us(hashlib.sha256, [(node,)] * 2001, 1)

    log = MerkleLog()
    tree = PrefixTree().insert_many(
        (search_key(TARGET, v), commit(opening(v), TARGET, v, value(v)))
        for v in range(TARGET_VERSION + 1)
    )
    rows: list[dict[str, Any]] = []
    for n in sorted(sizes):
        # Grow the log to n entries, one LogEntry per step, each naming some prefix root.
        t0 = time.perf_counter()
        for i in range(log.size, n):
            log.append_leaf_hash(LogEntry(1_700_000_000_000 + i, rnd.randbytes(32)).leaf_hash())
        log_build_s = time.perf_counter() - t0
        # Grow the prefix tree to n entries (one batch; the old tree stays valid).
        t0 = time.perf_counter()
        tree = tree.insert_many(
            (search_key(b"u:%d" % i, 0), rnd.randbytes(32)) for i in range(len(tree), n)
        )
        tree_build_s = time.perf_counter() - t0
        root = log.root()

        incl: list[tuple[int, bytes, list[bytes]]] = []
        for _ in range(samples):
            i = rnd.randrange(n)
            incl.append((i, log.leaf_hash(i), log.inclusion_proof(i)))
        cons: list[tuple[int, bytes, list[bytes]]] = []
        for _ in range(samples):
            m = rnd.randrange(1, n)
            cons.append((m, log.root(m), log.consistency_proof(m)))
        lookups = []
        for _ in range(samples):
            key = search_key(b"u:%d" % rnd.randrange(n), 0)
            lookups.append((key, tree.get(key), tree.prove([key])))
        response = prove_greatest_version(
            tree, TARGET, TARGET_VERSION, opening(TARGET_VERSION), value(TARGET_VERSION)
        )
        prefix_root = tree.root

        rows.append(
            {
                "entries": n,
                "inclusion_bytes": statistics.median(32 * len(p) for _, _, p in incl),
                "consistency_bytes": statistics.median(32 * len(p) for _, _, p in cons),
                "prefix_lookup_bytes": statistics.median(len(encode(p)) for _, _, p in lookups),
                "ladder_bytes": len(encode(response.prefix_proof)),
                "search_response_bytes": len(encode(response)),
                "verify_inclusion_us": median_us(
                    verify_inclusion, [(leaf, i, n, p, root) for i, leaf, p in incl], PASSES
                ),
                "verify_consistency_us": median_us(
                    verify_consistency, [(m, n, old, root, p) for m, old, p in cons], PASSES
                ),
                "verify_lookup_us": median_us(
                    verify_prefix_proof,
                    [(prefix_root, [PrefixLookup(k, c)], p) for k, c, p in lookups],
                    PASSES,
                ),
                "verify_ladder_us": median_us(
                    verify_greatest_version, [(prefix_root, TARGET, response)] * samples, PASSES
                ),
                "log_build_s": log_build_s,
                "tree_build_s": tree_build_s,
            }
        )
        print(f"  {n} entries done", file=sys.stderr)
    return {"machine": machine(), "sha256_65B_us": floor_us, "samples": samples, "rows": rows}


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        SECTION,
        "",
        f"`python bench/kt_proofs.py` — {m['date']}, {m['nproc']} × {m['cpu']}, "
        f"Python {m['python']}, cryptography {m['cryptography']}. "
        f"Medians over {PASSES} passes of {result['samples']} random samples per size. "
        f"Primitive floor: SHA-256 of a 65-byte node = {result['sha256_65B_us']:.2f} µs.",
        "",
        "Log = RFC 9162 tree of `LogEntry` leaves; prefix tree = one entry per label-version. "
        "*Ladder* = the `PrefixProof` of a greatest-version search for a label at version 5 "
        "(6 lookups: versions 0, 1, 3, 7, 5, 6); its verification includes search keys and "
        "the target commitment. Proof bytes are wire bytes (32 per log hash).",
        "",
        "| entries | inclusion proof B | consistency proof B | prefix proof B (1 lookup) "
        "| prefix proof B (ladder) | verify inclusion µs | verify consistency µs "
        "| verify lookup µs | verify ladder µs | build log s | build prefix tree s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['entries']:,} | {r['inclusion_bytes']:.0f} | {r['consistency_bytes']:.0f} "
            f"| {r['prefix_lookup_bytes']:.0f} | {r['ladder_bytes']} "
            f"| {r['verify_inclusion_us']:.1f} | {r['verify_consistency_us']:.1f} "
            f"| {r['verify_lookup_us']:.1f} | {r['verify_ladder_us']:.1f} "
            f"| {r['log_build_s']:.2f} | {r['tree_build_s']:.2f} |"
        )
    lines.append("")
    lines.append(
        f"A whole greatest-version `SearchResponse` (ladder, opening, a "
        f"{len(value(TARGET_VERSION))}-byte value) at {result['rows'][-1]['entries']:,} entries: "
        f"{result['rows'][-1]['search_response_bytes']} bytes."
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000,1000000")
    parser.add_argument("--samples", type=int, default=201)
    parser.add_argument("--seed", type=int, default=9162)
    parser.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    parser.add_argument("--update-doc", type=Path, help="write the Markdown section into a file")
    args = parser.parse_args(argv)
    result = run([int(s) for s in args.sizes.split(",")], args.samples, args.seed)
    section = markdown(result)
    if args.update_doc:
        update_doc(args.update_doc, SECTION, section)
    print(json.dumps(result, indent=2) if args.json else section, end="" if not args.json else "\n")


if __name__ == "__main__":
    main()
