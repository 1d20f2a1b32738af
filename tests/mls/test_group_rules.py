"""Negative tests: one per RFC 9420 rule the group state machine enforces.

Each test builds an input that breaks exactly one rule — most often as a malicious insider
would, holding the epoch's keys, so signatures, membership tags and encryption are valid and
only the rule under test is violated — then checks that

* the typed error is raised (`ValidationError` citing the section, or the `CryptoError` /
  `DecodeError` subclass), and
* the receiving state is unchanged (``to_bytes()`` before and after) and keeps working
  (`Harness.still_works`) — invariant I4.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from doorless.codec import decode, encode
from doorless.crypto import CipherSuite, cipher_suite
from doorless.errors import (
    CryptoError,
    DecodeError,
    DecryptError,
    InvalidMac,
    StateError,
    ValidationError,
)
from doorless.mls import commit as commit_module
from doorless.mls import join as join_module
from doorless.mls import treekem
from doorless.mls.credential import BasicCredential, CredentialType, X509Credential
from doorless.mls.extensions import (
    Extension,
    ExternalSender,
    ExternalSenders,
    RequiredCapabilities,
    make_extension,
)
from doorless.mls.framing import (
    MLSMessage,
    SenderExternal,
    SenderMember,
    SenderNewMemberCommit,
    SenderNewMemberProposal,
    WireFormat,
)
from doorless.mls.group import Group, GroupConfig, PskStore, StagedCommit, generate_key_package
from doorless.mls.key_package import KeyPackage
from doorless.mls.leaf_node import Capabilities, LeafNode, LeafNodeSource
from doorless.mls.message_protection import FRAMED_CONTENT_TBS_LABEL
from doorless.mls.nodes import UpdatePath
from doorless.mls.proposals import (
    Add,
    Commit,
    ExternalInit,
    ExternalPSK,
    GroupContextExtensions,
    PreSharedKey,
    PreSharedKeyID,
    Proposal,
    ProposalOrRef,
    ProposalRef,
    ReInit,
    Remove,
    ResumptionPSK,
    ResumptionPSKUsage,
    Update,
)
from doorless.mls.public_group import PublicGroup
from doorless.mls.welcome import GroupInfo
from doorless.secret import PrivateKeyBytes

from .harness import (
    NOW,
    Client,
    Harness,
    assert_rejected,
    flip,
    forge,
    make_group,
    public_body,
    retag,
)

SUITE = cipher_suite(1)
PUBLIC = GroupConfig(private_handshakes=False)
PRIVATE = GroupConfig(private_handshakes=True)
PSKS = PskStore(external={b"psk": b"\x01" * 32})
UNKNOWN_EXTENSION = 0xFF0A  # a non-default extension type (GREASE-like)
WIRE_FORMATS = [
    pytest.param(WireFormat.mls_public_message, id="public"),
    pytest.param(WireFormat.mls_private_message, id="private"),
]


def group(names: str = "abc", config: GroupConfig = PUBLIC, **kwargs: Any) -> Harness:
    return make_group(names, config, **kwargs)


def state(h: Harness, name: str) -> Group:
    return h.clients[name].state


def resign_key_package(client: Client, kp: KeyPackage, **changes: Any) -> KeyPackage:
    return dataclasses.replace(kp, **changes).signed(client.suite, client.signature_private_key)


def update_leaf(h: Harness, name: str, **changes: Any) -> LeafNode:
    """An Update leaf for ``name`` with ``changes``, correctly signed unless ``signature``
    is among them."""
    client = h.clients[name]
    g = client.state
    key = SUITE.generate_hpke_key_pair().public_key
    fields: dict[str, Any] = {
        "encryption_key": key,
        "leaf_node_source": LeafNodeSource.update,
        "lifetime": None,
        "parent_hash": None,
        "signature": b"",
    }
    fields.update(changes)
    leaf = dataclasses.replace(g.own_leaf_node, **fields)
    if "signature" in changes:
        return leaf
    return leaf.signed(SUITE, client.signature_private_key, g.group_id, g.own_leaf)


@contextmanager
def patched(target: Any, name: str, wrap: Callable[[Any], Any]) -> Iterator[None]:
    """Replace ``target.name`` by ``wrap(original)`` for the duration (a malicious sender)."""
    original = getattr(target, name)
    setattr(target, name, wrap(original))
    try:
        yield
    finally:
        setattr(target, name, original)


# --- KeyPackages in Add proposals (§10.1, §7.3) -----------------------------------------------


def bad_key_packages() -> dict[str, tuple[Callable[[Harness, Client], KeyPackage], str, str]]:
    """name -> (build the bad KeyPackage for client d, error text, RFC section)."""

    def wrong_suite(h: Harness, d: Client) -> KeyPackage:
        suite2 = cipher_suite(2)
        sk = PrivateKeyBytes(suite2.generate_signature_key_pair().private_key)
        return generate_key_package(suite2, d.credential, sk, now=NOW).key_package

    def bad_signature(h: Harness, d: Client) -> KeyPackage:
        kp = d.key_package()
        return dataclasses.replace(kp, signature=flip(kp.signature))

    def init_equals_encryption(h: Harness, d: Client) -> KeyPackage:
        kp = d.key_package()
        return resign_key_package(d, kp, init_key=kp.leaf_node.encryption_key)

    def malformed_init_key(h: Harness, d: Client) -> KeyPackage:
        return resign_key_package(d, d.key_package(), init_key=b"\x07" * 5)

    def expired(h: Harness, d: Client) -> KeyPackage:
        long_ago = NOW - 400 * 24 * 3600
        return generate_key_package(
            SUITE, d.credential, d.signature_private_key, now=long_ago
        ).key_package

    def not_yet_valid(h: Harness, d: Client) -> KeyPackage:
        return generate_key_package(
            SUITE, d.credential, d.signature_private_key, now=NOW + 7 * 24 * 3600
        ).key_package

    def leaf_source_update(h: Harness, d: Client) -> KeyPackage:
        kp = d.key_package()
        leaf = dataclasses.replace(
            kp.leaf_node, leaf_node_source=LeafNodeSource.update, lifetime=None
        ).signed(SUITE, d.signature_private_key, h.group_id, 3)
        return resign_key_package(d, kp, leaf_node=leaf)

    def credential_not_in_own_capabilities(h: Harness, d: Client) -> KeyPackage:
        caps = Capabilities((1,), (1,), (), (), (int(CredentialType.x509),))
        return d.key_package(capabilities=caps)

    def credential_unsupported_by_members(h: Harness, d: Client) -> KeyPackage:
        caps = Capabilities((1,), (1,), (), (), (1, 2))
        return d.key_package(capabilities=caps, credential=X509Credential((b"cert",)))

    return {
        "wrong-suite": (wrong_suite, "cipher suite", "10.1"),
        "bad-signature": (bad_signature, "signature is invalid", "10.1"),
        "init-key-equals-encryption-key": (init_equals_encryption, "init_key equals", "10.1"),
        "malformed-init-key": (malformed_init_key, "malformed HPKE key", "10.1"),
        "expired": (expired, "lifetime", "7.3"),
        "not-yet-valid": (not_yet_valid, "lifetime", "7.3"),
        "leaf-source-not-key-package": (leaf_source_update, "leaf_node_source", "7.3"),
        "credential-not-in-capabilities": (
            credential_not_in_own_capabilities,
            "credential type is not in its capabilities",
            "7.2",
        ),
        "credential-unsupported-by-members": (
            credential_unsupported_by_members,
            "does not support the leaf's credential type",
            "7.3",
        ),
    }


BAD_KEY_PACKAGES = bad_key_packages()


@pytest.mark.parametrize("case", sorted(BAD_KEY_PACKAGES))
def test_add_proposal_with_bad_key_package(case: str) -> None:
    build, match, rule = BAD_KEY_PACKAGES[case]
    h = group()
    kp = build(h, h.client("d"))
    message = forge(state(h, "a"), Add(kp))
    assert_rejected(state(h, "b"), message, ValidationError, match, rule=rule)
    h.still_works("b")


@pytest.mark.parametrize("case", sorted(BAD_KEY_PACKAGES))
def test_add_by_value_with_bad_key_package(case: str) -> None:
    """The receiver of a commit checks KeyPackages added by value; the committer does too."""
    build, match, rule = BAD_KEY_PACKAGES[case]
    h = group()
    kp = build(h, h.client("d"))
    a = state(h, "a")
    before = a.to_bytes()
    with pytest.raises(ValidationError, match=match):
        a.commit([Add(kp)], now=NOW)
    assert a.to_bytes() == before
    message = forge(a, Commit((Add(kp),), None))
    assert_rejected(state(h, "b"), message, ValidationError, match, rule=rule)
    h.still_works("a")


def test_expired_key_package_is_accepted_without_a_clock() -> None:
    """``now=None`` skips lifetime checks (documented); with ``now`` it is rejected."""
    h = group()
    build = BAD_KEY_PACKAGES["expired"][0]
    kp = build(h, h.client("d"))
    message = forge(state(h, "a"), Add(kp))
    assert state(h, "b").process(message, now=None)
    assert_rejected(state(h, "b"), message, ValidationError, "lifetime", rule="7.3")


def test_add_lacking_required_capability() -> None:
    """§11.1: a new member must support the group's required_capabilities."""
    required = RequiredCapabilities((), (), (int(CredentialType.basic), int(CredentialType.x509)))
    caps = Capabilities((1,), (1,), (), (), (1, 2))
    h = group("ab", extensions=[make_extension(required)], capabilities=caps)
    kp = h.client("d").key_package()  # default capabilities: basic only
    message = forge(state(h, "a"), Add(kp))
    assert_rejected(state(h, "b"), message, ValidationError, "capability", rule="7.3")
    h.still_works("b")


def test_add_lacking_group_context_extension_support() -> None:
    """§13.4: every member supports each non-default GroupContext extension."""
    ext = Extension(UNKNOWN_EXTENSION, b"policy")
    caps = Capabilities((1,), (1,), (UNKNOWN_EXTENSION,), (), (1,))
    h = group("ab", extensions=[ext], capabilities=caps)
    kp = h.client("d").key_package()
    message = forge(state(h, "a"), Add(kp))
    assert_rejected(state(h, "b"), message, ValidationError, "extension", rule="13.4")
    h.still_works("b")


def test_add_not_supporting_a_credential_type_in_use() -> None:
    """§7.3: a new leaf must support every credential type the members use."""
    caps = Capabilities((1,), (1,), (), (), (1, 2))
    h = group("ab", capabilities=caps)
    d = h.client("d")
    kp = d.key_package(
        capabilities=Capabilities((1,), (1,), (), (), (2,)),
        credential=X509Credential((b"cert",)),
    )
    message = forge(state(h, "a"), Add(kp))
    assert_rejected(state(h, "b"), message, ValidationError, "credential type in use", rule="7.3")
    h.still_works("b")


# --- Update (§12.1.2, §7.3) ----------------------------------------------------------------


def update_cases() -> dict[str, tuple[Callable[[Harness], LeafNode], str, str]]:
    def source_key_package(h: Harness) -> LeafNode:
        return h.clients["b"].key_package().leaf_node

    def same_key(h: Harness) -> LeafNode:
        return update_leaf(h, "b", encryption_key=state(h, "b").own_leaf_node.encryption_key)

    def bad_signature(h: Harness) -> LeafNode:
        leaf = update_leaf(h, "b")
        return dataclasses.replace(leaf, signature=flip(leaf.signature))

    def signed_for_another_leaf(h: Harness) -> LeafNode:
        b = h.clients["b"]
        return update_leaf(h, "b", signature=b"").signed(
            SUITE, b.signature_private_key, h.group_id, 0
        )

    def malformed_key(h: Harness) -> LeafNode:
        return update_leaf(h, "b", encryption_key=b"\x01" * 7)

    return {
        "source-key-package": (source_key_package, "leaf_node_source is not update", "7.3"),
        "same-encryption-key": (same_key, "does not change the encryption key", "7.3"),
        "bad-signature": (bad_signature, "signature is invalid", "7.3"),
        "signed-for-another-leaf": (signed_for_another_leaf, "signature is invalid", "7.3"),
        "malformed-key": (malformed_key, "malformed HPKE key", "7.3"),
    }


UPDATE_CASES = update_cases()


@pytest.mark.parametrize("wire_format", WIRE_FORMATS)
@pytest.mark.parametrize("case", sorted(UPDATE_CASES))
def test_bad_update_proposal(case: str, wire_format: WireFormat) -> None:
    build, match, rule = UPDATE_CASES[case]
    h = group()
    message = forge(state(h, "b"), Update(build(h)), wire_format=wire_format)
    assert_rejected(state(h, "c"), message, ValidationError, match, rule=rule)
    h.still_works("c")


# --- Remove, PreSharedKey, ReInit, ExternalInit (§12.1.3 - §12.1.6) ---------------------------


def test_remove_of_absent_leaf() -> None:
    h = group()
    message = forge(state(h, "a"), Remove(9))
    assert_rejected(state(h, "b"), message, ValidationError, "Remove of blank", rule="12.1.3")
    h.still_works("b")


def test_remove_of_blank_leaf() -> None:
    h = group("abcd")
    blank = h.leaf_of("b")
    h.commit("a", [Remove(blank)])
    message = forge(state(h, "a"), Remove(blank))
    assert_rejected(state(h, "c"), message, ValidationError, "Remove of blank", rule="12.1.3")
    h.still_works("c")


def test_psk_proposal_with_reinit_usage() -> None:
    h = group()
    psk = PreSharedKeyID(ResumptionPSK(ResumptionPSKUsage.reinit, h.group_id, 1), h.rng(32))
    message = forge(state(h, "a"), PreSharedKey(psk))
    assert_rejected(state(h, "b"), message, ValidationError, "usage", rule="12.1.4")
    h.still_works("b")


def test_psk_proposal_with_short_nonce() -> None:
    h = group()
    psk = PreSharedKeyID(ExternalPSK(b"psk"), h.rng(16))
    message = forge(state(h, "a"), PreSharedKey(psk))
    assert_rejected(state(h, "b"), message, ValidationError, "psk_nonce", rule="12.1.4")
    h.still_works("b")


def test_commit_with_psk_the_receiver_lacks() -> None:
    """§12.4.2 / §8.4: a commit whose PSK the receiver does not hold cannot be processed."""
    h = group(psks=PSKS)
    psk = PreSharedKey(PreSharedKeyID(ExternalPSK(b"psk"), h.rng(32)))
    out = h.make_commit("a", [psk])
    assert_rejected(state(h, "b"), out.commit, ValidationError, "not available", rule="12.4.2")
    h.submit("a", out)  # with the PSK (the harness's store) everyone follows
    h.still_works("b")


def test_reinit_to_an_older_version() -> None:
    h = group()
    message = forge(state(h, "a"), ReInit(b"new group", 0, SUITE.id))
    assert_rejected(state(h, "b"), message, ValidationError, "older protocol", rule="12.1.5")
    h.still_works("b")


def test_external_init_proposal_from_a_member() -> None:
    h = group()
    message = forge(state(h, "a"), ExternalInit(b"\x00" * 32))
    assert_rejected(state(h, "b"), message, ValidationError, "ExternalInit", rule="12.1.6")
    h.still_works("b")


def test_reinit_commit_retires_the_group() -> None:
    """§12.4.2: after a ReInit commit the old group must not be used."""
    h = group("ab")
    out = h.make_commit("a", [ReInit(b"next", 1, SUITE.id)], force_path=False)
    staged = state(h, "b").process(out.commit)
    assert isinstance(staged, StagedCommit)
    assert staged.reinit is not None
    assert not staged.group.usable
    with pytest.raises(StateError):
        staged.group.encrypt(b"data")
    with pytest.raises(StateError):
        staged.group.commit()


# --- proposal list validation (§12.2) ---------------------------------------------------------


def commit_cases() -> dict[str, tuple[Callable[[Harness], tuple[ProposalOrRef, ...]], str]]:
    """Commits that break one §12.2 rule; the proposals come from a, b or c's cache."""

    def own_update(h: Harness) -> tuple[ProposalOrRef, ...]:
        h.propose("a")
        return (state(h, "a").proposals[-1].ref,)

    def update_by_value(h: Harness) -> tuple[ProposalOrRef, ...]:
        return (Update(update_leaf(h, "a")),)  # by value, so its sender is the committer

    def removes_committer(h: Harness) -> tuple[ProposalOrRef, ...]:
        return (Remove(h.leaf_of("a")),)

    def two_removes(h: Harness) -> tuple[ProposalOrRef, ...]:
        return (Remove(h.leaf_of("c")), Remove(h.leaf_of("c")))

    def update_and_remove(h: Harness) -> tuple[ProposalOrRef, ...]:
        h.propose("c")
        return (state(h, "a").proposals[-1].ref, Remove(h.leaf_of("c")))

    def two_updates(h: Harness) -> tuple[ProposalOrRef, ...]:
        h.propose("c")
        h.propose("c")
        return tuple(p.ref for p in state(h, "a").proposals)

    def two_adds_of_one_client(h: Harness) -> tuple[ProposalOrRef, ...]:
        d = h.client("d")
        return (Add(d.key_package()), Add(d.key_package()))

    def add_of_a_member(h: Harness) -> tuple[ProposalOrRef, ...]:
        return (Add(h.clients["c"].key_package()),)

    def duplicate_psk(h: Harness) -> tuple[ProposalOrRef, ...]:
        psk = PreSharedKey(PreSharedKeyID(ExternalPSK(b"psk"), h.rng(32)))
        return (psk, psk)

    def two_group_context_extensions(h: Harness) -> tuple[ProposalOrRef, ...]:
        return (GroupContextExtensions(()), GroupContextExtensions(()))

    def reinit_with_others(h: Harness) -> tuple[ProposalOrRef, ...]:
        return (ReInit(b"next", 1, SUITE.id), Remove(h.leaf_of("c")))

    def external_init(h: Harness) -> tuple[ProposalOrRef, ...]:
        return (ExternalInit(b"\x00" * 32),)

    def unknown_reference(h: Harness) -> tuple[ProposalOrRef, ...]:
        return (ProposalRef(b"\x00" * SUITE.hash_length),)

    return {
        "own-update (12.2)": (own_update, "committer's own Update"),
        "update-by-value (12.2)": (update_by_value, "committer's own Update"),
        "removes-committer (12.2)": (removes_committer, "removes the committer"),
        "two-removes-of-one-leaf (12.2)": (two_removes, "several Update/Remove"),
        "update-and-remove-of-one-leaf (12.2)": (update_and_remove, "several Update/Remove"),
        "two-updates-of-one-leaf (12.2)": (two_updates, "several Update/Remove"),
        "two-adds-of-one-client (12.2)": (two_adds_of_one_client, "two Adds"),
        "add-of-a-member (12.2)": (add_of_a_member, "already in the group"),
        "duplicate-psk (12.2)": (duplicate_psk, "same PSK"),
        "two-group-context-extensions (12.2)": (
            two_group_context_extensions,
            "several GroupContextExtensions",
        ),
        "reinit-with-others (12.2)": (reinit_with_others, "ReInit together"),
        "external-init (12.1.6, 12.2)": (external_init, "ExternalInit"),
        "unknown-reference (12.4.2)": (unknown_reference, "unknown proposal"),
    }


COMMIT_CASES = commit_cases()


@pytest.mark.parametrize("wire_format", WIRE_FORMATS)
@pytest.mark.parametrize("case", sorted(COMMIT_CASES))
def test_invalid_proposal_list(case: str, wire_format: WireFormat) -> None:
    build, match = COMMIT_CASES[case]
    h = group(psks=PSKS)
    proposals = build(h)
    message = forge(state(h, "a"), Commit(proposals, None), wire_format=wire_format)
    assert_rejected(state(h, "b"), message, ValidationError, match, psks=PSKS)
    h.still_works("b")


def test_add_of_a_member_with_its_remove_is_valid() -> None:
    """§12.2: an Add of a client in the group is fine if the list also removes it."""
    h = group()
    h.commit("a", [Remove(h.leaf_of("c")), Add(h.clients["c"].key_package())])
    assert h.member_names() == ["a", "b", "c"]


@pytest.mark.parametrize(
    "proposals",
    [
        pytest.param(lambda h: (), id="empty"),
        pytest.param(lambda h: (Remove(h.leaf_of("c")),), id="remove"),
        pytest.param(lambda h: (GroupContextExtensions(()),), id="group-context-extensions"),
    ],
)
def test_commit_without_required_path(proposals: Callable[[Harness], tuple[Proposal]]) -> None:
    """§12.4: the path is required for empty commits and Update/Remove/GCE/ExternalInit."""
    h = group()
    message = forge(state(h, "a"), Commit(proposals(h), None))
    assert_rejected(state(h, "b"), message, ValidationError, "requires an UpdatePath", rule="12.4")
    h.still_works("b")


def test_update_by_reference_without_path() -> None:
    h = group()
    h.propose("c")
    message = forge(state(h, "a"), Commit((state(h, "a").proposals[-1].ref,), None))
    assert_rejected(state(h, "b"), message, ValidationError, "requires an UpdatePath", rule="12.4")
    h.still_works("b")


def test_commit_of_an_update_we_did_not_send() -> None:
    """§12.1.2: a commit applying an Update to our leaf needs the key we generated."""
    h = group()
    h.propose("b")
    out = h.make_commit("a")
    forgetful = state(h, "b")._evolve(update_keys=())
    assert_rejected(forgetful, out.commit, ValidationError, "did not send", rule="12.1.2")
    h.submit("a", out)
    h.still_works("b")


# --- UpdatePath (§7.5, §7.6, §7.9.2, §12.4.2) ----------------------------------------------


def tampered_path(
    change: Callable[[treekem.PreparedCommitPath, Group], treekem.PreparedCommitPath],
) -> Callable[[Any], Any]:
    """A `prepare_commit_path` whose result is changed by ``change`` (a malicious committer)."""

    def wrap(original: Any) -> Any:
        def prepare(tree: Any, sender: int, *args: Any, **kwargs: Any) -> Any:
            return change(original(tree, sender, *args, **kwargs), tree)

        return prepare

    return wrap


def keep_old_leaf_key(h: Harness) -> Callable[..., treekem.PreparedCommitPath]:
    a = h.clients["a"]
    old_key = a.state.own_leaf_node.encryption_key

    def change(prepared: treekem.PreparedCommitPath, tree: Any) -> treekem.PreparedCommitPath:
        leaf = dataclasses.replace(prepared.leaf_node, encryption_key=old_key).signed(
            SUITE, a.signature_private_key, h.group_id, prepared.sender
        )
        new_tree = prepared.tree.copy()
        new_tree.set_node(2 * prepared.sender, leaf)
        return dataclasses.replace(prepared, leaf_node=leaf, tree=new_tree)

    return change


def leaf_signed_for_other_leaf(h: Harness) -> Callable[..., treekem.PreparedCommitPath]:
    a = h.clients["a"]

    def change(prepared: treekem.PreparedCommitPath, tree: Any) -> treekem.PreparedCommitPath:
        leaf = prepared.leaf_node.signed(SUITE, a.signature_private_key, h.group_id, 5)
        new_tree = prepared.tree.copy()
        new_tree.set_node(2 * prepared.sender, leaf)
        return dataclasses.replace(prepared, leaf_node=leaf, tree=new_tree)

    return change


def wrong_parent_hash(h: Harness) -> Callable[..., treekem.PreparedCommitPath]:
    a = h.clients["a"]

    def change(prepared: treekem.PreparedCommitPath, tree: Any) -> treekem.PreparedCommitPath:
        leaf = prepared.leaf_node
        assert leaf.parent_hash is not None
        leaf = dataclasses.replace(leaf, parent_hash=flip(leaf.parent_hash)).signed(
            SUITE, a.signature_private_key, h.group_id, prepared.sender
        )
        new_tree = prepared.tree.copy()
        new_tree.set_node(2 * prepared.sender, leaf)
        return dataclasses.replace(prepared, leaf_node=leaf, tree=new_tree)

    return change


PATH_CASES = {
    "leaf-keeps-encryption-key (12.4.2)": (keep_old_leaf_key, ValidationError, "keeps its"),
    "leaf-signed-for-other-leaf (7.3)": (leaf_signed_for_other_leaf, ValidationError, "signature"),
    "wrong-parent-hash (7.9.2)": (wrong_parent_hash, ValidationError, "parent_hash"),
}


@pytest.mark.parametrize("wire_format", WIRE_FORMATS)
@pytest.mark.parametrize("case", sorted(PATH_CASES))
def test_bad_update_path(case: str, wire_format: WireFormat) -> None:
    make_change, error, match = PATH_CASES[case]
    config = GroupConfig(private_handshakes=wire_format == WireFormat.mls_private_message)
    h = group(config=config)
    with patched(commit_module, "prepare_commit_path", tampered_path(make_change(h))):
        out = state(h, "a").commit()
    assert_rejected(state(h, "b"), out.commit, error, match)
    if wire_format == WireFormat.mls_public_message:
        # A delivery service holding only the public state rejects it too (no secret needed).
        with pytest.raises(error, match=match):
            state(h, "b").public_group.process_commit(out.commit, now=NOW)
    h.still_works("b")


def test_update_path_ciphertext_tampered() -> None:
    """§7.6: a path secret that does not decrypt is a `DecryptError` for its recipients."""
    h = group()

    def wrap(original: Any) -> Any:
        def encrypt(self: treekem.PreparedCommitPath, *args: Any, **kwargs: Any) -> UpdatePath:
            path: UpdatePath = original(self, *args, **kwargs)
            nodes = tuple(
                dataclasses.replace(
                    n,
                    encrypted_path_secret=tuple(
                        dataclasses.replace(ct, ciphertext=flip(ct.ciphertext))
                        for ct in n.encrypted_path_secret
                    ),
                )
                for n in path.nodes
            )
            return dataclasses.replace(path, nodes=nodes)

        return encrypt

    with patched(treekem.PreparedCommitPath, "encrypt", wrap):
        out = state(h, "a").commit()
    assert_rejected(state(h, "b"), out.commit, DecryptError)
    h.still_works("b")


def test_update_path_with_too_few_ciphertexts() -> None:
    h = group()

    def wrap(original: Any) -> Any:
        def encrypt(self: treekem.PreparedCommitPath, *args: Any, **kwargs: Any) -> UpdatePath:
            path: UpdatePath = original(self, *args, **kwargs)
            nodes = tuple(dataclasses.replace(n, encrypted_path_secret=()) for n in path.nodes)
            return dataclasses.replace(path, nodes=nodes)

        return encrypt

    with patched(treekem.PreparedCommitPath, "encrypt", wrap):
        out = state(h, "a").commit()
    assert_rejected(state(h, "b"), out.commit, ValidationError, "ciphertexts", rule="7.6")
    h.still_works("b")


# --- framing: tags, signatures, epochs, senders (§6) -----------------------------------------


def test_bad_confirmation_tag_public() -> None:
    """§6.1/§8.1: an insider re-tags (membership tag valid) but the confirmation tag is wrong."""
    h = group()
    out = h.make_commit("a")
    tag = public_body(out.commit).auth.confirmation_tag
    assert tag is not None
    message = retag(state(h, "a"), out.commit, confirmation_tag=flip(tag))
    assert_rejected(state(h, "b"), message, InvalidMac, "confirmation tag")
    h.submit("a", out)
    h.still_works("b")


def test_bad_confirmation_tag_private() -> None:
    h = group(config=PRIVATE)

    def wrap(original: Any) -> Any:
        def protect(self: Group, auth: Any, rng: Any) -> Any:
            tag = auth.auth.confirmation_tag
            if tag is not None:
                auth = dataclasses.replace(
                    auth, auth=dataclasses.replace(auth.auth, confirmation_tag=flip(tag))
                )
            return original(self, auth, rng)

        return protect

    with patched(Group, "_protect_private", wrap):
        out = state(h, "a").commit()
    assert_rejected(state(h, "b"), out.commit, InvalidMac, "confirmation tag")
    h.still_works("b")


def test_bad_membership_tag() -> None:
    """§6.2: the membership tag is the last field of a member's PublicMessage."""
    h = group()
    out = h.make_commit("a")
    assert_rejected(state(h, "b"), flip(out.commit), InvalidMac, "membership tag")
    proposal = h.propose("c", Remove(h.leaf_of("a")))
    assert_rejected(state(h, "b"), flip(proposal), InvalidMac, "membership tag")
    h.still_works("b")


def test_bad_signature_public() -> None:
    h = group()
    out = h.make_commit("a")
    signature = public_body(out.commit).auth.signature
    message = retag(state(h, "a"), out.commit, signature=flip(signature))
    assert_rejected(state(h, "b"), message, ValidationError, "signature is invalid", rule="6.1")
    h.submit("a", out)
    h.still_works("b")


@pytest.mark.parametrize("wire_format", WIRE_FORMATS)
def test_signature_by_another_member(wire_format: WireFormat) -> None:
    """§6.1: content signed by c but sent as a (insider-forged) message from a."""
    h = group()
    message = forge(
        state(h, "a"),
        Remove(h.leaf_of("b")),
        wire_format=wire_format,
        signature_private_key=h.clients["c"].signature_private_key,
    )
    assert_rejected(state(h, "b"), message, ValidationError, "signature is invalid", rule="6.1")
    h.still_works("b")


def bad_content_signature(original: Any) -> Any:
    """`CipherSuite.sign_with_label` that flips a bit of every FramedContent signature (both
    the lean application path and the generic one sign through it)."""

    def sign_with_label(self: CipherSuite, key: bytes, label: bytes, content: bytes) -> bytes:
        signature: bytes = original(self, key, label, content)
        return flip(signature) if label == FRAMED_CONTENT_TBS_LABEL else signature

    return sign_with_label


def test_bad_signature_private_application_message() -> None:
    h = group(config=PRIVATE)
    with patched(CipherSuite, "sign_with_label", bad_content_signature):
        _, message = state(h, "a").encrypt(b"hello")
    assert_rejected(state(h, "b"), message, ValidationError, "signature is invalid", rule="6.1")
    h.still_works("b")


@pytest.mark.parametrize("config", [PUBLIC, PRIVATE], ids=["public", "private"])
def test_handshake_from_a_past_epoch(config: GroupConfig) -> None:
    h = group(config=config)
    old = h.propose("a", Remove(h.leaf_of("c")))
    h.commit("b")
    h.commit("a")
    assert_rejected(state(h, "a"), old, ValidationError, "epoch", rule="6")
    h.still_works("a")


@pytest.mark.parametrize("config", [PUBLIC, PRIVATE], ids=["public", "private"])
def test_handshake_from_a_future_epoch(config: GroupConfig) -> None:
    h = group(config=config)
    stale_b = state(h, "b")
    out = h.make_commit("a")
    h.submit("a", out)
    future = forge(state(h, "a"), Remove(h.leaf_of("c")), wire_format=_wire(config))
    assert_rejected(stale_b, future, ValidationError, "epoch", rule="6")
    h.still_works("b")


def _wire(config: GroupConfig) -> WireFormat:
    if config.private_handshakes:
        return WireFormat.mls_private_message
    return WireFormat.mls_public_message


def test_application_message_from_a_future_epoch() -> None:
    h = group(config=PRIVATE)
    stale_b = state(h, "b")
    h.commit("a")
    sent = h.send("a")
    assert_rejected(stale_b, sent.message, ValidationError, "epoch", rule="6")


@pytest.mark.parametrize("wire_format", WIRE_FORMATS)
def test_message_for_another_group(wire_format: WireFormat) -> None:
    h = group()
    other = Harness(SUITE, seed=99, group_id=b"another group")
    other.create("x")
    message = forge(state(other, "x"), Remove(0), wire_format=wire_format)
    assert_rejected(state(h, "b"), message, ValidationError, "another group", rule="6")
    h.still_works("b")


@pytest.mark.parametrize("wire_format", WIRE_FORMATS)
def test_message_from_a_blank_leaf(wire_format: WireFormat) -> None:
    h = group("abcd")
    blank = h.leaf_of("d")
    d_key = h.clients["d"].signature_private_key
    h.commit("a", [Remove(blank)])
    message = forge(
        state(h, "a"),
        Remove(h.leaf_of("c")),
        wire_format=wire_format,
        sender=SenderMember(blank),
        signature_private_key=d_key,
    )
    rule = "6.1" if wire_format == WireFormat.mls_public_message else "6.3.2"
    assert_rejected(state(h, "b"), message, ValidationError, "blank|not a member", rule=rule)
    h.still_works("b")


def test_message_from_a_leaf_beyond_the_tree() -> None:
    h = group()
    message = forge(state(h, "a"), Remove(h.leaf_of("c")), sender=SenderMember(40))
    assert_rejected(state(h, "b"), message, ValidationError, "blank", rule="6.1")
    h.still_works("b")


@pytest.mark.parametrize("config", [PUBLIC, PRIVATE], ids=["public", "private"])
def test_own_message_echoed_back(config: GroupConfig) -> None:
    h = group(config=config)
    # A PrivateMessage of ours fails earlier: our own ratchet already used its generation.
    match = "our own leaf|already used"
    proposal = h.propose("a", Remove(h.leaf_of("c")))
    assert_rejected(state(h, "a"), proposal, ValidationError, match)
    out = h.make_commit("b")
    assert_rejected(state(h, "b"), out.commit, ValidationError, match)
    h.submit("b", out)
    h.still_works("a")


def test_replayed_application_message() -> None:
    """§6.3.2 / §9.2: each generation's key is used once; a replay is rejected."""
    h = group(config=PRIVATE)
    sent = h.send("a")
    h.deliver(sent)
    assert_rejected(state(h, "b"), sent.message, ValidationError, "already used", rule="9.2")
    h.still_works("b")


def test_application_data_in_a_public_message() -> None:
    h = group()
    message = forge(state(h, "a"), b"secret data")
    assert_rejected(state(h, "b"), message, ValidationError, "PublicMessage", rule="6")
    h.still_works("b")


def test_not_a_group_message() -> None:
    h = group()
    for message in (
        state(h, "a").group_info(),
        encode(MLSMessage(h.client("d").key_package())),
    ):
        assert_rejected(state(h, "b"), message, ValidationError, "not a group message", rule="6")
    h.still_works("b")


def test_tampered_private_message() -> None:
    h = group(config=PRIVATE)
    sent = h.send("a")
    assert_rejected(state(h, "b"), flip(sent.message), DecryptError)
    assert_rejected(state(h, "b"), flip(sent.message, -40), DecryptError)
    h.deliver(sent)  # the genuine one still decrypts: the failures consumed nothing
    h.still_works("b")


# --- external and new-member senders (§12.1.8) ----------------------------------------------


@pytest.fixture
def with_external_sender() -> tuple[Harness, PrivateKeyBytes]:
    key = SUITE.generate_signature_key_pair()
    senders = ExternalSenders((ExternalSender(key.public_key, BasicCredential(b"server")),))
    h = group(extensions=[make_extension(senders)])
    return h, PrivateKeyBytes(key.private_key)


def test_external_sender_remove_is_committed(
    with_external_sender: tuple[Harness, PrivateKeyBytes],
) -> None:
    h, key = with_external_sender
    message = forge(
        state(h, "a"), Remove(h.leaf_of("c")), sender=SenderExternal(0), signature_private_key=key
    )
    for name in "ab":
        result = state(h, name).process(message)
        h.clients[name].group = result.group
    h.clients["c"].group = state(h, "c").process(message).group
    h.commit("a")
    assert h.member_names() == ["a", "b"]


@pytest.mark.parametrize(
    "case",
    [
        pytest.param("unknown-index", id="unknown-index (12.1.8.1)"),
        pytest.param("update", id="update (12.1.8)"),
        pytest.param("commit", id="commit (12.1.8)"),
        pytest.param("bad-signature", id="bad-signature (6.1)"),
    ],
)
def test_bad_external_sender_message(
    case: str, with_external_sender: tuple[Harness, PrivateKeyBytes]
) -> None:
    h, key = with_external_sender
    content: Proposal | Commit = Remove(h.leaf_of("c"))
    sender = SenderExternal(0)
    match = {
        "unknown-index": "unknown external sender",
        "update": "not allowed from an external sender",
        "commit": "only send proposals",
        "bad-signature": "signature is invalid",
    }[case]
    if case == "unknown-index":
        sender = SenderExternal(1)
    elif case == "update":
        content = Update(update_leaf(h, "b"))
    elif case == "commit":
        content = Commit((Remove(h.leaf_of("c")),), None)
    elif case == "bad-signature":
        key = h.clients["a"].signature_private_key
    message = forge(state(h, "a"), content, sender=sender, signature_private_key=key)
    assert_rejected(state(h, "b"), message, ValidationError, match)
    h.still_works("b")


def test_external_sender_without_the_extension() -> None:
    h = group()
    message = forge(state(h, "a"), Remove(h.leaf_of("c")), sender=SenderExternal(0))
    assert_rejected(state(h, "b"), message, ValidationError, "unknown external sender")
    h.still_works("b")


def test_new_member_proposal_joins() -> None:
    """§12.1.8: a new member proposes its own Add; a member commits it."""
    h = group()
    d = h.client("d")
    kp = d.key_package()
    message = forge(
        state(h, "a"), Add(kp), sender=SenderNewMemberProposal(), signature_private_key=None
    )
    # forge() signed with a's key: only d's own key is valid for a new_member_proposal.
    assert_rejected(state(h, "b"), message, ValidationError, "signature is invalid", rule="6.1")
    message = forge(
        state(h, "a"),
        Add(kp),
        sender=SenderNewMemberProposal(),
        signature_private_key=d.signature_private_key,
    )
    for member in h.members():
        member.group = member.state.process(message, now=NOW).group
    h.commit("a")
    assert "d" in h.member_names()


def test_new_member_proposal_other_than_add() -> None:
    h = group()
    message = forge(state(h, "a"), Remove(h.leaf_of("c")), sender=SenderNewMemberProposal())
    assert_rejected(state(h, "b"), message, ValidationError, "only send Add", rule="12.1.8")
    h.still_works("b")


def test_new_member_commit_without_path() -> None:
    h = group()
    message = forge(
        state(h, "a"), Commit((ExternalInit(b"\x00" * 32),), None), sender=SenderNewMemberCommit()
    )
    assert_rejected(state(h, "b"), message, ValidationError, "with a path", rule="12.4.3.2")
    h.still_works("b")


# --- external commits (§12.4.3.2) ---------------------------------------------------------


def external_commit(
    h: Harness,
    name: str,
    change: Callable[[tuple[ProposalOrRef, ...]], tuple[ProposalOrRef, ...]] | None = None,
    *,
    resync_leaf: int | None = None,
) -> bytes:
    """``name``'s external commit, its proposal list changed by ``change`` before signing."""
    joiner = h.client(name)
    assert h.ds.group_info is not None

    def wrap(original: Any) -> Any:
        def make(proposals: tuple[ProposalOrRef, ...], path: Any) -> Commit:
            commit: Commit = original(change(proposals) if change else proposals, path)
            return commit

        return make

    with patched(join_module, "Commit", wrap):
        _, message = Group.join_external(
            h.ds.group_info,
            joiner.leaf_template(),
            joiner.signature_private_key,
            resync_leaf=resync_leaf,
            now=NOW,
        )
    return message


EXTERNAL_CASES: dict[str, tuple[Callable[[Harness], Any], str]] = {
    "proposal-by-reference (12.4.3.2)": (
        lambda h: lambda ps: (*ps, ProposalRef(b"\x00" * 32)),
        "proposal by reference",
    ),
    "no-external-init (12.2)": (
        lambda h: lambda ps: tuple(p for p in ps if not isinstance(p, ExternalInit)),
        "exactly one ExternalInit",
    ),
    "two-external-inits (12.2)": (lambda h: lambda ps: (*ps, ps[0]), "exactly one ExternalInit"),
    "two-removes (12.2)": (
        lambda h: lambda ps: (*ps, Remove(h.leaf_of("b")), Remove(h.leaf_of("c"))),
        "more than one Remove",
    ),
    "add (12.2)": (
        lambda h: lambda ps: (*ps, Add(h.client("e").key_package())),
        "disallowed proposal type",
    ),
}


@pytest.mark.parametrize("case", sorted(EXTERNAL_CASES))
def test_invalid_external_commit(case: str) -> None:
    build, match = EXTERNAL_CASES[case]
    h = group()
    message = external_commit(h, "d", build(h))
    assert_rejected(state(h, "b"), message, ValidationError, match)
    h.still_works("b")


def test_resync_for_another_identity() -> None:
    """§12.2: an external commit may only remove an old appearance of the joiner itself."""
    h = group()
    message = external_commit(h, "mallory", resync_leaf=h.leaf_of("b"))
    assert_rejected(state(h, "a"), message, ValidationError, "another identity", rule="12.4.3.2")
    h.still_works("a")


def test_external_commit_with_bad_confirmation_tag() -> None:
    h = group()
    message = external_commit(h, "d")
    tag = public_body(message).auth.confirmation_tag
    assert tag is not None
    tampered = retag(state(h, "a"), message, confirmation_tag=flip(tag))
    assert_rejected(state(h, "b"), tampered, InvalidMac, "confirmation tag")
    h.still_works("b")


def test_external_commit_for_a_stale_epoch() -> None:
    h = group()
    message = external_commit(h, "d")
    h.commit("a")
    assert_rejected(state(h, "b"), message, ValidationError, "epoch", rule="6")
    h.still_works("b")


def test_external_commit_by_a_current_member() -> None:
    """Without resync, a second leaf with the same signature key is invalid (§7.3)."""
    h = group()
    b = h.clients["b"]
    assert h.ds.group_info is not None
    with pytest.raises(ValidationError, match="signature key"):
        Group.join_external(h.ds.group_info, b.leaf_template(), b.signature_private_key)
    h.still_works("b")


# --- joining: GroupInfo and Welcome (§12.4.3) ------------------------------------------------


def signed_group_info(h: Harness, name: str, **changes: Any) -> bytes:
    """``name``'s GroupInfo with ``changes``, re-signed by ``name`` unless ``signature`` is
    among them."""
    g = state(h, name)
    info = decode(MLSMessage, g.group_info()).body
    assert isinstance(info, GroupInfo)
    info = dataclasses.replace(info, **changes)
    if "signature" not in changes:
        info = GroupInfo.sign(
            SUITE,
            h.clients[name].signature_private_key.value,
            info.group_context,
            info.extensions,
            info.confirmation_tag,
            info.signer,
        )
    return encode(MLSMessage(info))


def test_external_join_with_bad_group_info_signature() -> None:
    h = group()
    info = decode(MLSMessage, state(h, "a").group_info()).body
    assert isinstance(info, GroupInfo)
    bad = signed_group_info(h, "a", signature=flip(info.signature))
    d = h.client("d")
    with pytest.raises(ValidationError, match="GroupInfo signature is invalid"):
        Group.join_external(bad, d.leaf_template(), d.signature_private_key)


def test_external_join_with_group_info_signed_by_another_member() -> None:
    h = group()
    info = decode(MLSMessage, state(h, "a").group_info()).body
    assert isinstance(info, GroupInfo)
    forged = signed_group_info(h, "b", signer=info.signer)  # b signs, claims to be a
    d = h.client("d")
    with pytest.raises(ValidationError, match="GroupInfo signature is invalid"):
        Group.join_external(forged, d.leaf_template(), d.signature_private_key)


def test_external_join_without_external_pub() -> None:
    h = group(config=GroupConfig(private_handshakes=False, external_pub_in_group_info=False))
    d = h.client("d")
    with pytest.raises(ValidationError, match="external_pub"):
        Group.join_external(state(h, "a").group_info(), d.leaf_template(), d.signature_private_key)


def test_external_join_with_tree_hash_mismatch() -> None:
    h = group(config=GroupConfig(private_handshakes=False, ratchet_tree_in_welcome=False))
    old_tree = state(h, "a").tree.encode()
    h.commit("b")
    d = h.client("d")
    with pytest.raises(ValidationError, match="tree hash"):
        Group.join_external(
            state(h, "a").group_info(),
            d.leaf_template(),
            d.signature_private_key,
            ratchet_tree=old_tree,
        )


def welcome_for_d(h: Harness) -> tuple[bytes, Client, Group]:
    d = h.client("d")
    out = h.make_commit("a", [Add(d.key_package())])
    h.clients["a"].pending = None
    return out.welcome or b"", d, out.pending.group


def only_bundle(client: Client) -> Any:
    (bundle,) = client.bundles.values()
    return bundle


def test_welcome_not_for_us() -> None:
    h = group()
    welcome, _, _ = welcome_for_d(h)
    e = h.client("e")
    e.key_package()
    with pytest.raises(ValidationError, match="no entry for this KeyPackage"):
        Group.join_from_welcome(welcome, only_bundle(e), now=NOW)


def test_welcome_with_the_wrong_init_key() -> None:
    h = group()
    welcome, d, _ = welcome_for_d(h)
    bundle = only_bundle(d)
    wrong = dataclasses.replace(bundle, init_private_key=bundle.encryption_private_key)
    with pytest.raises(CryptoError):
        Group.join_from_welcome(welcome, wrong, now=NOW)


def test_welcome_tampered() -> None:
    h = group()
    welcome, d, _ = welcome_for_d(h)
    with pytest.raises(DecryptError):
        Group.join_from_welcome(flip(welcome), only_bundle(d), now=NOW)


@pytest.mark.parametrize(
    "case",
    [
        pytest.param("signature", id="bad-signature (12.4.3.1)"),
        pytest.param("confirmation_tag", id="bad-confirmation-tag (12.4.3.1)"),
        pytest.param("signer", id="blank-signer (12.4.3.1)"),
    ],
)
def test_welcome_with_bad_group_info(case: str) -> None:
    """The committer (malicious) encrypts a broken GroupInfo into the Welcome."""
    h = group()

    def wrap(original: Any) -> Any:
        def group_info(self: Group) -> GroupInfo:
            info: GroupInfo = original(self)
            if case == "signature":
                return dataclasses.replace(info, signature=flip(info.signature))
            key = self._signature_private_key.value
            tag = flip(info.confirmation_tag) if case == "confirmation_tag" else None
            signer = 7 if case == "signer" else info.signer
            return GroupInfo.sign(
                SUITE,
                key,
                info.group_context,
                info.extensions,
                tag or info.confirmation_tag,
                signer,
            )

        return group_info

    d = h.client("d")
    with patched(Group, "_group_info", wrap):
        out = state(h, "a").commit([Add(d.key_package())])
    error: type[Exception] = InvalidMac if case == "confirmation_tag" else ValidationError
    match = {
        "signature": "signature is invalid",
        "confirmation_tag": "confirmation",
        "signer": "signer leaf is blank",
    }
    with pytest.raises(error, match=match[case]):
        Group.join_from_welcome(out.welcome or b"", only_bundle(d), now=NOW)


def test_welcome_with_tree_hash_mismatch() -> None:
    h = group(config=GroupConfig(private_handshakes=False, ratchet_tree_in_welcome=False))
    old_tree = state(h, "a").tree.encode()
    welcome, d, _ = welcome_for_d(h)
    with pytest.raises(ValidationError, match="tree hash"):
        Group.join_from_welcome(welcome, only_bundle(d), ratchet_tree=old_tree, now=NOW)


def test_welcome_with_expired_member_in_tree() -> None:
    """§7.3 via §12.4.3.1: with a clock, the joiner checks the lifetimes in the tree."""
    h = group()
    welcome, d, _ = welcome_for_d(h)
    # Every key-package leaf (b and c never committed) is valid for 90 days from NOW.
    with pytest.raises(ValidationError, match="lifetime"):
        Group.join_from_welcome(welcome, only_bundle(d), now=NOW + 200 * 24 * 3600)
    assert Group.join_from_welcome(welcome, only_bundle(d), now=NOW).epoch == 2


# --- leaf key uniqueness (§7.3) --------------------------------------------------------------


@pytest.mark.parametrize("wire_format", WIRE_FORMATS)
def test_update_with_another_members_encryption_key(wire_format: WireFormat) -> None:
    """§7.3: checked on receipt, so a cached proposal cannot block every later commit."""
    h = group()
    taken = state(h, "c").own_leaf_node.encryption_key
    message = forge(
        state(h, "b"), Update(update_leaf(h, "b", encryption_key=taken)), wire_format=wire_format
    )
    assert_rejected(state(h, "a"), message, ValidationError, "encryption key", rule="7.3")
    h.still_works("a")


def test_add_with_an_encryption_key_in_use() -> None:
    h = group()
    d = h.client("d")
    kp = d.key_package()
    taken = state(h, "c").own_leaf_node.encryption_key
    leaf = dataclasses.replace(kp.leaf_node, encryption_key=taken).signed(
        SUITE, d.signature_private_key
    )
    message = forge(state(h, "a"), Add(resign_key_package(d, kp, leaf_node=leaf)))
    assert_rejected(state(h, "b"), message, ValidationError, "encryption key", rule="7.3")
    h.still_works("b")


def test_key_package_leaf_extension_not_in_its_capabilities() -> None:
    h = group()
    d = h.client("d")
    kp = generate_key_package(
        SUITE,
        d.credential,
        d.signature_private_key,
        now=NOW,
        leaf_extensions=[Extension(UNKNOWN_EXTENSION, b"")],
    ).key_package
    message = forge(state(h, "a"), Add(kp))
    assert_rejected(state(h, "b"), message, ValidationError, "not in its capabilities", rule="7.3")
    h.still_works("b")


# --- GroupContextExtensions (§12.1.7) --------------------------------------------------------


def test_group_context_extensions_applied() -> None:
    caps = Capabilities((1,), (1,), (UNKNOWN_EXTENSION,), (), (1,))
    h = group(capabilities=caps)
    ext = Extension(UNKNOWN_EXTENSION, b"v2")
    h.commit("a", [GroupContextExtensions((ext,))])
    assert state(h, "b").extensions == (ext,)


@pytest.mark.parametrize(
    "extension",
    [
        pytest.param(Extension(UNKNOWN_EXTENSION, b"x"), id="unsupported-extension"),
        pytest.param(
            make_extension(RequiredCapabilities((UNKNOWN_EXTENSION,), (), ())),
            id="unsupported-required-capabilities",
        ),
    ],
)
def test_group_context_extensions_unsupported_by_a_member(extension: Extension) -> None:
    """§12.1.7: every member must support the new extensions (a commits, b checks)."""
    h = group()
    a = state(h, "a")
    before = a.to_bytes()
    with pytest.raises(ValidationError):
        a.commit([GroupContextExtensions((extension,))])
    assert a.to_bytes() == before
    with patched(PublicGroup, "check_tree_after", lambda original: lambda *args: None):
        out = a.commit([GroupContextExtensions((extension,))])
    assert_rejected(state(h, "b"), out.commit, ValidationError, "support|capabilit")
    h.still_works("b")


def test_add_judged_against_the_new_group_context_extensions() -> None:
    """§12.2: "The new extensions MUST be used when evaluating other proposals in this list":
    dropping a required capability admits a member that lacks it."""
    required = RequiredCapabilities((UNKNOWN_EXTENSION,), (), ())
    caps = Capabilities((1,), (1,), (UNKNOWN_EXTENSION,), (), (1,))
    h = group("ab", extensions=[make_extension(required)], capabilities=caps)
    kp = h.client("d").key_package()  # lacks UNKNOWN_EXTENSION
    h.commit("a", [GroupContextExtensions(()), Add(kp)])
    assert "d" in h.member_names()


# --- more reachable rules ---------------------------------------------------------------------


def test_key_package_of_another_protocol_version() -> None:
    """§10.1: the committer rejects it; on the wire it does not even decode (mls10 only)."""
    h = group()
    d = h.client("d")
    kp = resign_key_package(d, d.key_package(), version=2)
    a = state(h, "a")
    before = a.to_bytes()
    with pytest.raises(ValidationError, match="version"):
        a.commit([Add(kp)])
    assert a.to_bytes() == before
    assert_rejected(state(h, "b"), forge(a, Add(kp)), DecodeError)
    h.still_works("a")


def test_external_commit_with_an_update() -> None:
    """§12.1.2 / §12.2: only members send Updates; an external commit may not carry one."""
    h = group()
    leaf = update_leaf(h, "b")
    message = external_commit(h, "d", lambda ps: (*ps, Update(leaf)))
    assert_rejected(state(h, "b"), message, ValidationError, "only members send Update")
    h.still_works("b")


def test_late_application_message_with_bad_signature() -> None:
    """§6.1 for a message of a kept past epoch."""
    h = group(config=PRIVATE)
    with patched(CipherSuite, "sign_with_label", bad_content_signature):
        _, message = state(h, "a").encrypt(b"late")
    h.commit("c")
    assert_rejected(state(h, "b"), message, ValidationError, "signature is invalid", rule="6.1")
    h.still_works("b")


def test_join_external_from_a_non_group_info() -> None:
    h = group()
    d = h.client("d")
    out = h.make_commit("a")
    with pytest.raises(ValidationError, match="not a GroupInfo"):
        Group.join_external(out.commit, d.leaf_template(), d.signature_private_key)


def test_join_external_with_blank_signer() -> None:
    h = group()
    bad = signed_group_info(h, "a", signer=9)
    d = h.client("d")
    with pytest.raises(ValidationError, match="signer leaf is blank"):
        Group.join_external(bad, d.leaf_template(), d.signature_private_key)


def test_join_from_a_non_welcome() -> None:
    h = group()
    welcome, d, _ = welcome_for_d(h)
    del welcome
    with pytest.raises(ValidationError, match="not a Welcome"):
        Group.join_from_welcome(state(h, "a").group_info(), only_bundle(d), now=NOW)


def test_welcome_whose_group_info_names_another_suite() -> None:
    h = group()

    def wrap(original: Any) -> Any:
        def group_info(self: Group) -> GroupInfo:
            info: GroupInfo = original(self)
            gc = dataclasses.replace(info.group_context, cipher_suite=3)
            return GroupInfo.sign(
                SUITE,
                self._signature_private_key.value,
                gc,
                info.extensions,
                info.confirmation_tag,
                info.signer,
            )

        return group_info

    d = h.client("d")
    with patched(Group, "_group_info", wrap):
        out = state(h, "a").commit([Add(d.key_package())])
    with pytest.raises(ValidationError, match="cipher suite"):
        Group.join_from_welcome(out.welcome or b"", only_bundle(d), now=NOW)


@pytest.mark.parametrize("count", [1, 2], ids=["reinit-psk-not-at-epoch-1", "two-reinit-psks"])
def test_welcome_with_reinit_resumption_psk(count: int) -> None:
    """§12.4.3.1: a Welcome may name at most one reinit/branch PSK, and then only for epoch 1."""
    h = group()
    a = state(h, "a")
    epochs = [e for e, _ in a.resumption_psks][:count]
    ids = [
        PreSharedKeyID(ResumptionPSK(ResumptionPSKUsage.reinit, h.group_id, e), h.rng(32))
        for e in epochs
    ]
    resumption = {(h.group_id, e): secret.value for e, secret in a.resumption_psks}
    d = h.client("d")
    with patched(PublicGroup, "validate_proposal_list", lambda original: lambda *a, **k: None):
        out = a.commit([Add(d.key_package()), *(PreSharedKey(i) for i in ids)])
    match = "epoch 1" if count == 1 else "several reinit/branch"
    with pytest.raises(ValidationError, match=match):
        Group.join_from_welcome(
            out.welcome or b"", only_bundle(d), psks=PskStore(resumption=resumption), now=NOW
        )


def test_update_with_another_members_signature_key() -> None:
    """§7.3: signature keys are unique (b and c collude: c's key signs b's new leaf)."""
    h = group()
    c = h.clients["c"]
    leaf = update_leaf(h, "b", signature_key=state(h, "c").own_leaf_node.signature_key)
    leaf = dataclasses.replace(leaf, signature=b"").signed(
        SUITE, c.signature_private_key, h.group_id, h.leaf_of("b")
    )
    message = forge(state(h, "b"), Update(leaf))
    assert_rejected(state(h, "a"), message, ValidationError, "signature key", rule="7.3")
    h.still_works("a")
