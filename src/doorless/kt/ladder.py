"""Binary ladders (draft-ietf-keytrans-protocol §"Binary Ladder", Appendix "Binary Ladder")
and the KT-lite greatest-version search against one prefix tree.

A binary ladder for greatest version n looks up versions 0, 1, 3, 7, ... until the first one
above n, then binary-searches down to n. The results (inclusion for every looked-up version
<= n, non-inclusion above) pin n exactly: the ladder of n always contains n and n + 1 (when
n + 1 < 2^32), so within one prefix tree a server can prove only one greatest version.

KT-lite answers every search against the *latest* prefix tree (design notes §1.3), so a search
response is one ladder and one batched `PrefixProof`; the log inclusion of that tree's
`LogEntry` and the signed checkpoint are checked separately (`doorless.kt.merkle`,
`doorless.kt.checkpoint`). Search keys come from `doorless.kt.commitment.search_key` (a public
hash; there is no VRF proof, so the draft's ``BinaryLadderStep.proof`` has length VRF.Np = 0).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Self

from doorless.codec import Reader, Writer
from doorless.errors import ConfigurationError, StateError
from doorless.kt._wire import pull_counted, pull_opaque_fixed, push_counted, push_opaque_fixed
from doorless.kt.commitment import MAX_VERSION, NC, commit, search_key
from doorless.kt.errors import InvalidProof
from doorless.kt.prefix_tree import PrefixLookup, PrefixProof, PrefixTree, verify_prefix_proof

HASH_SIZE = 32
_VERSION_LIMIT = 1 << 32


# --- the version sequences (the draft's appendix, transcribed) ---------------------------------


def base_binary_ladder(n: int) -> list[int]:
    """Versions looked up to establish that ``n`` is the greatest version of a label."""
    if not 0 <= n <= MAX_VERSION:
        raise ConfigurationError(f"version {n} is not a uint32")
    out: list[int] = []
    # Powers of two minus one until one exceeds n.
    while True:
        value = (1 << len(out)) - 1
        out.append(value)
        if value > n:
            break
    # Binary search between the last two.
    lower, upper = out[-2], out[-1]  # n >= 0 makes out at least [0, 1]
    while lower + 1 < upper:
        value = (lower + upper) // 2
        out.append(value)
        if value <= n and value < _VERSION_LIMIT:
            lower = value
        else:
            upper = value
    return [v for v in out if v < _VERSION_LIMIT]


def search_binary_ladder(
    t: int,
    n: int,
    left_inclusion: Collection[int] = (),
    right_non_inclusion: Collection[int] = (),
) -> list[int]:
    """The search ladder for target version ``t`` in a tree whose greatest version is ``n``:
    it stops after the first inclusion above t or non-inclusion at or below t, and drops
    lookups already proven elsewhere in the same response."""

    def would_end(v: int) -> bool:
        return (t < v <= n) or (n < v <= t)

    out = base_binary_ladder(n)
    end = next((i + 1 for i, v in enumerate(out) if would_end(v)), len(out))
    return [v for v in out[:end] if v not in left_inclusion and v not in right_non_inclusion]


def monitoring_binary_ladder(t: int) -> list[int]:
    """The versions an owner monitoring version ``t`` checks (those of the base ladder <= t)."""
    return [v for v in base_binary_ladder(t) if v <= t]


def greatest_version_ladder(greatest: int | None) -> list[int]:
    """The ladder proving ``greatest``; for a label with no version (None), version 0 absent."""
    return [0] if greatest is None else base_binary_ladder(greatest)


# --- wire structures ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BinaryLadderStep:
    """``struct { opaque proof[VRF.Np]; optional<HashValue> commitment; } BinaryLadderStep;``

    VRF.Np = 0 here (no VRF). The commitment is present exactly for the versions that exist,
    except the target version, whose commitment the client computes from opening and value.
    """

    commitment: bytes | None

    def push(self, w: Writer) -> None:
        if self.commitment is not None and len(self.commitment) != HASH_SIZE:
            raise ConfigurationError("commitments have 32 bytes")
        w.push_optional(self.commitment, Writer.push_bytes)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        return cls(r.pull_optional(lambda rr: rr.pull_bytes(HASH_SIZE)))


def _push_step(w: Writer, step: BinaryLadderStep) -> None:
    step.push(w)


@dataclass(frozen=True, slots=True)
class SearchResponse:
    """KT-lite greatest-version search result in one prefix tree (the draft's SearchResponse
    without FullTreeHead and CombinedTreeProof, which KT-lite replaces by a checkpoint and an
    RFC 9162 inclusion proof of the tree's `LogEntry`)::

        struct {
          uint32 version;                 // greatest version of the label
          opaque opening[Nc];
          UpdateValue value;              // opaque value<0..2^32-1>; empty suffix
          BinaryLadderStep binary_ladder<0..2^8-1>;
          PrefixProof prefix_proof;       // one result per ladder version, in ladder order
        } SearchResponse;
    """

    version: int
    opening: bytes
    value: bytes
    binary_ladder: tuple[BinaryLadderStep, ...]
    prefix_proof: PrefixProof

    def push(self, w: Writer) -> None:
        if len(self.opening) != NC:
            raise ConfigurationError(f"openings have {NC} bytes")
        w.push_uint32(self.version)
        w.push_bytes(self.opening)
        push_opaque_fixed(w, self.value, 4)
        push_counted(w, self.binary_ladder, 1, _push_step)
        self.prefix_proof.push(w)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        version = r.pull_uint32()
        opening = r.pull_bytes(NC)
        value = pull_opaque_fixed(r, 4)
        ladder = tuple(pull_counted(r, 1, BinaryLadderStep.pull))
        return cls(version, opening, value, ladder, PrefixProof.pull(r))


@dataclass(frozen=True, slots=True)
class VersionResponse:
    """KT-lite fixed-version lookup in one prefix tree (e.g. to fetch the intermediate
    DeviceList versions a client missed)::

        struct {
          uint32 version;
          opaque opening[Nc];
          UpdateValue value;
          PrefixProof prefix_proof;       // one inclusion result
        } VersionResponse;
    """

    version: int
    opening: bytes
    value: bytes
    prefix_proof: PrefixProof

    def push(self, w: Writer) -> None:
        if len(self.opening) != NC:
            raise ConfigurationError(f"openings have {NC} bytes")
        w.push_uint32(self.version)
        w.push_bytes(self.opening)
        push_opaque_fixed(w, self.value, 4)
        self.prefix_proof.push(w)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        version = r.pull_uint32()
        opening = r.pull_bytes(NC)
        value = pull_opaque_fixed(r, 4)
        return cls(version, opening, value, PrefixProof.pull(r))


@dataclass(frozen=True, slots=True)
class VerifiedValue:
    """What a verified search establishes: ``label`` has ``value`` at ``version``."""

    label: bytes
    version: int
    value: bytes


# --- server side -------------------------------------------------------------------------------


def greatest_version(tree: PrefixTree, label: bytes) -> int | None:
    """The greatest version of ``label`` in ``tree`` (versions are contiguous from 0)."""
    if search_key(label, 0) not in tree:
        return None
    lower, upper = 0, 1  # version `lower` exists; find an absent `upper`
    while upper <= MAX_VERSION and search_key(label, upper) in tree:
        lower, upper = upper, 2 * upper + 1
    while lower + 1 < upper:
        mid = (lower + upper) // 2
        if search_key(label, mid) in tree:
            lower = mid
        else:
            upper = mid
    return lower


def prove_greatest_version(
    tree: PrefixTree, label: bytes, version: int, opening: bytes, value: bytes
) -> SearchResponse:
    """Build the search response for ``label`` whose greatest version is ``version``.

    Raises `StateError` if the tree does not hold exactly versions 0..version, or if
    (opening, value) is not what the tree committed to for the target version.
    """
    versions = base_binary_ladder(version)
    keys = [search_key(label, v) for v in versions]
    steps: list[BinaryLadderStep] = []
    for v, key in zip(versions, keys, strict=True):
        stored = tree.get(key)
        if (stored is not None) != (v <= version):
            state = "absent" if stored is None else "present"
            raise StateError(f"version {v} of the label is unexpectedly {state}")
        if v == version:
            if stored != commit(opening, label, version, value):
                raise StateError("opening and value do not match the stored commitment")
            steps.append(BinaryLadderStep(None))
        else:
            steps.append(BinaryLadderStep(stored))
    return SearchResponse(version, opening, value, tuple(steps), tree.prove(keys))


def prove_version(
    tree: PrefixTree, label: bytes, version: int, opening: bytes, value: bytes
) -> VersionResponse:
    key = search_key(label, version)
    if tree.get(key) != commit(opening, label, version, value):
        raise StateError("opening and value do not match the stored commitment")
    return VersionResponse(version, opening, value, tree.prove([key]))


def prove_label_absent(tree: PrefixTree, label: bytes) -> PrefixProof:
    """Proof that ``label`` has no version (non-inclusion of version 0)."""
    key = search_key(label, 0)
    if key in tree:
        raise StateError("the label exists")
    return tree.prove([key])


# --- client side -------------------------------------------------------------------------------


def verify_greatest_version(
    prefix_root: bytes, label: bytes, response: SearchResponse
) -> VerifiedValue:
    """Verify that, in the prefix tree with ``prefix_root``, the greatest version of ``label``
    is ``response.version`` and its value is ``response.value``. Raises `InvalidProof`."""
    if len(response.opening) != NC:
        raise InvalidProof(f"openings have {NC} bytes")
    target = response.version
    versions = base_binary_ladder(target)
    if len(response.binary_ladder) != len(versions):
        raise InvalidProof(f"ladder has {len(response.binary_ladder)} steps, want {len(versions)}")
    lookups: list[PrefixLookup] = []
    for v, step in zip(versions, response.binary_ladder, strict=True):
        if v == target:
            if step.commitment is not None:
                raise InvalidProof("the target version's commitment must be omitted")
            commitment: bytes | None = commit(response.opening, label, target, response.value)
        elif v < target:
            if step.commitment is None:
                raise InvalidProof(f"ladder lacks the commitment of version {v}")
            commitment = step.commitment
        else:
            if step.commitment is not None:
                raise InvalidProof(f"ladder gives a commitment for version {v} above the target")
            commitment = None
        lookups.append(PrefixLookup(search_key(label, v), commitment))
    verify_prefix_proof(prefix_root, lookups, response.prefix_proof)
    return VerifiedValue(label, target, response.value)


def verify_version(prefix_root: bytes, label: bytes, response: VersionResponse) -> VerifiedValue:
    """Verify that ``label`` has ``response.value`` at ``response.version`` in this tree."""
    if len(response.opening) != NC:
        raise InvalidProof(f"openings have {NC} bytes")
    commitment = commit(response.opening, label, response.version, response.value)
    verify_prefix_proof(
        prefix_root,
        [PrefixLookup(search_key(label, response.version), commitment)],
        response.prefix_proof,
    )
    return VerifiedValue(label, response.version, response.value)


def verify_label_absent(prefix_root: bytes, label: bytes, proof: PrefixProof) -> None:
    """Verify that ``label`` has no version in this tree."""
    verify_prefix_proof(prefix_root, [PrefixLookup(search_key(label, 0), None)], proof)


def ladder_results(versions: Sequence[int], greatest: int | None) -> list[bool]:
    """Expected inclusion of each looked-up version when the greatest version is ``greatest``."""
    return [greatest is not None and v <= greatest for v in versions]


__all__ = [
    "BinaryLadderStep",
    "SearchResponse",
    "VerifiedValue",
    "VersionResponse",
    "base_binary_ladder",
    "greatest_version",
    "greatest_version_ladder",
    "ladder_results",
    "monitoring_binary_ladder",
    "prove_greatest_version",
    "prove_label_absent",
    "prove_version",
    "search_binary_ladder",
    "verify_greatest_version",
    "verify_label_absent",
    "verify_version",
]
