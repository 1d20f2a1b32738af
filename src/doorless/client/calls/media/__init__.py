"""Call media: codecs, the media frame inside SFrame, jitter buffer, sources and sinks.

No networking and no keys here: the call engine (`doorless.client.calls`) takes what this
package produces, encrypts each encoded `MediaFrame` with SFrame and sends it through the relay;
on receipt it decrypts and hands the `MediaFrame` back here. PCM is signed 16-bit mono at
48 kHz in 20 ms frames (`FRAME_BYTES` bytes); video frames are PyAV ``VideoFrame`` objects.

Sending audio::

    source = WavFileSource("in.wav")            # or MicrophoneSource(); any rate/channels in
    encoder = OpusEncoder(bitrate=32_000)
    audio = AudioPacketizer()                   # sequence numbers and timestamps
    for pcm in source:                          # pace with `Pacer` for real time
        data = encode_frame(audio.packetize(encoder.encode(pcm), now_us))
        # data -> SFrame -> relay

Receiving audio::

    playout = AudioPlayout()                    # jitter buffer + Opus decoder + concealment
    playout.push(decode_frame(plaintext), now)  # on each decrypted SFrame frame
    for played in playout.pull(now):            # every 20 ms (or as the clock advances)
        sink.write(played.pcm)                  # WavFileSink("out.wav") or SpeakerSink()
    playout.stats                               # received, lost, late, duplicate, concealed

Video: `Vp8Encoder` (``encode(frame, keyframe=False) -> EncodedVideo``), `VideoPacketizer`
(splits a VP8 frame into `MediaFrame` fragments of at most `DATAGRAM_BUDGET` bytes),
`VideoReassembler` (fragments back to whole frames, in order, with loss counted and
``keyframe_needed`` raised until a keyframe arrives), `Vp8Decoder`, `VideoFileSource` (any
container PyAV reads, scaled to the call's size and rate) and `VideoFileSink` (``.webm`` VP8 or
``.y4m`` raw).

Modules: `frame` (MediaFrame, StreamKind, the datagram budget), `opus`, `vp8`, `fragment`,
`jitter` (the audio jitter buffer, pure logic with the clock passed in), `playout`
(jitter buffer + decoder + concealment), `audio_files`, `video_files`, `devices`
(sounddevice; `AudioDeviceUnavailable` without PortAudio), `pacing`, `errors`.
`StreamKind` is defined in `frame` until the relay's wire contract (`doorless.wire.calls`)
provides the shared one.
"""

from __future__ import annotations

from doorless.client.calls.media.audio_files import WavFileSink, WavFileSource
from doorless.client.calls.media.devices import MicrophoneSource, SpeakerSink
from doorless.client.calls.media.errors import (
    AudioDeviceUnavailable,
    CodecDecodeError,
    MediaConfigError,
    MediaFileError,
    MediaFrameError,
)
from doorless.client.calls.media.frame import (
    DATAGRAM_BUDGET,
    MAX_PAYLOAD,
    FrameFlags,
    MediaFrame,
    StreamKind,
    decode_frame,
    encode_frame,
)
from doorless.client.calls.media.jitter import AudioJitterBuffer, JitterStats, Slot
from doorless.client.calls.media.opus import (
    FRAME_BYTES,
    FRAME_MS,
    FRAME_SAMPLES,
    SAMPLE_RATE,
    OpusDecoder,
    OpusEncoder,
)
from doorless.client.calls.media.pacing import paced
from doorless.client.calls.media.packetize import AudioPacketizer, VideoPacketizer
from doorless.client.calls.media.playout import AudioPlayout, PlayedAudio, PlayoutStats
from doorless.client.calls.media.reassembly import EncodedVideo, ReassemblyStats, VideoReassembler
from doorless.client.calls.media.video_files import VideoFileSink, VideoFileSource
from doorless.client.calls.media.vp8 import VideoConfig, Vp8Decoder, Vp8Encoder, Vp8Packet

__all__ = [
    "DATAGRAM_BUDGET",
    "FRAME_BYTES",
    "FRAME_MS",
    "FRAME_SAMPLES",
    "MAX_PAYLOAD",
    "SAMPLE_RATE",
    "AudioDeviceUnavailable",
    "AudioJitterBuffer",
    "AudioPacketizer",
    "AudioPlayout",
    "CodecDecodeError",
    "EncodedVideo",
    "FrameFlags",
    "JitterStats",
    "MediaConfigError",
    "MediaFileError",
    "MediaFrame",
    "MediaFrameError",
    "MicrophoneSource",
    "OpusDecoder",
    "OpusEncoder",
    "PlayedAudio",
    "PlayoutStats",
    "ReassemblyStats",
    "Slot",
    "SpeakerSink",
    "StreamKind",
    "VideoConfig",
    "VideoFileSink",
    "VideoFileSource",
    "VideoPacketizer",
    "VideoReassembler",
    "Vp8Decoder",
    "Vp8Encoder",
    "Vp8Packet",
    "WavFileSink",
    "WavFileSource",
    "decode_frame",
    "encode_frame",
    "paced",
]
