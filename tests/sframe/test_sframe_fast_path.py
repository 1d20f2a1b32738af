"""The per-frame paths of `SFrameSender.encrypt` and `SFrameReceiver.decrypt` (issue #13; the
C path and the Python reference, see conftest.py) against the general header codec and a
model of the replay window: every header width, frames that a valid tag does not make
acceptable (non-minimal or cut headers), and a window that a failed frame leaves untouched."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from doorless import sframe
from doorless.errors import ConfigurationError, DecodeError
from doorless.sframe import (
    BaseKey,
    FrameDecryptError,
    ReplayedFrame,
    SFrameReceiver,
    SFrameSender,
    SFrameSuite,
    UnknownKeyId,
    decode_header,
    encode_header,
)

KEY = BaseKey(bytes(range(16)))
GCM = SFrameSuite.AES_128_GCM_SHA256_128
CTR80 = SFrameSuite.AES_128_CTR_HMAC_SHA256_80

# Every KID and CTR width of §4.3: in the config byte (0-7), then 1..8 bytes, at both ends.
WIDTHS = [0, 1, 7, 8, 255] + [v for n in range(2, 9) for v in (1 << (8 * n - 8), (1 << 8 * n) - 1)]


def _sealed(kid: int, header: bytes, ctr: int, pt: bytes = b"payload") -> bytes:
    """A frame with ``header`` whose tag verifies under KEY (``header`` is the AAD)."""
    derived = sframe.derive_key_salt(GCM, kid, KEY)
    nonce = sframe.nonce_for(derived.salt, ctr)
    return header + sframe.aead_encrypt(GCM, derived.key, nonce, header, pt)


@pytest.mark.parametrize("kid", WIDTHS)
def test_every_header_width_matches_the_general_codec(kid: int) -> None:
    r = SFrameReceiver(GCM)
    r.add_key(kid, KEY)
    for ctr in WIDTHS[:-1]:  # the last CTR, 2**64 - 1, cannot be followed by another
        s = SFrameSender(GCM, kid, KEY, next_ctr=ctr)
        s.reserve(1)
        frame = s.encrypt(b"pt", b"meta")
        header = encode_header(kid, ctr)
        assert frame.startswith(header)
        assert decode_header(frame)[1] == len(header)
        assert r.decrypt(frame, b"meta") == (kid, ctr, b"pt")


@pytest.mark.parametrize("suite", [GCM, CTR80], ids=lambda s: s.name)
def test_a_sender_crossing_every_ctr_width_boundary_round_trips(suite: SFrameSuite) -> None:
    r = SFrameReceiver(suite)
    r.add_key(300, KEY)
    for first in (0, 250, 65530, (1 << 24) - 3, (1 << 56) - 3, sframe.MAX_VALUE - 3):
        s = SFrameSender(suite, 300, KEY, next_ctr=first)
        s.reserve(6)
        for ctr in range(first, min(first + 6, sframe.MAX_VALUE + 1)):
            frame = s.encrypt(bytes([ctr & 0xFF]))
            assert frame.startswith(encode_header(300, ctr))
            assert r.decrypt(frame) == (300, ctr, bytes([ctr & 0xFF]))


@pytest.mark.parametrize(
    ("kid", "header_hex", "ctr"),
    [
        (5, "58" + "05", 5),  # CTR 5 in a CTR byte: must be in the config byte
        (5, "59" + "0009", 9),  # CTR 9 in two bytes with a leading zero
        (5, "5a" + "000100", 256),  # CTR 256 in three bytes
        (9, "88" + "09" + "05", 5),  # KID 9 fine, CTR 5 in a byte
        (9, "98" + "0009" + "09", 9),  # KID 9 in two bytes
        (5, "88" + "05" + "09", 9),  # KID 5 in a KID byte
    ],
)
def test_a_non_minimal_header_with_a_valid_tag_is_rejected(
    kid: int, header_hex: str, ctr: int
) -> None:
    """The fast path must not accept what the parser rejects, even when the tag verifies."""
    r = SFrameReceiver(GCM)
    r.add_key(kid, KEY)
    with pytest.raises(DecodeError, match="minimally"):
        r.decrypt(_sealed(kid, bytes.fromhex(header_hex), ctr))
    assert r.window_of(kid) == (-1, 0)


@pytest.mark.parametrize("kid", [5, 300])
def test_a_header_cut_inside_its_ctr_is_a_decode_error(kid: int) -> None:
    s = SFrameSender(GCM, kid, KEY, next_ctr=1 << 40)
    s.reserve(1)
    frame = s.encrypt(b"x")
    n = decode_header(frame)[1]
    r = SFrameReceiver(GCM)
    r.add_key(kid, KEY)
    for cut in range(1, n):
        with pytest.raises(DecodeError, match="truncated"):
            r.decrypt(frame[:cut])
    assert r.window_of(kid) == (-1, 0)


def test_empty_and_unknown_frames() -> None:
    r = SFrameReceiver(GCM)
    r.add_key(5, KEY)
    with pytest.raises(DecodeError, match="empty"):
        r.decrypt(b"")
    with pytest.raises(UnknownKeyId, match="KID 6"):
        r.decrypt(encode_header(6, 1) + bytes(20))


def test_removing_a_key_removes_all_its_routes_and_no_other() -> None:
    r = SFrameReceiver(GCM)
    for kid in (5, 6, 300):
        r.add_key(kid, KEY)
    frames = {}
    for kid in (5, 6, 300):
        s = SFrameSender(GCM, kid, KEY)
        s.reserve(300)
        frames[kid] = [s.encrypt(b"x") for _ in range(300)]  # CTRs in the config byte and not
    r.remove_key(5)
    for frame in frames[5][:3] + frames[5][-3:]:
        with pytest.raises(UnknownKeyId):
            r.decrypt(frame)
    assert [r.decrypt(f).ctr for f in frames[6][-3:] + frames[300][-3:]] == [297, 298, 299] * 2
    r.add_key(5, KEY)
    assert r.decrypt(frames[5][0]).ctr == 0


def test_window_limits() -> None:
    SFrameReceiver(GCM, window=sframe.MAX_WINDOW)
    for bad in (-1, sframe.MAX_WINDOW + 1):
        with pytest.raises(ConfigurationError):
            SFrameReceiver(GCM, window=bad)


# --- the replay window against a model ------------------------------------------------------


def _model_bitmap(accepted: set[int], highest: int, window: int) -> int:
    return sum(1 << i for i in range(window) if highest - i in accepted)


@settings(max_examples=300)
@given(
    st.sampled_from([1, 2, 3, 8, 64]),
    st.lists(st.tuples(st.integers(-12, 14), st.booleans()), max_size=80),
)
def test_replay_window_matches_a_model(window: int, steps: list[tuple[int, bool]]) -> None:
    """Deliver frames in a jittery order (each CTR a step from the one before), some tampered:
    each is accepted exactly when the model (RFC 9605 §9.3: new, or less than ``window`` behind
    the highest and not seen) says so, and the window afterwards is the model's; a rejected
    frame changes nothing."""
    s = SFrameSender(GCM, 5, KEY)
    s.reserve(201)
    frames = [s.encrypt(ctr.to_bytes(1)) for ctr in range(201)]
    r = SFrameReceiver(GCM, window=window)
    r.add_key(5, KEY)
    accepted: set[int] = set()
    highest = -1
    ctr = 0
    for step, tamper in steps:
        ctr = min(max(ctr + step, 0), 200)
        frame = frames[ctr]
        if tamper:
            frame = frame[:-1] + bytes([frame[-1] ^ 1])
        fresh = ctr > highest or (highest - ctr < window and ctr not in accepted)
        before = r.window_of(5)
        if tamper or not fresh:
            with pytest.raises((FrameDecryptError, ReplayedFrame)):
                r.decrypt(frame)
            assert r.window_of(5) == before
            continue
        assert r.decrypt(frame).ctr == ctr
        accepted.add(ctr)
        highest = max(highest, ctr)
        assert r.window_of(5) == (highest, _model_bitmap(accepted, highest, window))


def test_a_short_jump_clears_the_slots_it_passes_over() -> None:
    """Window 8: CTR 1 sits in the slot that CTR 9 takes over when the window moves to 10."""
    s = SFrameSender(GCM, 5, KEY)
    s.reserve(11)
    frames = [s.encrypt(b"x") for _ in range(11)]
    r = SFrameReceiver(GCM, window=8)
    r.add_key(5, KEY)
    for ctr in (1, 8, 10, 9):
        assert r.decrypt(frames[ctr]).ctr == ctr
    assert r.window_of(5) == (10, 0b111)


def test_a_jump_longer_than_the_window_forgets_everything_before() -> None:
    s = SFrameSender(GCM, 5, KEY)
    s.reserve(600)
    frames = [s.encrypt(b"x") for _ in range(600)]
    r = SFrameReceiver(GCM, window=128)
    r.add_key(5, KEY)
    for ctr in (0, 1, 2, 130, 131, 500):
        r.decrypt(frames[ctr])
    assert r.window_of(5) == (500, 1)
    r.decrypt(frames[400])  # 100 behind: inside the window, never seen
    with pytest.raises(ReplayedFrame, match="older"):
        r.decrypt(frames[131])
    assert r.window_of(5) == (500, 1 | 1 << 100)
