"""Binary ladders, commitments, search keys, and KT-lite searches in one prefix tree.

The ladder oracle is the Python of the draft's appendix "Binary Ladder", copied verbatim.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Collection

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from doorless.codec import decode, encode
from doorless.errors import ConfigurationError, DecodeError, InvalidMac, StateError
from doorless.kt.commitment import (
    KC,
    NC,
    SEARCH_KEY_CONTEXT,
    commit,
    search_key,
    verify_commitment,
    vrf_input,
)
from doorless.kt.errors import InvalidProof
from doorless.kt.ladder import (
    BinaryLadderStep,
    SearchResponse,
    VersionResponse,
    base_binary_ladder,
    greatest_version,
    greatest_version_ladder,
    ladder_results,
    monitoring_binary_ladder,
    prove_greatest_version,
    prove_label_absent,
    prove_version,
    search_binary_ladder,
    verify_greatest_version,
    verify_label_absent,
    verify_version,
)
from doorless.kt.prefix_tree import PrefixProof, PrefixTree

# --- the draft appendix, verbatim (only type annotations and the draft_ prefix added) ------------


def draft_base_binary_ladder(n: int) -> list[int]:
    out: list[int] = []

    # Output powers of two minus one until reaching a value greater than n.
    while True:
        value = (1 << len(out)) - 1
        out.append(value)
        if value > n:
            break

    # Binary search between the established lower and upper bounds.
    lower_bound = out[-2]
    upper_bound = out[-1]

    while lower_bound + 1 < upper_bound:
        value = (lower_bound + upper_bound) // 2
        out.append(value)
        if value <= n and value < (1 << 32):
            lower_bound = value
        else:
            upper_bound = value

    return [v for v in out if v < (1 << 32)]


def draft_search_binary_ladder(
    t: int, n: int, left_inclusion: Collection[int] = (), right_non_inclusion: Collection[int] = ()
) -> list[int]:
    def would_end(v: int) -> bool:
        return (v <= n and v > t) or (v > n and v <= t)

    def would_be_duplicate(v: int) -> bool:
        return (v in left_inclusion) or (v in right_non_inclusion)

    out = draft_base_binary_ladder(n)
    end = next((i + 1 for i, v in enumerate(out) if would_end(v)), len(out))
    filtered_out = [v for v in out[:end] if not would_be_duplicate(v)]

    return filtered_out


def draft_monitoring_binary_ladder(t: int) -> list[int]:
    out = draft_base_binary_ladder(t)
    filtered_out = [v for v in out if v <= t]

    return filtered_out


versions = st.one_of(st.integers(0, 5000), st.integers(0, (1 << 32) - 1))

# --- ladders -------------------------------------------------------------------------------------


def test_draft_example_greatest_version_six() -> None:
    # "inclusion proofs for versions 0, 1, 3, a non-inclusion proof for version 7, then followed
    # by inclusion proofs for versions 5 and 6"
    ladder = base_binary_ladder(6)
    assert ladder == [0, 1, 3, 7, 5, 6]
    assert ladder_results(ladder, 6) == [True, True, True, False, True, True]


def test_absent_label_ladder() -> None:
    assert greatest_version_ladder(None) == [0]
    assert ladder_results([0], None) == [False]
    assert greatest_version_ladder(4) == base_binary_ladder(4)


@given(versions)
def test_base_ladder_matches_the_draft(n: int) -> None:
    assert base_binary_ladder(n) == draft_base_binary_ladder(n)


@given(versions, versions, st.sets(st.integers(0, 64)), st.sets(st.integers(0, 64)))
def test_search_and_monitoring_ladders_match_the_draft(
    t: int, n: int, left: set[int], right: set[int]
) -> None:
    assert search_binary_ladder(t, n, left, right) == draft_search_binary_ladder(t, n, left, right)
    assert monitoring_binary_ladder(t) == draft_monitoring_binary_ladder(t)


@given(versions)
def test_ladder_pins_the_greatest_version(n: int) -> None:
    ladder = base_binary_ladder(n)
    assert n in ladder
    if n + 1 < 1 << 32:
        assert n + 1 in ladder
    assert len(set(ladder)) == len(ladder)
    assert all(0 <= v < 1 << 32 for v in ladder)


@given(versions, versions)
def test_ladders_for_different_versions_conflict(a: int, b: int) -> None:
    n, m = min(a, b), max(a, b)
    if n == m:
        return
    # Some version that ladder(n) needs absent exists in a tree whose greatest version is m ...
    assert any(n < v <= m for v in base_binary_ladder(n))
    # ... and ladder(m) needs version m present, which a tree with greatest n lacks.
    assert m in base_binary_ladder(m)


def test_ladder_rejects_non_uint32() -> None:
    with pytest.raises(ConfigurationError):
        base_binary_ladder(-1)
    with pytest.raises(ConfigurationError):
        base_binary_ladder(1 << 32)


# --- commitments and search keys -----------------------------------------------------------------


def test_commitment_key_is_the_drafts() -> None:
    # IANA "KT Cipher Suites": Kc is the byte sequence d821f8790d97709796b4d7903357c3f5, Nc = 16
    assert KC.hex() == "d821f8790d97709796b4d7903357c3f5"
    assert NC == 16


def test_commitment_encoding() -> None:
    opening, label, version, value = bytes(range(16)), b"u:alice", 7, b"device list"
    # CommitmentValue = opening[16] || label<0..2^8-1> || uint32 version || value<0..2^32-1>
    cv = opening + bytes((len(label),)) + label + struct.pack(">I", version)
    cv += struct.pack(">I", len(value)) + value
    want = hmac.new(bytes.fromhex("d821f8790d97709796b4d7903357c3f5"), cv, hashlib.sha256).digest()
    assert commit(opening, label, version, value) == want
    verify_commitment(want, opening, label, version, value)
    for args in [
        (bytes(16), label, version, value),
        (opening, b"u:bob", version, value),
        (opening, label, version + 1, value),
        (opening, label, version, value + b"!"),
        (opening[:15], label, version, value),
    ]:
        with pytest.raises(InvalidMac):
            verify_commitment(want, *args)


def test_search_key() -> None:
    label, version = b"u:alice", 3
    assert vrf_input(label, version) == b"\x07u:alice\x00\x00\x00\x03"
    want = hashlib.sha256(b"Doorless KT search key v1\x00" + b"\x07u:alice\x00\x00\x00\x03")
    assert SEARCH_KEY_CONTEXT == b"Doorless KT search key v1\x00"
    assert search_key(label, version) == want.digest()
    assert search_key(label, 4) != search_key(label, 3)
    with pytest.raises(ConfigurationError):
        search_key(b"x" * 256, 0)
    with pytest.raises(ConfigurationError):
        search_key(label, 1 << 32)


# --- searches in a tree --------------------------------------------------------------------------


def opening_of(label: bytes, v: int) -> bytes:
    return hashlib.sha256(b"opening" + label + bytes([v])).digest()[:16]


def value_of(label: bytes, v: int) -> bytes:
    return label + b" value " + str(v).encode()


def make_tree(greatest: dict[bytes, int]) -> PrefixTree:
    """A tree holding versions 0..greatest[label] of each label, plus unrelated entries."""
    entries = [
        (search_key(label, v), commit(opening_of(label, v), label, v, value_of(label, v)))
        for label, g in greatest.items()
        for v in range(g + 1)
    ]
    entries += [(hashlib.sha256(bytes([i])).digest(), bytes(32)) for i in range(50)]
    return PrefixTree().insert_many(entries)


LABELS = {b"u:alice": 6, b"u:bob": 0, b"u:carol": 20}


@pytest.mark.parametrize("label", list(LABELS), ids=lambda b: b.decode())
def test_greatest_version_round_trip(label: bytes) -> None:
    tree = make_tree(LABELS)
    g = LABELS[label]
    assert greatest_version(tree, label) == g
    response = prove_greatest_version(tree, label, g, opening_of(label, g), value_of(label, g))
    wire = encode(response)
    decoded = decode(SearchResponse, wire)
    assert decoded == response
    verified = verify_greatest_version(tree.root, label, decoded)
    assert (verified.label, verified.version, verified.value) == (label, g, value_of(label, g))
    assert [s.commitment is not None for s in response.binary_ladder] == [
        v < g for v in base_binary_ladder(g)
    ]


def forged_response(tree: PrefixTree, label: bytes, claimed: int) -> SearchResponse:
    """What a lying server can build: the ladder of ``claimed`` over the real tree, inventing
    commitments for versions below ``claimed`` that do not exist."""
    ladder = base_binary_ladder(claimed)
    keys = [search_key(label, v) for v in ladder]
    steps = []
    for v, key in zip(ladder, keys, strict=True):
        stored = tree.get(key) if v < claimed else None
        steps.append(BinaryLadderStep(stored if stored is not None or v >= claimed else bytes(32)))
    return SearchResponse(
        claimed,
        opening_of(label, claimed),
        value_of(label, claimed),
        tuple(steps),
        tree.prove(keys),
    )


def test_forging_helper_is_honest_for_the_true_version() -> None:
    tree = make_tree(LABELS)
    verify_greatest_version(tree.root, b"u:alice", forged_response(tree, b"u:alice", 6))


@pytest.mark.parametrize("claimed", [0, 3, 5, 7, 8, 100])
def test_a_server_cannot_claim_another_greatest_version(claimed: int) -> None:
    tree = make_tree(LABELS)  # alice's greatest version is 6
    with pytest.raises(InvalidProof):
        verify_greatest_version(tree.root, b"u:alice", forged_response(tree, b"u:alice", claimed))


def test_tampered_search_responses_fail() -> None:
    tree = make_tree(LABELS)
    label, g = b"u:alice", 6
    good = prove_greatest_version(tree, label, g, opening_of(label, g), value_of(label, g))
    steps = list(good.binary_ladder)
    with_target_commitment = steps.copy()
    with_target_commitment[-1] = BinaryLadderStep(bytes(32))
    without_lower_commitment = steps.copy()
    without_lower_commitment[0] = BinaryLadderStep(None)
    above_with_commitment = steps.copy()
    above_with_commitment[3] = BinaryLadderStep(bytes(32))  # version 7
    variants = [
        SearchResponse(g, good.opening, b"ghost device", good.binary_ladder, good.prefix_proof),
        SearchResponse(g, bytes(16), good.value, good.binary_ladder, good.prefix_proof),
        SearchResponse(g, good.opening, good.value, good.binary_ladder[:-1], good.prefix_proof),
        SearchResponse(
            g, good.opening, good.value, tuple(with_target_commitment), good.prefix_proof
        ),
        SearchResponse(
            g, good.opening, good.value, tuple(without_lower_commitment), good.prefix_proof
        ),
        SearchResponse(
            g, good.opening, good.value, tuple(above_with_commitment), good.prefix_proof
        ),
    ]
    for variant in variants:
        with pytest.raises(InvalidProof):
            verify_greatest_version(tree.root, label, variant)
    with pytest.raises(InvalidProof):  # right proof, other label
        verify_greatest_version(tree.root, b"u:mallory", good)
    with pytest.raises(InvalidProof):  # right proof, other tree (a fork)
        verify_greatest_version(make_tree({label: 6, b"u:dave": 1}).root, label, good)


def test_prover_refuses_inconsistent_requests() -> None:
    tree = make_tree(LABELS)
    label = b"u:alice"
    with pytest.raises(StateError):  # not the greatest version
        prove_greatest_version(tree, label, 5, opening_of(label, 5), value_of(label, 5))
    with pytest.raises(StateError):  # wrong value
        prove_greatest_version(tree, label, 6, opening_of(label, 6), b"other")
    with pytest.raises(StateError):
        prove_version(tree, label, 2, opening_of(label, 2), b"other")
    with pytest.raises(StateError):
        prove_label_absent(tree, label)


def test_fixed_version_lookup() -> None:
    tree = make_tree(LABELS)
    label = b"u:carol"
    response = prove_version(tree, label, 11, opening_of(label, 11), value_of(label, 11))
    decoded = decode(VersionResponse, encode(response))
    assert verify_version(tree.root, label, decoded).value == value_of(label, 11)
    for bad in [
        VersionResponse(12, response.opening, response.value, response.prefix_proof),
        VersionResponse(11, response.opening, b"x", response.prefix_proof),
        VersionResponse(11, bytes(16), response.value, response.prefix_proof),
    ]:
        with pytest.raises(InvalidProof):
            verify_version(tree.root, label, bad)


def test_absent_label() -> None:
    tree = make_tree(LABELS)
    proof = prove_label_absent(tree, b"u:nobody")
    verify_label_absent(tree.root, b"u:nobody", proof)
    assert greatest_version(tree, b"u:nobody") is None
    with pytest.raises(InvalidProof):
        verify_label_absent(tree.root, b"u:alice", tree.prove([search_key(b"u:alice", 0)]))


# --- decoders ------------------------------------------------------------------------------------


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_search_response_decoder_fuzz(data: bytes) -> None:
    try:
        response = decode(SearchResponse, data)
    except DecodeError:
        return
    assert encode(response) == data


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_version_response_decoder_fuzz(data: bytes) -> None:
    try:
        response = decode(VersionResponse, data)
    except DecodeError:
        return
    assert encode(response) == data


@settings(max_examples=200)
@given(st.binary(max_size=40))
def test_ladder_step_decoder_fuzz(data: bytes) -> None:
    try:
        step = decode(BinaryLadderStep, data)
    except DecodeError:
        return
    assert encode(step) == data


@given(
    st.integers(0, (1 << 32) - 1),
    st.binary(min_size=16, max_size=16),
    st.binary(max_size=64),
    st.lists(st.one_of(st.none(), st.binary(min_size=32, max_size=32)), max_size=5),
)
def test_search_response_round_trip(
    version: int, opening: bytes, value: bytes, commitments: list[bytes | None]
) -> None:
    response = SearchResponse(
        version,
        opening,
        value,
        tuple(BinaryLadderStep(c) for c in commitments),
        PrefixProof((), ()),
    )
    assert decode(SearchResponse, encode(response)) == response
