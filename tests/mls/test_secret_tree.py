"""Unit tests of the secret tree (RFC 9420 §9): laziness, the out-of-order window, deletion of
consumed keys (§9.2, invariant I6), immutability (I4) and persistence.

Reference keys come from an in-order walk of a fresh tree (checked against the official vectors
elsewhere) or from an independent HKDF written here.
"""

from __future__ import annotations

import hashlib
import hmac
from functools import cache

import pytest
from hypothesis import given
from hypothesis import strategies as st

from doorless.crypto import cipher_suite
from doorless.errors import ConfigurationError, DecodeError, StateError, ValidationError
from doorless.mls.schedule import SenderDataSecret
from doorless.mls.secret_tree import (
    MAX_GENERATION,
    GenerationConsumed,
    GenerationTooFar,
    HashRatchet,
    RatchetKey,
    RatchetType,
    SecretTree,
    SecretTreeConfig,
    TreeNodeSecret,
    ratchet_type_for,
    sender_data_key_nonce,
)
from doorless.mls.tree_math import LeafIndex, NodeIndex, log2
from doorless.secret import EncryptionSecret, RatchetSecret

SUITE = cipher_suite(1)
ROOT = EncryptionSecret(bytes(range(32)))
APP = RatchetType.application
HS = RatchetType.handshake
L0, L1, L2 = LeafIndex(0), LeafIndex(1), LeafIndex(2)


def tree(n: int = 4, **config: int) -> SecretTree:
    return SecretTree.create(SUITE, ROOT, n, SecretTreeConfig(**config))


@cache
def in_order_keys(leaf: LeafIndex, kind: RatchetType, count: int) -> list[RatchetKey]:
    t, keys = tree(), []
    for g in range(count):
        step = t.key_for(leaf, kind, g)
        keys.append(step.key)
        t = step.tree
    return keys


def same(a: RatchetKey, b: RatchetKey) -> bool:
    return a.generation == b.generation and a.key == b.key and a.nonce == b.nonce


def _expand(secret: bytes, label: bytes, context: bytes, length: int) -> bytes:
    info = (
        length.to_bytes(2, "big")
        + bytes([8 + len(label)])
        + b"MLS 1.0 "
        + label
        + bytes([len(context)])
        + context
    )
    return hmac.new(secret, info + b"\x01", hashlib.sha256).digest()[:length]


def test_one_leaf_tree_matches_independent_hkdf() -> None:
    ratchet = _expand(ROOT.value, b"application", b"", 32)
    g0 = (0).to_bytes(4, "big")
    step = SecretTree.create(SUITE, ROOT, 1).key_for(L0, APP, 0)
    assert step.key.key.value == _expand(ratchet, b"key", g0, 16)
    assert step.key.nonce.value == _expand(ratchet, b"nonce", g0, 12)


def test_left_right_derivation_matches_independent_hkdf() -> None:
    left = _expand(ROOT.value, b"tree", b"left", 32)
    handshake = _expand(left, b"handshake", b"", 32)
    step = SecretTree.create(SUITE, ROOT, 2).key_for(L0, HS, 0)
    assert step.key.key.value == _expand(handshake, b"key", bytes(4), 16)


# --- out of order -----------------------------------------------------------------------------


def test_out_of_order_within_window() -> None:
    ref = in_order_keys(L1, APP, 8)
    t = tree()
    for g in (5, 2, 7, 0, 6):
        step = t.key_for(L1, APP, g)
        assert same(step.key, ref[g])
        t = step.tree


def test_beyond_forward_window_rejected() -> None:
    t = tree(max_forward_distance=10)
    assert t.key_for(L0, APP, 10).key.generation == 10
    with pytest.raises(GenerationTooFar):
        t.key_for(L0, APP, 11)
    t = t.key_for(L0, APP, 5).tree
    with pytest.raises(GenerationTooFar):
        t.key_for(L0, APP, 17)
    assert t.key_for(L0, APP, 16).key.generation == 16


def test_replay_of_consumed_generation_rejected() -> None:
    t = tree()
    step = t.key_for(L0, APP, 3)
    with pytest.raises(GenerationConsumed):
        step.tree.key_for(L0, APP, 3)
    skipped = step.tree.key_for(L0, APP, 1)
    with pytest.raises(GenerationConsumed):
        skipped.tree.key_for(L0, APP, 1)
    # The errors are typed remote errors with the rule they enforce.
    with pytest.raises(ValidationError, match=r"RFC9420 9\.2"):
        skipped.tree.key_for(L0, APP, 1)


def test_skipped_keys_are_bounded() -> None:
    ref = in_order_keys(L0, APP, 11)
    t = tree(out_of_order_tolerance=3).key_for(L0, APP, 10).tree
    assert [k.generation for k in t.ratchets[(L0, APP)].skipped] == [7, 8, 9]
    with pytest.raises(GenerationConsumed):
        t.key_for(L0, APP, 6)
    assert same(t.key_for(L0, APP, 7).key, ref[7])
    # Further jumps evict the oldest retained keys.
    t = t.key_for(L0, APP, 12).tree
    assert [k.generation for k in t.ratchets[(L0, APP)].skipped] == [8, 9, 11]


def test_zero_tolerance_keeps_nothing() -> None:
    t = tree(out_of_order_tolerance=0).key_for(L0, APP, 4).tree
    assert t.ratchets[(L0, APP)].skipped == ()
    with pytest.raises(GenerationConsumed):
        t.key_for(L0, APP, 3)


def test_ratchets_are_independent() -> None:
    t = tree().key_for(L0, APP, 3).tree
    assert t.key_for(L0, HS, 0).key.generation == 0
    assert t.key_for(L1, APP, 0).key.generation == 0
    assert not same(in_order_keys(L0, APP, 1)[0], in_order_keys(L0, HS, 1)[0])
    assert ratchet_type_for(1) is APP
    assert ratchet_type_for(2) is HS and ratchet_type_for(3) is HS


def test_sender_next_key_matches_receiver() -> None:
    sender, receiver = tree(), tree()
    for g in range(3):
        out = sender.next_key(L2, HS)
        assert out.key.generation == g
        got = receiver.key_for(L2, HS, g)
        assert same(out.key, got.key)
        sender, receiver = out.tree, got.tree


def test_ratchet_exhausted() -> None:
    last = HashRatchet(MAX_GENERATION, RatchetSecret(bytes(32)))
    t = tree()
    ratchets = dict(t.next_key(L0, APP).tree.ratchets)
    ratchets[(L0, APP)] = last
    t = SecretTree(SUITE, 4, {}, ratchets)
    step = t.next_key(L0, APP)
    assert step.key.generation == MAX_GENERATION
    with pytest.raises(StateError):
        step.tree.next_key(L0, APP)
    with pytest.raises(GenerationConsumed):
        step.tree.key_for(L0, APP, MAX_GENERATION)
    with pytest.raises(ValidationError):
        t.key_for(L0, APP, MAX_GENERATION + 1)
    # The exhausted state persists (its next generation no longer fits a uint32).
    again = SecretTree.from_bytes(step.tree.to_bytes())
    with pytest.raises(StateError):
        again.next_key(L0, APP)


def test_leaf_outside_tree_rejected() -> None:
    with pytest.raises(ValidationError):
        tree(4).key_for(LeafIndex(4), APP, 0)
    with pytest.raises(ConfigurationError):
        SecretTree.create(SUITE, ROOT, 0)
    with pytest.raises(ConfigurationError):
        SecretTreeConfig(max_forward_distance=-1)


# --- immutability, laziness, deletion ---------------------------------------------------------


def test_operations_do_not_mutate() -> None:
    t = tree()
    before = t.to_bytes()
    t.key_for(L1, APP, 4)
    t.next_key(L2, HS)
    with pytest.raises(GenerationTooFar):
        t.key_for(L0, APP, 5000)
    assert t.to_bytes() == before
    # A rolled-back step leaves the key usable.
    assert same(t.key_for(L1, APP, 4).key, in_order_keys(L1, APP, 5)[4])


def test_lazy_for_large_groups() -> None:
    n = 10_000
    t = SecretTree.create(SUITE, ROOT, n)
    assert len(t.nodes) == 1 and not t.ratchets
    t = t.key_for(LeafIndex(4321), APP, 0).tree
    # Only the copath of the used leaf is held: one node per level.
    depth = log2(2 * n - 1)
    assert len(t.nodes) == depth
    assert len(t.to_bytes()) < 4000


def test_consumed_secrets_are_deleted() -> None:
    t = tree(4)
    root_node = NodeIndex(3)
    assert t.nodes[root_node] == TreeNodeSecret(ROOT.value)
    step = t.key_for(L1, APP, 2)
    t = step.tree
    # Root, parent 1 and leaf node 2 consumed; siblings 0 (leaf 0) and 5 (right half) kept.
    assert set(t.nodes) == {NodeIndex(0), NodeIndex(5)}
    data = t.to_bytes()
    assert ROOT.value not in data
    assert step.key.key.value not in data and step.key.nonce.value not in data
    # After use, the skipped generations 0 and 1 remain until consumed, then they are gone too.
    for g in (0, 1):
        s = t.key_for(L1, APP, g)
        assert s.key.key.value in t.to_bytes()
        t = s.tree
        assert s.key.key.value not in t.to_bytes()


def test_persistence_keeps_deletion() -> None:
    t = tree().key_for(L1, APP, 3).tree.key_for(L1, APP, 1).tree
    again = SecretTree.from_bytes(t.to_bytes(), SecretTreeConfig(max_forward_distance=5))
    assert again.to_bytes() == t.to_bytes()
    assert again.config.max_forward_distance == 5
    for g in (1, 3):
        with pytest.raises(GenerationConsumed):
            again.key_for(L1, APP, g)
    ref = in_order_keys(L1, APP, 5)
    assert same(again.key_for(L1, APP, 0).key, ref[0])
    assert same(again.key_for(L1, APP, 4).key, ref[4])
    assert same(again.key_for(L2, APP, 0).key, in_order_keys(L2, APP, 1)[0])


def test_non_power_of_two_tree_matches_the_full_tree() -> None:
    # A 3-leaf tree has the root of the 4-leaf tree; leaf secrets agree.
    three = SecretTree.create(SUITE, ROOT, 3)
    for leaf in (L0, L1, L2):
        assert same(three.key_for(leaf, APP, 1).key, in_order_keys(leaf, APP, 2)[1])


def test_reprs_hide_secrets() -> None:
    t = tree()
    step = t.key_for(L0, APP, 1)
    for text in (repr(t), repr(step), repr(step.key), repr(step.tree.ratchets[(L0, APP)])):
        assert step.key.key.value.hex() not in text
        assert ROOT.value.hex() not in text


# --- decoding ---------------------------------------------------------------------------------


def test_from_bytes_rejects_malformed() -> None:
    data = tree().key_for(L1, APP, 3).tree.to_bytes()
    with pytest.raises(DecodeError):
        SecretTree.from_bytes(data + b"\x00")
    with pytest.raises(DecodeError):
        SecretTree.from_bytes(data[:-1])
    with pytest.raises(DecodeError):
        SecretTree.from_bytes(b"\x00\x01\x00\x00\x00\x00\x00\x00")  # zero leaves


@given(st.binary(max_size=300))
def test_from_bytes_total(data: bytes) -> None:
    try:
        t = SecretTree.from_bytes(data)
    except DecodeError:
        return
    assert t.to_bytes() == SecretTree.from_bytes(t.to_bytes()).to_bytes()


@given(st.lists(st.integers(min_value=0, max_value=40), max_size=12))
def test_any_order_gives_in_order_keys(generations: list[int]) -> None:
    ref = in_order_keys(L1, HS, 41)
    t, used = tree(out_of_order_tolerance=64), set()
    for g in generations:
        if g in used:
            with pytest.raises(GenerationConsumed):
                t.key_for(L1, HS, g)
            continue
        step = t.key_for(L1, HS, g)
        assert same(step.key, ref[g])
        used.add(g)
        t = step.tree


# --- sender data (§6.3.2) ---------------------------------------------------------------------


def test_sender_data_sample() -> None:
    sds = SenderDataSecret(bytes([1]) * 32)
    long = bytes(range(64))
    assert sender_data_key_nonce(SUITE, sds, long) == sender_data_key_nonce(SUITE, sds, long[:32])
    assert sender_data_key_nonce(SUITE, sds, long[:32]) != sender_data_key_nonce(
        SUITE, sds, long[:31]
    )
    key, nonce = sender_data_key_nonce(SUITE, sds, b"short")
    assert key.value == _expand(sds.value, b"key", b"short", 16)
    assert nonce.value == _expand(sds.value, b"nonce", b"short", 12)


@pytest.mark.parametrize("field", ["key", "nonce", "handshake_key", "application_nonce"])
def test_checker_detects_tampering(field: str) -> None:
    import json
    from pathlib import Path

    from doorless.conformance import VectorMismatch, checker

    path = Path(__file__).parents[1] / "vectors" / "mls" / "secret-tree.json"
    case = json.loads(path.read_text())[1]
    node = case["sender_data"] if field in ("key", "nonce") else case["leaves"][3][1]
    b = bytearray.fromhex(node[field])
    b[0] ^= 0x80
    node[field] = b.hex()
    with pytest.raises(VectorMismatch):
        checker("secret-tree")(case)


def test_from_bytes_rejects_inconsistent_state() -> None:
    t = tree().key_for(L1, APP, 0).tree
    lonely = SecretTree(SUITE, 4, dict(t.nodes), {(L1, APP): t.ratchets[(L1, APP)]})
    with pytest.raises(DecodeError):
        SecretTree.from_bytes(lonely.to_bytes())
    exhausted_but_keyed = dict(t.ratchets)
    exhausted_but_keyed[(L1, HS)] = HashRatchet(MAX_GENERATION + 1, RatchetSecret(bytes(32)))
    with pytest.raises(DecodeError):
        SecretTree.from_bytes(SecretTree(SUITE, 4, dict(t.nodes), exhausted_but_keyed).to_bytes())
