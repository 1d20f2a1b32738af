"""The shortcuts the MLS engine takes for speed give the same answers as the plain way.

* `RatchetTree`'s key and credential index (kept current by every edit, shared by copies until
  one changes) agrees with a scan of the nodes after any sequence of edits;
* memoized encodings (LeafNode, ParentNode, Commit) equal a fresh encoding, and the bytes a
  received tree or commit keeps are the bytes it was decoded from;
* the cached AAD encodings equal the structs' encodings; the codec's fast paths accept and
  reject exactly what the general ones do;
* a KeyPackage whose LeafNode signature is invalid is refused (RFC 9420 §7.3), and the
  GroupInfo a commit signs lazily is the epoch's.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from doorless.codec import Reader, Writer, decode, encode, pull_uint16_item
from doorless.crypto import cipher_suite
from doorless.errors import DecodeError, ValidationError
from doorless.mls.credential import BasicCredential, X509Credential
from doorless.mls.framing import (
    ContentType,
    MLSMessage,
    PrivateContentAAD,
    SenderDataAAD,
)
from doorless.mls.group import Group, GroupConfig, KeyPackageBundle, generate_key_package
from doorless.mls.key_package import KeyPackage
from doorless.mls.leaf_node import Capabilities, LeafNode, LeafNodeSource
from doorless.mls.message_protection import content_aad, sender_data_aad
from doorless.mls.nodes import ParentNode
from doorless.mls.proposals import Add, Commit
from doorless.mls.ratchet_tree import RatchetTree
from doorless.mls.welcome import GroupInfo
from doorless.secret import PrivateKeyBytes

SUITE = cipher_suite(1)
NOW = 1_700_000_000


def _key(*parts: object) -> bytes:
    return hashlib.sha256(repr(parts).encode()).digest()


def _leaf(i: int, *, x509: bool = False, creds: tuple[int, ...] = (1, 2)) -> LeafNode:
    return LeafNode(
        _key("enc", i),
        _key("sig", i),
        X509Credential((b"cert",)) if x509 else BasicCredential(b"%d" % i),
        Capabilities((1,), (1,), (), (), creds),
        LeafNodeSource.update,
        None,
        None,
        (),
        b"sig",
    )


def _scan(tree: RatchetTree) -> tuple[Counter[bytes], Counter[bytes], int, set[int], set[int]]:
    enc: Counter[bytes] = Counter(n.encryption_key for n in tree.nodes if n is not None)
    members = list(tree.members())
    sig: Counter[bytes] = Counter(leaf.signature_key for _, leaf in members)
    in_use = {int(leaf.credential.credential_type) for _, leaf in members}
    everywhere = {
        t for t in (1, 2, 3) if all(t in leaf.capabilities.credentials for _, leaf in members)
    }
    return enc, sig, len(members), in_use, everywhere


def _check_index(tree: RatchetTree) -> None:
    enc, sig, members, in_use, everywhere = _scan(tree)
    assert tree.member_count() == members
    assert tree.credential_types_in_use() == in_use
    assert {t for t in (1, 2, 3) if tree.credential_supported_by_all(t)} == everywhere
    for key in enc:
        assert tree.encryption_key_in_use(key)
    for key, count in sig.items():
        assert tree.signature_key_users(key) == count
    assert not tree.encryption_key_in_use(_key("absent"))
    duplicated = any(c > 1 for c in enc.values()) or any(c > 1 for c in sig.values())
    if duplicated:
        with pytest.raises(ValidationError):
            tree.verify_unique_keys()
    else:
        tree.verify_unique_keys()


ops = st.lists(
    st.tuples(
        st.sampled_from(["add", "add_x509", "add_dup", "remove", "update", "path", "copy"]),
        st.integers(0, 63),
    ),
    max_size=40,
)


@given(ops)
@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
def test_tree_index_matches_a_scan(operations: list[tuple[str, int]]) -> None:
    tree = RatchetTree.create(SUITE, _leaf(0))
    _check_index(tree)
    kept: list[tuple[RatchetTree, bytes]] = []  # earlier trees: copies must not change them
    for k, (op, arg) in enumerate(operations):
        members = [i for i, _ in tree.members()]
        target = members[arg % len(members)]
        if op == "add":
            tree.add_leaf(_leaf(100 + k, creds=(1,) if arg % 3 == 0 else (1, 2)))
        elif op == "add_x509":
            tree.add_leaf(_leaf(100 + k, x509=True))
        elif op == "add_dup":
            tree.add_leaf(_leaf(target))  # same keys as the target's original leaf
        elif op == "remove" and len(members) > 1:
            tree.remove_leaf(target)
        elif op == "update":
            tree.update_leaf(target, _leaf(200 + k))
        elif op == "path":
            fdp = tree.filtered_direct_path(target)
            tree.merge_path(target, _leaf(300 + k), [_key("p", k, x) for x in fdp])
        elif op == "copy":
            kept.append((tree, tree.encode()))
            tree = tree.copy()
        _check_index(tree)
    for old, encoding in kept:
        assert old.encode() == encoding
        _check_index(old)


def test_copy_shares_then_splits_the_index() -> None:
    tree = RatchetTree.create(SUITE, _leaf(0))
    tree.add_leaf(_leaf(1))
    assert tree.member_count() == 2  # index built
    copy = tree.copy()
    copy.add_leaf(_leaf(2))
    copy.add_leaf(_leaf(1))  # a duplicate, in the copy only
    assert copy.member_count() == 4 and tree.member_count() == 2
    with pytest.raises(ValidationError):
        copy.verify_unique_keys()
    tree.verify_unique_keys()


# --- memoized and received encodings -----------------------------------------------------


def _fresh_leaf_encoding(leaf: LeafNode) -> bytes:
    return encode(dataclasses.replace(leaf))  # a new object: nothing memoized


def test_memoized_encodings_equal_fresh_ones() -> None:
    leaf = _leaf(5)
    first = encode(leaf)
    assert encode(leaf) == first == _fresh_leaf_encoding(leaf)
    assert leaf.tbs(b"group", 3) == dataclasses.replace(leaf).tbs(b"group", 3)
    parent = ParentNode(_key("p"), b"", (1, 4))
    assert encode(parent) == encode(dataclasses.replace(parent))
    # replace() must not carry a memoized encoding over to a changed object
    changed = dataclasses.replace(leaf, signature=b"other")
    assert encode(changed) != first


def test_received_tree_keeps_its_bytes_and_hashes_like_a_built_one() -> None:
    tree = RatchetTree.create(SUITE, _leaf(0))
    for i in range(1, 6):
        tree.add_leaf(_leaf(i))
    tree.merge_path(0, _leaf(9), [_key("q", x) for x in tree.filtered_direct_path(0)])
    data = tree.encode()
    received = RatchetTree.decode(SUITE, data)
    assert received.encode() == data
    assert received.tree_hash() == tree.tree_hash()
    for i, leaf in received.members():
        original = tree.leaf_node(i)
        assert original is not None
        assert leaf.tbs(b"g", i) == original.tbs(b"g", i)


def _group(n: int) -> tuple[Group, list[KeyPackageBundle]]:
    bundles = []
    for i in range(n):
        sk = PrivateKeyBytes(SUITE.generate_signature_key_pair().private_key)
        bundles.append(generate_key_package(SUITE, BasicCredential(b"m%d" % i), sk, now=NOW))
    b0 = bundles[0]
    group = Group.create(
        SUITE,
        b"perf",
        b0.key_package.leaf_node,
        b0.encryption_private_key,
        b0.signature_private_key,
        config=GroupConfig(private_handshakes=False),
    )
    return group, bundles


def test_received_commit_keeps_its_bytes() -> None:
    group, bundles = _group(3)
    out = group.commit([Add(b.key_package) for b in bundles[1:]], now=NOW)
    message = decode(MLSMessage, out.commit)
    commit = message.body.content.content  # type: ignore[union-attr]
    assert isinstance(commit, Commit)
    fresh = encode(Commit(commit.proposals, commit.path))
    assert encode(commit) == fresh
    assert encode(message) == out.commit


# --- cached AADs and codec fast paths ------------------------------------------------------


@given(st.binary(max_size=70), st.integers(0, 2**64 - 1), st.binary(max_size=300))
def test_cached_aads_equal_the_structs(group_id: bytes, epoch: int, data: bytes) -> None:
    for content_type in ContentType:
        assert sender_data_aad(group_id, epoch, content_type) == encode(
            SenderDataAAD(group_id, epoch, content_type)
        )
        assert content_aad(group_id, epoch, content_type, data) == encode(
            PrivateContentAAD(group_id, epoch, content_type, data)
        )


def _general_opaque(data: bytes) -> bytes | type[DecodeError]:
    r = Reader(data)
    try:
        return r._take(r.pull_varint())  # the general path
    except DecodeError:
        return DecodeError


def _fast_opaque(data: bytes) -> bytes | type[DecodeError]:
    try:
        return Reader(data).pull_opaque()
    except DecodeError:
        return DecodeError


@given(st.binary(max_size=300))
def test_pull_opaque_fast_path_agrees(data: bytes) -> None:
    assert _fast_opaque(data) == _general_opaque(data)


@pytest.mark.parametrize(
    "data",
    [b"\x40\x05abcde", b"\x40\x3f" + bytes(63), b"\x41\x00" + bytes(255), b"\x40\x41", b"\x80"],
    ids=["non-minimal-5", "non-minimal-63", "two-octet-256", "two-octet-short", "short"],
)
def test_pull_opaque_edge_cases(data: bytes) -> None:
    assert _fast_opaque(data) == _general_opaque(data)


@given(st.binary(max_size=80))
def test_uint16_vector_agrees_with_pull_vector(data: bytes) -> None:
    def general() -> object:
        r = Reader(data)
        try:
            return tuple(r.pull_vector(pull_uint16_item)), r.position
        except DecodeError:
            return DecodeError

    def fast() -> object:
        r = Reader(data)
        try:
            return r.pull_uint16_vector(), r.position
        except DecodeError:
            return DecodeError

    assert fast() == general()


def test_writer_len() -> None:
    w = Writer()
    w.push_opaque(b"abc")
    assert len(w) == 4


# --- checks that became cheaper stay checks ------------------------------------------------


def test_add_of_key_package_with_bad_leaf_signature_is_refused() -> None:
    group, bundles = _group(2)
    kp: KeyPackage = bundles[1].key_package
    bad_leaf = dataclasses.replace(kp.leaf_node, signature=bytes(64))
    sk = bundles[1].signature_private_key
    forged = dataclasses.replace(kp, leaf_node=bad_leaf).signed(SUITE, sk)
    forged.verify(SUITE)  # the KeyPackage signature itself is valid
    with pytest.raises(ValidationError) as exc:
        group.commit([Add(forged)], now=NOW)
    assert exc.value.rule == "RFC9420 7.3"


def test_lazy_group_info_is_the_new_epochs() -> None:
    group, _ = _group(2)
    out = group.commit(now=NOW)
    new = group.merge_pending_commit(out.pending)
    info = decode(MLSMessage, out.group_info).body
    assert isinstance(info, GroupInfo)
    assert info.group_context == new.group_context
    signer = new.tree.leaf_node(info.signer)
    assert signer is not None
    info.verify(SUITE, signer.signature_key)
    assert out.group_info == out.group_info  # computed once


def test_long_overlay_chains_flatten_and_stay_right() -> None:
    tree = RatchetTree.create(SUITE, _leaf(0))
    for i in range(1, 8):
        tree.add_leaf(_leaf(i))
    tree.member_count()
    for k in range(100):  # more than _TreeIndex.MAX_DEPTH overlays
        tree = tree.copy()  # every epoch: a copy, then a change
        target = k % 8
        fdp = tree.filtered_direct_path(target)
        tree.merge_path(target, _leaf(1000 + k), [_key("e", k, x) for x in fdp])
        if k % 10 == 0:
            _check_index(tree)
    _check_index(tree)
