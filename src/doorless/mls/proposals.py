"""Proposals, pre-shared key IDs and commits (RFC 9420 §8.4, §12.1, §12.4).

`Proposal` is a tagged union: one dataclass per variant, each with a ``proposal_type`` class
attribute, and `pull_proposal`/`push_proposal` that dispatch on the tag through a table.
`ProposalOrRef` is either a `Proposal` or a `ProposalRef` (the bytes of a hash reference).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import ClassVar, NewType, Self, TypeVar

from doorless.codec import Reader, Writer, push_struct
from doorless.crypto import CipherSuite, CipherSuiteId
from doorless.errors import DecodeError
from doorless.mls.extensions import Extension, pull_extensions, push_extensions
from doorless.mls.group_context import ProtocolVersion, pull_cipher_suite
from doorless.mls.key_package import KeyPackage
from doorless.mls.leaf_node import LeafNode
from doorless.mls.nodes import UpdatePath

# --- pre-shared key IDs (§8.4) --------------------------------------------------------------


class PSKType(IntEnum):
    """``enum { reserved(0), external(1), resumption(2), (255) } PSKType;`` (RFC 9420 §8.4)."""

    external = 1
    resumption = 2


class ResumptionPSKUsage(IntEnum):
    """``enum { reserved(0), application(1), reinit(2), branch(3), (255) }`` (RFC 9420 §8.4)."""

    application = 1
    reinit = 2
    branch = 3


E = TypeVar("E", bound=IntEnum)


def _pull_enum(enum: type[E], value: int, what: str) -> E:
    try:
        return enum(value)
    except ValueError:
        raise DecodeError(f"unknown {what} {value}") from None


@dataclass(frozen=True, slots=True)
class ExternalPSK:
    """The ``case external`` arm of `PreSharedKeyID`: ``opaque psk_id<V>;``."""

    psktype: ClassVar[PSKType] = PSKType.external

    psk_id: bytes

    def push(self, w: Writer) -> None:
        w.push_opaque(self.psk_id)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        return cls(r.pull_opaque())


@dataclass(frozen=True, slots=True)
class ResumptionPSK:
    """The ``case resumption`` arm of `PreSharedKeyID`::

    ResumptionPSKUsage usage; opaque psk_group_id<V>; uint64 psk_epoch;
    """

    psktype: ClassVar[PSKType] = PSKType.resumption

    usage: ResumptionPSKUsage
    psk_group_id: bytes
    psk_epoch: int

    def push(self, w: Writer) -> None:
        w.push_uint8(self.usage)
        w.push_opaque(self.psk_group_id)
        w.push_uint64(self.psk_epoch)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        usage = _pull_enum(ResumptionPSKUsage, r.pull_uint8(), "resumption PSK usage")
        return cls(usage, r.pull_opaque(), r.pull_uint64())


_PSK_PULL: dict[PSKType, Callable[[Reader], ExternalPSK | ResumptionPSK]] = {
    PSKType.external: ExternalPSK.pull,
    PSKType.resumption: ResumptionPSK.pull,
}


@dataclass(frozen=True, slots=True)
class PreSharedKeyID:
    """RFC 9420 §8.4::

        struct {
          PSKType psktype;
          select (PreSharedKeyID.psktype) {
            case external:
              opaque psk_id<V>;
            case resumption:
              ResumptionPSKUsage usage;
              opaque psk_group_id<V>;
              uint64 psk_epoch;
          };
          opaque psk_nonce<V>;
        } PreSharedKeyID;

    The nonce is part of the ID: two proposals for the same PSK differ by it (§8.4).
    """

    psk: ExternalPSK | ResumptionPSK
    psk_nonce: bytes

    @property
    def psktype(self) -> PSKType:
        return self.psk.psktype

    def push(self, w: Writer) -> None:
        w.push_uint8(self.psk.psktype)
        self.psk.push(w)
        w.push_opaque(self.psk_nonce)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        psktype = _pull_enum(PSKType, r.pull_uint8(), "PSK type")
        psk = _PSK_PULL[psktype](r)
        return cls(psk, r.pull_opaque())


# --- proposals (§12.1) ----------------------------------------------------------------------


class ProposalType(IntEnum):
    """``uint16 ProposalType`` (RFC 9420 §12.1, IANA registry §17.4): the types we implement.

    Other values (GREASE, custom) may appear in `Capabilities`, where they stay ints; a
    `Proposal` of an unknown type cannot be parsed (its length is not self-describing).
    """

    add = 0x0001
    update = 0x0002
    remove = 0x0003
    psk = 0x0004
    reinit = 0x0005
    external_init = 0x0006
    group_context_extensions = 0x0007


@dataclass(frozen=True, slots=True)
class Add:
    """``struct { KeyPackage key_package; } Add;`` (RFC 9420 §12.1.1)."""

    proposal_type: ClassVar[ProposalType] = ProposalType.add

    key_package: KeyPackage

    def push(self, w: Writer) -> None:
        self.key_package.push(w)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        return cls(KeyPackage.pull(r))


@dataclass(frozen=True, slots=True)
class Update:
    """``struct { LeafNode leaf_node; } Update;`` (RFC 9420 §12.1.2)."""

    proposal_type: ClassVar[ProposalType] = ProposalType.update

    leaf_node: LeafNode

    def push(self, w: Writer) -> None:
        self.leaf_node.push(w)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        return cls(LeafNode.pull(r))


@dataclass(frozen=True, slots=True)
class Remove:
    """``struct { uint32 removed; } Remove;`` (RFC 9420 §12.1.3); ``removed`` is a leaf index."""

    proposal_type: ClassVar[ProposalType] = ProposalType.remove

    removed: int

    def push(self, w: Writer) -> None:
        w.push_uint32(self.removed)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        return cls(r.pull_uint32())


@dataclass(frozen=True, slots=True)
class PreSharedKey:
    """``struct { PreSharedKeyID psk; } PreSharedKey;`` (RFC 9420 §12.1.4)."""

    proposal_type: ClassVar[ProposalType] = ProposalType.psk

    psk: PreSharedKeyID

    def push(self, w: Writer) -> None:
        self.psk.push(w)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        return cls(PreSharedKeyID.pull(r))


@dataclass(frozen=True, slots=True)
class ReInit:
    """RFC 9420 §12.1.5::

        struct {
            opaque group_id<V>;
            ProtocolVersion version;
            CipherSuite cipher_suite;
            Extension extensions<V>;
        } ReInit;

    ``version`` and ``cipher_suite`` may name something newer than we implement (that is what
    a reinit is for), so unknown values are kept as ints here.
    """

    proposal_type: ClassVar[ProposalType] = ProposalType.reinit

    group_id: bytes
    version: ProtocolVersion | int
    cipher_suite: CipherSuiteId | int
    extensions: tuple[Extension, ...] = ()

    def push(self, w: Writer) -> None:
        w.push_opaque(self.group_id)
        w.push_uint16(self.version)
        w.push_uint16(self.cipher_suite)
        push_extensions(w, self.extensions)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        group_id = r.pull_opaque()
        raw_version = r.pull_uint16()
        version: ProtocolVersion | int = (
            ProtocolVersion(raw_version) if raw_version == ProtocolVersion.mls10 else raw_version
        )
        cipher_suite = pull_cipher_suite(r)
        return cls(group_id, version, cipher_suite, pull_extensions(r))


@dataclass(frozen=True, slots=True)
class ExternalInit:
    """``struct { opaque kem_output<V>; } ExternalInit;`` (RFC 9420 §12.1.6)."""

    proposal_type: ClassVar[ProposalType] = ProposalType.external_init

    kem_output: bytes

    def push(self, w: Writer) -> None:
        w.push_opaque(self.kem_output)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        return cls(r.pull_opaque())


@dataclass(frozen=True, slots=True)
class GroupContextExtensions:
    """``struct { Extension extensions<V>; } GroupContextExtensions;`` (RFC 9420 §12.1.7)."""

    proposal_type: ClassVar[ProposalType] = ProposalType.group_context_extensions

    extensions: tuple[Extension, ...] = ()

    def push(self, w: Writer) -> None:
        push_extensions(w, self.extensions)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        return cls(pull_extensions(r))


Proposal = Add | Update | Remove | PreSharedKey | ReInit | ExternalInit | GroupContextExtensions

_PROPOSAL_PULL: dict[int, Callable[[Reader], Proposal]] = {
    ProposalType.add: Add.pull,
    ProposalType.update: Update.pull,
    ProposalType.remove: Remove.pull,
    ProposalType.psk: PreSharedKey.pull,
    ProposalType.reinit: ReInit.pull,
    ProposalType.external_init: ExternalInit.pull,
    ProposalType.group_context_extensions: GroupContextExtensions.pull,
}


def pull_proposal(r: Reader) -> Proposal:
    """RFC 9420 §12.1::

    struct {
        ProposalType proposal_type;
        select (Proposal.proposal_type) {
            case add:                      Add;
            case update:                   Update;
            case remove:                   Remove;
            case psk:                      PreSharedKey;
            case reinit:                   ReInit;
            case external_init:            ExternalInit;
            case group_context_extensions: GroupContextExtensions;
        };
    } Proposal;
    """
    proposal_type = r.pull_uint16()
    pull = _PROPOSAL_PULL.get(proposal_type)
    if pull is None:
        raise DecodeError(f"unsupported proposal type {proposal_type:#06x}")
    return pull(r)


def push_proposal(w: Writer, proposal: Proposal) -> None:
    w.push_uint16(proposal.proposal_type)
    proposal.push(w)


# --- proposal references (§5.2, §12.4) ------------------------------------------------------

ProposalRef = NewType("ProposalRef", bytes)
"""``opaque HashReference<V>; HashReference ProposalRef;`` (RFC 9420 §5.2)."""

PROPOSAL_REF_LABEL = b"MLS 1.0 Proposal Reference"


def make_proposal_ref(cs: CipherSuite, authenticated_content: bytes) -> ProposalRef:
    """RFC 9420 §5.2: ``RefHash("MLS 1.0 Proposal Reference", AuthenticatedContent)``.

    ``authenticated_content`` is the encoded `AuthenticatedContent` that carried the proposal.
    """
    return ProposalRef(cs.ref_hash(PROPOSAL_REF_LABEL, authenticated_content))


class ProposalOrRefType(IntEnum):
    """``enum { reserved(0), proposal(1), reference(2), (255) } ProposalOrRefType;``."""

    proposal = 1
    reference = 2


ProposalOrRef = Proposal | ProposalRef
"""RFC 9420 §12.4::

    struct {
      ProposalOrRefType type;
      select (ProposalOrRef.type) {
        case proposal:  Proposal proposal;
        case reference: ProposalRef reference;
      };
    } ProposalOrRef;

A reference is the `ProposalRef` bytes (test with ``isinstance(x, bytes)``); anything else is an
inline `Proposal`.
"""


def pull_proposal_or_ref(r: Reader) -> ProposalOrRef:
    kind = r.pull_uint8()
    if kind == ProposalOrRefType.proposal:
        return pull_proposal(r)
    if kind == ProposalOrRefType.reference:
        return ProposalRef(r.pull_opaque())
    raise DecodeError(f"unknown ProposalOrRefType {kind}")


def push_proposal_or_ref(w: Writer, item: ProposalOrRef) -> None:
    if isinstance(item, bytes):
        w.push_uint8(ProposalOrRefType.reference)
        w.push_opaque(item)
    else:
        w.push_uint8(ProposalOrRefType.proposal)
        push_proposal(w, item)


# --- commit (§12.4) -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Commit:
    """RFC 9420 §12.4::

    struct {
        ProposalOrRef proposals<V>;
        optional<UpdatePath> path;
    } Commit;
    """

    proposals: tuple[ProposalOrRef, ...] = ()
    path: UpdatePath | None = None
    # The encoding, memoized on first use: a commit is encoded for its signature, the
    # transcript hash and its encryption, and its path can hold n ciphertexts.
    _encoding: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def push(self, w: Writer) -> None:
        encoding = self._encoding
        if encoding is None:
            inner = Writer()
            inner.push_vector(self.proposals, push_proposal_or_ref)
            inner.push_optional(self.path, push_struct)
            encoding = inner.getvalue()
            object.__setattr__(self, "_encoding", encoding)
        w.push_bytes(encoding)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        proposals = tuple(r.pull_vector(pull_proposal_or_ref))
        return cls(proposals, r.pull_optional(UpdatePath.pull))

    @classmethod
    def pull_received(cls, r: Reader) -> Self:
        """`pull`, keeping the bytes as received as the encoding: a received commit's
        signature and transcript hash cover them, so it need not be encoded again."""
        start = r.position
        commit = cls.pull(r)
        object.__setattr__(commit, "_encoding", r.read_since(start))
        return commit


__all__ = [
    "PROPOSAL_REF_LABEL",
    "Add",
    "Commit",
    "ExternalInit",
    "ExternalPSK",
    "GroupContextExtensions",
    "PSKType",
    "PreSharedKey",
    "PreSharedKeyID",
    "Proposal",
    "ProposalOrRef",
    "ProposalOrRefType",
    "ProposalRef",
    "ProposalType",
    "ReInit",
    "Remove",
    "ResumptionPSK",
    "ResumptionPSKUsage",
    "Update",
    "make_proposal_ref",
    "pull_proposal",
    "pull_proposal_or_ref",
    "push_proposal",
    "push_proposal_or_ref",
]
