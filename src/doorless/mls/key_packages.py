"""KeyPackage generation (RFC 9420 §10) and the private keys that go with it.

Owns: `KeyPackageBundle` (a KeyPackage and its init, encryption and signature private keys),
`default_capabilities` (§7.2) and `generate_key_package` (§10, leaf node §7.2). Randomness comes
in as ``rng``; time as ``now``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from doorless.crypto import CipherSuite, cipher_suite
from doorless.mls.credential import Credential
from doorless.mls.extensions import Extension
from doorless.mls.group_context import ProtocolVersion
from doorless.mls.key_package import KeyPackage, make_key_package_ref
from doorless.mls.leaf_node import Capabilities, LeafNode, LeafNodeSource, Lifetime
from doorless.mls.types import Rng
from doorless.secret import PrivateKeyBytes

DEFAULT_LIFETIME_SECONDS = 90 * 24 * 3600


@dataclass(frozen=True, slots=True, repr=False)
class KeyPackageBundle:
    """A KeyPackage and its private keys (the client keeps these until the package is used)."""

    key_package: KeyPackage
    init_private_key: PrivateKeyBytes
    encryption_private_key: PrivateKeyBytes
    signature_private_key: PrivateKeyBytes

    def __repr__(self) -> str:
        return "KeyPackageBundle(***)"

    @property
    def ref(self) -> bytes:
        """The KeyPackageRef (§5.2) a Welcome names this package by."""
        return make_key_package_ref(cipher_suite(self.key_package.cipher_suite), self.key_package)


def default_capabilities(suite: CipherSuite, credential: Credential) -> Capabilities:
    return Capabilities(
        versions=(ProtocolVersion.mls10,),
        cipher_suites=(int(suite.id),),
        extensions=(),
        proposals=(),
        credentials=(int(credential.credential_type),),
    )


def generate_key_package(
    suite: CipherSuite,
    credential: Credential,
    signature_private_key: PrivateKeyBytes,
    *,
    now: int,
    lifetime_seconds: int = DEFAULT_LIFETIME_SECONDS,
    capabilities: Capabilities | None = None,
    leaf_extensions: Sequence[Extension] = (),
    extensions: Sequence[Extension] = (),
    rng: Rng = os.urandom,
) -> KeyPackageBundle:
    """A signed KeyPackage with fresh init and encryption keys (§10)."""
    init = suite.derive_key_pair(rng(suite.hash_length))
    leaf, encryption_private_key = key_package_leaf_node(
        suite,
        credential,
        signature_private_key,
        now=now,
        rng=rng,
        lifetime_seconds=lifetime_seconds,
        capabilities=capabilities,
        leaf_extensions=leaf_extensions,
    )
    kp = KeyPackage(
        ProtocolVersion.mls10, suite.id, init.public_key, leaf, tuple(extensions), b""
    ).signed(suite, signature_private_key)
    return KeyPackageBundle(
        kp,
        PrivateKeyBytes(init.private_key),
        encryption_private_key,
        signature_private_key,
    )


def key_package_leaf_node(
    suite: CipherSuite,
    credential: Credential,
    signature_private_key: PrivateKeyBytes,
    *,
    now: int,
    rng: Rng,
    lifetime_seconds: int = DEFAULT_LIFETIME_SECONDS,
    capabilities: Capabilities | None = None,
    leaf_extensions: Sequence[Extension] = (),
) -> tuple[LeafNode, PrivateKeyBytes]:
    """A signed leaf node of source ``key_package`` (§7.2) and its encryption private key,
    derived from ``rng``: the leaf of a KeyPackage, and a group creator's leaf (§11)."""
    enc = suite.derive_key_pair(rng(suite.hash_length))
    leaf = LeafNode(
        encryption_key=enc.public_key,
        signature_key=suite.signature_public_key(signature_private_key.value),
        credential=credential,
        capabilities=capabilities or default_capabilities(suite, credential),
        leaf_node_source=LeafNodeSource.key_package,
        lifetime=Lifetime(max(0, now - 3600), now + lifetime_seconds),
        parent_hash=None,
        extensions=tuple(leaf_extensions),
        signature=b"",
    ).signed(suite, signature_private_key)
    return leaf, PrivateKeyBytes(enc.private_key)
