"""Sources and sinks with files: any WAV in (rate, channels) resampled to 48 kHz mono, WAV
out, video files in any container and out as WebM/Matroska/Y4M, typed errors on garbage."""

from __future__ import annotations

import random
from pathlib import Path

import av
import pytest

from doorless.client.calls.media import (
    FRAME_BYTES,
    MediaConfigError,
    MediaFileError,
    VideoConfig,
    VideoFileSink,
    VideoFileSource,
    WavFileSink,
    WavFileSource,
)
from support.media import (
    AUDIO_THRESHOLD,
    VIDEO_PSNR_THRESHOLD,
    from_pcm,
    moving_luma,
    moving_video,
    pcm_frames,
    read_video_luma,
    read_wav,
    speech_like,
    video_similarity,
    write_wav,
)
from support.media import audio_similarity as similarity


@pytest.mark.parametrize(("rate", "channels"), [(48_000, 1), (44_100, 2), (16_000, 1)])
def test_wav_in_any_rate_and_channels_comes_out_48k_mono(
    tmp_path: Path, rate: int, channels: int
) -> None:
    signal = speech_like("carol", 1.0, rate=rate)
    path = write_wav(tmp_path / "in.wav", signal, rate, channels)
    frames = list(WavFileSource(path))
    assert all(len(f) == FRAME_BYTES for f in frames)
    assert abs(len(frames) - 50) <= 1  # 1 s in 20 ms frames (the resampler may add a tail)
    reference = speech_like("carol", 1.0)  # the same signal generated at 48 kHz
    assert similarity(reference, from_pcm(frames)) > AUDIO_THRESHOLD


def test_wav_sink_writes_what_it_is_given(tmp_path: Path) -> None:
    signal = speech_like("bob", 0.5)
    with WavFileSink(tmp_path / "out.wav") as sink:
        for pcm in pcm_frames(signal):
            sink.write(pcm)
    samples, rate = read_wav(tmp_path / "out.wav")
    assert rate == 48_000 and (samples == signal).all()
    with pytest.raises(MediaConfigError):
        WavFileSink(tmp_path / "missing-dir" / "out.wav")


@pytest.mark.parametrize(
    "content",
    [b"", b"RIFF\x00\x00\x00\x00WAVEgarbage" * 5, bytes(range(256)) * 20],
    ids=["empty", "bad-wav", "random"],
)
def test_garbage_audio_files_raise_media_file_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(MediaFileError):
        list(WavFileSource(path))


def test_missing_file_and_video_only_file_raise_media_file_error(tmp_path: Path) -> None:
    with pytest.raises(MediaFileError):
        WavFileSource(tmp_path / "nope.wav")
    with pytest.raises(MediaFileError, match="no audio"):
        WavFileSource(moving_video(tmp_path / "v.webm", frames=2))


@pytest.mark.parametrize("suffix", [".webm", ".mkv", ".mp4", ".y4m"])
def test_video_files_in_any_container_come_out_at_the_call_size(
    tmp_path: Path, suffix: str
) -> None:
    path = moving_video(tmp_path / f"in{suffix}", frames=15, width=320, height=240, fps=15)
    config = VideoConfig(160, 120, fps=15)
    frames = list(VideoFileSource(path, config))
    assert len(frames) == 15
    assert all((f.width, f.height, f.format.name) == (160, 120, "yuv420p") for f in frames)


def test_video_source_maps_the_file_rate_onto_the_call_rate(tmp_path: Path) -> None:
    path = moving_video(tmp_path / "in.mkv", frames=30, fps=30)  # 1 s at 30 fps
    assert len(list(VideoFileSource(path, VideoConfig(160, 120, fps=10)))) == 10
    assert len(list(VideoFileSource(path, VideoConfig(160, 120, fps=60)))) == 60


@pytest.mark.parametrize("suffix", [".webm", ".mkv", ".y4m"])
def test_video_sink_writes_a_readable_file(tmp_path: Path, suffix: str) -> None:
    source = moving_video(tmp_path / "in.mkv", frames=12)
    config = VideoConfig(160, 120, fps=15, bitrate=500_000)
    with VideoFileSink(tmp_path / f"out{suffix}", config) as sink:
        for frame in VideoFileSource(source, config):
            sink.write(frame)
    out = read_video_luma(tmp_path / f"out{suffix}")
    assert len(out) == 12
    reference = [moving_luma(i, 160, 120) for i in range(12)]
    assert video_similarity(reference, out) > VIDEO_PSNR_THRESHOLD


def test_video_sink_refuses_unknown_extensions_and_writes_after_close(tmp_path: Path) -> None:
    with pytest.raises(MediaConfigError):
        VideoFileSink(tmp_path / "out.avi")
    sink = VideoFileSink(tmp_path / "out.y4m", VideoConfig(160, 120))
    sink.close()
    sink.close()
    frame = next(iter(VideoFileSource(moving_video(tmp_path / "in.mkv", frames=1))))
    with pytest.raises(MediaConfigError):
        sink.write(frame)


def test_garbage_video_files_raise_media_file_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.webm"
    path.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(MediaFileError):
        list(VideoFileSource(path))
    with pytest.raises(MediaFileError, match="no video"):
        VideoFileSource(write_wav(tmp_path / "a.wav", speech_like("bob", 0.1)))


@pytest.mark.parametrize(("suffix", "codec"), [(".flac", "flac"), (".ogg", "libopus")])
def test_audio_from_other_containers_is_read_too(tmp_path: Path, suffix: str, codec: str) -> None:
    signal = speech_like("alice", 1.0)
    path = tmp_path / f"in{suffix}"
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=48_000)
        assert isinstance(stream, av.AudioStream)
        stream.layout = "mono"
        for i, pcm in enumerate(pcm_frames(signal)):
            frame = av.AudioFrame(format="s16", layout="mono", samples=960)
            frame.planes[0].update(pcm)
            frame.sample_rate, frame.pts = 48_000, i * 960
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    frames = list(WavFileSource(path))
    assert abs(len(frames) - 50) <= 1
    assert similarity(signal, from_pcm(frames)) > AUDIO_THRESHOLD


@pytest.mark.parametrize("seed", range(6))
def test_damaged_files_give_frames_or_media_file_error_only(tmp_path: Path, seed: int) -> None:
    """Bytes overwritten or cut anywhere in a valid file: the sources yield what they can
    decode or raise `MediaFileError`, never another exception."""
    rng = random.Random(seed)
    video = bytearray(moving_video(tmp_path / "v.webm", frames=10).read_bytes())
    audio = bytearray(write_wav(tmp_path / "a.wav", speech_like("bob", 0.3)).read_bytes())
    for data, name in ((video, "v2.webm"), (audio, "a2.wav")):
        start = rng.randrange(len(data))
        data[start : start + 64] = rng.randbytes(64)
        if seed % 2:
            del data[rng.randrange(len(data)) :]
        (tmp_path / name).write_bytes(bytes(data))
    try:
        frames = list(VideoFileSource(tmp_path / "v2.webm", VideoConfig(160, 120)))
    except MediaFileError:
        frames = []
    assert all((f.width, f.height) == (160, 120) for f in frames)
    try:
        pcm = list(WavFileSource(tmp_path / "a2.wav"))
    except MediaFileError:
        pcm = []
    assert all(len(p) == FRAME_BYTES for p in pcm)


def test_a_source_is_read_once(tmp_path: Path) -> None:
    audio = WavFileSource(write_wav(tmp_path / "a.wav", speech_like("bob", 0.1)))
    video = VideoFileSource(moving_video(tmp_path / "v.mkv", frames=2), VideoConfig(160, 120))
    assert len(list(audio)) == 5 and len(list(video)) == 2
    for source in (audio, video):
        with pytest.raises(MediaConfigError, match="already read"):
            list(source)
    closed = WavFileSource(tmp_path / "a.wav")
    closed.close()
    with pytest.raises(MediaConfigError):
        list(closed)
