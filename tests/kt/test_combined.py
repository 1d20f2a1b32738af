"""KT-lite combined tree: server appends, witness replay, log-entry verification."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from doorless.codec import decode, encode
from doorless.errors import DecodeError, StateError, ValidationError
from doorless.kt.combined import AuditEntry, CombinedTree, verify_latest_entry, verify_log_entry
from doorless.kt.errors import InvalidProof
from doorless.kt.log_entry import LogEntry
from doorless.kt.merkle import verify_consistency
from doorless.kt.prefix_tree import PrefixLeaf, PrefixLookup, verify_prefix_proof


def key(i: int) -> bytes:
    return hashlib.sha256(b"key %d" % i).digest()


def batch(start: int, stop: int) -> list[tuple[bytes, bytes]]:
    return sorted((key(i), hashlib.sha256(b"c%d" % i).digest()) for i in range(start, stop))


def audit(ts: int, entries: list[tuple[bytes, bytes]]) -> AuditEntry:
    return AuditEntry(ts, tuple(PrefixLeaf(k, c) for k, c in sorted(entries)))


BATCHES = [(1000, batch(0, 5)), (2000, batch(5, 6)), (2000, []), (3500, batch(6, 30))]


def server() -> CombinedTree:
    combined = CombinedTree()
    for ts, entries in BATCHES:
        combined.append(ts, entries)
    return combined


def test_server_and_witness_agree() -> None:
    srv = server()
    witness = CombinedTree()
    for i, (ts, entries) in enumerate(BATCHES):
        published = decode(AuditEntry, encode(audit(ts, entries)))
        assert witness.replay(published, srv.entry(i)) == srv.entry(i)
    assert witness.log.root() == srv.log.root()
    assert witness.size == srv.size == 4
    assert srv.entry(3) == LogEntry(3500, srv.latest_tree().root)


def test_old_trees_and_log_sizes_stay_answerable() -> None:
    srv = server()
    first = srv.tree(0)
    assert first.root == srv.entry(0).prefix_tree
    verify_prefix_proof(first.root, [PrefixLookup(key(7), None)], first.prove([key(7)]))
    latest = srv.latest_tree()
    verify_prefix_proof(
        latest.root, [PrefixLookup(key(7), latest.get(key(7)))], latest.prove([key(7)])
    )
    verify_consistency(1, 4, srv.log.root(1), srv.log.root(), srv.log.consistency_proof(1))


def test_append_refusals_change_nothing() -> None:
    srv = server()
    root = srv.log.root()
    with pytest.raises(StateError):
        srv.append(3499, batch(100, 101))
    with pytest.raises(StateError):
        srv.append(4000, batch(3, 4))  # key 3 is already in the map
    assert srv.size == 4
    assert srv.log.root() == root


@pytest.mark.parametrize(
    "bad",
    [
        AuditEntry(5000, (PrefixLeaf(key(2), bytes(32)),)),  # re-adds an existing key
        AuditEntry(5000, tuple(reversed(audit(0, batch(40, 43)).added))),  # unsorted
        AuditEntry(5000, (PrefixLeaf(key(50), bytes(32)),) * 2),  # duplicate in the batch
        AuditEntry(3000, (PrefixLeaf(key(60), bytes(32)),)),  # timestamp goes back
    ],
    ids=["re-add", "unsorted", "duplicate", "time-travel"],
)
def test_witness_refuses_bad_batches(bad: AuditEntry) -> None:
    witness = server()
    root = witness.log.root()
    with pytest.raises(ValidationError) as exc:
        witness.replay(bad)
    assert exc.value.rule == "KT-lite witness"
    assert witness.size == 4 and witness.log.root() == root


def test_witness_refuses_a_hidden_insertion() -> None:
    # The server logs a tree with a ghost entry but publishes the batch without it.
    srv, witness = server(), server()
    published = batch(100, 102)
    logged = srv.append(4000, [*published, (key(666), bytes(32))])
    with pytest.raises(ValidationError):
        witness.replay(audit(4000, published), logged)
    assert witness.size == 4
    assert witness.replay(audit(4000, published)) != logged


def test_verify_log_entries() -> None:
    srv = server()
    size, root = srv.size, srv.log.root()
    for i in range(size):
        verify_log_entry(size, root, i, srv.entry(i), srv.log.inclusion_proof(i))
    verify_latest_entry(size, root, srv.entry(3), srv.log.inclusion_proof(3))
    with pytest.raises(InvalidProof):  # an older entry passed off as the latest
        verify_latest_entry(size, root, srv.entry(2), srv.log.inclusion_proof(2))
    with pytest.raises(InvalidProof):
        verify_log_entry(size, root, 4, srv.entry(3), srv.log.inclusion_proof(3))
    with pytest.raises(InvalidProof):
        verify_latest_entry(0, root, srv.entry(0), [])
    forged = LogEntry(3500, bytes(32))
    with pytest.raises(InvalidProof):
        verify_latest_entry(size, root, forged, srv.log.inclusion_proof(3))


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_audit_entry_decoder_fuzz(data: bytes) -> None:
    try:
        entry = decode(AuditEntry, data)
    except DecodeError:
        return
    assert encode(entry) == data


@given(
    st.integers(0, (1 << 64) - 1),
    st.lists(st.tuples(st.binary(min_size=32, max_size=32), st.binary(min_size=32, max_size=32))),
)
def test_audit_entry_round_trip(ts: int, leaves: list[tuple[bytes, bytes]]) -> None:
    entry = AuditEntry(ts, tuple(PrefixLeaf(k, c) for k, c in leaves))
    assert decode(AuditEntry, encode(entry)) == entry
