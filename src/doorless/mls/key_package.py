"""Key packages (RFC 9420 §10).

::

    struct {
        ProtocolVersion version;
        CipherSuite cipher_suite;
        HPKEPublicKey init_key;
        LeafNode leaf_node;
        Extension extensions<V>;
        /* SignWithLabel(., "KeyPackageTBS", KeyPackageTBS) */
        opaque signature<V>;
    } KeyPackage;

    struct {
        ProtocolVersion version;
        CipherSuite cipher_suite;
        HPKEPublicKey init_key;
        LeafNode leaf_node;
        Extension extensions<V>;
    } KeyPackageTBS;

``cipher_suite`` stays a raw int when unknown: a KeyPackage for a suite we don't support still
decodes (it is rejected by validation, RFC 9420 §10.1, not by the parser). ``version`` must be
mls10 (`pull_protocol_version`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Self

from doorless.codec import Reader, Writer, encode
from doorless.crypto import CipherSuite, CipherSuiteId
from doorless.mls.extensions import Extension, pull_extensions, push_extensions
from doorless.mls.group_context import ProtocolVersion, pull_cipher_suite, pull_protocol_version
from doorless.mls.leaf_node import LeafNode
from doorless.secret import PrivateKeyBytes

KEY_PACKAGE_TBS_LABEL = b"KeyPackageTBS"
KEY_PACKAGE_REF_LABEL = b"MLS 1.0 KeyPackage Reference"


@dataclass(frozen=True, slots=True)
class KeyPackage:
    """RFC 9420 §10 ``KeyPackage``."""

    version: ProtocolVersion
    cipher_suite: CipherSuiteId | int
    init_key: bytes
    leaf_node: LeafNode
    extensions: tuple[Extension, ...]
    signature: bytes

    def _push_content(self, w: Writer) -> None:
        w.push_uint16(self.version)
        w.push_uint16(self.cipher_suite)
        w.push_opaque(self.init_key)
        self.leaf_node.push(w)
        push_extensions(w, self.extensions)

    def push(self, w: Writer) -> None:
        self._push_content(w)
        w.push_opaque(self.signature)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        return cls(
            pull_protocol_version(r),
            pull_cipher_suite(r),
            r.pull_opaque(),
            LeafNode.pull(r),
            pull_extensions(r),
            r.pull_opaque(),
        )

    def tbs(self) -> bytes:
        """The encoded ``KeyPackageTBS``."""
        w = Writer()
        self._push_content(w)
        return w.getvalue()

    def signed(
        self, suite: CipherSuite, signature_private_key: PrivateKeyBytes | bytes
    ) -> KeyPackage:
        """A copy with ``signature`` = SignWithLabel(., "KeyPackageTBS", KeyPackageTBS)."""
        sk = (
            signature_private_key.value
            if isinstance(signature_private_key, PrivateKeyBytes)
            else signature_private_key
        )
        signature = suite.sign_with_label(sk, KEY_PACKAGE_TBS_LABEL, self.tbs())
        return dataclasses.replace(self, signature=signature)

    def verify(self, suite: CipherSuite) -> None:
        """Raise `InvalidSignature` unless ``signature`` verifies under the leaf's key (§10.1)."""
        suite.verify_with_label(
            self.leaf_node.signature_key, KEY_PACKAGE_TBS_LABEL, self.tbs(), self.signature
        )


def make_key_package_ref(suite: CipherSuite, key_package: KeyPackage | bytes) -> bytes:
    """``KeyPackageRef = RefHash("MLS 1.0 KeyPackage Reference", KeyPackage)`` (RFC 9420 §5.2).

    Pass the received bytes when you have them, so the reference covers exactly what was sent.
    """
    value = key_package if isinstance(key_package, bytes) else encode(key_package)
    return suite.ref_hash(KEY_PACKAGE_REF_LABEL, value)
