"""KT-lite DeviceList: encoding, signing, and the chain rules DL-1..DL-8 (negative tests each)."""

from __future__ import annotations

import hashlib
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from doorless.codec import decode, encode
from doorless.crypto import cipher_suite
from doorless.errors import ConfigurationError, DecodeError, InvalidSignature, ValidationError
from doorless.kt.device_list import (
    Device,
    DeviceList,
    DeviceListTBS,
    account_label,
    check_binding,
    create_device_list,
    decode_device_list,
    next_device_list,
    sign_device_list,
    verify_chain,
    verify_first,
    verify_successor,
)

SUITE = cipher_suite(1)  # Ed25519 signature keys
USER = b"\x01" * 16


def seed(name: str) -> bytes:
    return hashlib.sha256(name.encode()).digest()


def device(name: str) -> Device:
    return Device(
        name.encode(), 1, SUITE.signature_public_key(seed(name)), b"alice@" + name.encode()
    )


PHONE, LAPTOP, TABLET, GHOST = (device(n) for n in ("phone", "laptop", "tablet", "ghost"))


def chain() -> list[DeviceList]:
    """v0 phone; v1 + laptop (by phone); v2 - phone (by laptop); v3 + tablet (by laptop)."""
    v0 = create_device_list(USER, PHONE, seed("phone"), ts=1000)
    v1 = next_device_list(v0, [PHONE, LAPTOP], 2000, b"phone", seed("phone"))
    v2 = next_device_list(v1, [LAPTOP], 3000, b"laptop", seed("laptop"))
    v3 = next_device_list(v2, [LAPTOP, TABLET], 4000, b"laptop", seed("laptop"))
    return [v0, v1, v2, v3]


def forge(
    prev: DeviceList | None,
    devices: list[Device],
    signer: Device,
    signer_name: str,
    *,
    version: int | None = None,
    prev_hash: bytes | None = None,
    user_id: bytes = USER,
    ts: int = 5000,
) -> DeviceList:
    """A list signed with a real key but built without the helpers' guard rails."""
    tbs = DeviceListTBS(
        user_id,
        (prev.version + 1 if prev else 0) if version is None else version,
        ts,
        tuple(devices),
        (prev.hash() if prev else b"") if prev_hash is None else prev_hash,
        signer.device_id,
    )
    return sign_device_list(tbs, signer, seed(signer_name))


# --- the happy path ------------------------------------------------------------------------------


def test_valid_chain() -> None:
    lists = chain()
    assert verify_chain(lists) == lists[-1]
    assert verify_chain(lists[2:], trusted=lists[1]) == lists[-1]
    assert verify_chain([], trusted=lists[0]) == lists[0]
    for prev, dl in itertools.pairwise(lists):
        verify_successor(prev, dl)
        assert dl.tbs.prev_hash == hashlib.sha256(encode(prev)).digest()
    verify_first(lists[0])
    assert [d.device_id for d in lists[-1].devices] == [b"laptop", b"tablet"]
    for version, dl in enumerate(lists):
        check_binding(dl, USER, version)


def test_encoding_round_trip() -> None:
    v1 = chain()[1]
    wire = v1.encode()
    assert decode_device_list(wire) == v1
    assert decode(DeviceList, wire) == v1
    assert v1.hash() == hashlib.sha256(wire).digest()
    # DeviceListTBS starts with opaque user_id<V> (varint 16), uint32 version, uint64 ts
    assert wire[:1] == b"\x10" and wire[1:17] == USER
    assert wire[17:21] == (1).to_bytes(4, "big")
    assert wire[21:29] == (2000).to_bytes(8, "big")


def test_signature_uses_sign_with_label() -> None:
    v0 = chain()[0]
    # RFC 9420 §5.1.2: SignWithLabel(key, "Doorless DeviceListTBS", tbs)
    SUITE.verify_with_label(
        PHONE.signature_key, b"Doorless DeviceListTBS", encode(v0.tbs), v0.signature
    )


def test_mixed_cipher_suites() -> None:
    p256 = cipher_suite(2)
    kp = p256.generate_signature_key_pair()
    desktop = Device(b"desktop", 2, kp.public_key, b"alice@desktop")
    v0 = create_device_list(USER, desktop, kp.private_key, ts=1)
    v1 = next_device_list(v0, [desktop, PHONE], 2, b"desktop", kp.private_key)
    v2 = next_device_list(v1, [PHONE], 3, b"phone", seed("phone"))
    verify_chain([v0, v1, v2])


def test_account_label() -> None:
    assert account_label(USER) == b"u:" + USER
    with pytest.raises(ConfigurationError):
        account_label(b"x" * 254)


# --- signatures ----------------------------------------------------------------------------------


def test_unsigned_version_fails() -> None:
    v0, v1, *_ = chain()
    unsigned = DeviceList(v1.tbs, b"")
    with pytest.raises(InvalidSignature):
        verify_successor(v0, unsigned)
    with pytest.raises(InvalidSignature):
        verify_first(DeviceList(v0.tbs, b""))


def test_server_forged_version_fails() -> None:
    # The server names the phone as signer but can only sign with a key of its own.
    v1 = chain()[1]
    tbs = DeviceListTBS(USER, 2, 3000, (PHONE, LAPTOP, GHOST), v1.hash(), b"phone")
    forged = DeviceList(
        tbs, SUITE.sign_with_label(seed("ghost"), b"Doorless DeviceListTBS", encode(tbs))
    )
    with pytest.raises(InvalidSignature):
        verify_successor(v1, forged)


def test_ghost_device_added_to_a_signed_list_fails() -> None:
    v0, v1, *_ = chain()
    tampered = DeviceList(
        DeviceListTBS(
            v1.tbs.user_id,
            v1.tbs.version,
            v1.tbs.ts,
            (*v1.devices, GHOST),
            v1.tbs.prev_hash,
            v1.tbs.signer_device_id,
        ),
        v1.signature,
    )
    with pytest.raises(InvalidSignature):
        verify_successor(v0, tampered)


def test_signer_key_must_match() -> None:
    tbs = DeviceListTBS(USER, 0, 1, (PHONE,), b"", b"phone")
    with pytest.raises(ConfigurationError):
        sign_device_list(tbs, PHONE, seed("laptop"))
    with pytest.raises(ConfigurationError):
        sign_device_list(tbs, LAPTOP, seed("laptop"))
    with pytest.raises(ConfigurationError):
        next_device_list(chain()[2], [LAPTOP], 9, b"phone", seed("phone"))  # removed signer


# --- rule by rule --------------------------------------------------------------------------------


def rule(exc: pytest.ExceptionInfo[ValidationError]) -> str:
    return exc.value.rule


def test_dl1_well_formed() -> None:
    v0 = chain()[0]
    cases = [
        forge(v0, [], PHONE, "phone"),
        forge(v0, [PHONE, PHONE], PHONE, "phone"),
        forge(v0, [PHONE, Device(b"", 1, LAPTOP.signature_key, b"x")], PHONE, "phone"),
        forge(v0, [PHONE, Device(b"old", 0x0A0A, b"k", b"x")], PHONE, "phone"),
    ]
    for dl in cases:
        with pytest.raises(ValidationError) as exc:
            verify_successor(v0, dl)
        assert rule(exc) == "KT-lite DL-1"


def test_dl2_first_version() -> None:
    cases = [
        forge(None, [PHONE], PHONE, "phone", version=1),  # a chain starting mid-way
        forge(None, [PHONE], PHONE, "phone", prev_hash=b"\x00" * 32),
        forge(None, [LAPTOP], PHONE, "phone"),  # signed by a device not in the list
    ]
    for dl in cases:
        with pytest.raises(ValidationError) as exc:
            verify_first(dl)
        assert rule(exc) == "KT-lite DL-2"


def test_dl3_rollback_and_gaps() -> None:
    v0, v1, v2, _ = chain()
    with pytest.raises(ValidationError) as exc:
        verify_successor(v2, v1)  # rollback
    assert rule(exc) == "KT-lite DL-3"
    with pytest.raises(ValidationError) as exc:
        verify_chain([v0, v2])  # gap
    assert rule(exc) == "KT-lite DL-3"
    replay = forge(v2, [LAPTOP], LAPTOP, "laptop", version=2)  # same version again
    with pytest.raises(ValidationError) as exc:
        verify_successor(v2, replay)
    assert rule(exc) == "KT-lite DL-3"


def test_dl4_prev_hash_mismatch() -> None:
    v0, _, v2, _ = chain()
    for prev_hash in (v0.hash(), b"", bytes(32)):
        dl = forge(v2, [LAPTOP], LAPTOP, "laptop", prev_hash=prev_hash)
        with pytest.raises(ValidationError) as exc:
            verify_successor(v2, dl)
        assert rule(exc) == "KT-lite DL-4"


def test_dl5_user_id_is_fixed() -> None:
    v2 = chain()[2]
    dl = forge(v2, [LAPTOP], LAPTOP, "laptop", user_id=b"\x02" * 16)
    with pytest.raises(ValidationError) as exc:
        verify_successor(v2, dl)
    assert rule(exc) == "KT-lite DL-5"


def test_dl6_signature_by_a_removed_device() -> None:
    v2 = chain()[2]  # the phone was removed in v2
    dl = forge(v2, [LAPTOP, PHONE], PHONE, "phone")
    with pytest.raises(ValidationError) as exc:
        verify_successor(v2, dl)
    assert rule(exc) == "KT-lite DL-6"


def test_dl6_new_device_cannot_sign_its_own_addition() -> None:
    v2 = chain()[2]
    dl = forge(v2, [LAPTOP, GHOST], GHOST, "ghost")
    with pytest.raises(ValidationError) as exc:
        verify_successor(v2, dl)
    assert rule(exc) == "KT-lite DL-6"


def test_dl7_time_does_not_go_backwards() -> None:
    v2 = chain()[2]
    dl = forge(v2, [LAPTOP], LAPTOP, "laptop", ts=v2.tbs.ts - 1)
    with pytest.raises(ValidationError) as exc:
        verify_successor(v2, dl)
    assert rule(exc) == "KT-lite DL-7"


def test_dl8_binding_to_the_kt_label_and_version() -> None:
    v1 = chain()[1]
    with pytest.raises(ValidationError) as exc:
        check_binding(v1, b"\x02" * 16, 1)
    assert rule(exc) == "KT-lite DL-8"
    with pytest.raises(ValidationError) as exc:
        check_binding(v1, USER, 2)
    assert rule(exc) == "KT-lite DL-8"


def test_verify_chain_needs_something() -> None:
    with pytest.raises(ConfigurationError):
        verify_chain([])


# --- decoder -------------------------------------------------------------------------------------


@settings(max_examples=400)
@given(st.binary(max_size=300))
def test_device_list_decoder_fuzz(data: bytes) -> None:
    try:
        dl = decode_device_list(data)
    except DecodeError:
        return
    assert dl.encode() == data


@settings(max_examples=200)
@given(st.binary(max_size=200), st.integers(0, 5))
def test_device_list_decoder_fuzz_mutations(noise: bytes, where: int) -> None:
    wire = chain()[1].encode()
    cut = (where * len(wire)) // 5
    data = wire[:cut] + noise + wire[cut + len(noise) :]
    try:
        dl = decode_device_list(data)
    except DecodeError:
        return
    assert dl.encode() == data


@given(
    st.binary(max_size=20),
    st.integers(0, (1 << 32) - 1),
    st.integers(0, (1 << 64) - 1),
    st.lists(
        st.builds(
            Device,
            st.binary(max_size=8),
            st.integers(0, 0xFFFF),
            st.binary(max_size=40),
            st.binary(max_size=20),
        ),
        max_size=4,
    ),
    st.binary(max_size=32),
    st.binary(max_size=8),
    st.binary(max_size=80),
)
def test_device_list_round_trip(
    user_id: bytes,
    version: int,
    ts: int,
    devices: list[Device],
    prev_hash: bytes,
    signer: bytes,
    signature: bytes,
) -> None:
    dl = DeviceList(
        DeviceListTBS(user_id, version, ts, tuple(devices), prev_hash, signer), signature
    )
    assert decode_device_list(dl.encode()) == dl
