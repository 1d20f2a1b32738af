"""Calls with the real programs: ``doorless server`` (with its QUIC relay) and ``doorless call
start`` / ``call answer`` processes, from WAV and video files; what each side writes matches
what the other sent (the similarity measures of `support.media`). And a member removed from
the conversation mid-call (library clients against the server process) stops receiving
within the grace window while the others go on."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from doorless.client import Client
from doorless.client.calls.keys import GRACE_SECONDS
from doorless.client.calls.runner import MediaRunner
from doorless.client.events import CallState
from support.media import (
    AUDIO_THRESHOLD,
    VIDEO_PSNR_THRESHOLD,
    audio_similarity,
    moving_video,
    pcm_frames,
    psnr,
    read_video_luma,
    read_wav,
    speech_like,
    write_wav,
)
from support.servers import free_port

from .helpers import PASSPHRASE, ServerProcess, options, run_cli
from .test_cli_process import spawn

SECONDS = "2.5"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    s = ServerProcess(
        tmp_path / "server", tmp_path / "server.log", args=("--relay-port", str(free_port()))
    )
    s.start()
    try:
        yield s
    finally:
        s.stop()


def accounts(server: ServerProcess, root: Path, *names: str) -> dict[str, Path]:
    profiles = {}
    for name in names:
        profiles[name] = root / name
        r = run_cli(profiles[name], "account", "create", "--server", server.url, name)
        assert r.returncode == 0, r.stderr
    return profiles


def finish(*processes: subprocess.Popen[str], timeout: float = 180) -> list[dict[str, Any]]:
    """Each call process's final JSON line, once all have ended; if one failed, what every
    side wrote to stderr (a ring one side missed shows on the other side)."""
    outputs = [p.communicate(timeout=timeout) for p in processes]
    failed = [p.returncode for p in processes if p.returncode != 0]
    assert not failed, "\n---\n".join(err for _, err in outputs)
    return [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]


def stats_of(result: dict[str, Any], user: str) -> dict[str, Any]:
    (found,) = [s for s in result["stats"] if s["user"] == user]
    return found


def test_two_party_call_from_wav_files(server: ServerProcess, tmp_path: Path) -> None:
    p = accounts(server, tmp_path, "alice", "bob")
    voice = {n: speech_like(n, 2.0) for n in ("alice", "bob")}
    wav_in = {n: write_wav(tmp_path / f"{n}.wav", v) for n, v in voice.items()}
    heard = {n: tmp_path / f"{n}-heard.wav" for n in voice}
    common = ("--seconds", SECONDS, "--transport", "quic")
    bob = spawn(
        p["bob"], "call", "answer", "--wait", "60", "--audio-in", str(wav_in["bob"]),
        "--audio-out", str(heard["bob"]), *common,
    )  # fmt: skip
    alice = spawn(
        p["alice"], "call", "start", "@bob", "--ring", "60", "--audio-in", str(wav_in["alice"]),
        "--audio-out", str(heard["alice"]), *common,
    )  # fmt: skip
    a, b = finish(alice, bob)
    assert a["call_id"] == b["call_id"] and a["privacy_code"] == b["privacy_code"]
    assert a["privacy_code"] and len(a["privacy_code"].replace(" ", "")) == 30
    assert stats_of(a, "bob")["frames_received"] > 50
    assert stats_of(b, "alice")["frames_received"] > 50
    assert stats_of(b, "alice")["failed_to_decrypt"] == 0
    assert stats_of(b, "alice")["latency_p95_ms"] is not None
    bob_heard, _ = read_wav(heard["bob"])
    alice_heard, _ = read_wav(heard["alice"])
    assert audio_similarity(voice["alice"], bob_heard) > AUDIO_THRESHOLD
    assert audio_similarity(voice["bob"], alice_heard) > AUDIO_THRESHOLD
    assert audio_similarity(voice["alice"], alice_heard) < AUDIO_THRESHOLD  # not an echo


def late_join_similarity(reference: Any, received: Any) -> float:
    """`audio_similarity` for a receiver that may have joined up to 0.6 s after the sender
    started (the caller starts sending when the first callee is on the relay): the best
    over the reference's possible starts."""
    return max(audio_similarity(reference[k:], received) for k in range(0, 28_800, 960))


def test_three_party_group_call_with_video(server: ServerProcess, tmp_path: Path) -> None:
    p = accounts(server, tmp_path, "alice", "bob", "carol")
    r = run_cli(p["alice"], "group", "create", "team", "-m", "@bob", "-m", "@carol")
    assert r.returncode == 0, r.stderr
    voice = {"alice": speech_like("alice", 2.0)}  # alice talks and shows; the others listen
    wav_in = {"alice": write_wav(tmp_path / "alice.wav", voice["alice"])}
    clip = moving_video(tmp_path / "alice.y4m", frames=30, width=320, height=240)
    heard = {n: tmp_path / f"{n}-heard.wav" for n in ("alice", "bob", "carol")}
    seen = {n: tmp_path / f"{n}-seen.y4m" for n in ("bob", "carol")}
    callees = []
    for n in ("bob", "carol"):
        args = ("--audio-out", str(heard[n]), "--video-out", str(seen[n]), "--seconds", SECONDS)
        callees.append(spawn(p[n], "call", "answer", "--wait", "60", *args))
    alice = spawn(
        p["alice"], "call", "start", "--group", "team", "--audio-in", str(wav_in["alice"]),
        "--video-in", str(clip), "--seconds", SECONDS, "--peers", "2",
    )  # fmt: skip
    a, *results = finish(alice, *callees)
    assert {r["privacy_code"] for r in results} == {a["privacy_code"]}
    for name, result in zip(("bob", "carol"), results, strict=True):
        assert stats_of(result, "alice")["frames_received"] > 50
        got, _ = read_wav(heard[name])
        assert late_join_similarity(voice["alice"], got) > AUDIO_THRESHOLD, name
        frames = read_video_luma(seen[name])
        assert len(frames) >= 15
        reference = read_video_luma(clip)
        # The callee may have joined after the first frames: compare from the best offset.
        best = max(
            sum(psnr(x, y) for x, y in zip(reference[k:], frames, strict=False))
            / max(1, min(len(frames), len(reference) - k))
            for k in range(0, 10)
        )
        assert best > VIDEO_PSNR_THRESHOLD


async def _removed_mid_call(server: ServerProcess, root: Path) -> None:
    names = ("alice", "bob", "carol")
    clients = {
        n: await Client.create_account(
            root / n, PASSPHRASE, server_url=server.url, username=n, options=options(push=True)
        )
        for n in names
    }
    alice, bob, carol = (clients[n] for n in names)
    chat = await alice.create_group("team", ["bob", "carol"])
    for c in (bob, carol):
        await c.sync()
        await c.start()
    await alice.start()
    call = await alice.calls.start(chat.id)
    for c in (bob, carol):
        await c.calls.answer((await c.calls.incoming(timeout=20)).call_id)
    await alice.calls.wait(call.call_id, CallState.ACTIVE, timeout=20)
    engines = {n: await clients[n].calls.connect(call.call_id, transport="quic") for n in names}
    tracks: dict[str, list[bytes]] = {n: [] for n in names}
    runners = {
        n: MediaRunner(
            engines[n],
            track_out=lambda ref, pcm, n=n: tracks[n].append(pcm) if ref.user == "alice" else None,
            playout_delay=0.3,
            max_playout_delay=1.0,
        )
        for n in names
    }
    carol_times: list[float] = []
    carol_open = engines["carol"].open

    async def carol_opens(data: bytes) -> Any:
        got = await carol_open(data)
        if got is not None:
            carol_times.append(time.monotonic())
        return got

    engines["carol"].open = carol_opens  # type: ignore[method-assign]
    background = [asyncio.create_task(r.receive()) for r in runners.values()]
    background += [asyncio.create_task(r.play()) for r in runners.values()]
    voice = speech_like("alice", 3.0)
    sending = asyncio.create_task(runners["alice"].send_audio(pcm_frames(voice)))
    await asyncio.sleep(1.0)
    await alice.remove_members(chat.id, ["carol"])
    removed_at = time.monotonic()
    await sending
    await asyncio.sleep(1.0)
    for task in background:
        task.cancel()
    await asyncio.gather(*background, return_exceptions=True)
    for r in runners.values():
        r.drain()
    # Carol heard the first second, and nothing later than the grace window after the removal.
    assert carol_times and carol_times[0] < removed_at
    assert max(carol_times) <= removed_at + GRACE_SECONDS + 0.5
    (bob_from_alice,) = [p for p in engines["bob"].stats() if p.user == "alice"]
    (carol_from_alice,) = [p for p in engines["carol"].stats() if p.user == "alice"]
    assert carol_from_alice.frames_received < bob_from_alice.frames_received - 50
    # Bob heard all of it, across the epoch change.
    assert engines["bob"].keys.epoch == engines["alice"].keys.epoch
    assert engines["bob"].privacy_code == engines["alice"].privacy_code
    assert bob_from_alice.frames_received >= 140
    got = np.frombuffer(b"".join(tracks["bob"]), dtype="<i2")
    assert audio_similarity(voice, got) > AUDIO_THRESHOLD
    for c in clients.values():
        await c.close()


def test_member_removed_mid_call_stops_receiving_within_the_grace_window(
    server: ServerProcess, tmp_path: Path
) -> None:
    asyncio.run(_removed_mid_call(server, tmp_path / "profiles"))
