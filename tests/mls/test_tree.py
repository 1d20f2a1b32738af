"""Ratchet tree (RFC 9420 §4, §7), TreeKEM (§7.4-§7.6) and the leaf-side structs.

* tree math: properties against the RFC's definitions (Appendix C), checked by brute force;
* tree edits: add/update/remove against the RFC's rules, hash cache against fresh hashes;
* validation: one negative test per rule of §7.3/§7.9.2/§12.4.3.1 on trees built by commits;
* TreeKEM: every member decrypts every path; tampering is refused;
* decoders: arbitrary and mutated bytes decode or raise DecodeError; round trips byte-exact.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from doorless.codec import Reader, Writer, decode, encode, push_struct
from doorless.crypto import CipherSuite, cipher_suite
from doorless.errors import (
    ConfigurationError,
    DecodeError,
    DecryptError,
    InvalidSignature,
    StateError,
    ValidationError,
)
from doorless.mls import tree_math
from doorless.mls.credential import (
    BasicCredential,
    Credential,
    CredentialType,
    X509Credential,
    pull_credential,
)
from doorless.mls.extensions import (
    ApplicationId,
    Extension,
    ExtensionType,
    ExternalPub,
    ExternalSender,
    ExternalSenders,
    RequiredCapabilities,
    check_unique_extensions,
    find_extension,
    make_extension,
    parse_extension,
    pull_extensions,
)
from doorless.mls.group_context import ProtocolVersion
from doorless.mls.key_package import KeyPackage, make_key_package_ref
from doorless.mls.leaf_node import Capabilities, LeafNode, LeafNodeSource, Lifetime
from doorless.mls.nodes import (
    HPKECiphertext,
    Node,
    ParentNode,
    UpdatePath,
    UpdatePathNode,
    decode_ratchet_tree,
    encode_ratchet_tree,
    pull_node,
    push_node,
)
from doorless.mls.ratchet_tree import RatchetTree
from doorless.mls.treekem import (
    TreePrivateKeys,
    decrypt_update_path,
    join_private_keys,
    merge_update_path,
    prepare_commit_path,
)
from doorless.secret import PrivateKeyBytes

VECTORS = Path(__file__).parents[1] / "vectors" / "mls"
SUITE = cipher_suite(1)
GROUP_ID = b"doorless test group"
CONTEXT = b"provisional group context"
FOREVER = Lifetime(0, 2**64 - 1)

# ------------------------------------------------------------------------------------------
# Tree math (Appendix C), checked against brute-force definitions
# ------------------------------------------------------------------------------------------


def _children(x: int) -> tuple[int, int] | None:
    if tree_math.level(x) == 0:
        return None
    return tree_math.left(x), tree_math.right(x)


@given(st.integers(min_value=1, max_value=600))
def test_tree_math_structure(n: int) -> None:
    width = tree_math.node_width(n)
    r = tree_math.root(n)
    assert width == 2 * n - 1
    assert tree_math.level(r) == (width).bit_length() - 1
    for x in range(width):
        assert tree_math.is_leaf(x) == (x % 2 == 0) == (tree_math.level(x) == 0)
        if tree_math.is_leaf(x):
            assert tree_math.leaf_to_node(tree_math.node_to_leaf(x)) == x
        if x == r:
            with pytest.raises(ConfigurationError):
                tree_math.parent(x, n)
            assert tree_math.direct_path(x, n) == []
            assert tree_math.copath(x, n) == []
            continue
        p = tree_math.parent(x, n)
        assert x in (tree_math.left(p), tree_math.right(p))
        assert tree_math.level(p) > tree_math.level(x)
        s = tree_math.sibling(x, n)
        assert {s, x} == {tree_math.left(p), tree_math.right(p)}
        dp = tree_math.direct_path(x, n)
        assert dp[0] == p and dp[-1] == r
        assert tree_math.copath(x, n) == [tree_math.sibling(y, n) for y in [x, *dp[:-1]]]


@given(st.integers(min_value=0, max_value=1022), st.integers(min_value=0, max_value=1022))
def test_common_ancestor_and_subtree(x: int, y: int) -> None:
    n = 512  # width 1023: every x, y is inside
    ancestors_x = {x, *tree_math.direct_path(x, n)}
    ancestors_y = {y, *tree_math.direct_path(y, n)}
    want = min(ancestors_x & ancestors_y, key=tree_math.level)
    assert tree_math.common_ancestor(x, y) == want
    assert tree_math.is_in_subtree(x, y) == (y in ancestors_x)
    if tree_math.is_leaf(x):
        assert (x // 2 in tree_math.subtree_leaves(y)) == (y in ancestors_x)


def test_tree_math_misuse_raises_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        tree_math.left(4)
    with pytest.raises(ConfigurationError):
        tree_math.right(0)
    with pytest.raises(ConfigurationError):
        tree_math.node_to_leaf(3)


# ------------------------------------------------------------------------------------------
# Building real groups (signed leaves, committed paths)
# ------------------------------------------------------------------------------------------


def _seed(*parts: object) -> bytes:
    return hashlib.sha256(repr(parts).encode()).digest()


@dataclasses.dataclass
class Member:
    index: int
    signature_priv: bytes
    leaf: LeafNode
    keys: TreePrivateKeys


def _capabilities(
    extensions: tuple[int, ...] = (), credentials: tuple[int, ...] = (1,)
) -> Capabilities:
    return Capabilities((1,), (1, 2), extensions, (), credentials)


def _signature_priv(suite: CipherSuite, name: str) -> bytes:
    if suite.id == 1:
        return _seed("sig", name)
    return suite.generate_signature_key_pair().private_key


def key_package_leaf(
    suite: CipherSuite,
    name: str,
    *,
    capabilities: Capabilities | None = None,
    extensions: tuple[Extension, ...] = (),
    lifetime: Lifetime = FOREVER,
) -> tuple[LeafNode, bytes, PrivateKeyBytes]:
    sig = _signature_priv(suite, name)
    enc = suite.derive_key_pair(_seed("enc", name))
    leaf = LeafNode(
        encryption_key=enc.public_key,
        signature_key=suite.signature_public_key(sig),
        credential=BasicCredential(name.encode()),
        capabilities=capabilities or _capabilities(),
        leaf_node_source=LeafNodeSource.key_package,
        lifetime=lifetime,
        parent_hash=None,
        extensions=extensions,
        signature=b"",
    ).signed(suite, sig)
    return leaf, sig, PrivateKeyBytes(enc.private_key)


class Group:
    """A test group: the public tree plus every member's private state (no key schedule)."""

    def __init__(self, suite: CipherSuite = SUITE) -> None:
        self.suite = suite
        leaf, sig, enc = key_package_leaf(suite, "m0")
        self.tree = RatchetTree.create(suite, leaf)
        self.members = {0: Member(0, sig, leaf, TreePrivateKeys.for_leaf(suite, 0, enc))}
        self.counter = 1

    def add(self) -> int:
        """Add a member without a path (it becomes unmerged above)."""
        name = f"m{self.counter}"
        self.counter += 1
        leaf, sig, enc = key_package_leaf(self.suite, name)
        tree = self.tree.copy()
        i = tree.add_leaf(leaf)
        self.tree = tree
        self.members[i] = Member(i, sig, leaf, TreePrivateKeys.for_leaf(self.suite, i, enc))
        return i

    def commit(self, sender: int, adds: int = 0, removes: tuple[int, ...] = ()) -> None:
        """Commit with a path by ``sender``, adding ``adds`` members and removing ``removes``;
        every other member processes it and checks the commit secret."""
        tree = self.tree.copy()
        for r in removes:
            tree.remove_leaf(r)
            del self.members[r]
        new: list[tuple[int, bytes, PrivateKeyBytes, LeafNode]] = []
        for _ in range(adds):
            name = f"m{self.counter}"
            self.counter += 1
            leaf, sig, enc = key_package_leaf(self.suite, name)
            new.append((tree.add_leaf(leaf), sig, enc, leaf))
        member = self.members[sender]
        leaf_secret = hashlib.sha512(_seed("leaf", self.counter, sender)).digest()
        prepared = prepare_commit_path(
            tree, sender, leaf_secret[: self.suite.hash_length], member.signature_priv, GROUP_ID
        )
        new_leaves = {i for i, *_ in new}
        path = prepared.encrypt(CONTEXT, exclude=new_leaves)
        # Receivers: merge, then decrypt.
        merged = merge_update_path(tree, sender, decode(UpdatePath, encode(path)))
        assert merged.tree_hash() == prepared.tree.tree_hash()
        for j, m in self.members.items():
            if j == sender:
                continue
            got = decrypt_update_path(merged, sender, path, m.keys, CONTEXT, new_leaves)
            assert got.commit_secret == prepared.commit_secret
            m.keys = got.private_keys
            m.keys.check_consistent(merged)
        member.keys = prepared.private_keys
        member.leaf = prepared.leaf_node
        for i, sig, enc, leaf in new:
            keys = join_private_keys(prepared.tree, i, enc, sender, prepared.path_secret_for(i))
            self.members[i] = Member(i, sig, leaf, keys)
        self.tree = prepared.tree


@cache
def grown_group(n: int) -> Group:
    """``get_tree(n)`` of the tree-validation vectors: leaf i commits adding leaf i+1."""
    g = Group()
    for i in range(n - 1):
        g.commit(i, adds=1)
    return g


def _fresh(tree: RatchetTree) -> RatchetTree:
    return RatchetTree.decode(tree.suite, tree.encode())


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8])
def test_grown_trees_validate(n: int) -> None:
    g = grown_group(n)
    g.tree.validate(GROUP_ID, tree_hash=_fresh(g.tree).tree_hash(), now=1_700_000_000)
    assert g.tree.member_count() == n
    for m in g.members.values():
        m.keys.check_consistent(g.tree)


def test_group_with_blanks_unmerged_leaves_and_removes() -> None:
    g = Group()
    for i in range(5):
        g.commit(i % max(1, len(g.members)), adds=1)
    g.add()
    g.add()  # two unmerged leaves at the top
    g.tree.validate(GROUP_ID)
    g.commit(3, removes=(1, 2))
    g.tree.validate(GROUP_ID)
    g.commit(0, adds=2, removes=(6,))
    g.tree.validate(GROUP_ID, tree_hash=_fresh(g.tree).tree_hash())
    g.add()
    g.commit(max(g.members), adds=0)
    g.tree.validate(GROUP_ID)


@pytest.mark.parametrize("suite_id", [2, 3, 7])
def test_treekem_other_suites(suite_id: int) -> None:
    g = Group(cipher_suite(suite_id))
    for i in range(3):
        g.commit(i, adds=1)
    g.add()
    g.commit(1)
    g.tree.validate(GROUP_ID)


# ------------------------------------------------------------------------------------------
# Tree edits (§7.7, §12.1)
# ------------------------------------------------------------------------------------------


def _dummy_leaf(i: int) -> LeafNode:
    return LeafNode(
        _seed("k", i),
        _seed("s", i),
        BasicCredential(b"%d" % i),
        _capabilities(),
        LeafNodeSource.update,
        None,
        None,
        (),
        b"sig",
    )


def test_add_uses_leftmost_blank_then_extends() -> None:
    tree = RatchetTree.create(SUITE, _dummy_leaf(0))
    assert tree.add_leaf(_dummy_leaf(1)) == 1
    assert tree.add_leaf(_dummy_leaf(2)) == 2
    assert tree.n_leaves == 4
    tree.remove_leaf(1)
    assert tree.n_leaves == 4
    assert tree.add_leaf(_dummy_leaf(3)) == 1
    tree.remove_leaf(2)
    assert tree.n_leaves == 2  # right half empty: truncated
    assert tree.add_leaf(_dummy_leaf(4)) == 2
    assert tree.n_leaves == 4


def test_add_marks_unmerged_sorted() -> None:
    tree = RatchetTree.create(SUITE, _dummy_leaf(0))
    for i in range(1, 8):
        tree.add_leaf(_dummy_leaf(i))
    tree.merge_path(0, _dummy_leaf(0), [_seed("p", x) for x in tree.filtered_direct_path(0)])
    tree.remove_leaf(5)
    tree.remove_leaf(2)  # root blanked
    tree.merge_path(0, _dummy_leaf(0), [_seed("q", x) for x in tree.filtered_direct_path(0)])
    # Re-adding at leaf 2 (leftmost blank) then 5.
    assert tree.add_leaf(_dummy_leaf(9)) == 2
    assert tree.add_leaf(_dummy_leaf(10)) == 5
    root = tree.parent_node(tree.root)
    assert root is not None and root.unmerged_leaves == (2, 5)
    tree.verify_unmerged_leaves()


def test_update_blanks_direct_path_and_copy_is_independent() -> None:
    tree = RatchetTree.create(SUITE, _dummy_leaf(0))
    for i in range(1, 4):
        tree.add_leaf(_dummy_leaf(i))
    tree.merge_path(0, _dummy_leaf(0), [_seed("o", x) for x in tree.filtered_direct_path(0)])
    tree.merge_path(2, _dummy_leaf(2), [_seed("p", x) for x in tree.filtered_direct_path(2)])
    before = tree.encode()
    before_hash = tree.tree_hash()
    copy = tree.copy()
    copy.update_leaf(2, _dummy_leaf(7))
    assert copy.node(5) is None and copy.node(3) is None and copy.node(1) is not None
    assert tree.encode() == before and tree.tree_hash() == before_hash
    with pytest.raises(StateError):
        copy.remove_leaf(9)


ops = st.lists(
    st.tuples(st.sampled_from(["add", "remove", "update", "path"]), st.integers(0, 63)),
    max_size=40,
)


@given(ops)
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_cached_tree_hashes_match_fresh_ones(operations: list[tuple[str, int]]) -> None:
    tree = RatchetTree.create(SUITE, _dummy_leaf(0))
    tree.tree_hash()
    for k, (op, arg) in enumerate(operations):
        members = [i for i, _ in tree.members()]
        target = members[arg % len(members)]
        if op == "add":
            blanks = [i for i in range(tree.n_leaves) if tree.leaf_node(i) is None]
            leftmost = blanks[0] if blanks else tree.n_leaves
            assert tree.add_leaf(_dummy_leaf(100 + k)) == leftmost
        elif op == "remove" and len(members) > 1:
            tree.remove_leaf(target)
        elif op == "update":
            tree.update_leaf(target, _dummy_leaf(200 + k))
        elif op == "path":
            fdp = tree.filtered_direct_path(target)
            tree.merge_path(target, _dummy_leaf(300 + k), [_seed(k, x) for x in fdp])
        fresh = _fresh(tree)
        assert tree.tree_hash() == fresh.tree_hash()
        assert tree.tree_hashes() == fresh.tree_hashes()
        assert fresh.encode() == tree.encode()
        tree.verify_unmerged_leaves()
        assert (
            tree.node(tree.width - 1) is not None
            or tree.n_leaves == 1
            or any(tree.node(x) is not None for x in range(tree.width // 2 + 1, tree.width, 2))
        )


def test_resolution_and_filtered_direct_path() -> None:
    tree = RatchetTree.create(SUITE, _dummy_leaf(0))
    for i in range(1, 5):
        tree.add_leaf(_dummy_leaf(i))  # 8 leaves, 3..7 blank except 4
    assert tree.resolution(tree.root) == [0, 2, 4, 6, 8]
    assert tree.resolution(11) == [8]
    assert tree.resolution(13) == []
    assert tree.resolution(7, exclude={4}) == [0, 2, 4, 6]
    # leaf 4's copath: 10 (blank), 13 (blank), 3 (non-empty) -> only the root remains
    assert tree.filtered_direct_path(4) == [7]
    assert tree.filtered_direct_path(0) == [1, 3, 7]


# ------------------------------------------------------------------------------------------
# Validation: one negative test per rule
# ------------------------------------------------------------------------------------------


def _replace_node(tree: RatchetTree, x: int, node: Node | None) -> RatchetTree:
    t = tree.copy()
    t.set_node(x, node)
    return t


def _parent_with(tree: RatchetTree, **changes: Any) -> tuple[int, ParentNode]:
    x = next(x for x in range(1, tree.width, 2) if tree.node(x) is not None)
    node = tree.parent_node(x)
    assert node is not None
    return x, dataclasses.replace(node, **changes)


def _rule(exc: pytest.ExceptionInfo[ValidationError]) -> str:
    return exc.value.rule


def test_wrong_tree_hash_is_rejected() -> None:
    tree = grown_group(4).tree
    with pytest.raises(ValidationError) as exc:
        tree.validate(GROUP_ID, tree_hash=bytes(32))
    assert _rule(exc) == "RFC9420 12.4.3.1"


def test_flipped_parent_hash_is_rejected() -> None:
    tree = grown_group(4).tree
    x, node = _parent_with(tree)
    flipped = bytes([node.parent_hash[0] ^ 1]) + node.parent_hash[1:] if node.parent_hash else b"\1"
    bad = _replace_node(tree, x, dataclasses.replace(node, parent_hash=flipped))
    with pytest.raises(ValidationError) as exc:
        bad.validate(GROUP_ID)
    assert _rule(exc) == "RFC9420 7.9.2"


def test_replaced_parent_key_is_not_parent_hash_valid() -> None:
    tree = grown_group(8).tree
    node = tree.parent_node(3)
    assert node is not None
    bad = _replace_node(tree, 3, dataclasses.replace(node, encryption_key=_seed("evil")))
    with pytest.raises(ValidationError) as exc:
        bad.verify_parent_hashes()
    assert _rule(exc) == "RFC9420 7.9.2"


def test_swapped_leaves_break_parent_hash_links() -> None:
    tree = grown_group(3).tree
    leaf0, leaf1 = tree.leaf_node(0), tree.leaf_node(1)
    assert leaf0 is not None and leaf1 is not None and leaf0.parent_hash and leaf1.parent_hash
    swapped = _replace_node(tree, 2, leaf0)
    swapped = _replace_node(swapped, 0, leaf1)
    with pytest.raises(ValidationError) as exc:
        swapped.verify_parent_hashes()
    assert _rule(exc) == "RFC9420 7.9.2"


def test_parent_hash_link_requires_matching_unmerged_leaves() -> None:
    # §7.9.2: P's unmerged leaves under C must equal resolution(C) without D. Listing leaf 2
    # as unmerged at node 3 keeps every parent hash value (it is not in a sibling subtree) but
    # breaks that condition for the links 5 -> 3 and 3 -> 7.
    tree = _unmerged_group().tree
    tree.verify_parent_hashes()
    node = tree.parent_node(3)
    assert node is not None and node.unmerged_leaves == ()
    bad = _replace_node(tree, 3, dataclasses.replace(node, unmerged_leaves=(2,)))
    with pytest.raises(ValidationError) as exc:
        bad.verify_parent_hashes()
    assert _rule(exc) == "RFC9420 7.9.2"


def test_bad_leaf_signature_is_rejected() -> None:
    tree = grown_group(4).tree
    leaf = tree.leaf_node(1)
    assert leaf is not None
    bad = _replace_node(tree, 2, dataclasses.replace(leaf, signature=leaf.signature[:-1] + b"\0"))
    with pytest.raises(ValidationError) as exc:
        bad.verify_leaf_signatures(GROUP_ID)
    assert _rule(exc) == "RFC9420 7.3"
    # The right signature but for another group: also rejected.
    with pytest.raises(ValidationError):
        tree.verify_leaf_signatures(b"another group")


def test_leaf_signature_binds_leaf_index() -> None:
    g = grown_group(4)
    leaf = g.tree.leaf_node(2)  # committed: source commit, signed over group and index
    assert leaf is not None and leaf.leaf_node_source == LeafNodeSource.commit
    leaf.verify(SUITE, GROUP_ID, 2)
    with pytest.raises(InvalidSignature):
        leaf.verify(SUITE, GROUP_ID, 3)
    with pytest.raises(ConfigurationError):
        leaf.tbs()  # a commit leaf's TBS needs the group


def test_duplicate_encryption_key_is_rejected() -> None:
    tree = grown_group(4).tree
    x, node = _parent_with(tree)
    leaf = tree.leaf_node(0)
    assert leaf is not None
    bad = _replace_node(tree, x, dataclasses.replace(node, encryption_key=leaf.encryption_key))
    with pytest.raises(ValidationError) as exc:
        bad.verify_unique_keys()
    assert _rule(exc) == "RFC9420 12.4.3.1"


def test_duplicate_signature_key_is_rejected() -> None:
    tree = grown_group(4).tree
    leaf0, leaf1 = tree.leaf_node(0), tree.leaf_node(1)
    assert leaf0 is not None and leaf1 is not None
    bad = _replace_node(tree, 2, dataclasses.replace(leaf1, signature_key=leaf0.signature_key))
    with pytest.raises(ValidationError) as exc:
        bad.verify_unique_keys()
    assert _rule(exc) == "RFC9420 7.3"


def fresh_group(commits: int, adds: int = 0) -> Group:
    """A new group grown by ``commits`` commits (leaf i adds leaf i+1), then ``adds`` adds
    without a path (unmerged leaves). Tests that change a group use this, not `grown_group`."""
    g = Group()
    for i in range(commits):
        g.commit(i, adds=1)
    for _ in range(adds):
        g.add()
    return g


def _unmerged_group() -> Group:
    # 5 members (root set by leaf 3's commit), then leaves 5 and 6 unmerged at the root.
    return fresh_group(4, adds=2)


def test_unmerged_leaves_must_be_sorted() -> None:
    tree = _unmerged_group().tree
    root = tree.parent_node(tree.root)
    assert root is not None and len(root.unmerged_leaves) == 2
    bad = _replace_node(
        tree, tree.root, dataclasses.replace(root, unmerged_leaves=root.unmerged_leaves[::-1])
    )
    with pytest.raises(ValidationError) as exc:
        bad.validate(GROUP_ID)
    assert _rule(exc) == "RFC9420 7.1"


def test_unmerged_leaf_must_be_non_blank() -> None:
    tree = _unmerged_group().tree
    root = tree.parent_node(tree.root)
    assert root is not None
    bad = _replace_node(
        tree, tree.root, dataclasses.replace(root, unmerged_leaves=(*root.unmerged_leaves, 7))
    )
    with pytest.raises(ValidationError) as exc:
        bad.validate(GROUP_ID)
    assert _rule(exc) == "RFC9420 12.4.3.1"


def test_unmerged_leaf_must_be_a_descendant() -> None:
    tree = grown_group(4).tree
    node = tree.parent_node(1)  # covers leaves 0, 1
    assert node is not None
    bad = _replace_node(tree, 1, dataclasses.replace(node, unmerged_leaves=(2,)))
    with pytest.raises(ValidationError) as exc:
        bad.verify_unmerged_leaves()
    assert _rule(exc) == "RFC9420 12.4.3.1"


def test_unmerged_leaf_must_be_listed_in_between() -> None:
    tree = fresh_group(4, adds=1).tree  # leaf 5 unmerged at the root only
    tree.verify_unmerged_leaves()
    root = tree.parent_node(7)
    assert root is not None and root.unmerged_leaves == (5,)
    assert tree.node(1) is not None
    # Claim leaf 1 is unmerged at the root without listing it at node 1 (and 3).
    bad = _replace_node(tree, 7, dataclasses.replace(root, unmerged_leaves=(1, 5)))
    with pytest.raises(ValidationError) as exc:
        bad.verify_unmerged_leaves()
    assert _rule(exc) == "RFC9420 12.4.3.1"


def _tree_of(*leaves: LeafNode) -> RatchetTree:
    tree = RatchetTree.create(SUITE, leaves[0])
    for leaf in leaves[1:]:
        tree.add_leaf(leaf)
    return tree


def test_credential_type_must_be_in_own_capabilities() -> None:
    leaf, _, _ = key_package_leaf(SUITE, "a", capabilities=_capabilities(credentials=(2,)))
    with pytest.raises(ValidationError) as exc:
        _tree_of(leaf).verify_capabilities()
    assert _rule(exc) == "RFC9420 7.2"


def test_leaf_extensions_must_be_in_capabilities() -> None:
    unknown = Extension(0x0A0A, b"grease")
    leaf, _, _ = key_package_leaf(SUITE, "a", extensions=(unknown,))
    with pytest.raises(ValidationError) as exc:
        _tree_of(leaf).verify_capabilities()
    assert _rule(exc) == "RFC9420 7.3"
    ok, _, _ = key_package_leaf(
        SUITE, "b", extensions=(unknown,), capabilities=_capabilities(extensions=(0x0A0A,))
    )
    _tree_of(ok).verify_capabilities()
    # Default extension types need not (and must not) be listed.
    app_id = make_extension(ApplicationId(b"device-1"))
    default_ok, _, _ = key_package_leaf(SUITE, "c", extensions=(app_id,))
    _tree_of(default_ok).verify_capabilities()


def test_credential_types_in_use_must_be_supported_by_all() -> None:
    a, _, _ = key_package_leaf(SUITE, "a", capabilities=_capabilities(credentials=(1, 2)))
    b, _, _ = key_package_leaf(SUITE, "b")
    b_x509 = dataclasses.replace(
        b, credential=X509Credential((b"cert",)), capabilities=_capabilities(credentials=(2,))
    )
    with pytest.raises(ValidationError) as exc:
        _tree_of(a, b_x509, b).verify_capabilities()
    assert _rule(exc) == "RFC9420 7.3"


def test_required_capabilities_must_be_supported() -> None:
    a, _, _ = key_package_leaf(SUITE, "a")
    tree = _tree_of(a)
    tree.verify_capabilities(RequiredCapabilities((ExtensionType.application_id,), (1, 2), (1,)))
    for required in (
        RequiredCapabilities((0x0A0A,), (), ()),
        RequiredCapabilities((), (0x0A0A,), ()),
        RequiredCapabilities((), (), (2,)),
    ):
        with pytest.raises(ValidationError) as exc:
            tree.verify_capabilities(required)
        assert _rule(exc) == "RFC9420 11.1"
    with pytest.raises(ValidationError) as exc:
        tree.verify_capabilities(context_extensions=(Extension(0xF001, b""),))
    assert _rule(exc) == "RFC9420 11.1"


def test_expired_lifetime_is_rejected() -> None:
    a, _, _ = key_package_leaf(SUITE, "a", lifetime=Lifetime(100, 200))
    tree = _tree_of(a)
    tree.verify_lifetimes(150)
    for now in (99, 201):
        with pytest.raises(ValidationError) as exc:
            tree.validate(GROUP_ID, now=now)
        assert _rule(exc) == "RFC9420 7.3"


def test_validation_vectors_fail_when_tampered() -> None:
    # Independent of our own trees: flip one byte inside each parent's parent_hash in a vector.
    case = json.loads((VECTORS / "tree-validation.json").read_text())[10]
    suite = cipher_suite(case["cipher_suite"])
    tree = RatchetTree.decode(suite, bytes.fromhex(case["tree"]))
    tree.validate(bytes.fromhex(case["group_id"]))
    tampered = 0
    for x in range(1, tree.width, 2):
        node = tree.parent_node(x)
        if node is None or not node.parent_hash:
            continue
        ph = bytes([node.parent_hash[0] ^ 0x80]) + node.parent_hash[1:]
        with pytest.raises(ValidationError):
            _replace_node(tree, x, dataclasses.replace(node, parent_hash=ph)).verify_parent_hashes()
        tampered += 1
    assert tampered > 0


def test_ratchet_tree_shape_errors() -> None:
    leaf = _dummy_leaf(0)
    parent = ParentNode(b"k", b"", ())
    with pytest.raises(DecodeError):
        RatchetTree.from_nodes(SUITE, [])
    with pytest.raises(DecodeError):
        RatchetTree.from_nodes(SUITE, [leaf, None, None])  # trailing blank
    with pytest.raises(DecodeError):
        RatchetTree.from_nodes(SUITE, [parent])  # parent at a leaf position
    with pytest.raises(DecodeError):
        RatchetTree.from_nodes(SUITE, [leaf, leaf, leaf])  # leaf at a parent position
    tree = RatchetTree.from_nodes(SUITE, [leaf, None, _dummy_leaf(1), None, _dummy_leaf(2)])
    assert tree.width == 7 and tree.n_leaves == 4  # padded to a full tree


# ------------------------------------------------------------------------------------------
# TreeKEM negative tests
# ------------------------------------------------------------------------------------------


def _prepared(n: int = 5, sender: int = 1) -> tuple[Group, Any, UpdatePath]:
    g = grown_group(n)
    member = g.members[sender]
    prepared = prepare_commit_path(
        g.tree, sender, _seed("ls")[:32], member.signature_priv, GROUP_ID
    )
    return g, prepared, prepared.encrypt(CONTEXT)


def test_update_path_with_wrong_parent_hash_is_rejected() -> None:
    g, _, path = _prepared()
    assert path.leaf_node.parent_hash is not None
    bad_leaf = dataclasses.replace(
        path.leaf_node, parent_hash=bytes(len(path.leaf_node.parent_hash))
    )
    with pytest.raises(ValidationError) as exc:
        merge_update_path(g.tree, 1, dataclasses.replace(path, leaf_node=bad_leaf))
    assert _rule(exc) == "RFC9420 7.9.2"


def test_update_path_node_key_swap_breaks_parent_hash() -> None:
    g, _, path = _prepared()
    other = SUITE.derive_key_pair(_seed("other")).public_key
    nodes = (dataclasses.replace(path.nodes[0], encryption_key=other), *path.nodes[1:])
    with pytest.raises(ValidationError) as exc:
        merge_update_path(g.tree, 1, dataclasses.replace(path, nodes=nodes))
    assert _rule(exc) == "RFC9420 7.9.2"


def test_update_path_length_must_match() -> None:
    g, _, path = _prepared()
    with pytest.raises(ValidationError) as exc:
        merge_update_path(g.tree, 1, dataclasses.replace(path, nodes=path.nodes[:-1]))
    assert _rule(exc) == "RFC9420 7.6"


def test_update_path_leaf_source_must_be_commit() -> None:
    g, _, path = _prepared()
    leaf = dataclasses.replace(
        path.leaf_node, leaf_node_source=LeafNodeSource.update, parent_hash=None
    )
    with pytest.raises(ValidationError) as exc:
        merge_update_path(g.tree, 1, dataclasses.replace(path, leaf_node=leaf))
    assert _rule(exc) == "RFC9420 7.3"


def test_update_path_invalid_public_key_is_rejected() -> None:
    g, _, path = _prepared()
    nodes = (dataclasses.replace(path.nodes[0], encryption_key=b"\x01" * 7), *path.nodes[1:])
    with pytest.raises(DecodeError):
        merge_update_path(g.tree, 1, dataclasses.replace(path, nodes=nodes))


def test_derived_key_must_match_update_path() -> None:
    g, prepared, path = _prepared()
    # Receiver 0 decrypts at node 1 and derives the keys of nodes 1, 3, 7 (fdp of leaf 1).
    other = SUITE.derive_key_pair(_seed("other")).public_key
    nodes = (*path.nodes[:-1], dataclasses.replace(path.nodes[-1], encryption_key=other))
    with pytest.raises(ValidationError) as exc:
        decrypt_update_path(
            prepared.tree, 1, dataclasses.replace(path, nodes=nodes), g.members[0].keys, CONTEXT
        )
    assert _rule(exc) == "RFC9420 7.5"


def test_wrong_group_context_does_not_decrypt() -> None:
    g, prepared, path = _prepared()
    with pytest.raises(DecryptError):
        decrypt_update_path(prepared.tree, 1, path, g.members[0].keys, b"other context")


def test_ciphertext_count_must_match_resolution() -> None:
    g, prepared, path = _prepared()
    nodes = (dataclasses.replace(path.nodes[0], encrypted_path_secret=()), *path.nodes[1:])
    with pytest.raises(ValidationError) as exc:
        decrypt_update_path(
            prepared.tree, 1, dataclasses.replace(path, nodes=nodes), g.members[0].keys, CONTEXT
        )
    assert _rule(exc) == "RFC9420 7.6"


def test_excluded_joiner_gets_no_ciphertext_and_joins_with_path_secret() -> None:
    g = grown_group(3)
    tree = g.tree.copy()
    leaf, _, enc = key_package_leaf(SUITE, "joiner")
    joiner = tree.add_leaf(leaf)
    prepared = prepare_commit_path(tree, 0, _seed("x")[:32], g.members[0].signature_priv, GROUP_ID)
    with_joiner = prepared.encrypt(CONTEXT)
    without = prepared.encrypt(CONTEXT, exclude={joiner})
    assert (
        sum(len(n.encrypted_path_secret) for n in with_joiner.nodes)
        == sum(len(n.encrypted_path_secret) for n in without.nodes) + 1
    )
    secret = prepared.path_secret_for(joiner)
    assert secret is not None
    keys = join_private_keys(prepared.tree, joiner, enc, 0, secret)
    assert prepared.tree.root in keys.nodes()
    with pytest.raises(ValidationError):
        join_private_keys(prepared.tree, joiner, enc, 0, prepared.path_secrets[0])


def test_private_keys_are_pruned_and_checked() -> None:
    g = grown_group(4)
    keys = g.members[0].keys
    keys.check_consistent(g.tree)
    tree = g.tree.copy()
    tree.update_leaf(1, _dummy_leaf(1))  # blanks nodes 1 and 3 (leaf 0's direct path)
    with pytest.raises(ValidationError):
        keys.check_consistent(tree)
    pruned = keys.prune(tree)
    assert pruned.nodes() == [0]
    pruned.check_consistent(tree)
    private = keys.private_key(0)
    assert private is not None
    assert private.value.hex() not in repr(keys) and private.value.hex() not in repr(private)


def test_prepare_rejects_bad_inputs() -> None:
    g = grown_group(2)
    with pytest.raises(StateError):
        prepare_commit_path(g.tree, 0, b"short", g.members[0].signature_priv, GROUP_ID)
    tree = g.tree.copy()
    tree.add_leaf(_dummy_leaf(5))
    tree.remove_leaf(1)
    with pytest.raises(StateError):
        prepare_commit_path(tree, 1, bytes(32), g.members[0].signature_priv, GROUP_ID)


# ------------------------------------------------------------------------------------------
# Key packages, extensions, credentials
# ------------------------------------------------------------------------------------------


def test_key_package_sign_verify_and_ref() -> None:
    leaf, sig, _ = key_package_leaf(SUITE, "kp")
    kp = KeyPackage(ProtocolVersion.mls10, 1, _seed("init"), leaf, (), b"").signed(SUITE, sig)
    kp.verify(SUITE)
    data = encode(kp)
    assert decode(KeyPackage, data) == kp
    assert make_key_package_ref(SUITE, kp) == make_key_package_ref(SUITE, data)
    assert make_key_package_ref(SUITE, kp) == SUITE.ref_hash(b"MLS 1.0 KeyPackage Reference", data)
    with pytest.raises(InvalidSignature):
        dataclasses.replace(kp, init_key=_seed("other")).verify(SUITE)
    leaf.verify(SUITE)  # key_package source: no group context


def test_key_package_ref_matches_messages_vector_decoding() -> None:
    case = json.loads((VECTORS / "messages.json").read_text())[0]
    data = bytes.fromhex(case["mls_key_package"])
    r = Reader(data)
    assert r.pull_uint16() == 1 and r.pull_uint16() == 5  # version, wire_format mls_key_package
    kp = KeyPackage.pull(r)
    r.expect_end()
    assert encode(kp) == data[4:]


def test_leaf_node_invariants() -> None:
    leaf = _dummy_leaf(0)
    with pytest.raises(ConfigurationError):
        dataclasses.replace(leaf, lifetime=Lifetime(0, 1))
    with pytest.raises(ConfigurationError):
        dataclasses.replace(leaf, leaf_node_source=LeafNodeSource.commit)


def test_extension_helpers() -> None:
    senders = ExternalSenders((ExternalSender(b"sk", BasicCredential(b"ds")),))
    exts = (
        make_extension(ApplicationId(b"app")),
        make_extension(senders),
        make_extension(ExternalPub(b"pub")),
        Extension(0x0A0A, b""),
    )
    check_unique_extensions(exts)
    assert parse_extension(exts, ExternalSenders) == senders
    assert parse_extension(exts, ExternalPub) == ExternalPub(b"pub")
    assert parse_extension(exts, RequiredCapabilities) is None
    found = find_extension(exts, 0x0A0A)
    assert found is not None and found.extension_type == 0x0A0A
    with pytest.raises(ValidationError) as exc:
        check_unique_extensions((*exts, Extension(ExtensionType.external_pub, b"")))
    assert _rule(exc) == "RFC9420 13.4"
    dup = encode_vector_of_extensions((Extension(7, b""), Extension(7, b"x")))
    with pytest.raises(DecodeError):
        pull_extensions(Reader(dup))
    with pytest.raises(DecodeError):
        parse_extension((Extension(ExtensionType.external_pub, b"\x05ab"),), ExternalPub)


def encode_vector_of_extensions(exts: tuple[Extension, ...]) -> bytes:
    w = Writer()
    w.push_vector(exts, push_struct)
    return w.getvalue()


def test_unknown_credential_type_is_a_decode_error() -> None:
    with pytest.raises(DecodeError):
        pull_credential(Reader(b"\x00\x03\x00"))
    assert BasicCredential.pull(Reader(b"\x00\x01\x02hi")) == BasicCredential(b"hi")
    with pytest.raises(DecodeError):
        X509Credential.pull(Reader(b"\x00\x01\x02hi"))
    assert X509Credential((b"a",)).credential_type == CredentialType.x509


# ------------------------------------------------------------------------------------------
# Decoders: fuzz and round trips
# ------------------------------------------------------------------------------------------

opaque = st.binary(max_size=40)
u16s = st.lists(st.integers(0, 0xFFFF), max_size=4).map(tuple)
credentials: st.SearchStrategy[Credential] = st.one_of(
    opaque.map(BasicCredential),
    st.lists(opaque, max_size=3).map(lambda c: X509Credential(tuple(c))),
)
capabilities = st.builds(Capabilities, u16s, u16s, u16s, u16s, u16s)
extension_lists = st.lists(
    st.builds(Extension, st.integers(0, 0xFFFF), opaque),
    max_size=3,
    unique_by=lambda e: e.extension_type,
).map(tuple)
lifetimes = st.builds(Lifetime, st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1))


@st.composite
def leaf_nodes(draw: st.DrawFn) -> LeafNode:
    source = draw(st.sampled_from(LeafNodeSource))
    return LeafNode(
        draw(opaque),
        draw(opaque),
        draw(credentials),
        draw(capabilities),
        source,
        draw(lifetimes) if source == LeafNodeSource.key_package else None,
        draw(opaque) if source == LeafNodeSource.commit else None,
        draw(extension_lists),
        draw(opaque),
    )


parent_nodes = st.builds(
    ParentNode, opaque, opaque, st.lists(st.integers(0, 2**32 - 1), max_size=4).map(tuple)
)
key_packages = st.builds(
    KeyPackage,
    st.just(ProtocolVersion.mls10),
    st.integers(0, 0xFFFF),
    opaque,
    leaf_nodes(),
    extension_lists,
    opaque,
)
update_paths = st.builds(
    UpdatePath,
    leaf_nodes(),
    st.lists(
        st.builds(
            UpdatePathNode,
            opaque,
            st.lists(st.builds(HPKECiphertext, opaque, opaque), max_size=3).map(tuple),
        ),
        max_size=3,
    ).map(tuple),
)


def _pull_with(f: Callable[[Reader], object]) -> Callable[[bytes], object]:
    def run(data: bytes) -> object:
        r = Reader(data)
        value = f(r)
        r.expect_end()
        return value

    return run


DECODERS: dict[str, Callable[[bytes], object]] = {
    "Credential": _pull_with(pull_credential),
    "Extension": lambda d: decode(Extension, d),
    "extensions": _pull_with(pull_extensions),
    "Capabilities": lambda d: decode(Capabilities, d),
    "LeafNode": lambda d: decode(LeafNode, d),
    "KeyPackage": lambda d: decode(KeyPackage, d),
    "ParentNode": lambda d: decode(ParentNode, d),
    "Node": _pull_with(pull_node),
    "ratchet_tree": decode_ratchet_tree,
    "UpdatePath": lambda d: decode(UpdatePath, d),
    "RequiredCapabilities": lambda d: decode(RequiredCapabilities, d),
    "ExternalSenders": lambda d: decode(ExternalSenders, d),
}


@pytest.mark.parametrize("name", list(DECODERS))
@given(data=st.binary(max_size=300))
def test_decoders_on_arbitrary_bytes(name: str, data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        DECODERS[name](data)


@cache
def _seed_encodings() -> dict[str, list[bytes]]:
    """Valid encodings from the official vectors, to mutate (reaches deep into the structs)."""
    trees = [
        bytes.fromhex(c["tree"])
        for c in json.loads((VECTORS / "tree-validation.json").read_text())[:12]
    ]
    paths: list[bytes] = []
    for c in json.loads((VECTORS / "treekem.json").read_text())[:6]:
        paths += [bytes.fromhex(p["update_path"]) for p in c["update_paths"]]
    kps = [
        bytes.fromhex(c["mls_key_package"])[4:]
        for c in json.loads((VECTORS / "messages.json").read_text())
    ]
    return {"ratchet_tree": trees, "UpdatePath": paths, "KeyPackage": kps}


@pytest.mark.parametrize("name", ["ratchet_tree", "UpdatePath", "KeyPackage"])
@given(data=st.data())
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_decoders_on_mutated_vectors(name: str, data: st.DataObject) -> None:
    seeds = _seed_encodings()[name]
    buf = bytearray(data.draw(st.sampled_from(seeds)))
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(buf) - 1))
        action = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if action == "flip":
            buf[pos] ^= 1 << data.draw(st.integers(0, 7))
        elif action == "cut":
            del buf[pos : pos + data.draw(st.integers(1, 8))]
        else:
            buf[pos:pos] = data.draw(st.binary(min_size=1, max_size=4))
        if not buf:
            buf = bytearray(b"\0")
    try:
        value = DECODERS[name](bytes(buf))
    except DecodeError:
        return
    if name == "ratchet_tree":
        assert isinstance(value, list)
        assert decode_ratchet_tree(encode_ratchet_tree(value)) == value
    else:
        assert encode(value) == bytes(buf)  # type: ignore[arg-type]


@given(leaf_nodes())
def test_leaf_node_round_trip(leaf: LeafNode) -> None:
    data = encode(leaf)
    assert decode(LeafNode, data) == leaf
    assert encode(decode(LeafNode, data)) == data


@given(key_packages)
def test_key_package_round_trip(kp: KeyPackage) -> None:
    data = encode(kp)
    assert decode(KeyPackage, data) == kp
    assert encode(decode(KeyPackage, data)) == data


@given(update_paths)
def test_update_path_round_trip(path: UpdatePath) -> None:
    data = encode(path)
    assert decode(UpdatePath, data) == path


@given(st.lists(st.one_of(leaf_nodes(), parent_nodes), min_size=1, max_size=6))
def test_node_and_ratchet_tree_round_trip(nodes: list[Node]) -> None:
    for node in nodes:
        w = Writer()
        push_node(w, node)
        assert _pull_with(pull_node)(w.getvalue()) == node
    # Place them at valid positions: leaves at even, parents at odd indices.
    leaves = [n for n in nodes if isinstance(n, LeafNode)] or [_dummy_leaf(0)]
    parents = [n for n in nodes if isinstance(n, ParentNode)]
    arranged: list[Node | None] = []
    for i, leaf in enumerate(leaves):
        if i:
            arranged.append(parents[i - 1] if i - 1 < len(parents) else None)
        arranged.append(leaf)
    data = encode_ratchet_tree(arranged)
    decoded = decode_ratchet_tree(data)
    assert decoded[: len(arranged)] == arranged
    assert all(n is None for n in decoded[len(arranged) :])
    assert encode_ratchet_tree(decoded) == data


@given(credentials, extension_lists, capabilities)
def test_small_structs_round_trip(
    credential: Credential, extensions: tuple[Extension, ...], caps: Capabilities
) -> None:
    assert _pull_with(pull_credential)(encode(credential)) == credential
    assert _pull_with(pull_extensions)(encode_vector_of_extensions(extensions)) == extensions
    assert decode(Capabilities, encode(caps)) == caps
    senders = ExternalSenders((ExternalSender(b"k", credential),))
    assert decode(ExternalSenders, encode(senders)) == senders
    required = RequiredCapabilities(caps.extensions, caps.proposals, caps.credentials)
    assert decode(RequiredCapabilities, encode(required)) == required
