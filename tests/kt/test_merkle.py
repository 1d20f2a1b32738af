"""RFC 9162 §2.1 Merkle tree: known roots, the RFC's worked example, properties of the log.

The oracle for generated proofs is a direct transcription of the RFC's recursive definitions
(MTH, PATH, PROOF/SUBPROOF) written here on plain hashlib, independent of `MerkleLog`.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from doorless.codec import decode, encode
from doorless.errors import ConfigurationError, DecodeError
from doorless.kt.errors import InvalidProof
from doorless.kt.log_entry import LogEntry
from doorless.kt.merkle import (
    EMPTY_ROOT,
    MerkleLog,
    leaf_hash,
    merkle_tree_hash,
    node_hash,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)

# --- the oracle: RFC 9162 §2.1.1, §2.1.3.1, §2.1.4.1 verbatim -------------------------------------


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(d: list[bytes]) -> bytes:
    if not d:
        return _h(b"")
    if len(d) == 1:
        return _h(b"\x00" + d[0])
    k = _k(len(d))
    return _h(b"\x01" + mth(d[:k]) + mth(d[k:]))


def path(m: int, d: list[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = _k(len(d))
    if m < k:
        return [*path(m, d[:k]), mth(d[k:])]
    return [*path(m - k, d[k:]), mth(d[:k])]


def subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    if m == len(d):
        return [] if b else [mth(d)]
    k = _k(len(d))
    if m <= k:
        return [*subproof(m, d[:k], b), mth(d[k:])]
    return [*subproof(m - k, d[k:], False), mth(d[:k])]


def entries(n: int) -> list[bytes]:
    return [f"entry {i}".encode() for i in range(n)]


def flip(data: bytes, byte: int, bit: int) -> bytes:
    i = byte % len(data)
    return data[:i] + bytes((data[i] ^ (1 << bit),)) + data[i + 1 :]


# --- published constants -------------------------------------------------------------------------

# RFC 6962 test leaves and MTH(D[n]) for n = 0..8 (certificate-transparency, transparency-dev).
CT_LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
CT_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


@pytest.mark.parametrize("n", range(9), ids=lambda n: f"size-{n}")
def test_ct_roots(n: int) -> None:
    want = bytes.fromhex(CT_ROOTS[n])
    assert merkle_tree_hash(CT_LEAVES[:n]) == want
    assert MerkleLog.from_entries(CT_LEAVES).root(n) == want
    log = MerkleLog()
    for e in CT_LEAVES[:n]:
        log.append(e)
    assert log.root() == want


def test_empty_tree() -> None:
    assert bytes.fromhex(CT_ROOTS[0]) == EMPTY_ROOT
    assert MerkleLog().root() == EMPTY_ROOT
    assert root_from_leaf_hashes([]) == EMPTY_ROOT


def test_domain_separation() -> None:
    assert leaf_hash(b"") == _h(b"\x00")
    assert node_hash(b"a" * 32, b"b" * 32) == _h(b"\x01" + b"a" * 32 + b"b" * 32)


# --- RFC 9162 §2.1.5 worked example (7 leaves) ---------------------------------------------------


class Example:
    d = entries(7)
    a, b, c, d_, e, f, j = (leaf_hash(x) for x in d)
    g, h, i = node_hash(a, b), node_hash(c, d_), node_hash(e, f)
    k, l_ = node_hash(g, h), node_hash(i, j)
    root = node_hash(k, l_)


@pytest.mark.parametrize(
    ("index", "want"),
    [
        (0, [Example.b, Example.h, Example.l_]),
        (3, [Example.c, Example.g, Example.l_]),
        (4, [Example.f, Example.j, Example.k]),
        (6, [Example.i, Example.k]),
    ],
    ids=["d0", "d3", "d4", "d6"],
)
def test_rfc_example_inclusion(index: int, want: list[bytes]) -> None:
    log = MerkleLog.from_entries(Example.d)
    assert log.root() == Example.root
    assert log.inclusion_proof(index) == want
    verify_inclusion(leaf_hash(Example.d[index]), index, 7, want, Example.root)


@pytest.mark.parametrize(
    ("size1", "want"),
    [
        (3, [Example.c, Example.d_, Example.g, Example.l_]),
        (4, [Example.l_]),
        (6, [Example.i, Example.j, Example.k]),
    ],
    ids=["hash0", "hash1", "hash2"],
)
def test_rfc_example_consistency(size1: int, want: list[bytes]) -> None:
    log = MerkleLog.from_entries(Example.d)
    assert log.consistency_proof(size1) == want
    verify_consistency(size1, 7, log.root(size1), Example.root, want)


# --- properties ----------------------------------------------------------------------------------

sizes = st.integers(min_value=1, max_value=140)


@settings(max_examples=60, deadline=None)
@given(sizes, st.data())
def test_inclusion_proofs_verify_and_match_the_rfc(n: int, data: st.DataObject) -> None:
    d = entries(n)
    log = MerkleLog.from_entries(d)
    root = mth(d)
    assert log.root() == root
    m = data.draw(st.integers(0, n - 1))
    proof = log.inclusion_proof(m)
    assert proof == path(m, d)
    verify_inclusion(leaf_hash(d[m]), m, n, proof, root)


@settings(max_examples=60, deadline=None)
@given(sizes, st.data())
def test_consistency_proofs_verify_and_match_the_rfc(n: int, data: st.DataObject) -> None:
    d = entries(n)
    log = MerkleLog.from_entries(d)
    m = data.draw(st.integers(1, n))
    proof = log.consistency_proof(m)
    assert proof == (subproof(m, d, True) if m < n else [])
    verify_consistency(m, n, mth(d[:m]), mth(d), proof)


@settings(max_examples=80, deadline=None)
@given(st.integers(2, 140), st.data())
def test_any_flipped_byte_breaks_an_inclusion_proof(n: int, data: st.DataObject) -> None:
    d = entries(n)
    log = MerkleLog.from_entries(d)
    m = data.draw(st.integers(0, n - 1))
    proof = log.inclusion_proof(m)
    which = data.draw(st.integers(0, len(proof) + 1))  # an element, the leaf, or the root
    byte, bit = data.draw(st.integers(0, 31)), data.draw(st.integers(0, 7))
    leaf, root = leaf_hash(d[m]), log.root()
    if which < len(proof):
        proof[which] = flip(proof[which], byte, bit)
    elif which == len(proof):
        leaf = flip(leaf, byte, bit)
    else:
        root = flip(root, byte, bit)
    with pytest.raises(InvalidProof):
        verify_inclusion(leaf, m, n, proof, root)


@settings(max_examples=80, deadline=None)
@given(st.integers(2, 140), st.data())
def test_any_flipped_byte_breaks_a_consistency_proof(n: int, data: st.DataObject) -> None:
    d = entries(n)
    log = MerkleLog.from_entries(d)
    m = data.draw(st.integers(1, n - 1))
    proof = log.consistency_proof(m)
    which = data.draw(st.integers(0, len(proof) + 1))  # an element, root1 or root2
    byte, bit = data.draw(st.integers(0, 31)), data.draw(st.integers(0, 7))
    root1, root2 = log.root(m), log.root()
    if which < len(proof):
        proof[which] = flip(proof[which], byte, bit)
    elif which == len(proof):
        root1 = flip(root1, byte, bit)
    else:
        root2 = flip(root2, byte, bit)
    with pytest.raises(InvalidProof):
        verify_consistency(m, n, root1, root2, proof)


@settings(max_examples=50, deadline=None)
@given(st.integers(2, 140), st.data())
def test_truncated_or_extended_proofs_fail(n: int, data: st.DataObject) -> None:
    log = MerkleLog.from_entries(entries(n))
    m = data.draw(st.integers(0, n - 1))
    proof = log.inclusion_proof(m)
    leaf = log.leaf_hash(m)
    with pytest.raises(InvalidProof):
        verify_inclusion(leaf, m, n, [*proof, bytes(32)], log.root())
    if proof:
        with pytest.raises(InvalidProof):
            verify_inclusion(leaf, m, n, proof[:-1], log.root())
    other = (m + 1) % n
    with pytest.raises(InvalidProof):
        verify_inclusion(leaf, other, n, proof, log.root())
    c = data.draw(st.integers(1, n - 1))
    cproof = log.consistency_proof(c)
    with pytest.raises(InvalidProof):
        verify_consistency(c, n, log.root(c), log.root(), cproof[:-1])
    with pytest.raises(InvalidProof):
        verify_consistency(c, n, log.root(c), log.root(), [*cproof, bytes(32)])
    with pytest.raises(InvalidProof):
        verify_consistency(c, n, log.root(), log.root(c), cproof)  # swapped roots


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 200))
def test_every_past_root_and_every_build_path_agree(n: int) -> None:
    d = entries(n)
    appended = MerkleLog()
    for e in d:
        appended.append(e)
    bulk = MerkleLog.from_leaf_hashes(leaf_hash(e) for e in d)
    assert appended.size == bulk.size == len(bulk) == n
    for size in range(n + 1):
        want = mth(d[:size])
        assert appended.root(size) == want
        assert bulk.root(size) == want
    assert root_from_leaf_hashes([leaf_hash(e) for e in d]) == mth(d)


def test_old_proofs_stay_answerable_after_appends() -> None:
    d = entries(50)
    log = MerkleLog.from_entries(d[:20])
    old_root = log.root()
    for e in d[20:]:
        log.append(e)
    verify_inclusion(leaf_hash(d[5]), 5, 20, log.inclusion_proof(5, 20), old_root)
    verify_consistency(20, 50, old_root, log.root(), log.consistency_proof(20))
    verify_consistency(7, 20, log.root(7), old_root, log.consistency_proof(7, 20))


# --- edge cases and misuse ---------------------------------------------------------------------


def test_consistency_edge_cases() -> None:
    log = MerkleLog.from_entries(entries(5))
    verify_consistency(5, 5, log.root(), log.root(), [])
    verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    with pytest.raises(InvalidProof):
        verify_consistency(0, 5, EMPTY_ROOT, log.root(), [])  # nothing to prove from size 0
    with pytest.raises(InvalidProof):
        verify_consistency(5, 5, log.root(), log.root(), [log.root()])
    with pytest.raises(InvalidProof):
        verify_consistency(5, 4, log.root(), log.root(4), [])
    with pytest.raises(InvalidProof):
        verify_consistency(2, 5, log.root(2), log.root(), [])
    with pytest.raises(InvalidProof):
        verify_consistency(2, 5, log.root(2), log.root(), [b"short"])


def test_inclusion_edge_cases() -> None:
    log = MerkleLog.from_entries(entries(1))
    verify_inclusion(log.leaf_hash(0), 0, 1, [], log.root())
    with pytest.raises(InvalidProof):
        verify_inclusion(log.leaf_hash(0), 1, 1, [], log.root())
    with pytest.raises(InvalidProof):
        verify_inclusion(log.leaf_hash(0), 0, 0, [], EMPTY_ROOT)
    with pytest.raises(InvalidProof):
        verify_inclusion(b"", 0, 1, [], log.root())
    with pytest.raises(InvalidProof):
        verify_inclusion(log.leaf_hash(0), -1, 1, [], log.root())


def test_log_misuse_is_a_local_error() -> None:
    log = MerkleLog.from_entries(entries(4))
    with pytest.raises(ConfigurationError):
        log.inclusion_proof(4)
    with pytest.raises(ConfigurationError):
        log.inclusion_proof(0, 5)
    with pytest.raises(ConfigurationError):
        log.consistency_proof(0)
    with pytest.raises(ConfigurationError):
        log.consistency_proof(3, 2)
    with pytest.raises(ConfigurationError):
        log.root(5)
    with pytest.raises(ConfigurationError):
        log.leaf_hash(4)
    with pytest.raises(ConfigurationError):
        log.append_leaf_hash(b"x")
    with pytest.raises(ConfigurationError):
        MerkleLog.from_leaf_hashes([b"x"])


# --- LogEntry ------------------------------------------------------------------------------------


def test_log_entry_encoding_and_leaf_hash() -> None:
    entry = LogEntry(1_700_000_000_123, bytes(range(32)))
    wire = (1_700_000_000_123).to_bytes(8, "big") + bytes(range(32))
    assert encode(entry) == wire
    assert decode(LogEntry, wire) == entry
    assert entry.leaf_hash() == _h(b"\x00" + wire)
    with pytest.raises(ConfigurationError):
        LogEntry(-1, bytes(32))
    with pytest.raises(ConfigurationError):
        LogEntry(0, bytes(31))


@settings(max_examples=300)
@given(st.binary(max_size=80))
def test_log_entry_decoder_fuzz(data: bytes) -> None:
    try:
        entry = decode(LogEntry, data)
    except DecodeError:
        return
    assert encode(entry) == data


@given(st.integers(0, (1 << 64) - 1), st.binary(min_size=32, max_size=32))
def test_log_entry_round_trip(ts: int, root: bytes) -> None:
    entry = LogEntry(ts, root)
    assert decode(LogEntry, encode(entry)) == entry
