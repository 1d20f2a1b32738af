"""`CowList` behaves as a list, and a copy never sees the other side's writes."""

from __future__ import annotations

import random

import pytest

from doorless.mls.cow_list import BLOCK, CowList

SIZES = [0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 7]


@pytest.mark.parametrize("n", SIZES)
def test_reads_match_a_list(n: int) -> None:
    items = [None if i % 3 else i for i in range(n)]
    cow = CowList(items)
    assert len(cow) == n
    assert list(cow) == items
    assert cow == items
    for i in range(-n, n):
        assert cow[i] == items[i]
    with pytest.raises(IndexError):
        cow[n]
    for start in (0, 1, BLOCK - 1, BLOCK, n // 2, n):
        for stop in (start, start + 1, start + BLOCK + 3, n, n + 5):
            for step in (1, 2, 3):
                assert cow[start:stop:step] == items[start:stop:step]
            assert cow.any(start, stop) == any(items[start:stop])
    assert cow[::-1] == items[::-1]


def test_copies_are_isolated_both_ways() -> None:
    rng = random.Random(7)
    n = 3 * BLOCK + 5
    base = list(range(n))
    a = CowList(base)
    model_a = base.copy()
    b = a.copy()
    model_b = base.copy()
    c = b.copy()
    model_c = base.copy()
    for _ in range(500):
        target, model = rng.choice([(a, model_a), (b, model_b), (c, model_c)])
        i = rng.randrange(len(model))
        value = rng.randrange(10**6)
        target[i] = value
        model[i] = value
    assert (list(a), list(b), list(c)) == (model_a, model_b, model_c)


def test_extend_and_truncate_match_a_list() -> None:
    rng = random.Random(11)
    cow: CowList[int] = CowList(range(5))
    model = list(range(5))
    for _ in range(200):
        op = rng.randrange(3)
        if op == 0:
            extra = [rng.randrange(100) for _ in range(rng.randrange(2 * BLOCK))]
            shared = cow.copy()  # the other side keeps its view
            before = list(shared)
            cow.extend(extra)
            model.extend(extra)
            assert list(shared) == before
        elif op == 1 and model:
            cut = rng.randrange(len(model) + 1)
            shared = cow.copy()
            before = list(shared)
            del cow[cut:]
            del model[cut:]
            assert list(shared) == before
        elif model:
            i = rng.randrange(len(model))
            cow[i] = -1
            model[i] = -1
        assert list(cow) == model
        assert len(cow) == len(model)


def test_only_truncation_is_supported() -> None:
    cow = CowList(range(10))
    with pytest.raises(NotImplementedError):
        del cow[2:5]
