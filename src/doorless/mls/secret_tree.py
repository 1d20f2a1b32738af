"""The secret tree and its per-sender hash ratchets (RFC 9420 §9), and sender-data keys (§6.3.2).

The tree is derived lazily: a node secret is only computed when a leaf under it is first used,
and, following the deletion schedule (§9.2), a node secret is deleted as soon as its two
children are derived, a leaf secret as soon as its two ratchets are. So for any leaf exactly one
node of its root-to-leaf path is held (or the leaf's ratchets exist already), and a group of
10,000 members costs nothing until someone speaks.

`SecretTree` is immutable: every operation that consumes a key returns the key *and a new tree*
(`RatchetStep`); the caller adopts the new tree only once the message it decrypts is fully
validated (stage, then merge: invariant I4). A consumed key is absent from the new tree, so a
replayed generation cannot be decrypted again (I6).

Out-of-order delivery: a receiver may jump ahead at most ``max_forward_distance`` generations
at once, and keeps the keys it skipped (at most ``out_of_order_tolerance`` per ratchet, the
newest ones) until they are used or evicted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Self

from doorless.codec import Reader, Writer
from doorless.crypto import MLS_LABEL_PREFIX, CipherSuite, cipher_suite
from doorless.errors import ConfigurationError, DecodeError, StateError, ValidationError
from doorless.mls.schedule import SenderDataSecret
from doorless.mls.tree_math import (
    LeafIndex,
    NodeIndex,
    leaf_to_node,
    left,
    level,
    node_width,
    right,
    root,
)
from doorless.secret import AeadKey, AeadNonce, EncryptionSecret, RatchetSecret, Secret

MAX_GENERATION = 0xFFFFFFFF  # SenderData.generation is a uint32 (§6.3.2)


class TreeNodeSecret(Secret):
    """``tree_node_[N]_secret`` (§9)."""

    __slots__ = ()


class RatchetType(IntEnum):
    """Which of a leaf's two hash ratchets (§9): handshake for proposals and commits."""

    handshake = 1
    application = 2


class GenerationConsumed(ValidationError):
    """The key of this generation was already used (a replay) or was evicted (too old)."""


class GenerationTooFar(ValidationError):
    """The generation is further ahead of the ratchet than the configured window allows."""


@dataclass(frozen=True, slots=True)
class SecretTreeConfig:
    """Local policy for out-of-order messages (not part of the persisted state)."""

    max_forward_distance: int = 1000
    out_of_order_tolerance: int = 128

    def __post_init__(self) -> None:
        if self.max_forward_distance < 0 or self.out_of_order_tolerance < 0:
            raise ConfigurationError("secret tree window sizes must be non-negative")


@dataclass(frozen=True, slots=True, repr=False, eq=False)
class RatchetKey:
    """``ratchet_key_[N]_[j]`` and ``ratchet_nonce_[N]_[j]`` of one generation ``j`` (§9.1)."""

    generation: int
    key: AeadKey
    nonce: AeadNonce

    def __repr__(self) -> str:
        return f"RatchetKey(generation={self.generation}, key=***, nonce=***)"


@dataclass(frozen=True, slots=True, repr=False, eq=False)
class HashRatchet:
    """One sender ratchet: the secret of its next generation and the retained skipped keys."""

    next_generation: int
    secret: RatchetSecret | None  # None once generation MAX_GENERATION was handed out
    skipped: tuple[RatchetKey, ...] = ()  # ascending generations, at most the tolerance

    def __repr__(self) -> str:
        return f"HashRatchet(next_generation={self.next_generation}, skipped={len(self.skipped)})"


def _key_at(suite: CipherSuite, secret: bytes, generation: int) -> RatchetKey:
    # §9.1: DeriveTreeSecret(secret, label, generation, length), the context being the
    # generation as uint32; expand_with_label directly (this runs for every message).
    context = generation.to_bytes(4, "big")
    labels = _KdfLabels.of(suite)
    return RatchetKey(
        generation,
        AeadKey(suite.expand_with_label(secret, b"key", context, labels.nk)),
        AeadNonce(suite.expand_with_label(secret, b"nonce", context, labels.nn)),
    )


@dataclass(frozen=True, slots=True)
class _KdfLabels:
    """The encoded ``KDFLabel`` heads (§8: ``uint16 length; opaque label<V>``, before the
    context) of the derivations done for every message, per suite: ExpandWithLabel is then
    one `kdf_expand` of ``head + opaque(context)``."""

    key: bytes
    nonce: bytes
    secret: bytes
    nk: int
    nn: int
    nh: int

    @staticmethod
    def head(label: bytes, length: int) -> bytes:
        w = Writer()
        w.push_uint16(length)
        w.push_opaque(MLS_LABEL_PREFIX + label)
        return w.getvalue()

    @classmethod
    def of(cls, suite: CipherSuite) -> _KdfLabels:
        labels = _KDF_LABELS.get(suite.id)  # an IntEnum hashes in C, a CipherSuite does not
        if labels is None:
            nk, nn, nh = suite.aead_key_length, suite.aead_nonce_length, suite.hash_length
            labels = _KDF_LABELS[suite.id] = cls(
                cls.head(b"key", nk), cls.head(b"nonce", nn), cls.head(b"secret", nh), nk, nn, nh
            )
        return labels


_KDF_LABELS: dict[int, _KdfLabels] = {}


def _advance(
    suite: CipherSuite, ratchet: HashRatchet, target: int, tolerance: int
) -> tuple[RatchetKey, HashRatchet]:
    """Ratchet forward to ``target`` (>= next_generation), keeping skipped keys (§9.1)."""
    assert ratchet.secret is not None
    secret = ratchet.secret.value
    if target == ratchet.next_generation:  # in order: nothing skipped, nothing evicted
        next_secret = (
            RatchetSecret(
                suite.expand_with_label(
                    secret, b"secret", target.to_bytes(4, "big"), suite.hash_length
                )
            )
            if target < MAX_GENERATION
            else None
        )
        return _key_at(suite, secret, target), HashRatchet(target + 1, next_secret, ratchet.skipped)
    skipped = list(ratchet.skipped)
    # Only the newest `tolerance` skipped keys survive, so derive no key that would be dropped.
    keep_from = target - tolerance
    generation = ratchet.next_generation
    while generation < target:
        if generation >= keep_from:
            skipped.append(_key_at(suite, secret, generation))
        secret = suite.derive_tree_secret(secret, b"secret", generation, suite.hash_length)
        generation += 1
    found = _key_at(suite, secret, target)
    if len(skipped) > tolerance:
        skipped = skipped[len(skipped) - tolerance :] if tolerance else []
    next_secret = (
        RatchetSecret(suite.derive_tree_secret(secret, b"secret", target, suite.hash_length))
        if target < MAX_GENERATION
        else None
    )
    return found, HashRatchet(target + 1, next_secret, tuple(skipped))


@dataclass(frozen=True, slots=True, repr=False, eq=False)
class RatchetStep:
    """A key handed out by the tree, and the tree without it (adopt it once the message is
    accepted; drop it to roll back)."""

    key: RatchetKey
    tree: SecretTree

    def __repr__(self) -> str:
        return f"RatchetStep(generation={self.key.generation})"


@dataclass(frozen=True, slots=True, repr=False, eq=False)
class SecretTree:
    """The secret tree of one epoch (§9). Immutable: operations return a new tree.

    ``nodes`` holds the node secrets not yet consumed; ``ratchets`` the ratchets of leaves that
    were used, keyed by ``(leaf, RatchetType)``.
    """

    suite: CipherSuite
    n_leaves: int
    nodes: dict[NodeIndex, TreeNodeSecret]
    ratchets: dict[tuple[LeafIndex, RatchetType], HashRatchet]
    config: SecretTreeConfig = field(default_factory=SecretTreeConfig)

    def __repr__(self) -> str:
        return (
            f"SecretTree(n_leaves={self.n_leaves}, nodes={len(self.nodes)}, "
            f"ratchets={len(self.ratchets)})"
        )

    @classmethod
    def create(
        cls,
        suite: CipherSuite,
        encryption_secret: EncryptionSecret,
        n_leaves: int,
        config: SecretTreeConfig | None = None,
    ) -> Self:
        """A tree over ``n_leaves`` leaves with ``encryption_secret`` at its root."""
        if n_leaves < 1 or n_leaves > 1 << 31:
            raise ConfigurationError("a secret tree needs between 1 and 2^31 leaves")
        return cls(
            suite,
            n_leaves,
            {root(n_leaves): TreeNodeSecret(encryption_secret.value)},
            {},
            config or SecretTreeConfig(),
        )

    def with_config(self, config: SecretTreeConfig) -> SecretTree:
        return SecretTree(self.suite, self.n_leaves, self.nodes, self.ratchets, config)

    # --- lazy derivation -----------------------------------------------------------------

    def _leaf_ratchets(
        self, leaf: LeafIndex
    ) -> tuple[dict[NodeIndex, TreeNodeSecret], HashRatchet, HashRatchet]:
        """Derive a leaf's two ratchets from the closest held ancestor; returns the new node map.

        Every node secret on the way is consumed (deleted) once both its children exist (§9.2).
        """
        suite = self.suite
        nh = suite.hash_length
        target = leaf_to_node(leaf)
        nodes = dict(self.nodes)
        x = root(self.n_leaves)
        # Walk down towards the leaf until a held node is found, then derive the rest.
        while x not in nodes:
            if level(x) == 0:
                # Only reachable if the leaf's ratchets were derived before: callers check.
                raise StateError("secret tree lost the path to a leaf")
            x = left(x) if target < x else right(x)
        while x != target:
            secret = nodes.pop(x).value
            lx, rx = left(x), right(x)
            nodes[lx] = TreeNodeSecret(suite.expand_with_label(secret, b"tree", b"left", nh))
            nodes[rx] = TreeNodeSecret(suite.expand_with_label(secret, b"tree", b"right", nh))
            x = lx if target < x else rx
        leaf_secret = nodes.pop(target).value
        handshake = HashRatchet(
            0, RatchetSecret(suite.expand_with_label(leaf_secret, b"handshake", b"", nh))
        )
        application = HashRatchet(
            0, RatchetSecret(suite.expand_with_label(leaf_secret, b"application", b"", nh))
        )
        return nodes, handshake, application

    def _with_ratchet(
        self, leaf: LeafIndex, kind: RatchetType
    ) -> tuple[dict[NodeIndex, TreeNodeSecret], dict[tuple[LeafIndex, RatchetType], HashRatchet]]:
        if not 0 <= leaf < self.n_leaves:
            raise ValidationError(
                f"leaf {leaf} is outside a tree of {self.n_leaves} leaves", rule="RFC9420 6.3.2"
            )
        if (leaf, kind) in self.ratchets:
            return self.nodes, dict(self.ratchets)
        nodes, handshake, application = self._leaf_ratchets(leaf)
        ratchets = dict(self.ratchets)
        ratchets[(leaf, RatchetType.handshake)] = handshake
        ratchets[(leaf, RatchetType.application)] = application
        return nodes, ratchets

    # --- the two operations ----------------------------------------------------------------

    def _in_order(self, leaf: LeafIndex, kind: RatchetType, ratchet: HashRatchet) -> RatchetStep:
        """The ratchet's next generation (it exists and is not at its end): the step of every
        message sent, and of every message received in order, without the general path's
        window bookkeeping (§9.1)."""
        assert ratchet.secret is not None
        suite = self.suite
        labels = _KdfLabels.of(suite)
        generation = ratchet.next_generation
        secret = ratchet.secret.value
        # DeriveTreeSecret (§9.1): the context is the generation as uint32, opaque<V>.
        context = b"\x04" + generation.to_bytes(4, "big")
        expand = suite.kdf_expand
        key = RatchetKey(
            generation,
            AeadKey(expand(secret, labels.key + context, labels.nk)),
            AeadNonce(expand(secret, labels.nonce + context, labels.nn)),
        )
        ratchets = self.ratchets.copy()
        ratchets[(leaf, kind)] = HashRatchet(
            generation + 1,
            RatchetSecret(expand(secret, labels.secret + context, labels.nh)),
            ratchet.skipped,
        )
        return RatchetStep(key, SecretTree(suite, self.n_leaves, self.nodes, ratchets, self.config))

    def next_key(self, leaf: LeafIndex, kind: RatchetType) -> RatchetStep:
        """The key of the next unused generation of ``leaf``'s ratchet, to encrypt with."""
        ratchet = self.ratchets.get((leaf, kind))
        if ratchet is not None and ratchet.next_generation < MAX_GENERATION:
            return self._in_order(leaf, kind, ratchet)
        nodes, ratchets = self._with_ratchet(leaf, kind)
        ratchet = ratchets[(leaf, kind)]
        if ratchet.secret is None:
            raise StateError("sender ratchet exhausted; the epoch must change (RFC9420 9.1)")
        key, ratchets[(leaf, kind)] = _advance(
            self.suite, ratchet, ratchet.next_generation, self.config.out_of_order_tolerance
        )
        return RatchetStep(key, SecretTree(self.suite, self.n_leaves, nodes, ratchets, self.config))

    def key_for(self, leaf: LeafIndex, kind: RatchetType, generation: int) -> RatchetStep:
        """The key of ``generation`` of ``leaf``'s ratchet, to decrypt with.

        Raises `GenerationConsumed` for a generation already used or evicted, `GenerationTooFar`
        beyond the forward window, `ValidationError` for a leaf outside the tree.
        """
        ratchet = self.ratchets.get((leaf, kind))
        if ratchet is not None and generation == ratchet.next_generation < MAX_GENERATION:
            return self._in_order(leaf, kind, ratchet)
        if not 0 <= generation <= MAX_GENERATION:
            raise ValidationError("generation out of range", rule="RFC9420 6.3.2")
        nodes, ratchets = self._with_ratchet(leaf, kind)
        ratchet = ratchets[(leaf, kind)]
        if generation < ratchet.next_generation:
            for i, kept in enumerate(ratchet.skipped):
                if kept.generation == generation:
                    ratchets[(leaf, kind)] = HashRatchet(
                        ratchet.next_generation,
                        ratchet.secret,
                        ratchet.skipped[:i] + ratchet.skipped[i + 1 :],
                    )
                    return RatchetStep(
                        kept, SecretTree(self.suite, self.n_leaves, nodes, ratchets, self.config)
                    )
            raise GenerationConsumed(
                f"generation {generation} of leaf {leaf} was already used or has expired",
                rule="RFC9420 9.2",
            )
        if generation - ratchet.next_generation > self.config.max_forward_distance:
            raise GenerationTooFar(
                f"generation {generation} is more than {self.config.max_forward_distance} "
                f"ahead of the ratchet",
                rule="RFC9420 9.1",
            )
        key, ratchets[(leaf, kind)] = _advance(
            self.suite, ratchet, generation, self.config.out_of_order_tolerance
        )
        return RatchetStep(key, SecretTree(self.suite, self.n_leaves, nodes, ratchets, self.config))

    # --- persistence ---------------------------------------------------------------------

    def push(self, w: Writer) -> None:
        """Persisted form (not a wire struct)::

        uint16 cipher_suite; uint32 n_leaves;
        struct { uint32 node; opaque secret<V>; } nodes<V>;
        struct { uint32 leaf; uint8 type; uint64 next_generation; optional<opaque> secret;
                 struct { uint32 generation; opaque key<V>; opaque nonce<V>; } skipped<V>;
               } ratchets<V>;
        """
        w.push_uint16(self.suite.id)
        w.push_uint32(self.n_leaves)

        def push_node(w: Writer, item: tuple[NodeIndex, TreeNodeSecret]) -> None:
            w.push_uint32(item[0])
            w.push_opaque(item[1].value)

        def push_key(w: Writer, k: RatchetKey) -> None:
            w.push_uint32(k.generation)
            w.push_opaque(k.key.value)
            w.push_opaque(k.nonce.value)

        def push_ratchet(
            w: Writer, item: tuple[tuple[LeafIndex, RatchetType], HashRatchet]
        ) -> None:
            (leaf, kind), r = item
            w.push_uint32(leaf)
            w.push_uint8(kind)
            w.push_uint64(r.next_generation)  # 2^32 once the last generation is used
            w.push_optional(r.secret.value if r.secret else None, Writer.push_opaque)
            w.push_vector(r.skipped, push_key)

        w.push_vector(sorted(self.nodes.items()), push_node)
        w.push_vector(sorted(self.ratchets.items()), push_ratchet)

    @classmethod
    def pull(cls, r: Reader, config: SecretTreeConfig | None = None) -> Self:
        suite = cipher_suite(r.pull_uint16())
        n_leaves = r.pull_uint32()
        if n_leaves < 1 or n_leaves > 1 << 31:
            raise DecodeError("secret tree leaf count out of range")
        width = node_width(n_leaves)
        nh, nk, nn = suite.hash_length, suite.aead_key_length, suite.aead_nonce_length

        def sized(r: Reader, n: int, what: str) -> bytes:
            v = r.pull_opaque()
            if len(v) != n:
                raise DecodeError(f"{what} must be {n} bytes")
            return v

        def pull_node(r: Reader) -> tuple[NodeIndex, TreeNodeSecret]:
            x = r.pull_uint32()
            # Nodes of the unbounded tree under the root may lie past the width (n not 2^k).
            if x >= 2 * width + 1:
                raise DecodeError("secret tree node index out of range")
            return NodeIndex(x), TreeNodeSecret(sized(r, nh, "node secret"))

        def pull_key(r: Reader) -> RatchetKey:
            g = r.pull_uint32()
            return RatchetKey(g, AeadKey(sized(r, nk, "key")), AeadNonce(sized(r, nn, "nonce")))

        def pull_ratchet(r: Reader) -> tuple[tuple[LeafIndex, RatchetType], HashRatchet]:
            leaf = r.pull_uint32()
            if leaf >= n_leaves:
                raise DecodeError("ratchet leaf out of range")
            try:
                kind = RatchetType(r.pull_uint8())
            except ValueError:
                raise DecodeError("unknown ratchet type") from None
            next_generation = r.pull_uint64()
            secret = r.pull_optional(lambda r: sized(r, nh, "ratchet secret"))
            # The secret is gone exactly when the last generation was handed out.
            if next_generation > MAX_GENERATION + 1 or (secret is None) != (
                next_generation == MAX_GENERATION + 1
            ):
                raise DecodeError("ratchet generation and secret do not fit")
            skipped = tuple(r.pull_vector(pull_key))
            gens = [k.generation for k in skipped]
            if gens != sorted(set(gens)) or any(g >= next_generation for g in gens):
                raise DecodeError("skipped generations must ascend below next_generation")
            return (LeafIndex(leaf), kind), HashRatchet(
                next_generation, RatchetSecret(secret) if secret is not None else None, skipped
            )

        nodes = dict(r.pull_vector(pull_node))
        ratchets = dict(r.pull_vector(pull_ratchet))
        # A leaf's two ratchets are derived together (and its path deleted): both or neither.
        for leaf, _ in ratchets:
            if not all((leaf, kind) in ratchets for kind in RatchetType):
                raise DecodeError(f"leaf {leaf} has only one of its two ratchets")
        return cls(suite, n_leaves, nodes, ratchets, config or SecretTreeConfig())

    def to_bytes(self) -> bytes:
        w = Writer()
        self.push(w)
        return w.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, config: SecretTreeConfig | None = None) -> Self:
        r = Reader(data)
        tree = cls.pull(r, config)
        r.expect_end()
        return tree


def ratchet_type_for(content_type: int) -> RatchetType:
    """Application messages use the application ratchet, proposals and commits the handshake
    ratchet (§6.3.1)."""
    return RatchetType.application if content_type == 1 else RatchetType.handshake


def sender_data_key_nonce(
    suite: CipherSuite, sender_data_secret: SenderDataSecret, ciphertext: bytes
) -> tuple[AeadKey, AeadNonce]:
    """``sender_data_key`` and ``sender_data_nonce`` (§6.3.2) from the first ``KDF.Nh`` bytes
    of the content ciphertext (all of it if shorter)."""
    labels = _KdfLabels.of(suite)
    w = Writer()
    w.push_opaque(ciphertext[: labels.nh])
    context = w.getvalue()
    secret = sender_data_secret.value
    key = suite.kdf_expand(secret, labels.key + context, labels.nk)
    nonce = suite.kdf_expand(secret, labels.nonce + context, labels.nn)
    return AeadKey(key), AeadNonce(nonce)


__all__ = [
    "MAX_GENERATION",
    "GenerationConsumed",
    "GenerationTooFar",
    "HashRatchet",
    "RatchetKey",
    "RatchetStep",
    "RatchetType",
    "SecretTree",
    "SecretTreeConfig",
    "TreeNodeSecret",
    "ratchet_type_for",
    "sender_data_key_nonce",
]
