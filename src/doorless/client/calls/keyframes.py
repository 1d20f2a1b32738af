"""Rate limits of keyframe requests, on both ends (pure logic, the clock passed in).

A receiver that cannot decode a sender's video asks it for a keyframe (`KeyframeRequest`
inside SFrame, the job RTCP PLI does in RFC 4585 §6.3.1); the sender makes its next frame a
keyframe. Both ends limit how often:

* **Receiver, per sender: one request per `REQUEST_INTERVAL` (0.4 s).** A request is answered
  by the sender's next encoded frame (at most 1/15 s later at the call's 15 fps) reaching the
  receiver across the relay: one round trip plus a keyframe of several datagrams, well under
  0.4 s on a call that is usable at all (ITU-T G.114 puts the limit of a good call at 150 ms
  one way). Asking sooner would mostly duplicate a request whose keyframe is on its way, and
  a receiver whose link loses a fragment of every frame would otherwise ask at the frame rate
  (RFC 5104 §4.3.1.2 asks for the same restraint on FIR). The request is repeated for as long
  as the receiver still cannot decode, so a lost request or a lost keyframe costs 0.4 s more.
* **Sender: one forced keyframe per `FORCE_INTERVAL` (0.3 s)**, whoever asked: a keyframe
  costs several delta frames, so a member who floods requests raises the sender's bitrate by
  at most ~3 keyframes a second. It is shorter than the receivers' interval, so an honest
  receiver's repeated request (0.4 s later) is never refused by it.
"""

from __future__ import annotations

from collections.abc import Hashable

REQUEST_INTERVAL = 0.4
FORCE_INTERVAL = 0.3


class RateLimit:
    """At most one event per ``interval`` seconds for each key."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._last: dict[Hashable, float] = {}

    def allow(self, key: Hashable, now: float) -> bool:
        """True (and the time recorded) if ``key``'s last allowed event is ``interval`` or
        more before ``now``."""
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            return False
        self._last[key] = now
        return True


__all__ = ["FORCE_INTERVAL", "REQUEST_INTERVAL", "RateLimit"]
