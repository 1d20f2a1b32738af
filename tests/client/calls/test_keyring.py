"""`CallKeyring` on untrusted bytes: anything decrypts or raises one of the typed SFrame
errors, and changes nothing (a genuine frame still opens afterwards)."""

from __future__ import annotations

import contextlib

from hypothesis import given, settings
from hypothesis import strategies as st

from doorless.client.calls.keys import CallKeyring, EpochKeys
from doorless.client.events import DeviceRef
from doorless.errors import DecodeError
from doorless.sframe import BaseKey, FrameDecryptError, ReplayedFrame, UnknownKeyId


@given(st.binary(max_size=200))
@settings(max_examples=300, deadline=None)
def test_any_bytes_open_or_raise_a_typed_error_and_change_nothing(data: bytes) -> None:
    keys = EpochKeys(
        epoch=3,
        base_key=BaseKey(bytes(range(16))),
        senders={0: DeviceRef("alice", "a" * 32), 1: DeviceRef("bob", "b" * 32)},
        own_leaf=1,
        privacy_code="0",
    )
    ring = CallKeyring()
    ring.install(keys, 0.0)
    sender = EpochKeys(3, keys.base_key, keys.senders, 0, "0").sender()  # alice's
    sender.reserve(2)
    good = sender.encrypt(b"frame")
    if data != good:
        with contextlib.suppress(DecodeError, UnknownKeyId, ReplayedFrame, FrameDecryptError):
            ring.open(data, 0.0)
    # Whatever came before, a genuine frame still opens (nothing was half-changed).
    assert ring.open(good, 0.0).plaintext == b"frame"
