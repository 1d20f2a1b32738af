"""The media path of a call in one process, without a relay: files in, codecs, media frames,
SFrame, a lossy and reordering network, jitter buffer / reassembly, codecs, files out; the
output is judged with the similarity measures of tests/support/media.py."""

from __future__ import annotations

import random
from pathlib import Path

from doorless.client.calls.media import (
    AudioPacketizer,
    AudioPlayout,
    OpusEncoder,
    VideoConfig,
    VideoFileSink,
    VideoFileSource,
    VideoPacketizer,
    VideoReassembler,
    Vp8Decoder,
    Vp8Encoder,
    WavFileSink,
    WavFileSource,
    decode_frame,
    encode_frame,
)
from doorless.sframe import BaseKey, SFrameReceiver, SFrameSender, SFrameSuite
from support.media import (
    AUDIO_THRESHOLD,
    VIDEO_PSNR_THRESHOLD,
    luma_of,
    moving_luma,
    moving_video,
    read_video_luma,
    read_wav,
    speech_like,
    video_similarity,
    write_wav,
)
from support.media import audio_similarity as similarity

SUITE = SFrameSuite.AES_128_GCM_SHA256_128
KEY = BaseKey(bytes(range(16)))


def _sframe_pair() -> tuple[SFrameSender, SFrameReceiver]:
    sender = SFrameSender(SUITE, 7, KEY)
    sender.reserve(100_000)
    receiver = SFrameReceiver(SUITE)
    receiver.add_key(7, KEY)
    return sender, receiver


def _network(datagrams: list[bytes], loss: float, seed: int) -> list[tuple[float, bytes]]:
    """Each datagram sent at 20 ms intervals arrives 0-40 ms later, or (``loss``) never."""
    rng = random.Random(seed)
    out = [(i * 0.02 + rng.uniform(0, 0.04), d) for i, d in enumerate(datagrams)]
    return sorted((t, d) for t, d in out if rng.random() >= loss)


def test_audio_from_wav_to_wav_through_sframe_with_loss_and_reordering(tmp_path: Path) -> None:
    signal = speech_like("alice", 3.0)
    source = write_wav(tmp_path / "in.wav", speech_like("alice", 3.0, rate=44_100), 44_100, 2)
    sender, receiver = _sframe_pair()
    encoder, packetizer = OpusEncoder(), AudioPacketizer()
    datagrams = [
        sender.encrypt(encode_frame(packetizer.packetize(encoder.encode(pcm), i * 20_000)))
        for i, pcm in enumerate(WavFileSource(source))
    ]
    playout = AudioPlayout()
    with WavFileSink(tmp_path / "out.wav") as sink:
        for now, datagram in _network(datagrams, loss=0.05, seed=3):
            playout.push(decode_frame(receiver.decrypt(datagram).plaintext), now)
            for played in playout.pull(now):
                sink.write(played.pcm)
        for played in playout.pull(10.0):
            if played.sequence < len(datagrams):
                sink.write(played.pcm)
    stats = playout.stats
    assert stats.lost > 0 and stats.concealed >= stats.lost
    received, rate = read_wav(tmp_path / "out.wav")
    assert rate == 48_000
    assert abs(received.size - signal.size) <= 2 * 960  # continuous: no frame missing
    assert similarity(signal, received) > AUDIO_THRESHOLD
    assert similarity(speech_like("bob", 3.0), received) < AUDIO_THRESHOLD


def test_video_from_file_to_file_through_sframe_with_a_lost_fragment(tmp_path: Path) -> None:
    config = VideoConfig(160, 120, fps=15, bitrate=400_000, keyframe_interval=1.0)
    source = moving_video(tmp_path / "in.mp4", frames=30, width=320, height=240, fps=15)
    sender, receiver = _sframe_pair()
    encoder, packetizer = Vp8Encoder(config), VideoPacketizer()
    datagrams: list[bytes] = []
    for i, frame in enumerate(VideoFileSource(source, config)):
        packet = encoder.encode(frame)
        assert packet is not None
        fragments = packetizer.packetize(packet.data, i, packet.keyframe)
        datagrams += [sender.encrypt(encode_frame(f)) for f in fragments]
    lost = len(datagrams) // 3  # one datagram in the middle never arrives
    reassembler, decoder = VideoReassembler(), Vp8Decoder()
    shown: list[int] = []
    with VideoFileSink(tmp_path / "out.webm", config) as sink:
        for n, datagram in enumerate(datagrams):
            if n == lost:
                continue
            for whole in reassembler.push(decode_frame(receiver.decrypt(datagram).plaintext)):
                sink.write(decoder.decode(whole.data))
                shown.append(whole.timestamp)
    out = read_video_luma(tmp_path / "out.webm")
    assert len(out) == len(shown) == reassembler.stats.frames
    # Frames until the loss, then from the next periodic keyframe (every 15 frames) on.
    assert 15 <= len(out) < 30
    assert reassembler.stats.dropped + reassembler.stats.skipped >= 1
    sent = [luma_of(f) for f in VideoFileSource(source, config)]  # what the sender encoded
    assert video_similarity([sent[t] for t in shown], out) > VIDEO_PSNR_THRESHOLD
    # ... and not some other video: the same frames against another moving content.
    other = [moving_luma(t, 160, 120, variant=1) for t in shown]
    assert video_similarity(other, out) < VIDEO_PSNR_THRESHOLD
