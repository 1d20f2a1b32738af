"""Keyframe requests: the request as a frame inside SFrame (exact bytes, malformed input),
the rate limits on both ends, the engine sending one and honouring one addressed to it (and
no other), the counts in the statistics, and a sender's next frame being a keyframe (checked
by decoding it with PyAV) after a request reached it through SFrame."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import av
import pytest

from doorless.client.calls.keyframes import FORCE_INTERVAL, REQUEST_INTERVAL, RateLimit
from doorless.client.calls.media import (
    KeyframeRequest,
    MediaConfigError,
    MediaFrame,
    MediaFrameError,
    StreamKind,
    VideoConfig,
    VideoReassembler,
    decode_frame,
    decode_media,
    encode_frame,
)
from doorless.client.calls.runner import MediaRunner
from support.call_relay import MemoryRelay
from support.media import moving_luma

from ..harness import network
from .test_engine import Clock, call_of

# --- the request as a media frame -----------------------------------------------------------


def test_request_bytes_are_exact_and_round_trip() -> None:
    request = KeyframeRequest(target=0x0102)
    data = encode_frame(request)
    assert data == bytes([1, 3, 0, 0, 1, 2])  # version, type, uint32 leaf index
    assert decode_media(data) == request
    media = MediaFrame(StreamKind.video, 7, 123, b"vp8")
    assert decode_media(encode_frame(media)) == media  # media frames still parse


@pytest.mark.parametrize(
    "data",
    [
        bytes([1, 3, 0, 0, 1]),  # truncated
        bytes([1, 3, 0, 0, 1, 2, 0]),  # trailing byte
        bytes([2, 3, 0, 0, 1, 2]),  # unknown version
        bytes([1, 4, 0, 0, 1, 2]),  # unknown type
        bytes([1, 3]),
    ],
)
def test_malformed_requests_are_typed_errors(data: bytes) -> None:
    with pytest.raises(MediaFrameError):
        decode_media(data)


def test_a_request_is_not_a_media_frame() -> None:
    with pytest.raises(MediaFrameError):
        decode_frame(encode_frame(KeyframeRequest(1)))  # a receiver of media only refuses it
    with pytest.raises(MediaConfigError):
        KeyframeRequest(1 << 32)
    with pytest.raises(MediaConfigError):
        KeyframeRequest(-1)


# --- rate limits ----------------------------------------------------------------------------


def test_rate_limit_per_key() -> None:
    limit = RateLimit(0.4)
    assert limit.allow("bob", 10.0)
    assert not limit.allow("bob", 10.39)
    assert limit.allow("carol", 10.39)  # each key on its own
    assert limit.allow("bob", 10.4)
    assert not limit.allow("bob", 10.5)  # counted from the last allowed, not the refused
    # A sender's own limit is shorter than a receiver's, so an honest receiver's repeat is
    # never refused by it.
    assert FORCE_INTERVAL < REQUEST_INTERVAL


# --- through the engine ---------------------------------------------------------------------


@pytest.mark.asyncio
async def test_engine_requests_and_honours_with_rate_limits(tmp_path: Path) -> None:
    relay, clock = MemoryRelay(), Clock()
    async with network(tmp_path) as net:
        clients, (ea, eb, ec), _ = await call_of(net, relay, clock, ("alice", "bob", "carol"))
        alice, bob = clients[0]._core.me, clients[1]._core.me
        forced: dict[str, int] = {"alice": 0, "carol": 0}
        ea.keyframe_listener = lambda: forced.__setitem__("alice", forced["alice"] + 1)
        ec.keyframe_listener = lambda: forced.__setitem__("carol", forced["carol"] + 1)

        assert await eb.request_keyframe(alice)
        assert not await eb.request_keyframe(alice)  # within REQUEST_INTERVAL: not sent
        assert not await eb.request_keyframe(bob)  # never of itself
        (request,) = relay.channels["alice"].pending()
        assert await ea.open(request) is None  # handled, not media
        for data in relay.channels["carol"].pending():
            assert await ec.open(data) is None  # addressed to alice: carol ignores it
        assert forced == {"alice": 1, "carol": 0}

        # carol asks alice too, 0.1 s later: counted, but alice forced one a moment ago.
        clock.t += 0.1
        assert await ec.request_keyframe(alice)
        for data in relay.channels["alice"].pending():
            await ea.open(data)
        assert forced["alice"] == 1
        # bob asks again after his interval: sent, and alice's interval is over too.
        clock.t += REQUEST_INTERVAL
        assert await eb.request_keyframe(alice)
        for data in relay.channels["alice"].pending():
            await ea.open(data)
        assert forced["alice"] == 2
        relay.channels["bob"].pending()
        relay.channels["carol"].pending()

        # No video sent (no listener): counted as received, never honoured.
        ea.keyframe_listener = None
        clock.t += 1
        assert await eb.request_keyframe(alice)
        for data in relay.channels["alice"].pending():
            await ea.open(data)

        rows = {p.user: p for p in ea.stats()}
        assert rows["bob"].keyframe_requests_received == 3
        assert rows["bob"].keyframe_requests_honoured == 2
        assert rows["carol"].keyframe_requests_received == 1
        assert rows["carol"].keyframe_requests_honoured == 0
        assert rows["bob"].frames_received == 0  # requests are not media frames
        at_bob = {p.user: p for p in eb.stats()}
        assert at_bob["alice"].keyframe_requests_sent == 3
        assert at_bob["alice"].to_json()["keyframe_requests_sent"] == 3
        assert at_bob["bob"].frames_sent == 0  # nor counted as frames sent
        assert {p.user: p.keyframe_requests_received for p in ec.stats()}["bob"] == 0
        assert ea.failures() == eb.failures() == ec.failures() == {}


# --- the sender's next frame is a keyframe --------------------------------------------------

W, H = 160, 120


class Pictures:
    """The sender's camera: counts the pictures it handed out."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.yielded = 0

    def __iter__(self) -> Iterator[av.VideoFrame]:
        for i in range(self.count):
            self.yielded += 1
            yield av.VideoFrame.from_ndarray(moving_luma(i, W, H), format="gray")


@pytest.mark.asyncio
async def test_a_request_makes_the_next_frame_a_keyframe(tmp_path: Path) -> None:
    relay, clock = MemoryRelay(), Clock()
    async with network(tmp_path) as net:
        clients, (ea, eb), _ = await call_of(net, relay, clock, ("alice", "bob"))
        alice = clients[0]._core.me
        # A periodic keyframe only at the start: any other keyframe is the request's.
        config = VideoConfig(W, H, fps=15, keyframe_interval=60)
        runner = MediaRunner(ea, speed=20, video_config=config)
        pictures = Pictures(30)
        # When the request is honoured, pictures 0..n-1 were handed out and each was checked
        # for a pending request right after it was; so picture n must be the keyframe.
        honoured_at: list[int] = []
        force = runner.request_keyframe

        def recorded() -> None:
            honoured_at.append(pictures.yielded)
            force()

        runner.request_keyframe = recorded  # type: ignore[method-assign]
        sent = asyncio.create_task(runner.send_video(pictures))
        received: list[MediaFrame] = []
        while not sent.done() or relay.channels["bob"].inbox.qsize():
            for data in relay.channels["bob"].pending():
                got = await eb.open(data)
                assert got is not None
                received.append(got.frame)
            if not honoured_at and len({f.timestamp for f in received}) >= 10:
                assert await eb.request_keyframe(alice)
                for data in relay.channels["alice"].pending():
                    await ea.open(data)
            await asyncio.sleep(0.005)
        assert await sent == 30
        assert ea.keyframe_listener is None  # released when the video ends

        # Decode everything with FFmpeg's own VP8 decoder through PyAV (not libvpx, whose
        # FFmpeg wrapper does not mark keyframes, nor our wrapper) and read each picture's flag.
        reassembler = VideoReassembler()
        codec = av.CodecContext.create("vp8", "r")
        keys = []
        for frame in received:
            for whole in reassembler.push(frame):
                (picture,) = codec.decode(av.Packet(whole.data))
                assert isinstance(picture, av.VideoFrame)
                keys.append(picture.key_frame)
                assert picture.key_frame == whole.keyframe  # the media frame says the same
        assert len(keys) == 30 and len(honoured_at) == 1 and honoured_at[0] < 30
        # The first picture encoded after the request was honoured is a keyframe, and the
        # only one besides the first.
        assert [i for i, k in enumerate(keys) if k] == [0, honoured_at[0]]
        rows = {p.user: p for p in ea.stats()}
        assert rows["bob"].keyframe_requests_honoured == 1
