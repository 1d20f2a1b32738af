"""SFrame per-frame cost against a bare AES-GCM call of the same frame (pyca), one run.

For each suite and frame size, each round times ``--frames`` calls of: `SFrameSender.encrypt`
(header, nonce, AEAD, counter), `SFrameReceiver.decrypt` (header parse, KID lookup, replay
window, AEAD open), and pyca's ``AESGCM.encrypt``/``decrypt`` of a frame of the same size with
a fixed key, nonce and no AAD (the floor: what any AES-GCM frame encryption costs). The ratio
of a round is SFrame / bare, both measured back to back in the same round; the table gives the
median over rounds, in wall-clock and in process CPU time. Target (issue #13): within 1.5x for
audio-sized frames, against the bare call.

The sender and receiver run the C per-frame path (`_sframe_native.c`, on OpenSSL) when it is
built; the same frames also go through the pure-Python reference path (*Python path*
columns), in the same round.

A second floor, *+AAD*, is the same pyca call with an SFrame header of the frames' size as
AAD, plus, for decryption, the two slices that split a frame into header and ciphertext:
work that every SFrame implementation on pyca does per frame, shown so that the part of the
ratio left to the SFrame code itself can be read off.

    PYTHONPATH=src python bench/sframe_bench.py                  # print the table
    PYTHONPATH=src python bench/sframe_bench.py --update-doc docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from _report import machine, update_doc
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from doorless import sframe

SECTION = "## SFrame per frame (issue #13)"
SIZES = {"audio": 100, "video": 1200}
SUITES = [
    sframe.SFrameSuite.AES_128_GCM_SHA256_128,
    sframe.SFrameSuite.AES_128_CTR_HMAC_SHA256_80,
    sframe.SFrameSuite.AES_128_CTR_HMAC_SHA256_32,
]
TARGET = 1.5


def _time(fn: Callable[[], None]) -> tuple[float, float]:
    """(wall, cpu) seconds of one call of ``fn``."""
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def _encrypting(sender: sframe.SFrameSender, frames: int, payload: bytes) -> Callable[[], None]:
    def run() -> None:
        # Results are dropped at once, as the bare loop's are (no allocation growth).
        for _ in range(frames):
            sender.encrypt(payload, b"")

    return run


def _decrypting(receiver: sframe.SFrameReceiver, encrypted: list[bytes]) -> Callable[[], None]:
    def run() -> None:
        for frame in encrypted:
            receiver.decrypt(frame, b"")

    return run


@contextlib.contextmanager
def _python_path() -> Iterator[None]:
    """Senders and receivers made inside use the pure-Python path."""
    saved, sframe.native = sframe.native, None
    try:
        yield
    finally:
        sframe.native = saved


def measure(suite: sframe.SFrameSuite, size: int, frames: int, rounds: int) -> dict[str, Any]:
    base = sframe.BaseKey(bytes(range(16)))
    payload = os.urandom(size)
    gcm = AESGCM(bytes(16))
    nonce = bytes(12)
    bare_ct = gcm.encrypt(nonce, payload, None)
    # The +AAD floor: a header as long as the timed frames' (KID 3, a two-byte CTR).
    header = sframe.encode_header(3, 1 << 12)
    framed = header + gcm.encrypt(nonce, payload, header)
    cut = len(header)
    sender = sframe.SFrameSender(suite, 3, base)
    sender.reserve(frames * rounds)
    with _python_path():
        py_sender = sframe.SFrameSender(suite, 3, base, next_ctr=1 << 50)
    py_sender.reserve(frames * rounds)
    per: dict[str, list[float]] = {
        k: []
        for k in ("enc", "dec", "bare_enc", "bare_dec", "aad_enc", "aad_dec", "py_enc", "py_dec")
    }
    ratios: dict[str, list[float]] = {k: [] for k in ("enc", "dec", "enc_cpu", "dec_cpu")}
    for _ in range(rounds):
        receiver = sframe.SFrameReceiver(suite)
        receiver.add_key(3, base)
        with _python_path():
            py_receiver = sframe.SFrameReceiver(suite)
            py_receiver.add_key(3, base)
        # Frames for the receiver, made untimed by a second sender of the same key and KID
        # (its counters start where the timed sender's cannot reach).
        feeder = sframe.SFrameSender(suite, 3, base, next_ctr=1 << 40)
        feeder.reserve(frames)
        encrypted = [feeder.encrypt(payload, b"") for _ in range(frames)]

        enc, py_enc = _encrypting(sender, frames, payload), _encrypting(py_sender, frames, payload)
        dec, py_dec = _decrypting(receiver, encrypted), _decrypting(py_receiver, encrypted)

        def bare_enc() -> None:
            for _ in range(frames):
                gcm.encrypt(nonce, payload, None)

        def bare_dec() -> None:
            for _ in range(frames):
                gcm.decrypt(nonce, bare_ct, None)

        def aad_enc() -> None:
            for _ in range(frames):
                header + gcm.encrypt(nonce, payload, header)

        def aad_dec() -> None:
            for _ in range(frames):
                gcm.decrypt(nonce, framed[cut:], framed[:cut])

        be_w, be_c = _time(bare_enc)
        e_w, e_c = _time(enc)
        ae_w, _ = _time(aad_enc)
        bd_w, bd_c = _time(bare_dec)
        d_w, d_c = _time(dec)
        ad_w, _ = _time(aad_dec)
        per["py_enc"].append(_time(py_enc)[0] / frames)
        per["py_dec"].append(_time(py_dec)[0] / frames)
        per["aad_enc"].append(ae_w / frames)
        per["aad_dec"].append(ad_w / frames)
        per["enc"].append(e_w / frames)
        per["dec"].append(d_w / frames)
        per["bare_enc"].append(be_w / frames)
        per["bare_dec"].append(bd_w / frames)
        ratios["enc"].append(e_w / be_w)
        ratios["dec"].append(d_w / bd_w)
        ratios["enc_cpu"].append(e_c / be_c if be_c > 0 else float("nan"))
        ratios["dec_cpu"].append(d_c / bd_c if bd_c > 0 else float("nan"))
    row: dict[str, Any] = {
        "suite": suite.name,
        "size": size,
        "native": sframe.native is not None,
    }
    row.update({f"{k}_us": statistics.median(v) * 1e6 for k, v in per.items()})
    row.update({f"ratio_{k}": statistics.median(v) for k, v in ratios.items()})
    return row


def markdown(m: dict[str, Any], rows: list[dict[str, Any]], frames: int, rounds: int) -> str:
    lines = [
        SECTION,
        "",
        f"`PYTHONPATH=src python bench/sframe_bench.py --update-doc docs/benchmarks.md` — "
        f"{m['date']}, {m['nproc']} × {m['cpu']} (load average {m['load']:.1f} at the start), "
        f"Python {m['python']}, cryptography {m['cryptography']}. Medians over {rounds} rounds "
        f"of {frames} frames. *bare* is pyca's `AESGCM.encrypt`/`decrypt` (AES-128-GCM) of a "
        "frame of the same size, measured in the same round; SFrame adds the header, the nonce, "
        "the counter (sender) and the header parse, KID lookup and replay window (receiver). "
        "*+AAD* is the bare call with a header as AAD (and, to decrypt, the slices splitting "
        "header from ciphertext): work any SFrame on pyca does. Ratios are SFrame / bare per "
        "round (wall / process CPU). Microseconds per frame. *path*: C is the per-frame path "
        "in C (`_sframe_native.c`); *Python path* columns time the pure-Python "
        "reference on the same frames in the same round.",
        "",
        "| suite | frame B | path | encrypt µs | bare enc µs | +AAD enc µs | ratio enc "
        "| ratio enc (CPU) | decrypt µs | bare dec µs | +AAD dec µs | ratio dec "
        "| ratio dec (CPU) | enc µs, Python path | dec µs, Python path |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['suite']} | {r['size']:,} | {'C' if r['native'] else 'Python'} "
            f"| {r['enc_us']:.2f} | {r['bare_enc_us']:.2f} "
            f"| {r['aad_enc_us']:.2f} | {r['ratio_enc']:.2f} | {r['ratio_enc_cpu']:.2f} "
            f"| {r['dec_us']:.2f} | {r['bare_dec_us']:.2f} | {r['aad_dec_us']:.2f} "
            f"| {r['ratio_dec']:.2f} | {r['ratio_dec_cpu']:.2f} "
            f"| {r['py_enc_us']:.2f} | {r['py_dec_us']:.2f} |"
        )
    gcm_audio = [
        r for r in rows if r["suite"] == "AES_128_GCM_SHA256_128" and r["size"] == SIZES["audio"]
    ]
    if gcm_audio:
        r = gcm_audio[0]
        worst = max(r["ratio_enc"], r["ratio_dec"])
        verdict = "met" if worst <= TARGET else "**missed**"
        lines += [
            "",
            f"Target: {verdict} — AES_128_GCM_SHA256_128, {SIZES['audio']}-byte frames within "
            f"{TARGET}x of bare AES-GCM: encrypt {r['ratio_enc']:.2f}x, decrypt "
            f"{r['ratio_dec']:.2f}x (wall).",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--frames", type=int, default=2000, help="frames per round")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--update-doc", type=Path, help="write the Markdown section into a file")
    args = parser.parse_args(argv)
    m = machine()
    rows = [
        measure(suite, size, args.frames, args.rounds)
        for suite in SUITES
        for size in SIZES.values()
    ]
    section = markdown(m, rows, args.frames, args.rounds)
    if args.update_doc:
        update_doc(args.update_doc, SECTION, section)
    print(section, end="")


if __name__ == "__main__":
    main()
