"""Leaf nodes (RFC 9420 §7.2) and their signatures.

::

    enum {
        reserved(0),
        key_package(1),
        update(2),
        commit(3),
        (255)
    } LeafNodeSource;

    struct {
        ProtocolVersion versions<V>;
        CipherSuite cipher_suites<V>;
        ExtensionType extensions<V>;
        ProposalType proposals<V>;
        CredentialType credentials<V>;
    } Capabilities;

    struct {
        uint64 not_before;
        uint64 not_after;
    } Lifetime;

    struct {
        HPKEPublicKey encryption_key;
        SignaturePublicKey signature_key;
        Credential credential;
        Capabilities capabilities;

        LeafNodeSource leaf_node_source;
        select (LeafNode.leaf_node_source) {
            case key_package:
                Lifetime lifetime;

            case update:
                struct{};

            case commit:
                opaque parent_hash<V>;
        };

        Extension extensions<V>;
        /* SignWithLabel(., "LeafNodeTBS", LeafNodeTBS) */
        opaque signature<V>;
    } LeafNode;

``LeafNodeTBS`` is the same without ``signature``, followed, for the ``update`` and ``commit``
sources only, by ``opaque group_id<V>; uint32 leaf_index;``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Self

from doorless.codec import Reader, Writer, push_uint16_item, varint_header
from doorless.crypto import CipherSuite
from doorless.errors import ConfigurationError, DecodeError, ValidationError
from doorless.mls.credential import Credential, pull_credential
from doorless.mls.extensions import (
    DEFAULT_EXTENSION_TYPES,
    Extension,
    pull_extensions,
    push_extensions,
)
from doorless.secret import PrivateKeyBytes

LEAF_NODE_TBS_LABEL = b"LeafNodeTBS"


class LeafNodeSource(IntEnum):
    """RFC 9420 §7.2 (no unknown values: the ``select`` depends on it)."""

    key_package = 1
    update = 2
    commit = 3


@dataclass(frozen=True, slots=True)
class Capabilities:
    """RFC 9420 §7.2 ``Capabilities``. Values stay raw ints: unknown ones MUST be ignored."""

    versions: tuple[int, ...]
    cipher_suites: tuple[int, ...]
    extensions: tuple[int, ...]
    proposals: tuple[int, ...]
    credentials: tuple[int, ...]

    def push(self, w: Writer) -> None:
        w.push_vector(self.versions, push_uint16_item)
        w.push_vector(self.cipher_suites, push_uint16_item)
        w.push_vector(self.extensions, push_uint16_item)
        w.push_vector(self.proposals, push_uint16_item)
        w.push_vector(self.credentials, push_uint16_item)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        return cls(
            r.pull_uint16_vector(),
            r.pull_uint16_vector(),
            r.pull_uint16_vector(),
            r.pull_uint16_vector(),
            r.pull_uint16_vector(),
        )


@dataclass(frozen=True, slots=True)
class Lifetime:
    """``struct { uint64 not_before; uint64 not_after; } Lifetime;`` (seconds since epoch)."""

    not_before: int
    not_after: int

    def push(self, w: Writer) -> None:
        w.push_uint64(self.not_before)
        w.push_uint64(self.not_after)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        return cls(r.pull_uint64(), r.pull_uint64())

    def contains(self, now: int) -> bool:
        return self.not_before <= now <= self.not_after


def _key_bytes(key: PrivateKeyBytes | bytes) -> bytes:
    return key.value if isinstance(key, PrivateKeyBytes) else key


@dataclass(frozen=True, slots=True)
class LeafNode:
    """RFC 9420 §7.2 ``LeafNode``.

    ``lifetime`` is present exactly when ``leaf_node_source`` is ``key_package`` and
    ``parent_hash`` exactly when it is ``commit``; the constructor enforces it.
    """

    encryption_key: bytes
    signature_key: bytes
    credential: Credential
    capabilities: Capabilities
    leaf_node_source: LeafNodeSource
    lifetime: Lifetime | None
    parent_hash: bytes | None
    extensions: tuple[Extension, ...]
    signature: bytes
    # The encoding, memoized on first use: a leaf is encoded for the tree hash, its signature,
    # the ratchet_tree extension and KeyPackages, and a tree holds n of them.
    _encoding: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        source = self.leaf_node_source
        if (self.lifetime is not None) != (source == LeafNodeSource.key_package):
            raise ConfigurationError("lifetime is present iff leaf_node_source is key_package")
        if (self.parent_hash is not None) != (source == LeafNodeSource.commit):
            raise ConfigurationError("parent_hash is present iff leaf_node_source is commit")

    def _push_content(self, w: Writer) -> None:
        w.push_opaque(self.encryption_key)
        w.push_opaque(self.signature_key)
        self.credential.push(w)
        self.capabilities.push(w)
        w.push_uint8(self.leaf_node_source)
        if self.lifetime is not None:
            self.lifetime.push(w)
        elif self.parent_hash is not None:
            w.push_opaque(self.parent_hash)
        push_extensions(w, self.extensions)

    def push(self, w: Writer) -> None:
        w.push_bytes(self._encoded())

    def _encoded(self) -> bytes:
        encoding = self._encoding
        if encoding is None:
            inner = Writer()
            self._push_content(inner)
            inner.push_opaque(self.signature)
            encoding = inner.getvalue()
            object.__setattr__(self, "_encoding", encoding)
        return encoding

    @classmethod
    def pull_received(cls, r: Reader) -> Self:
        """`pull`, keeping the bytes as received as the encoding (for the leaves of a received
        tree: hashed and verified as received, n of them, without encoding them again)."""
        start = r.position
        leaf = cls.pull(r)
        object.__setattr__(leaf, "_encoding", r.read_since(start))
        return leaf

    @classmethod
    def pull(cls, r: Reader) -> Self:
        encryption_key = r.pull_opaque()
        signature_key = r.pull_opaque()
        credential = pull_credential(r)
        capabilities = Capabilities.pull(r)
        raw_source = r.pull_uint8()
        try:
            source = LeafNodeSource(raw_source)
        except ValueError:
            raise DecodeError(f"invalid leaf_node_source {raw_source}") from None
        lifetime = Lifetime.pull(r) if source == LeafNodeSource.key_package else None
        parent_hash = r.pull_opaque() if source == LeafNodeSource.commit else None
        extensions = pull_extensions(r)
        signature = r.pull_opaque()
        return cls(
            encryption_key,
            signature_key,
            credential,
            capabilities,
            source,
            lifetime,
            parent_hash,
            extensions,
            signature,
        )

    # --- signature (RFC 9420 §7.2) ---------------------------------------------------------

    def tbs(self, group_id: bytes | None = None, leaf_index: int | None = None) -> bytes:
        """The encoded ``LeafNodeTBS``; ``group_id`` and ``leaf_index`` are required for the
        ``update`` and ``commit`` sources and ignored for ``key_package``."""
        # The content is the encoding without its final field, ``opaque signature<V>``.
        encoding = self._encoded()
        content = encoding[
            : len(encoding) - len(varint_header(len(self.signature))) - len(self.signature)
        ]
        w = Writer()
        w.push_bytes(content)
        if self.leaf_node_source != LeafNodeSource.key_package:
            if group_id is None or leaf_index is None:
                raise ConfigurationError(
                    "LeafNodeTBS of an update/commit leaf needs group_id and leaf_index"
                )
            w.push_opaque(group_id)
            w.push_uint32(leaf_index)
        return w.getvalue()

    def signed(
        self,
        suite: CipherSuite,
        signature_private_key: PrivateKeyBytes | bytes,
        group_id: bytes | None = None,
        leaf_index: int | None = None,
    ) -> LeafNode:
        """A copy of this leaf node with ``signature`` = SignWithLabel(., "LeafNodeTBS", TBS)."""
        signature = suite.sign_with_label(
            _key_bytes(signature_private_key),
            LEAF_NODE_TBS_LABEL,
            self.tbs(group_id, leaf_index),
        )
        return dataclasses.replace(self, signature=signature)

    def verify(
        self, suite: CipherSuite, group_id: bytes | None = None, leaf_index: int | None = None
    ) -> None:
        """Raise `InvalidSignature` unless ``signature`` verifies under ``signature_key``."""
        suite.verify_with_label(
            self.signature_key, LEAF_NODE_TBS_LABEL, self.tbs(group_id, leaf_index), self.signature
        )

    def with_parent_hash(self, parent_hash: bytes) -> LeafNode:
        """An unsigned copy with source ``commit`` and the given ``parent_hash`` (§7.5)."""
        return dataclasses.replace(
            self,
            leaf_node_source=LeafNodeSource.commit,
            lifetime=None,
            parent_hash=parent_hash,
            signature=b"",
        )


def check_leaf_node_capabilities(leaf: LeafNode) -> None:
    """The leaf-local capability rules of RFC 9420 §7.2/§7.3.

    * the credential type is listed in ``capabilities.credentials``;
    * every non-default extension type in ``extensions`` is listed in
      ``capabilities.extensions``.
    """
    if int(leaf.credential.credential_type) not in leaf.capabilities.credentials:
        raise ValidationError("leaf credential type is not in its capabilities", rule="RFC9420 7.2")
    for e in leaf.extensions:
        if e.extension_type not in DEFAULT_EXTENSION_TYPES and (
            e.extension_type not in leaf.capabilities.extensions
        ):
            raise ValidationError(
                f"leaf extension {int(e.extension_type)} is not in its capabilities",
                rule="RFC9420 7.3",
            )
