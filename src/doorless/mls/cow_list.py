"""A list shared copy-on-write between its copies, in blocks (for the ratchet tree's arrays).

Every commit works on a copy of the ratchet tree (stage, then merge: a rejected commit leaves
the group's tree untouched, I4), and changes O(log N) of its nodes. With plain lists each copy
costs O(N) (two arrays of 2N-1 entries: 40,000 pointers at 10,000 members). Here the items
live in blocks of `BLOCK` entries; a copy copies only the list of blocks, and a block is copied
the first time a copy writes into it. A path update then costs O(N / BLOCK + BLOCK log N).

Only the operations the tree uses are provided: index, contiguous and strided slices, iteration,
assignment, ``extend`` and truncation (``del x[n:]``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import chain, islice
from typing import Generic, TypeVar, overload

T = TypeVar("T")

BITS = 8
BLOCK = 1 << BITS
_MASK = BLOCK - 1


class CowList(Generic[T]):
    """A sequence of items in blocks of `BLOCK`, shared with its copies until written."""

    __slots__ = ("_blocks", "_len", "_owned")

    _blocks: list[list[T]]
    _owned: list[bool]  # per block: this list may write into it in place
    _len: int

    def __init__(self, items: Iterable[T] = ()) -> None:
        flat = list(items)
        self._blocks = [flat[i : i + BLOCK] for i in range(0, len(flat), BLOCK)]
        self._owned = [True] * len(self._blocks)
        self._len = len(flat)

    def copy(self) -> CowList[T]:
        """An O(N / BLOCK) copy: the blocks are shared, and copied by whichever side writes."""
        new = CowList.__new__(CowList)
        new._blocks = self._blocks.copy()
        new._len = self._len
        self._owned = [False] * len(self._blocks)
        new._owned = self._owned.copy()
        return new

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[T]:
        return islice(chain.from_iterable(self._blocks), self._len)

    @overload
    def __getitem__(self, i: int) -> T: ...

    @overload
    def __getitem__(self, i: slice) -> list[T]: ...

    def __getitem__(self, i: int | slice) -> T | list[T]:
        if isinstance(i, slice):
            return self._slice(i)
        if i < 0:
            i += self._len
        if not 0 <= i < self._len:
            raise IndexError("CowList index out of range")
        return self._blocks[i >> BITS][i & _MASK]

    def _slice(self, s: slice) -> list[T]:
        start, stop, step = s.indices(self._len)
        if step < 0 or start >= stop:
            return list(self)[s]
        first, last = start >> BITS, (stop - 1) >> BITS
        if first == last:
            return self._blocks[first][start & _MASK : ((stop - 1) & _MASK) + 1 : step]
        # Only the blocks the slice spans are flattened.
        items = list(chain.from_iterable(self._blocks[first : last + 1]))
        offset = first << BITS
        return items[start - offset : stop - offset : step]

    def any(self, start: int, stop: int) -> bool:
        """``any(self[start:stop])`` without building the slice: block by block at C speed."""
        start, stop = max(start, 0), min(stop, self._len)
        blocks = self._blocks
        while start < stop:
            b, offset = start >> BITS, start & _MASK
            end = min(stop - (b << BITS), BLOCK)
            if any(blocks[b][offset:end]):
                return True
            start = (b + 1) << BITS
        return False

    def __setitem__(self, i: int, value: T) -> None:
        if i < 0:
            i += self._len
        if not 0 <= i < self._len:
            raise IndexError("CowList assignment index out of range")
        b = i >> BITS
        if not self._owned[b]:
            self._blocks[b] = self._blocks[b].copy()
            self._owned[b] = True
        self._blocks[b][i & _MASK] = value

    def extend(self, items: Iterable[T]) -> None:
        for item in items:
            self._append(item)

    def _append(self, item: T) -> None:
        b = self._len >> BITS
        if b == len(self._blocks):
            self._blocks.append([item])
            self._owned.append(True)
        else:
            if not self._owned[b]:
                self._blocks[b] = self._blocks[b].copy()
                self._owned[b] = True
            self._blocks[b].append(item)
        self._len += 1

    def __delitem__(self, s: slice) -> None:
        """Only ``del x[n:]`` (truncation)."""
        start, stop, step = s.indices(self._len)
        if step != 1 or stop != self._len:
            raise NotImplementedError("CowList only truncates (del x[n:])")
        if start >= stop:
            return
        b = start >> BITS
        keep = start & _MASK
        del self._blocks[b + 1 :]
        del self._owned[b + 1 :]
        if keep == 0:
            del self._blocks[b]
            del self._owned[b]
        else:
            self._blocks[b] = self._blocks[b][:keep]  # a new block: owned
            self._owned[b] = True
        self._len = start

    def __eq__(self, other: object) -> bool:
        if isinstance(other, CowList | list):
            return list(self) == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"CowList({len(self)} items, {len(self._blocks)} blocks)"


__all__ = ["BLOCK", "CowList"]
