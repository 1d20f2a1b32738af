"""MLS groups on the post-quantum suites (draft-ietf-mls-pq-ciphersuites, and the ts-mls ids
that map onto the same primitives): create, add, talk, update, remove and external join, with
the harness checking after every step that all members agree (epoch, tree hash, exporter)."""

from __future__ import annotations

import pytest

from doorless.crypto import CipherSuiteId, cipher_suite
from doorless.mls.proposals import Remove

from .harness import make_group

PQ_SUITES = [s for s in CipherSuiteId if cipher_suite(s).is_post_quantum]


def test_the_pq_suites_are_the_draft_ones_and_the_ts_mls_ones() -> None:
    assert [int(s) for s in PQ_SUITES] == [83, 84, 87, 88, 0xF001, 0xF006, 0xF009]
    assert not any(cipher_suite(s).is_post_quantum for s in range(1, 8))


@pytest.mark.parametrize("suite_id", PQ_SUITES, ids=[s.name for s in PQ_SUITES])
def test_group_lifecycle(suite_id: CipherSuiteId) -> None:
    h = make_group("abc", suite_id=suite_id)
    assert h.clients["c"].state.epoch == 1
    for name in "abc":
        assert h.deliver(h.send(name, b"post-quantum hello")) == 2
    h.commit("b")  # an UpdatePath: every node key on b's path is a fresh PQ key pair
    h.commit("a", [Remove(h.leaf_of("c"))])
    assert h.member_names() == ["a", "b"]
    h.external_join("d")  # the HPKE exporter with the PQ KEM (RFC 9420 §8.3)
    assert h.member_names() == ["a", "b", "d"]
    for name in "abd":
        assert h.deliver(h.send(name)) == 2
