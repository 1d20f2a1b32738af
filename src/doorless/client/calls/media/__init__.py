"""Call media: codecs, the media frame inside SFrame, jitter buffer, sources and sinks.

No networking and no keys here: the call engine (`doorless.client.calls`) takes what this
package produces, encrypts each encoded `MediaFrame` with SFrame and sends it through the relay;
on receipt it decrypts and hands the `MediaFrame` back here. PCM is signed 16-bit mono at
48 kHz in 20 ms frames (`FRAME_BYTES` bytes); video frames are PyAV ``VideoFrame`` objects.

Sending audio::

    source = WavFileSource("in.wav")            # or MicrophoneSource(); any rate/channels in
    encoder = OpusEncoder(bitrate=32_000)
    audio = AudioPacketizer()                   # sequence numbers and timestamps
    async for pcm, t in paced(source, 0.020):    # real time; realtime=False for tests
        data = encode_frame(audio.packetize(encoder.encode(pcm), now_us))
        # data -> SFrame -> relay

Receiving audio::

    playout = AudioPlayout()                    # jitter buffer + Opus decoder + concealment
    playout.push(decode_frame(plaintext), now)  # on each decrypted SFrame frame
    for played in playout.pull(now):            # every 20 ms (or as the clock advances)
        sink.write(played.pcm)                  # WavFileSink("out.wav") or SpeakerSink()
    playout.stats                               # received, lost, late, duplicate, concealed

Several senders into one sink: `AudioMixer` (one playout per sender, keyed by anything
hashable, e.g. the sender's device): ``mixer.push(sender, frame, now)``, ``mixer.pull(now)`` ->
mixed 20 ms PCM frames, ``mixer.stats`` -> ``{sender: PlayoutStats}``.

Timing: ``now`` is any monotonic clock in seconds. In real time it is the receiver's clock;
for a file-to-file call run as fast as possible, drive it with the media time instead (e.g.
the frame's ``timestamp`` / 1e6 plus a fixed delay), or the jitter buffer sees every frame
arrive at once.

Video::

    config = VideoConfig(width=320, height=240, fps=15)
    source = VideoFileSource("in.mp4", config)  # any container PyAV reads; size and rate mapped
    encoder, video = Vp8Encoder(config), VideoPacketizer()
    for frame in source:                        # paced(source, 1 / config.fps)
        packet = encoder.encode(frame)          # Vp8Packet(data, keyframe) or None (dropped)
        for media_frame in video.packetize(packet.data, now_us, packet.keyframe):
            ...                                 # each fits one datagram (`DATAGRAM_BUDGET`)
    encoder.request_keyframe()                  # when a receiver asks (`KeyframeRequest`)

    reassembler, decoder = VideoReassembler(), Vp8Decoder()
    for whole in reassembler.push(media_frame): # whole frames, in order, once complete
        sink.write(decoder.decode(whole.data))  # VideoFileSink("out.webm" | ".mkv" | ".y4m")
    reassembler.keyframe_needed                 # True at the start and after a loss: ask

Modules: `frame` (MediaFrame, StreamKind, the datagram budget), `opus`, `vp8`, `packetize`
(sequence numbers, video fragmentation), `reassembly` (video), `jitter` (the audio jitter
buffer, pure logic with the clock passed in), `conceal` (fading repetition), `playout`
(jitter buffer + decoder + concealment), `mix`, `audio_files`, `video_files`, `devices`
(sounddevice; `AudioDeviceUnavailable` without PortAudio; its blocking ``read``/``write``
belong in a thread, e.g. ``asyncio.to_thread``), `pacing`, `errors`.
`StreamKind` is the relay envelope's (`doorless.wire.calls`). Errors: `errors` (all in the
`doorless.errors` tree).
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
    KeyframeRequest,
    MediaFrame,
    decode_frame,
    decode_media,
    encode_frame,
)
from doorless.client.calls.media.jitter import AudioJitterBuffer, JitterStats, Slot
from doorless.client.calls.media.mix import AudioMixer, mix_pcm
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
from doorless.wire.calls import StreamKind

__all__ = [
    "DATAGRAM_BUDGET",
    "FRAME_BYTES",
    "FRAME_MS",
    "FRAME_SAMPLES",
    "MAX_PAYLOAD",
    "SAMPLE_RATE",
    "AudioDeviceUnavailable",
    "AudioJitterBuffer",
    "AudioMixer",
    "AudioPacketizer",
    "AudioPlayout",
    "CodecDecodeError",
    "EncodedVideo",
    "FrameFlags",
    "JitterStats",
    "KeyframeRequest",
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
    "decode_media",
    "encode_frame",
    "mix_pcm",
    "paced",
]
