"""KEYTRANS prefix tree: structure, proofs, persistence, decoders.

The oracle root is computed here from the draft's definitions alone (a leaf sits at the
shallowest depth where its key is alone; leaf = H(0x02||key||commitment), parent =
H(0x03||L||R), missing child = 32 zero bytes), independently of `PrefixTree`.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from doorless.codec import Reader, decode, encode
from doorless.errors import ConfigurationError, DecodeError, StateError
from doorless.kt.errors import InvalidProof
from doorless.kt.prefix_tree import (
    ZERO_HASH,
    Inclusion,
    NonInclusionLeaf,
    NonInclusionParent,
    PrefixLeaf,
    PrefixLookup,
    PrefixProof,
    PrefixTree,
    prefix_root_from_proof,
    pull_prefix_search_result,
    verify_prefix_proof,
)

# --- oracle --------------------------------------------------------------------------------------


def _bit(key: bytes, i: int) -> int:
    return (int.from_bytes(key, "big") >> (255 - i)) & 1


def oracle_root(entries: dict[bytes, bytes]) -> bytes:
    def node(keys: list[bytes], depth: int) -> bytes:
        if not keys:
            return bytes(32)
        if len(keys) == 1:
            return hashlib.sha256(b"\x02" + keys[0] + entries[keys[0]]).digest()
        left = [k for k in keys if _bit(k, depth) == 0]
        right = [k for k in keys if _bit(k, depth) == 1]
        return hashlib.sha256(b"\x03" + node(left, depth + 1) + node(right, depth + 1)).digest()

    return node(list(entries), 0)


# --- strategies: random keys, and keys that share long prefixes ----------------------------------

# Test keys keep bit 255 clear: two keys differing only there cannot both be in a tree (their
# leaves would sit at depth 256, beyond a uint8 depth; see test_depth_limit).
random_keys = st.binary(min_size=32, max_size=32).map(lambda k: k[:31] + bytes((k[31] & 0xFE,)))
# Keys with a few bits set share long prefixes and split deep in the tree.
sparse_keys = st.sets(st.integers(0, 254), max_size=4).map(
    lambda bits: sum(1 << (255 - b) for b in bits).to_bytes(32, "big")
)
keys = st.one_of(random_keys, sparse_keys)
commitments = st.binary(min_size=32, max_size=32)
entry_maps = st.dictionaries(keys, commitments, max_size=40)


def build(entries: dict[bytes, bytes]) -> PrefixTree:
    return PrefixTree().insert_many(entries.items())


def flip(data: bytes, byte: int, bit: int) -> bytes:
    i = byte % len(data)
    return data[:i] + bytes((data[i] ^ (1 << bit),)) + data[i + 1 :]


# --- structure -----------------------------------------------------------------------------------


def test_empty_and_single_entry_trees() -> None:
    empty = PrefixTree()
    assert empty.root == ZERO_HASH == bytes(32)
    assert len(empty) == 0
    key, c = b"\x80" + bytes(31), b"\x11" * 32
    one = empty.insert(key, c)
    assert one.root == hashlib.sha256(b"\x02" + key + c).digest()  # the root is the leaf
    assert empty.root == ZERO_HASH  # persistence
    assert one.get(key) == c
    assert one.get(bytes(32)) is None


def test_draft_figure_shape() -> None:
    # The draft's five-key figure, keys padded to 256 bits: 00010, 00101, 10001, 10111, 11011.
    def k(bits: str) -> bytes:
        return int(bits.ljust(256, "0"), 2).to_bytes(32, "big")

    entries = {
        k(b): bytes([i]) * 32 for i, b in enumerate(["00010", "00101", "10001", "10111", "11011"])
    }
    leaf = {
        b: hashlib.sha256(b"\x02" + k(b) + entries[k(b)]).digest()
        for b in ["00010", "00101", "10001", "10111", "11011"]
    }

    def parent(left: bytes, right: bytes) -> bytes:
        return hashlib.sha256(b"\x03" + left + right).digest()

    # Left: root-0 has only a left child (prefix 00), which splits at bit 2.
    left = parent(parent(leaf["00010"], leaf["00101"]), bytes(32))
    # Right: prefix 10 splits at bit 2 into 100.. and 101..; 11011 is alone under 11.
    right = parent(parent(leaf["10001"], leaf["10111"]), leaf["11011"])
    assert build(entries).root == parent(left, right)


@settings(max_examples=80, deadline=None)
@given(entry_maps)
def test_root_matches_oracle(entries: dict[bytes, bytes]) -> None:
    tree = build(entries)
    assert tree.root == oracle_root(entries)
    assert len(tree) == len(entries)
    assert dict(tree.items()) == entries
    assert [k for k, _ in tree.items()] == sorted(entries)


@settings(max_examples=60, deadline=None)
@given(entry_maps, st.randoms(use_true_random=False), st.integers(0, 40))
def test_insertion_order_independence(entries: dict[bytes, bytes], rnd: object, cut: int) -> None:
    import random

    assert isinstance(rnd, random.Random)
    items = list(entries.items())
    rnd.shuffle(items)
    one_by_one = PrefixTree()
    for k, c in items:
        one_by_one = one_by_one.insert(k, c)
    batched = PrefixTree().insert_many(items[:cut]).insert_many(items[cut:])
    assert one_by_one.root == batched.root == build(entries).root


@settings(max_examples=40, deadline=None)
@given(entry_maps, entry_maps)
def test_old_trees_stay_answerable(first: dict[bytes, bytes], more: dict[bytes, bytes]) -> None:
    more = {k: c for k, c in more.items() if k not in first}
    old = build(first)
    old_root = old.root
    new = old.insert_many(more.items())
    assert old.root == old_root == oracle_root(first)
    assert new.root == oracle_root({**first, **more})
    probe = list(first)[:5] + list(more)[:5]
    proof = old.prove(probe)
    verify_prefix_proof(old_root, [PrefixLookup(k, first.get(k)) for k in probe], proof)


def test_duplicates_are_rejected() -> None:
    key, c = bytes(32), b"\x01" * 32
    tree = PrefixTree().insert(key, c)
    with pytest.raises(StateError):
        tree.insert(key, c)
    with pytest.raises(StateError):
        tree.insert_many([(key, b"\x02" * 32)])
    with pytest.raises(StateError):
        PrefixTree().insert_many([(key, c), (key, c)])
    bigger = tree.insert_many([(b"\x01" + bytes(31), c), (b"\x02" + bytes(31), c)])
    with pytest.raises(StateError):
        bigger.insert_many([(key, c)])


def test_depth_limit() -> None:
    a, b = bytes(32), bytes(31) + b"\x01"  # differ only in bit 255: leaves would be at depth 256
    c = bytes(32)
    with pytest.raises(StateError):
        PrefixTree().insert(a, c).insert(b, c)
    with pytest.raises(StateError):
        PrefixTree().insert_many([(a, c), (b, c)])
    # Differing in bit 254 puts them at depth 255, the deepest a proof can express.
    d = bytes(31) + b"\x02"
    tree = PrefixTree().insert_many([(a, c), (d, c)])
    proof = tree.prove([a, d, b])
    assert proof.results[:2] == (Inclusion(255), Inclusion(255))
    lookups = [PrefixLookup(a, c), PrefixLookup(d, c), PrefixLookup(b, None)]
    verify_prefix_proof(tree.root, lookups, decode(PrefixProof, encode(proof)))


def test_malformed_entries_are_a_local_error() -> None:
    with pytest.raises(ConfigurationError):
        PrefixTree().insert(bytes(31), bytes(32))
    with pytest.raises(ConfigurationError):
        PrefixTree().insert(bytes(32), bytes(33))
    with pytest.raises(ConfigurationError):
        PrefixTree().prove([bytes(31)])
    with pytest.raises(ConfigurationError):
        PrefixTree().prove([bytes(32)] * 256)


# --- proofs --------------------------------------------------------------------------------------


@settings(max_examples=80, deadline=None)
@given(entry_maps, st.lists(keys, max_size=8))
def test_inclusion_and_non_inclusion(entries: dict[bytes, bytes], extra: list[bytes]) -> None:
    tree = build(entries)
    root = oracle_root(entries)
    lookups_keys = list(entries)[:8] + extra
    proof = tree.prove(lookups_keys)
    lookups = [PrefixLookup(k, entries.get(k)) for k in lookups_keys]
    assert prefix_root_from_proof(lookups, proof) == root
    verify_prefix_proof(root, lookups, proof)
    for k, result in zip(lookups_keys, proof.results, strict=True):
        assert isinstance(result, Inclusion) == (k in entries)
    # each lookup also proves on its own
    for k in lookups_keys:
        verify_prefix_proof(root, [PrefixLookup(k, entries.get(k))], tree.prove([k]))


@settings(max_examples=60, deadline=None)
@given(entry_maps.filter(bool), st.data())
def test_wrong_expectations_fail(entries: dict[bytes, bytes], data: st.DataObject) -> None:
    tree = build(entries)
    present = data.draw(st.sampled_from(sorted(entries)))
    absent = data.draw(keys.filter(lambda k: k not in entries))
    proof = tree.prove([present, absent])
    right = [PrefixLookup(present, entries[present]), PrefixLookup(absent, None)]
    verify_prefix_proof(tree.root, right, proof)
    other = data.draw(commitments.filter(lambda c: c != entries[present]))
    wrong_sets = [
        [PrefixLookup(present, None), right[1]],  # present key claimed absent
        [PrefixLookup(present, other), right[1]],  # wrong commitment
        [right[0], PrefixLookup(absent, other)],  # absent key claimed present
        [right[1], right[0]],  # lookups in the wrong order
        [right[0]],  # too few lookups
    ]
    for lookups in wrong_sets:
        with pytest.raises(InvalidProof):
            verify_prefix_proof(tree.root, lookups, proof)


@settings(max_examples=150, deadline=None)
@given(entry_maps.filter(bool), st.lists(keys, max_size=3), st.data())
def test_any_flipped_byte_fails(
    entries: dict[bytes, bytes], extra: list[bytes], data: st.DataObject
) -> None:
    tree = build(entries)
    probe = list(dict.fromkeys(list(entries)[:4] + extra))
    lookups = [PrefixLookup(k, entries.get(k)) for k in probe]
    wire = encode(tree.prove(probe))
    position = data.draw(st.integers(0, len(wire) - 1))
    bit = data.draw(st.integers(0, 7))
    tampered = flip(wire, position, bit)
    with pytest.raises((DecodeError, InvalidProof)):
        verify_prefix_proof(tree.root, lookups, decode(PrefixProof, tampered))
    # and the root itself
    with pytest.raises(InvalidProof):
        verify_prefix_proof(flip(tree.root, position, bit), lookups, decode(PrefixProof, wire))


def test_forged_non_inclusion_is_rejected() -> None:
    a, b = b"\x00" * 32, b"\x80" + bytes(31)
    c = b"\x01" * 32
    tree = PrefixTree().insert_many([(a, c), (b, c)])
    # The proof of a (inclusion at depth 1) relabelled as a non-inclusion leaf for a itself.
    proof = tree.prove([a])
    forged = PrefixProof((NonInclusionLeaf(PrefixLeaf(a, c), 1),), proof.elements)
    with pytest.raises(InvalidProof):
        verify_prefix_proof(tree.root, [PrefixLookup(a, None)], forged)
    # A non-inclusion leaf that is not on the searched key's path.
    absent = b"\x40" + bytes(31)  # path 0..., ends at a's leaf
    good = tree.prove([absent])
    assert isinstance(good.results[0], NonInclusionLeaf)
    off_path = PrefixProof((NonInclusionLeaf(PrefixLeaf(b, c), 1),), good.elements)
    with pytest.raises(InvalidProof):
        verify_prefix_proof(tree.root, [PrefixLookup(absent, None)], off_path)
    # Extra and missing elements.
    with pytest.raises(InvalidProof):
        verify_prefix_proof(
            tree.root,
            [PrefixLookup(a, c)],
            PrefixProof(proof.results, (*proof.elements, ZERO_HASH)),
        )
    with pytest.raises(InvalidProof):
        verify_prefix_proof(tree.root, [PrefixLookup(a, c)], PrefixProof(proof.results, ()))


def test_empty_tree_non_inclusion() -> None:
    proof = PrefixTree().prove([b"\x42" * 32])
    assert proof == PrefixProof((NonInclusionParent(0),), ())
    verify_prefix_proof(ZERO_HASH, [PrefixLookup(b"\x42" * 32, None)], proof)


def test_shared_terminal_node() -> None:
    # Two absent keys whose searches end at the same leaf, and the leaf's own key.
    a, c = b"\x00" * 32, b"\x07" * 32
    tree = PrefixTree().insert(a, c)
    x, y = b"\x01" + bytes(31), b"\x02" + bytes(31)
    proof = tree.prove([x, a, y])
    assert proof.results == (
        NonInclusionLeaf(PrefixLeaf(a, c), 0),
        Inclusion(0),
        NonInclusionLeaf(PrefixLeaf(a, c), 0),
    )
    lookups = [PrefixLookup(x, None), PrefixLookup(a, c), PrefixLookup(y, None)]
    verify_prefix_proof(tree.root, lookups, proof)
    # Searches sharing a node must end at the same depth.
    bad = PrefixProof((proof.results[0], Inclusion(1), proof.results[2]), proof.elements)
    with pytest.raises(InvalidProof):
        verify_prefix_proof(tree.root, lookups, bad)


# --- wire format ---------------------------------------------------------------------------------


def test_prefix_proof_encoding() -> None:
    leaf = PrefixLeaf(b"\xaa" * 32, b"\xbb" * 32)
    proof = PrefixProof(
        (Inclusion(3), NonInclusionLeaf(leaf, 4), NonInclusionParent(5)), (b"\xcc" * 32,)
    )
    want = (
        b"\x03"  # three results (uint8 count)
        + b"\x01\x03"
        + b"\x02"
        + b"\xaa" * 32
        + b"\xbb" * 32
        + b"\x04"
        + b"\x03\x05"
        + b"\x00\x01"  # one element (uint16 count)
        + b"\xcc" * 32
    )
    assert encode(proof) == want
    assert decode(PrefixProof, want) == proof


@pytest.mark.parametrize("result_type", [0, 4, 255])
def test_unknown_result_type_is_a_decode_error(result_type: int) -> None:
    with pytest.raises(DecodeError):
        pull_prefix_search_result(Reader(bytes((result_type, 0))))


@settings(max_examples=400)
@given(st.binary(max_size=200))
def test_prefix_proof_decoder_fuzz(data: bytes) -> None:
    try:
        proof = decode(PrefixProof, data)
    except DecodeError:
        return
    assert encode(proof) == data


@settings(max_examples=40, deadline=None)
@given(entry_maps, st.lists(keys, max_size=6))
def test_generated_proofs_round_trip(entries: dict[bytes, bytes], probe: list[bytes]) -> None:
    proof = build(entries).prove(probe)
    assert decode(PrefixProof, encode(proof)) == proof
