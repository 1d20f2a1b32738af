"""``client.calls``: start, answer, decline and hang up calls; the state of each call.

A call belongs to one conversation and is driven by signals inside it
(`doorless.wire.call_signal`, sent by `doorless.client.calls.signalling`)::

    caller                                   callee(s)
    start: ring         ──────────────────►  RINGING (CallUpdated)
                                             answer: accept   ──► both ACTIVE
                                             decline: decline ──► 1:1: ENDED
    connect: on the relay, then join    ◄─►  connect: on the relay, then join
    hang_up: leave (+ end by the caller) ──► ENDED when nobody else is left (1:1: at once)

``join`` says "this device is on the relay now": media sent before another participant
joined reaches nobody, so a program starts sending once `wait_for_peer` returns.

The state machine is here, without media; `connect` opens the relay channel and returns a
`CallEngine` (docs/calls.md). Every change is reported as `CallUpdated`. Calls live in
memory only: a call does not survive the program (its counters do: `counters`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from doorless.client.calls.channel import join_relay
from doorless.client.calls.signalling import send_signal
from doorless.client.calls.stats import ParticipantStats
from doorless.client.core import Session, conversation_gid
from doorless.client.events import (
    CallSignalReceived,
    CallState,
    CallUpdated,
    ConversationKind,
    DeviceRef,
    Event,
)
from doorless.client.transport.relay import TransportChoice
from doorless.errors import DoorlessError, StateError
from doorless.wire.call_signal import (
    CALL_ID_LENGTH,
    CallMedia,
    CallSignal,
    CallSignalType,
    new_call_id,
)

log = logging.getLogger("doorless.client.calls")

if TYPE_CHECKING:
    from doorless.client.calls.engine import CallEngine, MediaChannel

ChannelFactory = Callable[[bytes, bytes, TransportChoice], Awaitable["MediaChannel"]]
"""Opens the relay channel of (group id, call id) for this device, by transport."""


class NoSuchCall(StateError):
    """No call with this id (or no incoming call in time)."""


@dataclass(frozen=True, slots=True)
class CallInfo:
    """A snapshot of one call as this device knows it."""

    call_id: str  # hex
    conversation_id: str
    state: CallState
    incoming: bool
    caller: DeviceRef
    participants: tuple[DeviceRef, ...]  # devices that joined (this one included)
    direct: bool  # a 1:1 conversation: the call ends when the other side leaves
    privacy_code: str | None = None
    reason: str = ""


@dataclass(slots=True)
class _Call:
    info: CallInfo
    joined: set[DeviceRef] = field(default_factory=set)
    engine: CallEngine | None = None
    media: CallMedia = CallMedia.audio


class Calls:
    """The calls of one client (``client.calls``)."""

    def __init__(self, s: Session, connect: ChannelFactory | None = None) -> None:
        self._s = s
        self._connect = connect or functools.partial(join_relay, s)
        self._calls: dict[bytes, _Call] = {}
        self._tick = asyncio.Event()  # set (and replaced) on every change
        self._untap = s.hub.tap(self._on_event)

    def close(self) -> None:
        self._untap()

    # --- what applications call --------------------------------------------------------

    def list(self) -> list[CallInfo]:
        return [c.info for c in self._calls.values()]

    def get(self, call_id: str) -> CallInfo:
        return self._call(call_id).info

    async def start(self, conversation_id: str, media: CallMedia = CallMedia.audio) -> CallInfo:
        """Ring the conversation's other members and join the call; the call is ``calling``
        until someone accepts."""
        gid = conversation_gid(conversation_id)
        conv = await self._s.require_active(gid)
        direct = self._s.view(conv).kind is ConversationKind.DIRECT
        call_id = new_call_id()
        me = self._s.me
        info = CallInfo(call_id.hex(), conversation_id, CallState.CALLING, False, me, (), direct)
        self._calls[call_id] = _Call(info, media=media)
        await send_signal(self._s, gid, CallSignal(CallSignalType.ring, call_id, media))
        self._emit(self._calls[call_id])
        return self._calls[call_id].info

    async def incoming(self, timeout: float | None = None) -> CallInfo:
        """The oldest call ringing on this device, waiting up to ``timeout`` seconds for one
        (`NoSuchCall` when none came; the caller keeps receiving meanwhile)."""

        def ringing() -> CallInfo | None:
            return next(
                (c.info for c in self._calls.values() if c.info.state is CallState.RINGING),
                None,
            )

        try:
            return await asyncio.wait_for(self._until(ringing), timeout)
        except TimeoutError:
            raise NoSuchCall("no incoming call") from None

    async def answer(self, call_id: str, media: CallMedia = CallMedia.audio) -> CallInfo:
        call = self._call(call_id)
        if call.info.state is not CallState.RINGING:
            raise StateError(f"the call is {call.info.state.value}, not ringing")
        gid, cid = conversation_gid(call.info.conversation_id), bytes.fromhex(call_id)
        await send_signal(self._s, gid, CallSignal(CallSignalType.accept, cid, media))
        call.media = media
        self._update(call, state=CallState.ACTIVE)
        return call.info

    async def decline(self, call_id: str) -> CallInfo:
        call = self._call(call_id)
        if call.info.state is not CallState.RINGING:
            raise StateError(f"the call is {call.info.state.value}, not ringing")
        gid, cid = conversation_gid(call.info.conversation_id), bytes.fromhex(call_id)
        await send_signal(self._s, gid, CallSignal(CallSignalType.decline, cid))
        self._update(call, state=CallState.ENDED, reason="declined")
        return call.info

    async def hang_up(self, call_id: str) -> CallInfo:
        """Leave the call (the caller of a 1:1 call, or the last one, ends it)."""
        call = self._call(call_id)
        if call.info.state is CallState.ENDED:
            return call.info
        gid, cid = conversation_gid(call.info.conversation_id), bytes.fromhex(call_id)
        if call.engine is not None:
            await call.engine.channel.close()
        await send_signal(self._s, gid, CallSignal(CallSignalType.leave, cid))
        if call.info.caller == self._s.me or call.info.direct:
            await send_signal(self._s, gid, CallSignal(CallSignalType.end, cid))
        call.joined.discard(self._s.me)
        self._update(call, state=CallState.ENDED, reason="hung up")
        return call.info

    async def connect(
        self,
        call_id: str,
        channel: MediaChannel | None = None,
        *,
        transport: TransportChoice = "auto",
    ) -> CallEngine:
        """The media engine of a call this device joined, over ``channel`` (default: the
        server's relay, by ``transport``: QUIC with the pinned certificate, else the WebSocket
        fallback; or only one of them)."""
        call = self._call(call_id)
        if call.engine is not None:
            return call.engine
        gid, cid = conversation_gid(call.info.conversation_id), bytes.fromhex(call_id)
        if channel is None:
            channel = await self._connect(gid, cid, transport)
        # The engine (and PyAV under it) is loaded with the first call, not by every program.
        from doorless.client.calls.engine import CallEngine

        engine = CallEngine(self._s, gid, cid, channel)
        await engine.start()
        call.engine = engine
        await send_signal(self._s, gid, CallSignal(CallSignalType.join, cid, call.media))
        call.joined.add(self._s.me)
        self._update(call, privacy_code=engine.privacy_code)
        return engine

    async def wait_for_peer(
        self, call_id: str, timeout: float | None = None, *, count: int = 1
    ) -> CallInfo:
        """Wait until ``count`` other devices joined the call on the relay (or the call
        ended)."""
        call = self._call(call_id)
        me = self._s.me

        def peer() -> CallInfo | None:
            ended = call.info.state is CallState.ENDED
            return call.info if ended or len(call.joined - {me}) >= count else None

        return await asyncio.wait_for(self._until(peer), timeout)

    async def wait(
        self, call_id: str, *states: CallState, timeout: float | None = None
    ) -> CallInfo:
        """Wait until the call is in one of ``states``; `TimeoutError` after ``timeout``."""
        call = self._call(call_id)

        def reached() -> CallInfo | None:
            return call.info if call.info.state in states else None

        return await asyncio.wait_for(self._until(reached), timeout)

    async def _until(self, check: Callable[[], CallInfo | None]) -> CallInfo:
        while (found := check()) is None:
            await self._tick.wait()
        return found

    def stats(self, call_id: str) -> tuple[ParticipantStats, ...]:
        """Per-participant statistics of a call whose media runs (else empty)."""
        engine = self._call(call_id).engine
        return () if engine is None else engine.stats()

    def refresh(self, call_id: str) -> CallInfo:
        """Report the engine's current privacy code and statistics (`CallUpdated`)."""
        call = self._call(call_id)
        if call.engine is not None and not call.engine.cut_off:
            self._update(call, privacy_code=call.engine.privacy_code)
        return call.info

    # --- signals from the conversation --------------------------------------------------

    def _on_event(self, event: Event) -> None:
        if not isinstance(event, CallSignalReceived):
            return
        try:
            self._on_signal(event)
        except DoorlessError as e:  # a peer's odd signal must not stop the inbox
            log.warning("call signal ignored: %s", e)

    def _on_signal(self, event: CallSignalReceived) -> None:
        signal, sender = event.signal, event.sender
        call = self._calls.get(signal.call_id)
        if sender == self._s.me:
            return  # our own signal, echoed back
        if call is None:
            if signal.type is CallSignalType.ring:
                self._ringing(event)
            return  # a signal of a call we do not know: ignored (docs/calls.md)
        if call.info.conversation_id != event.conversation_id:
            return  # the same id in another conversation: not this call
        _HANDLERS[signal.type](self, call, sender)

    def _ringing(self, event: CallSignalReceived) -> None:
        direct = False
        conv = self._s.cache.get(conversation_gid(event.conversation_id))
        if conv is not None:
            direct = self._s.view(conv).kind is ConversationKind.DIRECT
        info = CallInfo(
            event.signal.call_id.hex(),
            event.conversation_id,
            CallState.RINGING,
            True,
            event.sender,
            (),
            direct,
        )
        self._calls[event.signal.call_id] = _Call(info)
        self._emit(self._calls[event.signal.call_id])

    def _on_accept(self, call: _Call, sender: DeviceRef) -> None:
        if sender.user == self._s.me.user and call.info.state is CallState.RINGING:
            self._update(call, state=CallState.ENDED, reason="answered on another device")
        elif call.info.state is CallState.CALLING:
            self._update(call, state=CallState.ACTIVE)

    def _on_decline(self, call: _Call, sender: DeviceRef) -> None:
        if sender.user == self._s.me.user and call.info.state is CallState.RINGING:
            self._update(call, state=CallState.ENDED, reason="declined on another device")
        elif call.info.direct and call.info.state is CallState.CALLING:
            self._update(call, state=CallState.ENDED, reason=f"{sender.user} declined")

    def _on_join(self, call: _Call, sender: DeviceRef) -> None:
        call.joined.add(sender)
        self._update(call)

    def _on_leave(self, call: _Call, sender: DeviceRef) -> None:
        call.joined.discard(sender)
        alone = call.joined <= {self._s.me} and call.info.state is CallState.ACTIVE
        if call.info.direct and alone:
            self._update(call, state=CallState.ENDED, reason=f"{sender.user} left")
        else:
            self._update(call)

    def _on_end(self, call: _Call, sender: DeviceRef) -> None:
        if sender == call.info.caller or call.info.direct:
            self._update(call, state=CallState.ENDED, reason=f"{sender.user} ended the call")

    def _on_ring(self, call: _Call, sender: DeviceRef) -> None:
        return  # a repeated ring of a known call

    # --- state ----------------------------------------------------------------------------

    def _call(self, call_id: str) -> _Call:
        try:
            raw = bytes.fromhex(call_id)
        except ValueError:
            raw = b""
        if len(raw) != CALL_ID_LENGTH or raw not in self._calls:
            raise NoSuchCall(f"no call {call_id!r}")
        return self._calls[raw]

    def _update(
        self,
        call: _Call,
        *,
        state: CallState | None = None,
        reason: str | None = None,
        privacy_code: str | None = None,
    ) -> None:
        info = call.info
        call.info = replace(
            info,
            participants=tuple(sorted(call.joined)),
            state=state or info.state,
            reason=info.reason if reason is None else reason,
            privacy_code=privacy_code or info.privacy_code,
        )
        self._emit(call)

    def _emit(self, call: _Call) -> None:
        info = call.info
        stats = call.engine.stats() if call.engine is not None else ()
        self._s.hub.emit(
            CallUpdated(
                info.call_id,
                info.conversation_id,
                info.state,
                info.participants,
                info.privacy_code,
                info.reason,
                stats,
            )
        )
        self._tick.set()
        self._tick = asyncio.Event()


_HANDLERS: dict[CallSignalType, Callable[[Calls, _Call, DeviceRef], None]] = {
    CallSignalType.ring: Calls._on_ring,
    CallSignalType.accept: Calls._on_accept,
    CallSignalType.decline: Calls._on_decline,
    CallSignalType.join: Calls._on_join,
    CallSignalType.leave: Calls._on_leave,
    CallSignalType.end: Calls._on_end,
}


__all__ = ["CallInfo", "Calls", "ChannelFactory", "NoSuchCall"]
