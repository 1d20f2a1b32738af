"""The MLS key schedule (RFC 9420 §8): epoch secrets, PSKs, exporters and transcript hashes.

Everything here is a pure function of its inputs; nothing reads a clock or global randomness
(except HPKE encapsulation in `external_init_sender`, which must draw an ephemeral key).

One epoch of the schedule (RFC 9420 §8)::

    init_secret_[n-1] --(salt)--> Extract <-- commit_secret
      --> ExpandWithLabel(., "joiner", GroupContext_[n]) = joiner_secret
    joiner_secret --(salt)--> Extract <-- psk_secret (or 0)
      +--> DeriveSecret(., "welcome") = welcome_secret
      --> ExpandWithLabel(., "epoch", GroupContext_[n]) = epoch_secret
      +--> DeriveSecret(., <label>) for each secret of the §8 table
      --> DeriveSecret(., "init") = init_secret_[n]

`KeyScheduleEpoch` is the transient result of one step (it holds the joiner, welcome and
encryption secrets, which the caller consumes and drops, §9.2); `EpochSecrets` is the part a
group keeps for the whole epoch and persists (``to_bytes``/``from_bytes``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Self

from doorless.codec import Reader, Writer, decode, encode, encode_opaque
from doorless.crypto import CipherSuite, KeyPair, cipher_suite
from doorless.errors import ConfigurationError, DecodeError, InvalidMac
from doorless.secret import (
    AeadKey,
    AeadNonce,
    CommitSecret,
    EncryptionSecret,
    EpochSecret,
    ExporterSecret,
    InitSecret,
    JoinerSecret,
    MacKey,
    PskSecret,
    Secret,
    constant_time_equal,
)

if TYPE_CHECKING:  # framing imports welcome, which may import this module: no runtime cycle
    from doorless.mls.framing import AuthenticatedContent

# --- the secrets of the §8 table that secret.py does not define ---------------------------


class WelcomeSecret(Secret):
    """``welcome_secret`` (RFC 9420 §8): keys the GroupInfo of a Welcome (§12.4.3.1)."""

    __slots__ = ()


class SenderDataSecret(Secret):
    """``sender_data_secret``: keys the SenderData of PrivateMessages (§6.3.2)."""

    __slots__ = ()


class ExternalSecret(Secret):
    """``external_secret``: seeds the group's external HPKE key pair (§8, §12.4.3.2)."""

    __slots__ = ()


class ConfirmationKey(MacKey):
    """``confirmation_key``: MAC key of the confirmation tag (§6.1)."""

    __slots__ = ()


class MembershipKey(MacKey):
    """``membership_key``: MAC key of a PublicMessage's membership tag (§6.2)."""

    __slots__ = ()


class ResumptionPsk(Secret):
    """``resumption_psk`` (§8.6)."""

    __slots__ = ()


class EpochAuthenticator(Secret):
    """``epoch_authenticator`` (§8.7): equal for members that share a view of the group."""

    __slots__ = ()


EXTERNAL_INIT_SECRET_LABEL = b"MLS 1.0 external init secret"


def zero(suite: CipherSuite) -> bytes:
    """The all-zero string of length ``KDF.Nh`` that §8 writes as ``0``."""
    return bytes(suite.hash_length)


# --- pre-shared keys (§8.4) ---------------------------------------------------------------


def psk_secret(suite: CipherSuite, psks: Sequence[tuple[bytes, bytes]]) -> PskSecret:
    """``psk_secret`` from ``(encoded PreSharedKeyID, psk)`` pairs, in Commit order (§8.4).

    ::

        psk_extracted_[i] = KDF.Extract(0, psk_[i])
        psk_input_[i] = ExpandWithLabel(psk_extracted_[i], "derived psk", PSKLabel, KDF.Nh)
        psk_secret_[0] = 0
        psk_secret_[i] = KDF.Extract(psk_input_[i-1], psk_secret_[i-1])

    with ``PSKLabel = struct { PreSharedKeyID id; uint16 index; uint16 count; }``. No PSKs give
    the all-zero vector.
    """
    count = len(psks)
    if count > 0xFFFF:
        raise DecodeError(f"{count} PSKs do not fit PSKLabel.count (uint16)")
    nh = suite.hash_length
    secret = zero(suite)
    for index, (psk_id, psk) in enumerate(psks):
        extracted = suite.kdf_extract(zero(suite), psk)
        label = psk_id + index.to_bytes(2, "big") + count.to_bytes(2, "big")
        psk_input = suite.expand_with_label(extracted, b"derived psk", label, nh)
        secret = suite.kdf_extract(psk_input, secret)
    return PskSecret(secret)


# --- the epoch step (§8) ------------------------------------------------------------------


def joiner_secret(
    suite: CipherSuite,
    init_secret: InitSecret,
    commit_secret: CommitSecret,
    group_context: bytes,
) -> JoinerSecret:
    """``ExpandWithLabel(Extract(init_secret, commit_secret), "joiner", GroupContext, Nh)``.

    ``group_context`` is the serialized GroupContext of the *new* epoch.
    """
    prk = suite.kdf_extract(init_secret.value, commit_secret.value)
    return JoinerSecret(suite.expand_with_label(prk, b"joiner", group_context, suite.hash_length))


def _member_prk(suite: CipherSuite, joiner: JoinerSecret, psk: PskSecret | None) -> bytes:
    return suite.kdf_extract(joiner.value, psk.value if psk is not None else zero(suite))


def welcome_secret(
    suite: CipherSuite, joiner: JoinerSecret, psk: PskSecret | None
) -> WelcomeSecret:
    """``DeriveSecret(Extract(joiner_secret, psk_secret), "welcome")`` (§8); None means no PSK."""
    return WelcomeSecret(suite.derive_secret(_member_prk(suite, joiner, psk), b"welcome"))


def welcome_key_nonce(suite: CipherSuite, welcome: WelcomeSecret) -> tuple[AeadKey, AeadNonce]:
    """The key and nonce of ``Welcome.encrypted_group_info`` (§12.4.3.1)."""
    key = suite.expand_with_label(welcome.value, b"key", b"", suite.aead_key_length)
    nonce = suite.expand_with_label(welcome.value, b"nonce", b"", suite.aead_nonce_length)
    return AeadKey(key), AeadNonce(nonce)


def epoch_secret(
    suite: CipherSuite, joiner: JoinerSecret, psk: PskSecret | None, group_context: bytes
) -> EpochSecret:
    """``ExpandWithLabel(Extract(joiner_secret, psk_secret), "epoch", GroupContext, Nh)``."""
    prk = _member_prk(suite, joiner, psk)
    return EpochSecret(suite.expand_with_label(prk, b"epoch", group_context, suite.hash_length))


# --- the secrets a group keeps for one epoch ----------------------------------------------


@dataclass(frozen=True, slots=True, repr=False, eq=False)
class EpochSecrets:
    """The secrets derived from ``epoch_secret`` that live for the whole epoch (§8 table).

    ``encryption_secret`` is not here: it seeds the `SecretTree` and is then deleted (§9.2).
    ``init_secret`` is the one for the *next* epoch. Persist with `to_bytes`/`from_bytes`.
    """

    suite: CipherSuite
    sender_data_secret: SenderDataSecret
    exporter_secret: ExporterSecret
    external_secret: ExternalSecret
    confirmation_key: ConfirmationKey
    membership_key: MembershipKey
    resumption_psk: ResumptionPsk
    epoch_authenticator: EpochAuthenticator
    init_secret: InitSecret

    _FIELDS: ClassVar[tuple[tuple[str, type[Secret]], ...]] = (
        ("sender_data_secret", SenderDataSecret),
        ("exporter_secret", ExporterSecret),
        ("external_secret", ExternalSecret),
        ("confirmation_key", ConfirmationKey),
        ("membership_key", MembershipKey),
        ("resumption_psk", ResumptionPsk),
        ("epoch_authenticator", EpochAuthenticator),
        ("init_secret", InitSecret),
    )

    def __repr__(self) -> str:
        return f"EpochSecrets({self.suite.id.name}, ***)"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EpochSecrets):
            return NotImplemented
        # Every field compared, in constant time per secret (no short circuit).
        same = [getattr(self, n) == getattr(other, n) for n, _ in self._FIELDS]
        return self.suite.id == other.suite.id and all(same)

    __hash__ = None  # type: ignore[assignment]

    # --- uses --------------------------------------------------------------------------

    def exporter(self, label: bytes, context: bytes, length: int) -> bytes:
        """``MLS-Exporter(Label, Context, Length)`` (§8.5)::

        ExpandWithLabel(DeriveSecret(exporter_secret, Label), "exported", Hash(Context), Length)
        """
        s = self.suite
        derived = s.derive_secret(self.exporter_secret.value, label)
        return s.expand_with_label(derived, b"exported", s.hash(context), length)

    def external_key_pair(self) -> KeyPair:
        """``external_priv, external_pub = KEM.DeriveKeyPair(external_secret)`` (§8)."""
        return self.suite.derive_key_pair(self.external_secret.value)

    @property
    def external_pub(self) -> bytes:
        return self.external_key_pair().public_key

    def confirmation_tag(self, confirmed_transcript_hash: bytes) -> bytes:
        """``MAC(confirmation_key, confirmed_transcript_hash)`` (§6.1)."""
        return confirmation_tag(self.suite, self.confirmation_key, confirmed_transcript_hash)

    def verify_confirmation_tag(self, confirmed_transcript_hash: bytes, tag: bytes) -> None:
        """Raise `InvalidMac` unless ``tag`` confirms ``confirmed_transcript_hash``."""
        verify_confirmation_tag(self.suite, self.confirmation_key, confirmed_transcript_hash, tag)

    # --- persistence ---------------------------------------------------------------------

    def push(self, w: Writer) -> None:
        """``uint16 cipher_suite`` followed by each secret as ``opaque<V>``, in field order."""
        w.push_uint16(self.suite.id)
        for name, _ in self._FIELDS:
            secret: Secret = getattr(self, name)
            w.push_opaque(secret.value)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        suite = cipher_suite(r.pull_uint16())
        values: dict[str, Secret] = {}
        for name, kind in cls._FIELDS:
            raw = r.pull_opaque()
            if len(raw) != suite.hash_length:
                raise DecodeError(f"{name} must be {suite.hash_length} bytes")
            values[name] = kind(raw)
        return cls(suite=suite, **values)  # type: ignore[arg-type]

    def to_bytes(self) -> bytes:
        w = Writer()
        self.push(w)
        return w.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        return decode(cls, data)


@dataclass(frozen=True, slots=True, repr=False, eq=False)
class EpochKeys:
    """What ``epoch_secret`` yields: the secret tree's root and the epoch's kept secrets."""

    encryption_secret: EncryptionSecret
    secrets: EpochSecrets

    def __repr__(self) -> str:
        return "EpochKeys(***)"


def derive_epoch_keys(suite: CipherSuite, epoch: EpochSecret) -> EpochKeys:
    """Every ``DeriveSecret(epoch_secret, <label>)`` of the §8 table, plus ``init``.

    Also the entry point for group creation, where ``epoch_secret`` is random (§11).
    """
    e = epoch.value

    def d(label: bytes) -> bytes:
        return suite.derive_secret(e, label)

    return EpochKeys(
        encryption_secret=EncryptionSecret(d(b"encryption")),
        secrets=EpochSecrets(
            suite=suite,
            sender_data_secret=SenderDataSecret(d(b"sender data")),
            exporter_secret=ExporterSecret(d(b"exporter")),
            external_secret=ExternalSecret(d(b"external")),
            confirmation_key=ConfirmationKey(d(b"confirm")),
            membership_key=MembershipKey(d(b"membership")),
            resumption_psk=ResumptionPsk(d(b"resumption")),
            epoch_authenticator=EpochAuthenticator(d(b"authentication")),
            init_secret=InitSecret(d(b"init")),
        ),
    )


@dataclass(frozen=True, slots=True, repr=False, eq=False)
class KeyScheduleEpoch:
    """The transient result of one key-schedule step (§8).

    The caller uses ``welcome_secret`` (to build a Welcome) and ``encryption_secret`` (to seed
    the `SecretTree`), keeps ``secrets`` and drops the rest (§9.2 deletion schedule).
    """

    joiner_secret: JoinerSecret
    welcome_secret: WelcomeSecret
    encryption_secret: EncryptionSecret
    secrets: EpochSecrets

    def __repr__(self) -> str:
        return "KeyScheduleEpoch(***)"


def key_schedule_from_joiner(
    suite: CipherSuite, joiner: JoinerSecret, psk: PskSecret | None, group_context: bytes
) -> KeyScheduleEpoch:
    """The epoch as a new member computes it from ``GroupSecrets.joiner_secret`` (§12.4.3.1)."""
    keys = derive_epoch_keys(suite, epoch_secret(suite, joiner, psk, group_context))
    return KeyScheduleEpoch(
        joiner_secret=joiner,
        welcome_secret=welcome_secret(suite, joiner, psk),
        encryption_secret=keys.encryption_secret,
        secrets=keys.secrets,
    )


def key_schedule(
    suite: CipherSuite,
    init_secret: InitSecret,
    commit_secret: CommitSecret,
    psk: PskSecret | None,
    group_context: bytes,
) -> KeyScheduleEpoch:
    """One full step of the key schedule (§8).

    ``init_secret`` is the previous epoch's (`EpochSecrets.init_secret`, or from an external
    init); ``commit_secret`` is the path's (all zero without a path, §12.4); ``psk`` None means no
    PSK (the all-zero vector); ``group_context`` is the *new* epoch's serialized GroupContext.
    """
    joiner = joiner_secret(suite, init_secret, commit_secret, group_context)
    return key_schedule_from_joiner(suite, joiner, psk, group_context)


# --- external initialization (§8.3) -------------------------------------------------------


def external_init_sender(suite: CipherSuite, external_pub: bytes) -> tuple[bytes, InitSecret]:
    """``SetupBaseS(external_pub, "")`` then export -> (``kem_output``, ``init_secret``)."""
    kem_output, secret = suite.export_sender(
        external_pub, b"", EXTERNAL_INIT_SECRET_LABEL, suite.hash_length
    )
    return kem_output, InitSecret(secret)


def external_init_receiver(
    suite: CipherSuite, external_priv: bytes, kem_output: bytes
) -> InitSecret:
    """``SetupBaseR(kem_output, external_priv, "")`` then export; raises `DecryptError`."""
    return InitSecret(
        suite.export_receiver(
            external_priv, kem_output, b"", EXTERNAL_INIT_SECRET_LABEL, suite.hash_length
        )
    )


# --- transcript hashes and the confirmation tag (§8.2, §6.1) --------------------------------


def confirmed_transcript_hash_input(
    wire_format: int, framed_content: bytes, signature: bytes
) -> bytes:
    """``ConfirmedTranscriptHashInput`` (§8.2)::

        struct {
            WireFormat wire_format;
            FramedContent content; /* with content_type == commit */
            opaque signature<V>;
        } ConfirmedTranscriptHashInput;

    ``framed_content`` is the serialized FramedContent.
    """
    return wire_format.to_bytes(2, "big") + framed_content + encode_opaque(signature)


def confirmed_transcript_hash(
    suite: CipherSuite, interim_transcript_hash_before: bytes, hash_input: bytes
) -> bytes:
    """``Hash(interim_transcript_hash_[n-1] || ConfirmedTranscriptHashInput_[n])``."""
    return suite.hash(interim_transcript_hash_before + hash_input)


def interim_transcript_hash(
    suite: CipherSuite, confirmed_transcript_hash: bytes, confirmation_tag: bytes
) -> bytes:
    """``Hash(confirmed_transcript_hash_[n] || InterimTranscriptHashInput_[n])``, where
    ``InterimTranscriptHashInput = struct { MAC confirmation_tag; }`` and ``MAC`` is
    ``opaque<V>`` (§8.2)."""
    return suite.hash(confirmed_transcript_hash + encode_opaque(confirmation_tag))


def transcript_hashes(
    suite: CipherSuite, interim_transcript_hash_before: bytes, content: AuthenticatedContent
) -> tuple[bytes, bytes]:
    """``(confirmed_transcript_hash, interim_transcript_hash)`` after the Commit in ``content``
    (§8.2); the interim one needs ``content.auth.confirmation_tag``."""
    tag = content.auth.confirmation_tag
    if tag is None:
        raise ConfigurationError("transcript hashes are updated by commits only (RFC 9420 8.2)")
    hash_input = confirmed_transcript_hash_input(
        content.wire_format, encode(content.content), content.auth.signature
    )
    confirmed = confirmed_transcript_hash(suite, interim_transcript_hash_before, hash_input)
    return confirmed, interim_transcript_hash(suite, confirmed, tag)


def confirmation_tag(
    suite: CipherSuite, key: ConfirmationKey, confirmed_transcript_hash: bytes
) -> bytes:
    """``MAC(confirmation_key, GroupContext.confirmed_transcript_hash)`` (§6.1)."""
    return suite.mac(key.value, confirmed_transcript_hash)


def verify_confirmation_tag(
    suite: CipherSuite, key: ConfirmationKey, confirmed_transcript_hash: bytes, tag: bytes
) -> None:
    """Raise `InvalidMac` unless ``tag`` is the confirmation tag (compared in constant time)."""
    if not constant_time_equal(confirmation_tag(suite, key, confirmed_transcript_hash), tag):
        raise InvalidMac("confirmation tag does not match (RFC9420 6.1)")


__all__ = [
    "EXTERNAL_INIT_SECRET_LABEL",
    "ConfirmationKey",
    "EpochAuthenticator",
    "EpochKeys",
    "EpochSecrets",
    "ExternalSecret",
    "KeyScheduleEpoch",
    "MembershipKey",
    "ResumptionPsk",
    "SenderDataSecret",
    "WelcomeSecret",
    "confirmation_tag",
    "confirmed_transcript_hash",
    "confirmed_transcript_hash_input",
    "derive_epoch_keys",
    "epoch_secret",
    "external_init_receiver",
    "external_init_sender",
    "interim_transcript_hash",
    "joiner_secret",
    "key_schedule",
    "key_schedule_from_joiner",
    "psk_secret",
    "transcript_hashes",
    "verify_confirmation_tag",
    "welcome_key_nonce",
    "welcome_secret",
    "zero",
]
