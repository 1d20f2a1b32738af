"""The cost of post-quantum conversations: the hybrid suite against the classic one, same run.

Suites: ``MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519`` (1, classic) and
``MLS_128_MLKEM768X25519_AES128GCM_SHA256_Ed25519`` (0xF001, X-Wing, the default of new
conversations). For each N (default 2, 128, 1024), each suite and each of ``--runs`` runs, in
one process, interleaving the suites so that both see the same machine load:

* sizes (bytes on the wire, as ``MLSMessage``): one KeyPackage; the Welcome that adds one
  member to a group of N-1 (ratchet tree out of band); a self-update commit (an empty commit
  with a path, PrivateMessage) in a long-lived group of N, where every member has committed
  once, so the path is encrypted to about log2 N resolutions ("full tree", the steady state);
  and the same commit right after the group was built by one Add-only commit ("fresh": every
  parent node blank, so the path is encrypted to all N-1 others, the worst case);
* times (median ms): ``join`` (the added member processes the Welcome: decrypts it, validates
  the tree), ``commit`` (the self-update, made and merged) and ``process`` (another member
  processes and merges it), on the full tree; and ``commit`` / ``process`` on the fresh tree.
  Times are process CPU time (median of up to 7 repetitions per run, then median over runs):
  the machine these numbers come from is shared with other jobs, which wall time would show.

The full tree is built as `bench/mls_bench.py` builds it (`full_tree`, `creator_on`).

    .venv/bin/python bench/pq_bench.py                                   # Markdown table
    .venv/bin/python bench/pq_bench.py --sizes 2,128 --runs 1 --json
    .venv/bin/python bench/pq_bench.py --update-doc docs/benchmarks.md   # (re)write the section
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from _report import machine, update_doc
from mls_bench import NOW, creator_on, full_tree, key_packages

from doorless.codec import encode
from doorless.crypto import CLASSIC_SUITE, HYBRID_SUITE, CipherSuite, cipher_suite
from doorless.mls.framing import MLSMessage
from doorless.mls.group import Group, GroupConfig, KeyPackageBundle
from doorless.mls.proposals import Add

SECTION = "## Post-quantum suite cost"
SUITES = (CLASSIC_SUITE, HYBRID_SUITE)
SHORT = {CLASSIC_SUITE: "classic", HYBRID_SUITE: "hybrid"}
TIMES = ("join", "commit", "process", "commit_fresh", "process_fresh")
SIZES = ("key_package", "welcome", "commit", "commit_fresh")
CONFIG = GroupConfig(ratchet_tree_in_welcome=False)

T = TypeVar("T")


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


REPEATS = 7  # at most this many repetitions of a step per run ...
REPEAT_BELOW = 1.0  # ... while the repetitions so far took less than this many seconds


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    """The step's result and its median process CPU time in ms over a few repetitions (the
    engine is functional: a step on the same state can be repeated). CPU time, not wall time:
    on a machine shared with other jobs, wall time mostly measures their load."""
    times: list[float] = []
    start = time.perf_counter()
    while True:
        t0 = time.process_time()
        result = fn()
        times.append(time.process_time() - t0)
        if len(times) >= REPEATS or time.perf_counter() - start >= REPEAT_BELOW:
            return result, statistics.median(times) * 1000


def commit_and_process(g: Group, j: Group) -> tuple[int, float, float]:
    """A self-update by ``g``, processed by ``j``: (commit bytes, commit ms, process ms)."""
    (out, g2), commit_ms = timed(
        lambda: (lambda o: (o, g.merge_pending_commit(o.pending)))(g.commit(now=NOW))
    )
    j2, process_ms = timed(lambda: j.merge_staged_commit(j.process(out.commit, now=NOW)))  # type: ignore[arg-type]
    assert j2.epoch_authenticator == g2.epoch_authenticator
    return len(out.commit), commit_ms, process_ms


def full_tree_run(
    suite: CipherSuite, bundles: Sequence[KeyPackageBundle], prepared: Any
) -> dict[str, float]:
    gid = b"bench pq full"
    tree, keys = prepared
    creator = creator_on(suite, tree, keys, bundles[0], gid, CONFIG)
    joiner = bundles[1]
    add = creator.commit([Add(joiner.key_package)], now=NOW)
    g = creator.merge_pending_commit(add.pending)
    assert add.welcome is not None
    welcome, tree_bytes = add.welcome, g.tree.encode()
    j, join_ms = timed(
        lambda: Group.join_from_welcome(
            welcome, joiner, ratchet_tree=tree_bytes, now=NOW, config=CONFIG
        )
    )
    size, commit_ms, process_ms = commit_and_process(g, j)
    return {
        "welcome_bytes": len(welcome),
        "commit_bytes": size,
        "join_ms": join_ms,
        "commit_ms": commit_ms,
        "process_ms": process_ms,
    }


def fresh_run(suite: CipherSuite, bundles: Sequence[KeyPackageBundle]) -> dict[str, float]:
    b0, b1 = bundles[0], bundles[1]
    creator = Group.create(
        suite,
        b"bench pq fresh",
        b0.key_package.leaf_node,
        b0.encryption_private_key,
        b0.signature_private_key,
        config=CONFIG,
    )
    out = creator.commit([Add(b.key_package) for b in bundles[1:]], force_path=False, now=NOW)
    g = creator.merge_pending_commit(out.pending)
    assert out.welcome is not None
    j = Group.join_from_welcome(
        out.welcome, b1, ratchet_tree=g.tree.encode(), now=NOW, config=CONFIG
    )
    size, commit_ms, process_ms = commit_and_process(g, j)
    return {
        "commit_fresh_bytes": size,
        "commit_fresh_ms": commit_ms,
        "process_fresh_ms": process_ms,
    }


def measure(sizes: Sequence[int], runs: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for n in sizes:
        prepared: dict[int, tuple[list[KeyPackageBundle], Any]] = {}
        for sid in SUITES:
            suite = cipher_suite(sid)
            t0 = time.perf_counter()
            bundles = key_packages(suite, n)
            prepared[sid] = (bundles, full_tree(suite, bundles, b"bench pq full"))
            log(
                f"N={n} {SHORT[sid]}: KeyPackages and full tree in {time.perf_counter() - t0:.1f} s"
            )
        samples: dict[int, list[dict[str, float]]] = {sid: [] for sid in SUITES}
        for run in range(runs):
            for sid in SUITES:  # interleaved: both suites under the same load
                suite = cipher_suite(sid)
                bundles, tree = prepared[sid]
                sample = full_tree_run(suite, bundles, tree) | fresh_run(suite, bundles)
                sample["key_package_bytes"] = len(encode(MLSMessage(bundles[0].key_package)))
                samples[sid].append(sample)
            log(f"N={n}: run {run + 1}/{runs}")
        for sid in SUITES:
            keys = samples[sid][0].keys()
            med = {k: statistics.median(s[k] for s in samples[sid]) for k in keys}
            rows.append(
                {"n": n, "suite": cipher_suite(sid).id.name, "short": SHORT[sid], "runs": runs}
                | {k: round(v, 3) for k, v in med.items()}
            )
    return rows


def _kib(b: float) -> str:
    return f"{b:,.0f} B" if b < 10_000 else f"{b / 1024:,.1f} KiB"


def markdown(rows: Sequence[dict[str, Any]], env: dict[str, Any], runs: int) -> str:
    lines = [
        SECTION,
        "",
        "Written by `bench/pq_bench.py` (see its docstring for what each column is). "
        f"{env['date']}, {env['cpu']} ({env['nproc']} cores), Python {env['python']}, "
        f"pyca/cryptography {env['cryptography']}; load average {env['load']:.1f} at the start "
        "(the machine was shared with other jobs: compare the two suites of one row group, "
        f"measured interleaved in the same run, not absolute times); medians of {runs} run(s).",
        "",
        "Sizes (bytes on the wire):",
        "",
        "| N | suite | KeyPackage | Welcome (1 add) | commit, full tree | commit, fresh tree |",
        "|--:|-------|-----------:|----------------:|------------------:|-------------------:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['n']} | {r['short']} | {_kib(r['key_package_bytes'])} | "
            f"{_kib(r['welcome_bytes'])} | {_kib(r['commit_bytes'])} | "
            f"{_kib(r['commit_fresh_bytes'])} |"
        )
    lines += [
        "",
        "Times (CPU ms; join = processing the Welcome, full tree; commit/process = a self-update):",
        "",
        "| N | suite | join | commit | process | commit, fresh tree | process, fresh tree |",
        "|--:|-------|-----:|-------:|--------:|-------------------:|--------------------:|",
    ]
    by = {(r["n"], r["short"]): r for r in rows}
    for r in rows:
        lines.append(
            f"| {r['n']} | {r['short']} | {r['join_ms']:.2f} | {r['commit_ms']:.2f} | "
            f"{r['process_ms']:.2f} | {r['commit_fresh_ms']:.2f} | {r['process_fresh_ms']:.2f} |"
        )
    lines += ["", "Hybrid / classic, same run:", ""]
    lines += [
        "| N | KeyPackage | commit (full) | join | commit | process |",
        "|--:|--:|--:|--:|--:|--:|",
    ]
    for n in sorted({r["n"] for r in rows}):
        h, c = by[(n, "hybrid")], by[(n, "classic")]
        lines.append(
            f"| {n} | {h['key_package_bytes'] / c['key_package_bytes']:.1f}x | "
            f"{h['commit_bytes'] / c['commit_bytes']:.1f}x | {h['join_ms'] / c['join_ms']:.2f}x | "
            f"{h['commit_ms'] / c['commit_ms']:.2f}x | {h['process_ms'] / c['process_ms']:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--sizes", default="2,128,1024")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", action="store_true", help="JSON lines instead of Markdown")
    ap.add_argument("--update-doc", type=Path, help="rewrite this section of the file")
    args = ap.parse_args(argv)
    env = machine()
    rows = measure([int(s) for s in args.sizes.split(",")], args.runs)
    if args.json:
        for r in rows:
            print(json.dumps(r))
        return
    text = markdown(rows, env, args.runs)
    if args.update_doc is not None:
        update_doc(args.update_doc, SECTION, text)
    print(text)


if __name__ == "__main__":
    main()
