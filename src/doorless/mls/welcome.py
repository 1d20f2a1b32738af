"""Joining a group: GroupInfo, GroupSecrets and Welcome (RFC 9420 §12.4.3).

`PathSecret` here is the wire struct; the secret type of the same name in `doorless.secret` is
what the key schedule works with. Secret fields are left out of ``repr``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Self

from doorless.codec import Reader, Writer, push_struct
from doorless.crypto import CipherSuite, CipherSuiteId
from doorless.mls.extensions import Extension, pull_extensions, push_extensions
from doorless.mls.group_context import GroupContext, pull_cipher_suite
from doorless.mls.nodes import HPKECiphertext
from doorless.mls.proposals import PreSharedKeyID

GROUP_INFO_TBS_LABEL = b"GroupInfoTBS"


def group_info_tbs(
    group_context: GroupContext,
    extensions: tuple[Extension, ...],
    confirmation_tag: bytes,
    signer: int,
) -> bytes:
    """RFC 9420 §12.4.3, the content that `GroupInfo.signature` signs::

    struct {
        GroupContext group_context;
        Extension extensions<V>;
        MAC confirmation_tag;
        uint32 signer;
    } GroupInfoTBS;
    """
    w = Writer()
    group_context.push(w)
    push_extensions(w, extensions)
    w.push_opaque(confirmation_tag)
    w.push_uint32(signer)
    return w.getvalue()


@dataclass(frozen=True, slots=True)
class GroupInfo:
    """RFC 9420 §12.4.3::

    struct {
        GroupContext group_context;
        Extension extensions<V>;
        MAC confirmation_tag;
        uint32 signer;
        /* SignWithLabel(., "GroupInfoTBS", GroupInfoTBS) */
        opaque signature<V>;
    } GroupInfo;

    ``signer`` is the leaf index of the member that signed.
    """

    group_context: GroupContext
    extensions: tuple[Extension, ...]
    confirmation_tag: bytes
    signer: int
    signature: bytes

    @classmethod
    def sign(
        cls,
        cs: CipherSuite,
        signature_private_key: bytes,
        group_context: GroupContext,
        extensions: tuple[Extension, ...],
        confirmation_tag: bytes,
        signer: int,
    ) -> Self:
        tbs = group_info_tbs(group_context, extensions, confirmation_tag, signer)
        signature = cs.sign_with_label(signature_private_key, GROUP_INFO_TBS_LABEL, tbs)
        return cls(group_context, extensions, confirmation_tag, signer, signature)

    def tbs(self) -> bytes:
        return group_info_tbs(
            self.group_context, self.extensions, self.confirmation_tag, self.signer
        )

    def verify(self, cs: CipherSuite, signer_public_key: bytes) -> None:
        """Raise `InvalidSignature` unless the signer's key signed this GroupInfo (§12.4.3.1)."""
        cs.verify_with_label(signer_public_key, GROUP_INFO_TBS_LABEL, self.tbs(), self.signature)

    def push(self, w: Writer) -> None:
        self.group_context.push(w)
        push_extensions(w, self.extensions)
        w.push_opaque(self.confirmation_tag)
        w.push_uint32(self.signer)
        w.push_opaque(self.signature)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        return cls(
            group_context=GroupContext.pull(r),
            extensions=pull_extensions(r),
            confirmation_tag=r.pull_opaque(),
            signer=r.pull_uint32(),
            signature=r.pull_opaque(),
        )


@dataclass(frozen=True, slots=True)
class PathSecret:
    """``struct { opaque path_secret<V>; } PathSecret;`` (RFC 9420 §12.4.3)."""

    path_secret: bytes = field(repr=False)

    def push(self, w: Writer) -> None:
        w.push_opaque(self.path_secret)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        return cls(r.pull_opaque())


@dataclass(frozen=True, slots=True)
class GroupSecrets:
    """RFC 9420 §12.4.3::

    struct {
      opaque joiner_secret<V>;
      optional<PathSecret> path_secret;
      PreSharedKeyID psks<V>;
    } GroupSecrets;
    """

    joiner_secret: bytes = field(repr=False)
    path_secret: PathSecret | None = None
    psks: tuple[PreSharedKeyID, ...] = ()

    def push(self, w: Writer) -> None:
        w.push_opaque(self.joiner_secret)
        w.push_optional(self.path_secret, push_struct)
        w.push_vector(self.psks, push_struct)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        joiner_secret = r.pull_opaque()
        path_secret = r.pull_optional(PathSecret.pull)
        return cls(joiner_secret, path_secret, tuple(r.pull_vector(PreSharedKeyID.pull)))


@dataclass(frozen=True, slots=True)
class EncryptedGroupSecrets:
    """RFC 9420 §12.4.3::

    struct {
      KeyPackageRef new_member;
      HPKECiphertext encrypted_group_secrets;
    } EncryptedGroupSecrets;
    """

    new_member: bytes
    encrypted_group_secrets: HPKECiphertext

    def push(self, w: Writer) -> None:
        w.push_opaque(self.new_member)
        self.encrypted_group_secrets.push(w)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        return cls(r.pull_opaque(), HPKECiphertext.pull(r))


@dataclass(frozen=True, slots=True)
class Welcome:
    """RFC 9420 §12.4.3::

    struct {
      CipherSuite cipher_suite;
      EncryptedGroupSecrets secrets<V>;
      opaque encrypted_group_info<V>;
    } Welcome;
    """

    cipher_suite: CipherSuiteId | int
    secrets: tuple[EncryptedGroupSecrets, ...]
    encrypted_group_info: bytes

    def secrets_for(self, key_package_ref: bytes) -> EncryptedGroupSecrets | None:
        """The entry addressed to ``key_package_ref`` (§12.4.3.1), or None."""
        for entry in self.secrets:
            if entry.new_member == key_package_ref:
                return entry
        return None

    def push(self, w: Writer) -> None:
        w.push_uint16(self.cipher_suite)
        w.push_vector(self.secrets, push_struct)
        w.push_opaque(self.encrypted_group_info)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        cipher_suite = pull_cipher_suite(r)
        secrets = tuple(r.pull_vector(EncryptedGroupSecrets.pull))
        return cls(cipher_suite, secrets, r.pull_opaque())


__all__ = [
    "GROUP_INFO_TBS_LABEL",
    "EncryptedGroupSecrets",
    "GroupInfo",
    "GroupSecrets",
    "PathSecret",
    "Welcome",
    "group_info_tbs",
]
