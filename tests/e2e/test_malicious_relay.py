"""A call through a malicious relay, with the real programs: a server process whose relay
forwards through `malicious_relay.MaliciousForwarder` (the ``doorless server`` command itself,
run by a test launcher that gives its app that forwarder) and two ``doorless call`` processes
from WAV files, both talking.

One call covers both cases, one per direction (a call costs most of the time here):

* alice -> bob, ``meddle``: tampered, reordered, duplicated, replayed and forged-KID frames
  (another member's leaf, a wrong epoch, a leaf nobody has) next to every genuine frame. Bob
  rejects each injection and counts it under its reason, takes every genuine frame once, and
  what he writes matches what alice said.
* bob -> alice, ``lossy``: 5 % of bob's frames dropped at random (seeded). Alice reports the
  loss the relay caused, and what she writes matches what bob said with no hole in it (the
  losses are concealed).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from support.media import (
    AUDIO_THRESHOLD,
    audio_similarity,
    longest_hole_ms,
    read_wav,
    speech_like,
    write_wav,
)
from support.servers import free_port

from . import malicious_relay
from .helpers import ServerProcess, run_cli
from .test_calls import finish, stats_of
from .test_cli_process import spawn

SECONDS = "2.5"
VOICE_SECONDS = 2.0
ONE_FRAME_MS = 20


class MaliciousServer(ServerProcess):
    """The ``doorless server`` command run by `malicious_relay` (PLAN and TALLY: its files)."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        super().__init__(
            root / "server", root / "server.log", args=("--relay-port", str(free_port()))
        )
        self.plan = root / "plan.json"
        self.tally = root / "tally.json"

    def program(self) -> list[str]:
        return [sys.executable, malicious_relay.__file__, str(self.plan), str(self.tally)]

    def tallies(self) -> dict[str, dict[str, int]]:
        result: dict[str, dict[str, int]] = json.loads(self.tally.read_text())
        return result


def account(server: ServerProcess, profile: Path, name: str) -> str:
    """Create the account; its device id."""
    r = run_cli(profile, "account", "create", "--server", server.url, name, json_output=True)
    assert r.returncode == 0, r.stderr
    device_id: str = json.loads(r.stdout.strip().splitlines()[-1])["device_id"]
    return device_id


def failures(result: dict[str, Any]) -> dict[str, int]:
    """A receiver's rejected frames by reason, over every sender it names (a forged KID names
    nobody: its failures are under user ``?``)."""
    total: dict[str, int] = {}
    for s in result["stats"]:
        for kind, n in s["decrypt_failures"].items():
            total[kind] = total.get(kind, 0) + n
    return total


def test_malicious_relay_and_loss_through_the_server_and_call_processes(tmp_path: Path) -> None:
    server = MaliciousServer(tmp_path / "relay")
    server.start()
    try:
        devices = {n: account(server, tmp_path / n, n) for n in ("alice", "bob")}
        server.plan.write_text(json.dumps({devices["alice"]: "meddle", devices["bob"]: "lossy"}))
        voice = {n: speech_like(n, VOICE_SECONDS) for n in devices}
        wav_in = {n: write_wav(tmp_path / f"{n}.wav", v) for n, v in voice.items()}
        heard = {n: tmp_path / f"{n}-heard.wav" for n in devices}
        common = ("--seconds", SECONDS, "--transport", "quic")
        bob = spawn(
            tmp_path / "bob", "call", "answer", "--wait", "60", "--audio-in", str(wav_in["bob"]),
            "--audio-out", str(heard["bob"]), *common,
        )  # fmt: skip
        alice = spawn(
            tmp_path / "alice", "call", "start", "@bob", "--ring", "60", "--audio-in",
            str(wav_in["alice"]), "--audio-out", str(heard["alice"]), *common,
        )  # fmt: skip
        a, b = finish(alice, bob)
        tallies = server.tallies()
    finally:
        server.stop()
    meddled, dropped = tallies[devices["alice"]], tallies[devices["bob"]]

    # alice -> bob: every injection rejected and counted under its reason, nothing else: the
    # tampered copies and the replays under alice (their KID is hers), the forged KIDs under
    # "?" (they name no sender bob has a key for).
    assert meddled["came_in"] >= 100  # 2 s of audio
    assert min(meddled[k] for k in ("tampered", "replayed", "reordered", "forged_epoch")) >= 9
    from_alice = stats_of(b, "alice")
    assert from_alice["decrypt_failures"] == {
        "tampered": meddled["tampered"],
        "replayed": meddled["duplicated"] + meddled["replayed"],
    }
    forged = sum(meddled[f"forged_{k}"] for k in ("member_leaf", "epoch", "unknown_leaf"))
    assert stats_of(b, "?")["decrypt_failures"] == {"unknown_kid": forged}
    assert failures(b) == {**from_alice["decrypt_failures"], "unknown_kid": forged}  # no more
    # ... and every genuine frame taken once, the reordered ones too; the call went on.
    assert from_alice["frames_received"] == meddled["delivered"]
    assert from_alice["frames_lost"] == 0
    bob_heard, _ = read_wav(heard["bob"])
    assert audio_similarity(voice["alice"], bob_heard) > AUDIO_THRESHOLD

    # bob -> alice: the loss the relay caused is what alice reports (a frame dropped first or
    # last is no gap between frames received, RFC 3550: up to 2 fewer), and it is ~5 %: the
    # seed drops 5 of bob's 100 frames, and the 2 frames the ends may hide are 2 points.
    from_bob = stats_of(a, "bob")
    assert from_bob["frames_received"] == dropped["delivered"]
    assert dropped["dropped"] - 2 <= from_bob["frames_lost"] <= dropped["dropped"]
    expected = from_bob["frames_received"] + from_bob["frames_lost"]
    assert abs(from_bob["frames_lost"] / expected - malicious_relay.LOSS) <= 0.025
    assert failures(a) == {}
    # Continuous: the same voice, and no hole (silence with sound right before and after:
    # a lost frame not concealed, in the middle of a syllable; the input has none). The only
    # allowance is what the same machine did to the lossless direction of the same call (a
    # stalled machine starves playout both ways; a loss concealed adds nothing to that).
    alice_heard, _ = read_wav(heard["alice"])
    assert audio_similarity(voice["bob"], alice_heard) > AUDIO_THRESHOLD
    assert longest_hole_ms(alice_heard) <= max(ONE_FRAME_MS, longest_hole_ms(bob_heard))
    # The concealed slots are reported; not always one per lost frame: a jitter buffer that
    # catches up after a stall skips the slots of a gap with the frames it drops.
    assert from_bob["frames_concealed"] > 0
