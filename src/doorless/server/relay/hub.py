"""The relay's core: admission, the call registry, selective forwarding, per-participant counters.

Transports (`doorless.server.relay.quic`, the WebSocket route ``/v1/calls/ws``) hand each
connection to `Relay.admit` with a `Link` (how to reach that connection) and then feed every
received envelope to `Relay.receive`. The relay:

* admits a device only if its bearer token is valid and it is a current member of the call's
  group by the server's validated group state (``Storage.group_access``; a group the server
  keeps no state for cannot have calls, as membership could not be judged);
* keys calls by ``(group_id, call_id)`` and forwards each frame envelope to the *other*
  participants of the call, on this node and, through the `Bridge`, on other nodes; never back
  to its sender;
* reads only the envelope's stream kind and SFrame header (`doorless.wire.calls.frame_header`)
  to drop what is not an SFrame frame; the ciphertext is never parsed, stored or logged;
* drops a participant whose device left the group: `group_changed` (called when a commit that
  removes members is accepted, on any node) re-checks each local participant of the group;
  and every ``recheck_interval`` seconds `recheck` checks every participant's token (expired,
  device revoked) and membership again.

The `Forwarder` is the seam between "a frame came in" and "deliver it": production uses
`PlainForwarder` (deliver once, unchanged); tests give a recorder, or one that tampers,
replays, reorders, duplicates or drops (`create_app(..., relay_forwarder=...)`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from doorless.errors import DecodeError, RemoteError
from doorless.server.log import device_tag, log_event
from doorless.server.relay.bridge import Bridge, CallKey, LocalBridge
from doorless.server.storage.base import Storage, StorageUnavailable
from doorless.wire.calls import JoinRequest, Refused, frame_header
from doorless.wire.errors import ErrorCode

MAX_PARTICIPANTS = 64


class RelayRefusal(RemoteError):
    """Admission refused: the transport sends ``Refused(code, message)`` and closes."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.refused = Refused(code, message)


class Link(Protocol):
    """One participant's connection, as the relay sees it."""

    def send_frame(self, data: bytes) -> bool:
        """Queue one envelope without waiting; False if it was dropped (congestion)."""

    def drop(self, refused: Refused) -> None:
        """Tell the client why (best effort) and close the connection."""


@dataclass(slots=True)
class Counters:
    """Per participant: what it sent and what was sent to it (counts and bytes, no content)."""

    frames_in: int = 0
    bytes_in: int = 0
    frames_out: int = 0
    bytes_out: int = 0
    rejected_in: int = 0  # not an SFrame frame envelope
    dropped_out: int = 0  # its link was congested

    def as_dict(self) -> dict[str, int]:
        return {
            "frames_in": self.frames_in,
            "bytes_in": self.bytes_in,
            "frames_out": self.frames_out,
            "bytes_out": self.bytes_out,
            "rejected_in": self.rejected_in,
            "dropped_out": self.dropped_out,
        }


@dataclass(slots=True, eq=False)
class Participant:
    number: int
    device_id: str
    call: CallKey
    transport: str  # "quic" or "websocket"
    link: Link = field(repr=False)
    token: str = field(repr=False, default="")  # re-checked now and then (`Relay.recheck`)
    counters: Counters = field(default_factory=Counters)
    active: bool = True


@dataclass(frozen=True, slots=True, repr=False)
class ForwardedFrame:
    """One frame that entered the relay from a local participant (bytes as received)."""

    call: CallKey
    sender: int  # the participant number
    device_id: str
    data: bytes

    def __repr__(self) -> str:
        return f"ForwardedFrame(sender={self.sender}, <{len(self.data)} bytes>)"


Deliver = Callable[[bytes], None]


class Forwarder(Protocol):
    """Decides what is delivered for each incoming frame. ``deliver(data)`` sends ``data`` to
    every other current participant of the frame's call (here and on other nodes); it may be
    called any number of times, with any bytes, now or later."""

    def forward(self, frame: ForwardedFrame, deliver: Deliver) -> None: ...


class PlainForwarder:
    """Production: each frame is delivered once, as it came."""

    def forward(self, frame: ForwardedFrame, deliver: Deliver) -> None:
        deliver(frame.data)


Authenticate = Callable[[str], Awaitable[str]]  # bearer token -> device id, or RelayRefusal


@dataclass(frozen=True, slots=True)
class RelayEndpoint:
    """What ``GET /v1/calls/relay`` tells clients about the QUIC listener."""

    host: str | None  # None: the API's host name
    port: int
    fingerprint: str  # hex SHA-256 of the certificate (DER)


class Relay:
    """See the module docstring. One per server process."""

    def __init__(
        self,
        storage: Storage,
        authenticate: Authenticate,
        *,
        bridge: Bridge | None = None,
        forwarder: Forwarder | None = None,
        recheck_interval: float = 30.0,
    ) -> None:
        self._storage = storage
        self._recheck_interval = recheck_interval
        self._recheck_task: asyncio.Task[None] | None = None
        self._authenticate = authenticate
        self.bridge = bridge if bridge is not None else LocalBridge()
        self.forwarder: Forwarder = forwarder if forwarder is not None else PlainForwarder()
        self._calls: dict[CallKey, list[Participant]] = {}
        self._numbers = itertools.count(1)

    async def start(self) -> None:
        await self.bridge.start(self._from_bridge, self._group_changed_here)
        self._recheck_task = asyncio.create_task(self._recheck_loop(), name="doorless-relay")

    async def close(self) -> None:
        task, self._recheck_task = self._recheck_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for members in list(self._calls.values()):
            for p in list(members):
                self.leave(p)
        await self.bridge.close()

    # --- admission --------------------------------------------------------------------------

    async def admit(self, request: JoinRequest, link: Link, transport: str) -> Participant:
        """Admit one connection to a call; `RelayRefusal` (nothing changed) if not allowed."""
        try:
            device_id = await self._authenticate(request.token)
            access = await self._storage.group_access(request.group_id, device_id)
        except StorageUnavailable:
            raise RelayRefusal(ErrorCode.UNAVAILABLE, "the server's database is away") from None
        if access is None:
            raise RelayRefusal(
                ErrorCode.NOT_FOUND, "the server keeps no state for this group: no calls"
            )
        if not access.member:
            raise RelayRefusal(ErrorCode.NOT_GROUP_MEMBER, "this device is not in the group")
        key = CallKey(request.group_id, request.call_id.value)
        members = self._calls.get(key, [])
        if len(members) >= MAX_PARTICIPANTS:
            raise RelayRefusal(ErrorCode.CONFLICT, f"a call has at most {MAX_PARTICIPANTS}")
        participant = Participant(
            next(self._numbers), device_id, key, transport, link, request.token
        )
        if not members:
            self._calls[key] = members
            await self.bridge.join(key)
        members.append(participant)
        log_event(
            "call joined",
            device=device_tag(device_id),
            transport=transport,
            participants=len(members),
        )
        return participant

    def leave(self, participant: Participant) -> None:
        if not participant.active:
            return
        participant.active = False
        members = self._calls.get(participant.call)
        if members is not None and participant in members:
            members.remove(participant)
            if not members:
                del self._calls[participant.call]
                self.bridge.leave(participant.call)
        log_event(
            "call left",
            device=device_tag(participant.device_id),
            transport=participant.transport,
            **participant.counters.as_dict(),
        )

    # --- forwarding --------------------------------------------------------------------------

    def receive(self, participant: Participant, data: bytes) -> None:
        """One envelope from a participant: checked (header only), then forwarded."""
        counters = participant.counters
        if not participant.active:
            return
        try:
            frame_header(data)
        except DecodeError:
            counters.rejected_in += 1
            return
        counters.frames_in += 1
        counters.bytes_in += len(data)
        call = participant.call

        def deliver(out: bytes) -> None:
            self._deliver_local(call, out, participant)
            self.bridge.publish_frame(call, out)

        self.forwarder.forward(
            ForwardedFrame(call, participant.number, participant.device_id, data), deliver
        )

    def _deliver_local(self, call: CallKey, data: bytes, sender: Participant | None) -> None:
        n = len(data)
        for p in self._calls.get(call, ()):
            if p is sender:
                continue
            if p.link.send_frame(data):
                p.counters.frames_out += 1
                p.counters.bytes_out += n
            else:
                p.counters.dropped_out += 1

    def _from_bridge(self, call: CallKey, data: bytes) -> None:
        """A frame forwarded by another node: to every local participant of the call."""
        self._deliver_local(call, data, None)

    # --- membership changes ------------------------------------------------------------------

    async def group_changed(self, group_id: bytes) -> None:
        """A commit changed the group's members (on this node): re-check here and everywhere."""
        await self._group_changed_here(group_id)
        await self.bridge.publish_group_changed(group_id)

    async def _group_changed_here(self, group_id: bytes) -> None:
        for key, members in list(self._calls.items()):
            if key.group_id == group_id:
                for p in list(members):
                    await self._check(p, token=False)

    async def recheck(self) -> None:
        """Every participant again: its token (expired, or its device revoked) and its
        membership (a removal whose notice was lost, e.g. while Redis was away)."""
        for members in list(self._calls.values()):
            for p in list(members):
                await self._check(p, token=True)

    async def _check(self, p: Participant, *, token: bool) -> None:
        try:
            if token and await self._authenticate(p.token) != p.device_id:
                raise RelayRefusal(ErrorCode.UNAUTHORIZED, "the token is another device's")
            access = await self._storage.group_access(p.call.group_id, p.device_id)
            if access is None or not access.member:
                raise RelayRefusal(ErrorCode.NOT_GROUP_MEMBER, "this device left the group")
        except StorageUnavailable:
            return  # judged at the next check; a database outage does not end calls
        except RelayRefusal as exc:
            if p.active:
                log_event("call member dropped", device=device_tag(p.device_id), error=exc.code)
                self.leave(p)
                p.link.drop(exc.refused)

    async def _recheck_loop(self) -> None:
        while True:
            await asyncio.sleep(self._recheck_interval)
            await self.recheck()

    # --- observation ---------------------------------------------------------------------------

    def participants(self, group_id: bytes, call_id: bytes) -> list[Participant]:
        return list(self._calls.get(CallKey(group_id, call_id), ()))

    def call_count(self) -> int:
        return len(self._calls)


__all__ = [
    "MAX_PARTICIPANTS",
    "Counters",
    "Deliver",
    "ForwardedFrame",
    "Forwarder",
    "Link",
    "Participant",
    "PlainForwarder",
    "Relay",
    "RelayEndpoint",
    "RelayRefusal",
]
