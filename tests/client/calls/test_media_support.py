"""The similarity measures of tests/support/media.py can fail: each rejects silence, another
signal and garbage, and accepts the same signal through the codec (the measured values are in
docs/calls.md, "Media"); the hole measure sees lost frames that were not concealed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from doorless.client.calls.media import OpusDecoder, OpusEncoder
from doorless.client.calls.media.conceal import FadingConcealer
from support.media import (
    AUDIO_THRESHOLD,
    VIDEO_PSNR_THRESHOLD,
    Samples,
    aligned_video_similarity,
    audio_similarity,
    from_pcm,
    longest_hole_ms,
    moving_luma,
    moving_video,
    pcm_frames,
    read_video_luma,
    silence,
    speech_like,
    video_similarity,
    white_noise,
)


def _through_opus(samples: Samples) -> Samples:
    encoder, decoder = OpusEncoder(), OpusDecoder()
    return from_pcm([decoder.decode(encoder.encode(p)) for p in pcm_frames(samples)])


REFERENCE = speech_like("alice")


def test_same_signal_through_opus_passes_even_delayed() -> None:
    received = _through_opus(REFERENCE)
    assert audio_similarity(REFERENCE, received) > 0.95
    delayed = np.concatenate([np.zeros(14_400, dtype=np.int16), received])  # 300 ms later
    assert audio_similarity(REFERENCE, delayed) > 0.95
    joined_late = received[24_000:]  # the first 500 ms missed
    assert audio_similarity(REFERENCE, joined_late) > 0.95


def test_a_lost_frame_not_concealed_is_a_hole() -> None:
    for speaker in ("alice", "bob", "carol"):
        assert longest_hole_ms(speech_like(speaker)) == 0, speaker  # syllables fade in and out
    frames = pcm_frames(_through_opus(REFERENCE))
    rms = [float(np.sqrt(np.mean(from_pcm([f]).astype(np.float64) ** 2))) for f in frames]
    k = next(i for i in range(1, len(rms) - 2) if min(rms[i - 1 : i + 3]) > 3000)  # mid-syllable
    assert longest_hole_ms(from_pcm(frames)) == 0
    # Two frames in a row lost: silence (what the mixer plays for a missing frame) is a hole
    silent = [*frames[:k], bytes(len(frames[k])) * 2, *frames[k + 2 :]]
    assert 35 <= longest_hole_ms(from_pcm(silent)) <= 40
    # ... the fading repeat of the frame before is not.
    concealer = FadingConcealer()
    concealer.good(frames[k - 1])
    concealed = [*frames[:k], concealer.conceal(), concealer.conceal(), *frames[k + 2 :]]
    assert longest_hole_ms(from_pcm(concealed)) == 0


@pytest.mark.parametrize(
    "received",
    [
        pytest.param(lambda: _through_opus(speech_like("bob")), id="other-speaker"),
        pytest.param(lambda: _through_opus(speech_like("carol")), id="third-speaker"),
        pytest.param(lambda: _through_opus(white_noise()), id="noise"),
        pytest.param(lambda: _through_opus(silence()), id="silence"),
        pytest.param(
            lambda: np.random.default_rng(5).integers(-20_000, 20_000, 144_000).astype(np.int16),
            id="garbage",
        ),
        pytest.param(lambda: np.zeros(0, dtype=np.int16), id="nothing"),
    ],
)
def test_wrong_audio_fails(received: object) -> None:
    assert callable(received)
    assert audio_similarity(REFERENCE, received()) < AUDIO_THRESHOLD


def test_same_video_through_vp8_passes_and_others_fail(tmp_path: Path) -> None:
    reference = [moving_luma(i, 160, 120) for i in range(20)]
    through_vp8 = read_video_luma(moving_video(tmp_path / "a.webm", frames=20))
    assert len(through_vp8) == 20
    assert video_similarity(reference, through_vp8) > VIDEO_PSNR_THRESHOLD
    other = [moving_luma(i, 160, 120, variant=1) for i in range(20)]
    black = [np.zeros((120, 160), dtype=np.uint8)] * 20
    rng = np.random.default_rng(3)
    garbage = [rng.integers(0, 256, (120, 160), dtype=np.uint8) for _ in range(20)]
    for wrong in (other, black, garbage, []):
        assert video_similarity(reference, wrong) < VIDEO_PSNR_THRESHOLD
        assert aligned_video_similarity(reference, wrong)[0] < VIDEO_PSNR_THRESHOLD
    late = through_vp8[4:]  # a receiver that started at frame 4
    assert video_similarity(reference, late) < VIDEO_PSNR_THRESHOLD
    score, offset = aligned_video_similarity(reference, late)
    assert offset == 4 and score > VIDEO_PSNR_THRESHOLD
