"""``doorless call ...``: audio and video calls in a conversation, and the daemon methods
``startCall``, ``answerCall``, ``declineCall``, ``hangUp``, ``listCalls``, ``callStats``.

::

    doorless call start @bob --audio-in mic --audio-out speaker
    doorless call start --group team --audio-in talk.wav --audio-out heard.wav --seconds 10
    doorless call answer --wait 60 --audio-in reply.wav --audio-out heard.wav
    doorless call decline

A call rings the conversation's other members with encrypted signals inside the conversation,
then sends and receives SFrame-encrypted media through the server's relay (docs/calls.md).
While it runs, a status line on the terminal shows the participants, the privacy code (read
it out with the others: the same code means the same keys), and per participant the bitrate,
the loss and the latency. The call ends after ``--seconds``, when the input files end (without
``--seconds``), when the others hang up, or on Ctrl-C. With ``--json``, one object at the end:
the call and a stats object per participant.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from doorless.cli import rpc
from doorless.cli.common import State, state
from doorless.cli.output import JSON, device_ref_json, emit, safe, stderr_is_terminal
from doorless.cli.session import Target, checked, open_client, resolve, run, usage_error
from doorless.client.calls.manager import CallInfo
from doorless.client.calls.stats import ParticipantStats
from doorless.client.events import CallState
from doorless.wire.call_signal import CallMedia

if TYPE_CHECKING:
    from doorless.client import Client
    from doorless.client.calls.engine import CallEngine
    from doorless.client.calls.media import VideoFileSink, VideoFileSource

app = typer.Typer(
    help="Audio and video calls, end-to-end encrypted (SFrame keyed by the conversation).",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)

UserArg = Annotated[
    str | None,
    typer.Argument(
        metavar="@USER", help="Call this user (your direct conversation).", show_default=False
    ),
]
GroupOption = Annotated[
    str | None,
    typer.Option("--group", "-g", metavar="NAME", help="Call a group conversation (name or id)."),
]
AudioIn = Annotated[
    str | None,
    typer.Option("--audio-in", metavar="FILE|mic", help="Send this WAV file, or the microphone."),
]
AudioOut = Annotated[
    str | None,
    typer.Option(
        "--audio-out", metavar="FILE|speaker", help="Write what you hear to a WAV file, or play it."
    ),
]
VideoIn = Annotated[
    Path | None,
    typer.Option(
        "--video-in", metavar="FILE", help="Send this video file (any format PyAV reads)."
    ),
]
VideoOut = Annotated[
    Path | None,
    typer.Option(
        "--video-out", metavar="FILE", help="Write the video you receive (.webm or .y4m)."
    ),
]
Seconds = Annotated[
    float | None,
    typer.Option("--seconds", metavar="N", help="End the call after N seconds."),
]
Transport = Annotated[
    str,
    typer.Option(
        "--transport",
        metavar="auto|quic|websocket",
        help="How to reach the relay: QUIC, else the WebSocket fallback (auto), or only one.",
    ),
]
Peers = Annotated[
    int,
    typer.Option(
        "--peers",
        metavar="N",
        help="Start sending once N others are on the call (a group call: wait for everyone).",
    ),
]
Wait = Annotated[
    float,
    typer.Option("--wait", metavar="S", help="Wait up to S seconds for a call to come in."),
]
STATUS_PERIOD = 1.0
STATS_PERIOD = 2.0  # a call_updated event with live statistics this often
RECORDING_DELAY = 0.3  # jitter buffer delay when --audio-out is a file (latency does not matter)
PEER_TIMEOUT = 30.0  # after answering: wait this long for another device on the relay
LINGER = 0.6  # after the last frame sent: let the others' last frames arrive


@dataclass(frozen=True, slots=True)
class MediaSpec:
    audio_in: str | None = None
    audio_out: str | None = None
    video_in: Path | None = None
    video_out: Path | None = None
    seconds: float | None = None
    transport: str = "auto"
    peers: int = 1  # start sending once this many others are on the call

    def check(self) -> MediaSpec:
        if self.seconds is not None and self.seconds <= 0:
            raise usage_error("--seconds must be positive")
        if not 1 <= self.peers <= 1000:
            raise usage_error("--peers is 1..1000")
        if self.transport not in ("auto", "quic", "websocket"):
            raise usage_error("--transport is auto, quic or websocket")
        for name, value in (("--audio-in", self.audio_in), ("--video-in", self.video_in)):
            if value is not None and value != "mic" and not Path(value).is_file():
                raise usage_error(f"{name}: no such file: {value}")
        if not self.audio_in and not self.video_in and self.seconds is None:
            raise usage_error("nothing to send: give --audio-in, --video-in or --seconds")
        return self

    @property
    def media(self) -> CallMedia:
        media = CallMedia.none
        if self.audio_in is not None:
            media |= CallMedia.audio
        if self.video_in is not None:
            media |= CallMedia.video
        return media


def stats_json(p: ParticipantStats) -> JSON:
    return p.to_json()


def call_json(info: CallInfo, stats: Iterable[ParticipantStats] = ()) -> JSON:
    return {
        "call_id": info.call_id,
        "conversation_id": info.conversation_id,
        "state": info.state.value,
        "incoming": info.incoming,
        "caller": device_ref_json(info.caller),
        "participants": [device_ref_json(r) for r in info.participants],
        "privacy_code": info.privacy_code,
        "reason": info.reason,
        "stats": [stats_json(p) for p in stats],
    }


def status_line(info: CallInfo, engine: CallEngine, me: str) -> str:
    parts = [f"call {info.state.value}", f"privacy code {engine.privacy_code}"]
    for p in engine.stats():
        if p.user == me or p.user == "?":
            continue
        latency = "-" if p.latency_p50_ms is None else f"{p.latency_p50_ms:.0f} ms"
        expected = p.frames_received + p.frames_lost
        loss = 0.0 if expected == 0 else 100 * p.frames_lost / expected
        parts.append(
            f"@{safe(p.user)} {p.bitrate_kbps:.0f} kbit/s loss {loss:.1f}% latency {latency}"
        )
    return " | ".join(parts)


def _final_text(info: CallInfo, stats: tuple[ParticipantStats, ...], me: str) -> str:
    lines = [f"call ended ({safe(info.reason) or 'done'}); privacy code was {info.privacy_code}"]
    for p in stats:
        who = "you" if p.user == me else f"@{safe(p.user)}"
        failed = sum(p.decrypt_failures.values())
        lines.append(
            f"  {who}: sent {p.frames_sent}, received {p.frames_received}, lost "
            f"{p.frames_lost}, late {p.frames_late}, concealed {p.frames_concealed}, "
            f"failed to decrypt {failed}, latency p50/p95 {p.latency_p50_ms} / "
            f"{p.latency_p95_ms} ms"
        )
    return "\n".join(lines)


@dataclass(slots=True)
class OpenMedia:
    """The sources and sinks of a call, opened before it rings (a missing audio device or a
    bad file is an error before anyone is called)."""

    audio_in: Iterable[bytes] | None = None
    blocking: bool = False  # the microphone: read in a thread
    audio_out: Any = None
    video_in: VideoFileSource | None = None
    video_out: VideoFileSink | None = None

    @classmethod
    def open(cls, spec: MediaSpec) -> OpenMedia:
        # The media stack (PyAV, PortAudio) is loaded by a call, not by every command.
        from doorless.client.calls.media import (
            MicrophoneSource,
            SpeakerSink,
            VideoFileSink,
            VideoFileSource,
            WavFileSink,
            WavFileSource,
        )
        from doorless.client.calls.runner import CALL_VIDEO

        media = cls()
        try:
            if spec.audio_in == "mic":
                media.audio_in, media.blocking = MicrophoneSource(), True
            elif spec.audio_in is not None:
                media.audio_in = WavFileSource(spec.audio_in)
            if spec.audio_out == "speaker":
                media.audio_out = SpeakerSink()
            elif spec.audio_out is not None:
                media.audio_out = WavFileSink(spec.audio_out)
            if spec.video_in is not None:
                media.video_in = VideoFileSource(spec.video_in, CALL_VIDEO)
            if spec.video_out is not None:
                media.video_out = VideoFileSink(spec.video_out, CALL_VIDEO)
        except BaseException:
            media.close()
            raise
        return media

    def close(self) -> None:
        """Close every source and sink once (a sink writes its file's end here)."""
        items = (self.audio_in, self.audio_out, self.video_in, self.video_out)
        self.audio_in = self.audio_out = self.video_in = self.video_out = None
        for item in items:
            close = getattr(item, "close", None)
            if close is not None:
                close()


async def run_media(
    client: Client, info: CallInfo, spec: MediaSpec, media: OpenMedia, *, status: bool | None
) -> tuple[CallInfo, tuple[ParticipantStats, ...]]:
    """Join the relay and run the call's media until it ends; returns the final state and
    statistics (the call is hung up here unless the others ended it). ``status``: a live
    status line on stderr (True), the privacy code once (False), nothing (None)."""
    from doorless.client.calls.runner import MediaRunner

    engine = await client.calls.connect(info.call_id, transport=spec.transport)  # type: ignore[arg-type]
    with contextlib.suppress(TimeoutError):  # not everyone came: start with those who did
        await client.calls.wait_for_peer(info.call_id, timeout=PEER_TIMEOUT, count=spec.peers)
    audio_out, video_out = media.audio_out, media.video_out
    recording = spec.audio_out not in (None, "speaker")
    delays = (RECORDING_DELAY, 1.0) if recording else (0.06, 0.4)
    runner = MediaRunner(
        engine,
        audio_out=audio_out,
        video_out=video_out,
        playout_delay=delays[0],
        max_playout_delay=delays[1],
    )
    background = [asyncio.create_task(runner.receive()), asyncio.create_task(runner.play())]
    senders = []
    if media.audio_in is not None:
        senders.append(
            runner.send_audio(media.audio_in, seconds=spec.seconds, blocking=media.blocking)
        )
    if media.video_in is not None:
        senders.append(runner.send_video(media.video_in, seconds=spec.seconds))

    async def media_done() -> None:
        started = asyncio.get_running_loop().time()
        await asyncio.gather(*senders)
        if spec.seconds is not None:
            left = spec.seconds - (asyncio.get_running_loop().time() - started)
            await asyncio.sleep(max(left, 0))
        await asyncio.sleep(LINGER)

    async def show_status() -> None:
        while True:
            await asyncio.sleep(STATUS_PERIOD)
            line = status_line(client.calls.get(info.call_id), engine, client.username)
            print(f"\r{line}\x1b[K", end="", file=sys.stderr, flush=True)

    ended = asyncio.create_task(client.calls.wait(info.call_id, CallState.ENDED))
    done_task = asyncio.create_task(media_done())

    async def report_stats() -> None:
        while True:  # a CallUpdated event with the statistics (daemon notifications)
            await asyncio.sleep(STATS_PERIOD)
            client.calls.refresh(info.call_id)

    background.append(asyncio.create_task(report_stats()))
    if status:
        background.append(asyncio.create_task(show_status()))
    elif status is not None:
        print(f"privacy code: {engine.privacy_code}", file=sys.stderr, flush=True)
    try:
        await asyncio.wait({ended, done_task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (*background, ended, done_task):
            task.cancel()
        await asyncio.gather(*background, ended, done_task, return_exceptions=True)
        if status:
            print(file=sys.stderr)
        runner.drain()
        media.close()
        final = client.calls.get(info.call_id)
        if final.state is not CallState.ENDED:
            final = await client.calls.hang_up(info.call_id)
        else:
            await engine.channel.close()
    return final, engine.stats()


async def _start(client: Client, target: Target, spec: MediaSpec, ring: float) -> CallInfo:
    conv = await resolve(client, target, create=True)
    info = await client.calls.start(conv.id, spec.media)
    try:
        return await client.calls.wait(
            info.call_id, CallState.ACTIVE, CallState.ENDED, timeout=ring
        )
    except TimeoutError:
        await client.calls.hang_up(info.call_id)
        raise usage_error(f"nobody answered in {ring:g} s") from None


def _finish(st: State, client: Client, info: CallInfo, stats: tuple[ParticipantStats, ...]) -> None:
    emit(st.json, call_json(info, stats), lambda: _final_text(info, stats, client.username))


@app.command("start")
def start(
    ctx: typer.Context,
    user: UserArg = None,
    group: GroupOption = None,
    audio_in: AudioIn = None,
    audio_out: AudioOut = None,
    video_in: VideoIn = None,
    video_out: VideoOut = None,
    seconds: Seconds = None,
    transport: Transport = "auto",
    peers: Peers = 1,
    ring: Annotated[
        float, typer.Option("--ring", metavar="S", help="Ring for up to S seconds.")
    ] = 60.0,
) -> None:
    """Call @USER or --group NAME: ring, and once someone answers, send and receive media."""
    st = state(ctx)
    with checked(st):
        if (user is None) == (group is None):
            raise usage_error("name one conversation: @USER or --group NAME")
        target = Target.of(user, group)
        spec = MediaSpec(
            audio_in, audio_out, video_in, video_out, seconds, transport, peers
        ).check()

    async def main() -> None:
        client = await open_client(st, push=True)
        async with client:
            await client.sync()
            await client.start()
            media = OpenMedia.open(spec)
            try:
                info = await _start(client, target, spec, ring)
                if info.state is CallState.ENDED:
                    raise usage_error(f"the call ended: {info.reason}")
                final, stats = await run_media(
                    client, info, spec, media, status=stderr_is_terminal()
                )
            finally:
                media.close()
            _finish(st, client, final, stats)

    run(st, main)


@app.command("answer")
def answer(
    ctx: typer.Context,
    audio_in: AudioIn = None,
    audio_out: AudioOut = None,
    video_in: VideoIn = None,
    video_out: VideoOut = None,
    seconds: Seconds = None,
    transport: Transport = "auto",
    peers: Peers = 1,
    wait: Wait = 60.0,
) -> None:
    """Answer the next incoming call (waiting up to --wait seconds) and run it."""
    st = state(ctx)
    with checked(st):
        spec = MediaSpec(
            audio_in, audio_out, video_in, video_out, seconds, transport, peers
        ).check()

    async def main() -> None:
        client = await open_client(st, push=True)
        async with client:
            await client.sync()
            await client.start()
            media = OpenMedia.open(spec)
            try:
                ringing = await client.calls.incoming(timeout=wait)
                info = await client.calls.answer(ringing.call_id, spec.media)
                final, stats = await run_media(
                    client, info, spec, media, status=stderr_is_terminal()
                )
            finally:
                media.close()
            _finish(st, client, final, stats)

    run(st, main)


@app.command("decline")
def decline(ctx: typer.Context, wait: Wait = 0.0) -> None:
    """Decline the next incoming call (waiting up to --wait seconds for one)."""
    st = state(ctx)

    async def main() -> None:
        client = await open_client(st)
        async with client:
            await client.sync()
            ringing = await client.calls.incoming(timeout=max(wait, 0.01))
            info = await client.calls.decline(ringing.call_id)
            emit(
                st.json,
                call_json(info),
                lambda: f"declined the call from @{safe(info.caller.user)}",
            )

    run(st, main)


# --- daemon methods ---------------------------------------------------------------------------


def _media_of(params: rpc.Params) -> CallMedia:
    media = CallMedia.none
    if params.flag("audio", True):
        media |= CallMedia.audio
    if params.flag("video"):
        media |= CallMedia.video
    return media


@rpc.method("startCall")
async def rpc_start_call(client: Client, params: rpc.Params) -> JSON:
    """Ring a conversation (``user``, ``group`` or ``conversation_id``; ``audio``, ``video``
    flags): the call's JSON; `CallUpdated` events follow."""
    target, media = params.target(), _media_of(params)
    params.done()
    conv = await resolve(client, target, create=True)
    return call_json(await client.calls.start(conv.id, media))


@rpc.method("answerCall")
async def rpc_answer_call(client: Client, params: rpc.Params) -> JSON:
    """Answer a ringing call (``call_id``; ``audio``, ``video`` flags)."""
    call_id, media = params.string("call_id"), _media_of(params)
    params.done()
    return call_json(await client.calls.answer(call_id, media))


@rpc.method("declineCall")
async def rpc_decline_call(client: Client, params: rpc.Params) -> JSON:
    """Decline a ringing call (``call_id``)."""
    call_id = params.string("call_id")
    params.done()
    return call_json(await client.calls.decline(call_id))


@rpc.method("hangUp")
async def rpc_hang_up(client: Client, params: rpc.Params) -> JSON:
    """Leave a call (``call_id``); the caller, or either side of a 1:1 call, ends it."""
    call_id = params.string("call_id")
    params.done()
    return call_json(await client.calls.hang_up(call_id))


@rpc.method("listCalls")
async def rpc_list_calls(client: Client, params: rpc.Params) -> list[JSON]:
    """The calls this daemon knows (ringing, active and ended), with their privacy codes."""
    params.done()
    return [call_json(info) for info in client.calls.list()]


@rpc.method("callStats")
async def rpc_call_stats(client: Client, params: rpc.Params) -> JSON:
    """A call's privacy code and per-participant statistics (``call_id``), once its media
    runs (``joinCall``)."""
    call_id = params.string("call_id")
    params.done()
    info = client.calls.refresh(call_id)
    return call_json(info, client.calls.stats(call_id))


@rpc.method("joinCall")
async def rpc_join_call(client: Client, params: rpc.Params) -> JSON:
    """Run an answered or started call's media from/to files (``call_id``, ``audio_in``,
    ``audio_out``, ``video_in``, ``video_out``, ``seconds``, ``transport``) until it ends;
    returns the final call JSON with statistics."""
    call_id = params.string("call_id")
    spec = MediaSpec(
        params.opt_string("audio_in"),
        params.opt_string("audio_out"),
        Path(v) if (v := params.opt_string("video_in")) else None,
        Path(v) if (v := params.opt_string("video_out")) else None,
        float(s) if (s := params.opt_int("seconds")) is not None else None,
        params.opt_string("transport") or "auto",
    ).check()
    params.done()
    media = OpenMedia.open(spec)
    try:
        final, stats = await run_media(client, client.calls.get(call_id), spec, media, status=None)
    finally:
        media.close()
    return call_json(final, stats)
