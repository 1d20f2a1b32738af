"""``doorless server`` with a malicious media relay, for the end-to-end call tests
(`tests/e2e/test_malicious_relay.py`). Test code: nothing in the package can turn it on.

::

    python tests/e2e/malicious_relay.py PLAN TALLY server --data-dir DIR --relay-port U ...

runs the ``doorless`` program's own ``server`` command (its options, its configuration, its
uvicorn settings) with one change: `create_app` gets a `MaliciousForwarder` as its
``relay_forwarder`` (the relay's `Forwarder` seam, `doorless.server.relay.hub`).

PLAN is a JSON file ``{device id: "meddle" | "lossy"}`` that the test writes once the accounts
exist; it says what to do with the frames *from* each device (others pass unchanged). TALLY is
a JSON file the forwarder rewrites after every frame, per device: the frames that came in, the
genuine ones delivered, and every injection by kind, so that the test can hold the receivers'
counters against what the relay really did.

``meddle`` forwards every genuine frame (the call goes on) and, by the frame's position in
ten, adds or alters (RFC 9605 §9 is what the receiver defends with):

==  ==========================================================================================
1   a copy with one ciphertext byte flipped, *before* the genuine frame (after it, the replay
    window would reject the copy first): the tag fails -> ``tampered``
2   held back and delivered after the next frame (reordered): accepted
3   a copy re-stamped with another member's leaf (in a two-party call the receiver's own, for
    which it holds no receiving key, §4.4.1) -> ``unknown_kid``
5   a copy re-stamped with a wrong epoch (two ahead: one ahead would be held for the next
    epoch's key first) -> ``unknown_kid``
7   a copy re-stamped with a leaf nobody has -> ``unknown_kid``
9   delivered twice (duplicated) -> ``replayed``
0   followed by a frame delivered 8 frames earlier (replayed) -> ``replayed``
==  ==========================================================================================

``lossy`` drops each frame with probability `LOSS` (a seeded generator per device: runs repeat;
`SEED` drops two frames in a row in the middle of a syllable of the test's voice, where a loss
that is not concealed is 40 ms of silence).
"""

from __future__ import annotations

import json
import os
import random
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from doorless.client.calls.keys import KID_LAYOUT
from doorless.server.relay import Deliver, ForwardedFrame
from doorless.sframe import decode_header, encode_header

LOSS = 0.05
SEED = 10  # drops 5 of the first 100 frames: the 14th, 28th, 29th (two in a row), 44th, 75th
ENVELOPE = 2  # message type and stream kind before the SFrame frame (doorless.wire.calls)
REPLAY_DISTANCE = 8


@dataclass(slots=True)
class Tally:
    """What the relay did with one device's frames."""

    came_in: int = 0
    delivered: int = 0  # genuine frames, each once (the duplicate copies are not here)
    held: int = 0  # held back for reordering, not yet delivered
    dropped: int = 0
    reordered: int = 0
    tampered: int = 0
    forged_member_leaf: int = 0
    forged_epoch: int = 0
    forged_unknown_leaf: int = 0
    duplicated: int = 0
    replayed: int = 0


def restamp(data: bytes, *, leaf: int | None = None, epoch_step: int = 0) -> bytes:
    """The same envelope and ciphertext under a forged KID (another leaf, or other epoch bits);
    the CTR is kept."""
    header, n = decode_header(data[ENVELOPE:])
    context, sender, epoch_bits = KID_LAYOUT.split(header.kid)
    epoch = (epoch_bits + epoch_step) % (1 << KID_LAYOUT.epoch_bits)
    kid = KID_LAYOUT.kid(sender if leaf is None else leaf, epoch, context)
    return data[:ENVELOPE] + encode_header(kid, header.ctr) + data[ENVELOPE + n :]


def tamper(data: bytes) -> bytes:
    """One bit of the first ciphertext byte flipped (header intact: the KID still finds the
    key, and the AEAD tag fails)."""
    _, n = decode_header(data[ENVELOPE:])
    i = ENVELOPE + n
    return data[:i] + bytes([data[i] ^ 0x80]) + data[i + 1 :]


class MaliciousForwarder:
    """See the module docstring."""

    def __init__(self, plan: Path, tally: Path) -> None:
        self._plan_path = plan
        self._tally_path = tally
        self._roles: dict[str, str] = {}
        self._tallies: dict[str, Tally] = {}
        self._random: dict[str, random.Random] = {}
        self._history: dict[str, list[bytes]] = {}
        self._held: dict[str, bytes] = {}

    def _role(self, device_id: str) -> str:
        if device_id not in self._roles and self._plan_path.exists():
            plan: dict[str, str] = json.loads(self._plan_path.read_text())
            self._roles[device_id] = plan.get(device_id, "plain")
        return self._roles.get(device_id, "plain")

    def forward(self, frame: ForwardedFrame, deliver: Deliver) -> None:
        role = self._role(frame.device_id)
        if role == "plain":
            deliver(frame.data)
            return
        tally = self._tallies.setdefault(frame.device_id, Tally())
        tally.came_in += 1
        if role == "lossy":
            self._lossy(frame, deliver, tally)
        else:
            self._meddle(frame, deliver, tally)
        self._write_tally()

    def _lossy(self, frame: ForwardedFrame, deliver: Deliver, tally: Tally) -> None:
        rng = self._random.setdefault(frame.device_id, random.Random(SEED))
        if rng.random() < LOSS:
            tally.dropped += 1
            return
        deliver(frame.data)
        tally.delivered += 1

    def _meddle(self, frame: ForwardedFrame, deliver: Deliver, tally: Tally) -> None:
        data, phase = frame.data, tally.came_in % 10
        history = self._history.setdefault(frame.device_id, [])

        def genuine(d: bytes) -> None:
            deliver(d)
            history.append(d)
            tally.delivered += 1

        if phase == 1:
            deliver(tamper(data))
            tally.tampered += 1
        elif phase == 2:
            self._held[frame.device_id] = data
            tally.held += 1
            return
        elif phase == 3:
            _, sender, _ = KID_LAYOUT.split(decode_header(data[ENVELOPE:])[0].kid)
            deliver(restamp(data, leaf=sender ^ 1))  # leaves 0 and 1: the other member
            tally.forged_member_leaf += 1
        elif phase == 5:
            deliver(restamp(data, epoch_step=2))
            tally.forged_epoch += 1
        elif phase == 7:
            _, sender, _ = KID_LAYOUT.split(decode_header(data[ENVELOPE:])[0].kid)
            deliver(restamp(data, leaf=sender + 9))
            tally.forged_unknown_leaf += 1
        genuine(data)
        held = self._held.pop(frame.device_id, None)
        if held is not None:  # the frame before this one, now after it
            genuine(held)
            tally.held -= 1
            tally.reordered += 1
        if phase == 9:
            deliver(data)
            tally.duplicated += 1
        elif phase == 0 and len(history) > REPLAY_DISTANCE:
            deliver(history[-1 - REPLAY_DISTANCE])
            tally.replayed += 1

    def _write_tally(self) -> None:
        data: dict[str, Any] = {d: asdict(t) for d, t in self._tallies.items()}
        partial = self._tally_path.with_suffix(".partial")
        partial.write_text(json.dumps(data))
        os.replace(partial, self._tally_path)  # the test never reads half a file


def main(argv: list[str]) -> None:
    plan, tally, *program_args = argv
    forwarder = MaliciousForwarder(Path(plan), Path(tally))

    import doorless.server.app as server_app
    from doorless.cli.main import app

    # The server command imports `create_app` from its module when it runs: this is the one
    # change to the real program.
    real_create_app = server_app.create_app

    def create_app(*args: Any, **kwargs: Any) -> Any:
        return real_create_app(*args, **kwargs, relay_forwarder=forwarder)

    server_app.create_app = create_app
    app(program_args, prog_name="doorless")


if __name__ == "__main__":
    main(sys.argv[1:])
