"""State properties of `Group`: immutability (invariant I4), persistence, and robustness of
`Group.process` / `Group.from_bytes` against arbitrary and mutated input (Hypothesis).

* Every operation returns a new state and leaves the one it was called on byte-identical.
* ``process`` on any bytes either succeeds or raises a `RemoteError` subclass, and a failure
  changes nothing; ``from_bytes`` on any bytes restores a state or raises `DecodeError`.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from doorless.errors import DecodeError, RemoteError
from doorless.mls.extensions import Extension
from doorless.mls.framing import (
    Sender,
    SenderExternal,
    SenderMember,
    SenderNewMemberCommit,
    WireFormat,
)
from doorless.mls.group import (
    ApplicationMessage,
    Group,
    GroupConfig,
    KeyPackageBundle,
    ProposalMessage,
    PskStore,
    StagedCommit,
)
from doorless.mls.nodes import UpdatePath
from doorless.mls.proposals import (
    Add,
    Commit,
    ExternalInit,
    ExternalPSK,
    GroupContextExtensions,
    PreSharedKey,
    PreSharedKeyID,
    ProposalOrRef,
    ProposalRef,
    ReInit,
    Remove,
)

from .harness import NOW, Harness, forge, make_group, public_body

PUBLIC = GroupConfig(private_handshakes=False)
PRIVATE = GroupConfig(private_handshakes=True)


def unchanged(group: Group, before: bytes) -> None:
    assert group.to_bytes() == before


def test_every_operation_leaves_its_receiver_unchanged() -> None:
    h = make_group("abc", PRIVATE)
    a, b = h.clients["a"].state, h.clients["b"].state
    before_a, before_b = a.to_bytes(), b.to_bytes()

    a2, app = a.encrypt(b"data")
    unchanged(a, before_a)
    assert a2.to_bytes() != before_a  # the sender ratchet moved on
    result = b.process(app)
    assert isinstance(result, ApplicationMessage)
    unchanged(b, before_b)

    a3, proposal = a.propose(Remove(h.leaf_of("c")))
    unchanged(a, before_a)
    result = b.process(proposal)
    assert isinstance(result, ProposalMessage)
    unchanged(b, before_b)

    a.propose_update()
    unchanged(a, before_a)

    out = a3.commit()
    staged = result.group.process(out.commit)
    assert isinstance(staged, StagedCommit)
    merged = result.group.merge_staged_commit(staged)
    assert merged.epoch == b.epoch + 1
    unchanged(b, before_b)
    unchanged(a, before_a)

    a.group_info()
    a.export_secret(b"label", b"", 32)
    unchanged(a, before_a)


@pytest.mark.parametrize("config", [PUBLIC, PRIVATE], ids=["public", "private"])
def test_round_trip_of_every_state_in_a_session(config: GroupConfig) -> None:
    """``to_bytes`` / ``from_bytes`` is byte-exact at every step, and the restored state
    behaves like the original (the harness continues with it)."""
    h = make_group("abc", config)
    h.client("d")
    steps: list[Callable[[], object]] = [
        lambda: h.propose("b"),
        lambda: h.commit("c"),
        lambda: h.send("a"),
        lambda: h.commit("a", [Add(h.clients["d"].key_package())]),
        lambda: h.external_join("e"),
        lambda: h.commit("d", [Remove(h.leaf_of("a"))]),
    ]
    for step in steps:
        step()
        for name in h.member_names():
            h.round_trip(name)


def test_restored_state_keeps_past_epochs_and_ratchet_positions() -> None:
    h = make_group("ab", PRIVATE)
    sent = [h.send("a") for _ in range(3)]
    h.deliver(sent[1])
    h.commit("b")
    h.round_trip("b")
    assert h.deliver(sent[0]) == 1
    assert h.deliver(sent[2]) == 1
    with pytest.raises(RemoteError):
        h.clients["b"].state.process(sent[1].message)  # still consumed after the restore


# --- Hypothesis ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Corpus:
    """A receiver state and valid messages it can process (built once: it is expensive)."""

    receiver: Group
    receiver_bytes: bytes
    messages: tuple[bytes, ...]


@functools.cache
def corpus() -> Corpus:
    h = make_group("abc", PUBLIC)
    a = h.clients["a"]
    messages: list[bytes] = []
    _, m = a.state.propose(Remove(h.leaf_of("c")))
    messages.append(m)
    _, m = a.state.propose_update()
    messages.append(m)
    messages.append(a.state.commit().commit)
    messages.append(a.state.commit([Remove(h.leaf_of("c"))]).commit)
    d = h.client("d")
    messages.append(a.state.commit([Add(d.key_package())], force_path=False).commit)
    messages.append(a.state.encrypt(b"application data", authenticated_data=b"ad")[1])
    private = Group.from_bytes(a.state.to_bytes(), config=PRIVATE)
    _, m = private.propose(Remove(h.leaf_of("c")))
    messages.append(m)
    messages.append(private.commit().commit)
    assert h.ds.group_info is not None
    e = h.client("e")
    _, m = Group.join_external(h.ds.group_info, e.leaf_template(), e.signature_private_key)
    messages.append(m)
    receiver = h.clients["b"].state
    return Corpus(receiver, receiver.to_bytes(), tuple(messages))


def check_process(data: bytes) -> None:
    c = corpus()
    try:
        result = c.receiver.process(data, now=NOW)
    except RemoteError:
        pass
    else:
        assert isinstance(result, (ApplicationMessage, ProposalMessage, StagedCommit))
    assert c.receiver.to_bytes() == c.receiver_bytes


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A corpus message with one to three random edits (flip, set, insert, delete, cut)."""
    data = bytearray(draw(st.sampled_from(corpus().messages)))
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "cut"]))
        i = draw(st.integers(0, len(data) - 1)) if data else 0
        if kind == "flip" and data:
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and data:
            data[i] = draw(st.sampled_from([0x00, 0xFF, 0x40, 0x80, data[i] + 1 & 0xFF]))
        elif kind == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[i : i + draw(st.integers(1, 8))]
        else:
            del data[i:]
    return bytes(data)


FUZZ = settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def test_corpus_messages_are_valid() -> None:
    """The fuzzing corpus is accepted as is (so mutations start from valid messages)."""
    c = corpus()
    for message in c.messages:
        result = c.receiver.process(message, now=NOW)
        assert isinstance(result, (ApplicationMessage, ProposalMessage, StagedCommit))


@FUZZ
@given(st.binary(max_size=300))
def test_process_arbitrary_bytes(data: bytes) -> None:
    check_process(data)


@FUZZ
@given(st.binary(max_size=200).map(lambda b: b"\x00\x01" + b))
def test_process_arbitrary_mls_messages(data: bytes) -> None:
    """Bytes past the version field, so the fuzzer reaches the wire-format dispatch."""
    check_process(data)


@FUZZ
@given(mutated())
def test_process_mutated_messages(data: bytes) -> None:
    check_process(data)


@FUZZ
@given(st.binary(max_size=400))
def test_from_bytes_arbitrary(data: bytes) -> None:
    with pytest.raises(DecodeError):
        Group.from_bytes(data)


@functools.cache
def saved_state() -> bytes:
    h = make_group("ab", PRIVATE)
    h.send("b")
    h.propose("a")
    return h.clients["a"].state.to_bytes()


@FUZZ
@given(st.data())
def test_from_bytes_mutated(data: st.DataObject) -> None:
    """A damaged store record restores (secret bytes changed) or raises DecodeError."""
    raw = bytearray(saved_state())
    i = data.draw(st.integers(0, len(raw) - 1))
    if data.draw(st.booleans()):
        raw[i] ^= 1 << data.draw(st.integers(0, 7))
    else:
        del raw[i:]
    with contextlib.suppress(DecodeError):
        Group.from_bytes(bytes(raw))


def test_harness_is_usable_after_fuzzing() -> None:
    """The corpus receiver is an ordinary state: still usable (nothing was mutated)."""
    c = corpus()
    h = Harness(c.receiver.suite)
    assert c.receiver.to_bytes() == c.receiver_bytes
    assert h.suite == c.receiver.suite


# --- an insider's fuzzer: well-formed, correctly signed and tagged, arbitrary content ----------


@functools.cache
def insider() -> tuple[Harness, tuple[bytes, ...]]:
    """A group of three where b cached a few proposals (their references are fuzz material)."""
    h = make_group("abc", PUBLIC)
    h.propose("c")
    h.propose("a", Remove(h.leaf_of("c")))
    refs = tuple(p.ref for p in h.clients["b"].state.proposals)
    h.client("d")
    return h, refs


def proposals() -> st.SearchStrategy[ProposalOrRef]:
    h, refs = insider()
    kp_d = h.clients["d"].key_package()
    kp_b = h.clients["b"].key_package()
    extensions = st.lists(
        st.builds(
            Extension,
            st.sampled_from([1, 2, 3, 4, 5, 0xFF0A]),
            st.binary(max_size=12),
        ),
        max_size=2,
    )
    return st.one_of(
        st.builds(Remove, st.integers(0, 9)),
        st.sampled_from([Add(kp_d), Add(kp_b)]),
        st.builds(
            lambda psk_id, n: PreSharedKey(PreSharedKeyID(ExternalPSK(psk_id), bytes(n))),
            st.sampled_from([b"psk", b"unknown"]),
            st.sampled_from([32, 16]),
        ),
        extensions.map(lambda e: GroupContextExtensions(tuple(e))),
        st.builds(ReInit, st.binary(max_size=4), st.sampled_from([0, 1, 2]), st.just(1)),
        st.binary(max_size=40).map(ExternalInit),
        st.sampled_from(refs),
        st.binary(min_size=32, max_size=32).map(ProposalRef),
    )


@functools.cache
def some_path() -> UpdatePath:
    h, _ = insider()
    content = public_body(h.clients["a"].state.commit(include_pending=False).commit).content
    assert isinstance(content.content, Commit)
    assert content.content.path is not None
    return content.content.path


@FUZZ
@given(
    items=st.lists(st.deferred(proposals), max_size=4),
    with_path=st.booleans(),
    sender=st.sampled_from(["member", "external", "new_member_commit"]),
    private=st.booleans(),
)
def test_process_insider_commits(
    items: list[ProposalOrRef], with_path: bool, sender: str, private: bool
) -> None:
    """Commits an insider could sign and tag with any proposal list: a typed error or a
    valid result, never anything else, and the receiver unchanged."""
    h, _ = insider()
    a = h.clients["a"].state
    senders: dict[str, Sender] = {
        "member": SenderMember(a.own_leaf),
        "external": SenderExternal(0),
        "new_member_commit": SenderNewMemberCommit(),
    }
    wire = (
        WireFormat.mls_private_message
        if private and sender == "member"
        else WireFormat.mls_public_message
    )
    message = forge(
        a,
        Commit(tuple(items), some_path() if with_path else None),
        sender=senders[sender],
        wire_format=wire,
    )
    b = h.clients["b"].state
    before = b.to_bytes()
    with contextlib.suppress(RemoteError):
        b.process(message, psks=PskStore(external={b"psk": bytes(32)}), now=NOW)
    assert b.to_bytes() == before


@FUZZ
@given(st.deferred(proposals), st.booleans())
def test_process_insider_proposals(item: ProposalOrRef, private: bool) -> None:
    h, _ = insider()
    if isinstance(item, bytes):
        return  # a reference is not a proposal
    a = h.clients["a"].state
    wire = WireFormat.mls_private_message if private else WireFormat.mls_public_message
    message = forge(a, item, wire_format=wire)
    b = h.clients["b"].state
    before = b.to_bytes()
    try:
        result = b.process(message, now=NOW)
    except RemoteError:
        pass
    else:
        assert isinstance(result, ProposalMessage)
    assert b.to_bytes() == before


@functools.cache
def welcome_material() -> tuple[bytes, bytes, KeyPackageBundle, bytes]:
    h = make_group("ab", PUBLIC)
    d = h.client("d")
    out = h.make_commit("a", [Add(d.key_package())])
    (bundle,) = d.bundles.values()
    return out.welcome or b"", out.group_info, bundle, out.pending.group.tree.encode()


@FUZZ
@given(st.data())
def test_join_from_mutated_welcome(data: st.DataObject) -> None:
    welcome, _, bundle, tree = welcome_material()
    raw = bytearray(welcome)
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] ^= 1 << data.draw(st.integers(0, 7))
    with contextlib.suppress(RemoteError):
        Group.join_from_welcome(bytes(raw), bundle, ratchet_tree=tree, now=NOW)


@FUZZ
@given(st.data())
def test_join_external_from_mutated_group_info(data: st.DataObject) -> None:
    # The tree is also given out of band: a GroupInfo whose ratchet_tree extension was
    # damaged would otherwise be the caller's StateError ("give me the tree").
    _, group_info, _, tree = welcome_material()
    h, _ = insider()
    e = h.client("e")
    raw = bytearray(group_info)
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] ^= 1 << data.draw(st.integers(0, 7))
    with contextlib.suppress(RemoteError):
        Group.join_external(
            bytes(raw), e.leaf_template(), e.signature_private_key, ratchet_tree=tree, now=NOW
        )
