"""Long seeded random scenarios over the in-memory harness (RFC 9420 §12, §14).

Every step is one of: adds (single and batched, by value and by reference), removes (by value
and by reference), self-updates (empty commits), Update proposals committed by another member,
PSK proposals, commits without a path, external joins (new member and resync), application
messages (out of order within the window, late from earlier epochs, replays), concurrent
commits (one wins per epoch), and state round trips through ``to_bytes``/``from_bytes``.
After every step the harness checks that all members agree (epoch, tree hash, epoch
authenticator, exporter, roster).

A failing run names its seed; rerun it with ``pytest -k <id>``.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable

import pytest

from doorless.crypto import cipher_suite
from doorless.errors import ValidationError
from doorless.mls.group import GroupConfig, PskStore
from doorless.mls.proposals import Add, ExternalPSK, PreSharedKey, PreSharedKeyID, Remove
from doorless.mls.secret_tree import GenerationConsumed

from .harness import Harness, SentApplication

PSKS = PskStore(external={b"psk-%d" % i: bytes([i]) * 32 for i in range(3)})
MAX_MEMBERS = 7

PRIVATE = GroupConfig(private_handshakes=True)
PUBLIC = GroupConfig(private_handshakes=False, padding_block=0)
CONFIGS = {
    "private": (PRIVATE,),
    "public": (PUBLIC,),
    "mixed": (PRIVATE, PUBLIC, GroupConfig(max_past_epochs=1, padding_block=7)),
}


class Scenario:
    def __init__(self, suite_id: int, seed: int, configs: tuple[GroupConfig, ...]) -> None:
        self.h = Harness(cipher_suite(suite_id), seed=seed, psks=PSKS)
        self.random = random.Random(seed + 1)
        self.configs = configs
        self.names = 0
        self.in_flight: list[SentApplication] = []
        self.done: list[tuple[str, SentApplication]] = []  # (recipient, message) for replays
        self.ops: Counter[str] = Counter()
        self.h.create(self.fresh_name(), self.random.choice(configs))

    # --- helpers -----------------------------------------------------------------------------

    def fresh_name(self) -> str:
        self.names += 1
        name = f"c{self.names}"
        self.h.client(name, self.random.choice(self.configs))
        return name

    def outsider(self) -> str:
        """A client not in the group: a former member or a new one."""
        former = [c.name for c in self.h.clients.values() if c.group is None]
        if former and self.random.random() < 0.4:
            return self.random.choice(former)
        return self.fresh_name()

    def member(self, *exclude: str) -> str:
        return self.random.choice([n for n in self.h.member_names() if n not in exclude])

    def psk(self) -> PreSharedKey:
        psk_id = self.random.choice(sorted(PSKS.external))
        return PreSharedKey(PreSharedKeyID(ExternalPSK(psk_id), self.h.rng(32)))

    def size(self) -> int:
        return len(self.h.members())

    # --- operations ----------------------------------------------------------------------------

    def op_add(self) -> None:
        n = self.random.randint(1, min(3, MAX_MEMBERS - self.size()))
        joiners = {self.outsider() for _ in range(n)}
        kps = [self.h.clients[j].key_package() for j in joiners]
        self.h.commit(self.member(), [Add(kp) for kp in kps])
        assert set(joiners) <= set(self.h.member_names())

    def op_add_by_reference(self) -> None:
        joiner = self.outsider()
        self.h.propose(self.member(), Add(self.h.clients[joiner].key_package()))
        self.h.commit(self.member())
        assert joiner in self.h.member_names()

    def op_remove(self) -> None:
        committer = self.member()
        target = self.member(committer)
        self.h.commit(committer, [Remove(self.h.leaf_of(target))])
        assert target not in self.h.member_names()

    def op_remove_by_reference(self) -> None:
        target = self.member()
        self.h.propose(self.member(), Remove(self.h.leaf_of(target)))
        self.h.commit(self.member(target))
        assert target not in self.h.member_names()

    def op_self_update(self) -> None:
        name = self.member()
        before = self.h.clients[name].state.own_leaf_node.encryption_key
        self.h.commit(name)
        assert self.h.clients[name].state.own_leaf_node.encryption_key != before

    def op_update_by_reference(self) -> None:
        proposers = self.random.sample(self.h.member_names(), self.random.randint(1, 2))
        keys = {}
        for p in proposers:
            self.h.propose(p)
            keys[p] = self.h.clients[p].state.update_keys[-1][0]
        committer = self.member()
        include = self.random.random() < 0.85
        self.h.commit(committer, include_pending=include)
        for p in proposers:
            leaf = self.h.clients[p].state.own_leaf_node
            if include and p != committer:
                assert leaf.encryption_key == keys[p]
            else:
                assert leaf.encryption_key != keys[p]

    def op_psk(self) -> None:
        if self.random.random() < 0.5:
            self.h.commit(self.member(), [self.psk()])
        else:
            self.h.propose(self.member(), self.psk())
            self.h.commit(self.member())

    def op_commit_without_path(self) -> None:
        if self.size() < MAX_MEMBERS and self.random.random() < 0.5:
            joiner = self.outsider()
            proposal: Add | PreSharedKey = Add(self.h.clients[joiner].key_package())
        else:
            proposal = self.psk()
        staged = self.h.commit(self.member(), [proposal], force_path=False)
        assert staged is None or staged.updated == ()

    def op_external_join(self) -> None:
        if self.size() > 1 and self.random.random() < 0.4:
            self.h.external_join(self.member(), resync=True)
        else:
            self.h.external_join(self.outsider())

    def op_application(self) -> None:
        sender = self.member()
        batch = [self.h.send(sender, aad=self.h.rng(3)) for _ in range(self.random.randint(1, 5))]
        self.random.shuffle(batch)  # out of order within the window
        for sent in batch:
            if self.random.random() < 0.3:
                self.in_flight.append(sent)  # delivered late, maybe after some commits
            else:
                self.h.deliver(sent)
                self.done.extend((r, sent) for r in sent.recipients)

    def op_flush(self) -> None:
        self.random.shuffle(self.in_flight)
        for sent in self.in_flight:
            self.h.deliver(sent)
        self.in_flight.clear()

    def op_replay(self) -> None:
        """A delivered application message again: rejected, nothing changes (§6.3.2)."""
        candidates = [
            (r, s)
            for r, s in self.done[-20:]
            if r in self.h.member_names() and self.h.clients[r].state.epoch == s.epoch
        ]
        if not candidates:
            return
        name, sent = self.random.choice(candidates)
        group = self.h.clients[name].state
        before = group.to_bytes()
        with pytest.raises(GenerationConsumed):
            group.process(sent.message)
        assert group.to_bytes() == before

    def op_concurrent(self) -> None:
        if self.random.random() < 0.4:
            self.h.propose(self.member())
        first, second = self.random.sample(self.h.member_names(), 2)
        out_first = self.h.make_commit(first)
        out_second = self.h.make_commit(second)
        epoch = self.h.ds.epoch
        self.h.submit(first, out_first)
        self.h.submit(second, out_second)  # same epoch: the DS rejects it
        assert self.h.ds.epoch == epoch + 1
        assert self.h.clients[second].pending is None
        if second in self.h.member_names():
            self.h.commit(second)  # the loser retries in the new epoch

    def op_external_join_race(self) -> None:
        """An external joiner and a member commit in the same epoch; whoever reaches the DS
        first wins, the other retries from the new epoch."""
        joiner = self.outsider()
        joined, message = self.h.make_external_join(joiner)
        committer = self.member()
        out = self.h.make_commit(committer)
        epoch = self.h.ds.epoch
        if self.random.random() < 0.5:
            self.h.submit_external_join(joiner, joined, message)
            self.h.submit(committer, out)
            assert self.h.ds.epoch == epoch + 1
            assert joiner in self.h.member_names()
            self.h.commit(committer)
        else:
            self.h.submit(committer, out)
            self.h.submit_external_join(joiner, joined, message)
            assert self.h.ds.epoch == epoch + 1
            assert joiner not in self.h.member_names()
            # Members reject the stale external commit too, and change nothing.
            member = self.h.clients[self.member()].state
            before = member.to_bytes()
            with pytest.raises(ValidationError):
                member.process(message)
            assert member.to_bytes() == before
            self.h.external_join(joiner)

    def op_stale_proposal(self) -> None:
        """A proposal of the previous epoch reaches members after a commit: rejected."""
        proposer = self.member()
        _, message = self.h.clients[proposer].state.propose_update(rng=self.h.rng)
        self.h.commit(self.member())
        assert not self.h.ds.accept_proposal(message)
        for client in self.h.members():
            group = client.state
            before = group.to_bytes()
            with pytest.raises(ValidationError):
                group.process(message)
            assert group.to_bytes() == before

    def op_round_trip(self) -> None:
        self.h.round_trip(self.member())

    def step(self) -> None:
        size = self.size()
        table: list[tuple[Callable[[], None], float]] = [
            (self.op_self_update, 1.0),
            (self.op_application, 2.0),
            (self.op_flush, 0.5),
            (self.op_replay, 0.3),
            (self.op_psk, 0.5),
            (self.op_round_trip, 0.5),
            (self.op_commit_without_path, 0.5),
            (self.op_external_join, 0.7 if size < MAX_MEMBERS else 0.0),
            (self.op_add, 1.5 if size < MAX_MEMBERS else 0.0),
            (self.op_add_by_reference, 0.5 if size < MAX_MEMBERS else 0.0),
            (self.op_remove, 1.0 if size > 2 else 0.0),
            (self.op_remove_by_reference, 0.5 if size > 2 else 0.0),
            (self.op_update_by_reference, 1.0 if size > 1 else 0.0),
            (self.op_concurrent, 1.0 if size > 1 else 0.0),
            (self.op_external_join_race, 0.4 if size < MAX_MEMBERS else 0.0),
            (self.op_stale_proposal, 0.3 if size > 1 else 0.0),
        ]
        ops, weights = zip(*table, strict=True)
        op = self.random.choices(ops, weights)[0]
        self.ops[op.__name__] += 1
        op()

    def run(self, steps: int) -> Counter[str]:
        for _ in range(steps):
            self.step()
        self.op_flush()
        return self.ops


def test_late_message_beyond_kept_epochs_is_rejected() -> None:
    """With ``max_past_epochs=1`` a message two epochs old fails with a typed error (§14)."""
    h = Harness(cipher_suite(1), seed=7)
    config = GroupConfig(max_past_epochs=1)
    h.create("a", config)
    h.client("b", config)
    h.commit("a", [Add(h.clients["b"].key_package())])
    old = h.send("a")
    h.commit("a")
    h.commit("a")
    group = h.clients["b"].state
    before = group.to_bytes()
    with pytest.raises(ValidationError, match="keys are gone"):
        group.process(old.message)
    assert group.to_bytes() == before


@pytest.mark.parametrize("configs", sorted(CONFIGS))
@pytest.mark.parametrize("suite_id", [1, 2, 3])
def test_random_scenario_short(suite_id: int, configs: str) -> None:
    ops = Scenario(suite_id, seed=1000 * suite_id + len(configs), configs=CONFIGS[configs]).run(60)
    assert sum(ops.values()) == 60


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_random_scenario_long(seed: int) -> None:
    ops = Scenario(1, seed=seed, configs=CONFIGS["mixed"]).run(400)
    # The long run exercises every operation.
    assert {name for name, n in ops.items() if n} >= {
        "op_add",
        "op_remove",
        "op_concurrent",
        "op_external_join",
        "op_update_by_reference",
        "op_application",
        "op_external_join_race",
        "op_stale_proposal",
    }
