"""Signed checkpoints in the C2SP style: c2sp.org/signed-note, c2sp.org/tlog-checkpoint and
c2sp.org/tlog-cosignature (Ed25519 ``cosignature/v1``).

A checkpoint is the note text::

    <origin>\\n
    <tree size, ASCII decimal>\\n
    <base64 root hash>\\n
    [<extension line>\\n ...]

and a signed note is that text, a blank line, and signature lines
``— <key name> base64(key ID[4] || signature)``. The log signs with signature type 0x01
(Ed25519 over the note text); witnesses add type 0x04 cosignatures whose signature is
``u64 timestamp || Ed25519("cosignature/v1\\ntime <timestamp>\\n" || note text)``. Key IDs are
``SHA-256(name || 0x0A || type || public key)[:4]``.

Verification follows the note rules: signatures from unknown (name, key ID) pairs are ignored;
a known key whose signature fails rejects the whole note; the log's own signature and at least
``quorum`` distinct trusted witness cosignatures are required. Keys are raw 32-byte Ed25519
keys (private keys are the RFC 8032 seed); all timestamps are parameters (POSIX seconds).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

from cryptography.exceptions import InvalidSignature as _PycaInvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from doorless.errors import ConfigurationError, DecodeError, InvalidSignature, ValidationError

HASH_SIZE = 32
EM_DASH = "\u2014"
MAX_SIGNATURES = 100  # the note spec asks verifiers to accept at least 16
MAX_NOTE_SIZE = 1 << 20
MAX_TIMESTAMP = (1 << 63) - 1
COSIGNATURE_HEADER = b"cosignature/v1\n"


class SignatureType(IntEnum):
    """c2sp.org/signed-note signature type identifier bytes (the ones we use)."""

    ED25519 = 0x01
    COSIGNATURE_V1 = 0x04


def key_id(name: str, signature_type: int, public_key: bytes) -> bytes:
    """``SHA-256(key name || 0x0A || signature type || public key)[:4]``."""
    return hashlib.sha256(name.encode() + b"\n" + bytes((signature_type,)) + public_key).digest()[
        :4
    ]


def _b64decode(text: str, what: str) -> bytes:
    """Strict standard base64 (RFC 4648 §4): canonical padding, no stray characters."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise DecodeError(f"{what} is not base64") from None
    if base64.b64encode(raw).decode() != text:
        raise DecodeError(f"{what} is not canonical base64")
    return raw


def _check_key_name(name: str) -> None:
    if not name or any(c.isspace() or c == "+" for c in name):
        raise DecodeError("key names are non-empty and have no spaces or '+'")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise DecodeError("key names are valid UTF-8") from None


def _check_note_chars(text: str) -> None:
    if any(ord(c) < 0x20 and c != "\n" for c in text):
        raise DecodeError("notes contain no control characters other than newline")


# --- keys ---------------------------------------------------------------------------------------


def ed25519_public_key(private_key: bytes) -> bytes:
    """The raw public key of a raw 32-byte Ed25519 private key (seed)."""
    return _private(private_key).public_key().public_bytes_raw()


def _private(private_key: bytes) -> Ed25519PrivateKey:
    try:
        return Ed25519PrivateKey.from_private_bytes(private_key)
    except ValueError:
        raise ConfigurationError("Ed25519 private keys have 32 bytes") from None


def _verify_ed25519(public_key: bytes, signature: bytes, message: bytes) -> None:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except ValueError:
        raise InvalidSignature("malformed Ed25519 public key") from None
    except _PycaInvalidSignature:
        raise InvalidSignature("note signature does not verify") from None


@dataclass(frozen=True, slots=True)
class NoteVerifier:
    """A trusted key: its name, its signature type, and its raw Ed25519 public key."""

    name: str
    signature_type: SignatureType
    public_key: bytes

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.signature_type, self.public_key)

    def vkey(self) -> str:
        """The c2sp.org/signed-note verifier key: ``name+hex(key ID)+base64(type || key)``."""
        material = base64.b64encode(bytes((self.signature_type,)) + self.public_key).decode()
        return f"{self.name}+{self.key_id.hex()}+{material}"

    @classmethod
    def from_vkey(cls, vkey: str) -> NoteVerifier:
        parts = vkey.split("+", 2)
        if len(parts) != 3:
            raise DecodeError("a verifier key is name+keyid+key")
        name, kid, material = parts
        _check_key_name(name)
        raw = _b64decode(material, "verifier key")
        if len(raw) != 33 or raw[0] not in SignatureType.__members__.values():
            raise DecodeError("unsupported verifier key type or length")
        verifier = cls(name, SignatureType(raw[0]), raw[1:])
        if kid != verifier.key_id.hex():
            raise DecodeError("verifier key ID does not match the key")
        return verifier


def ed25519_verifier(vkey: str, what: str) -> NoteVerifier:
    """A configured Ed25519 verifier key (a log's or a witness's), or `ConfigurationError`
    naming ``what`` the setting is."""
    try:
        key = NoteVerifier.from_vkey(vkey)
    except DecodeError as exc:
        raise ConfigurationError(f"{what} is not a note verifier key: {exc}") from None
    if key.signature_type != SignatureType.ED25519:
        raise ConfigurationError(f"{what} must be an Ed25519 (type 0x01) note key")
    return key


# --- notes --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NoteSignature:
    """One signature line: key name, 4-byte key ID, and the signature bytes after the ID."""

    name: str
    key_id: bytes
    signature: bytes

    def line(self) -> str:
        blob = base64.b64encode(self.key_id + self.signature).decode()
        return f"{EM_DASH} {self.name} {blob}\n"

    @classmethod
    def parse_line(cls, line: str) -> NoteSignature:
        prefix = EM_DASH + " "
        if not line.startswith(prefix):
            raise DecodeError("signature lines start with an em dash and a space")
        fields = line[len(prefix) :].split(" ")
        if len(fields) != 2:
            raise DecodeError("a signature line is '— name signature'")
        name, blob = fields
        _check_key_name(name)
        raw = _b64decode(blob, "signature")
        if len(raw) < 5:
            raise DecodeError("a signature has a key ID and at least one byte")
        return cls(name, raw[:4], raw[4:])


@dataclass(frozen=True, slots=True)
class SignedNote:
    """c2sp.org/signed-note: text (ending in a newline) and one or more signatures."""

    text: str
    signatures: tuple[NoteSignature, ...]

    def encode(self) -> bytes:
        return (self.text + "\n" + "".join(s.line() for s in self.signatures)).encode()

    @classmethod
    def decode(cls, data: bytes) -> SignedNote:
        if len(data) > MAX_NOTE_SIZE:
            raise DecodeError("note is too large")
        try:
            note = data.decode("utf-8")
        except UnicodeDecodeError:
            raise DecodeError("notes are UTF-8") from None
        _check_note_chars(note)
        # The text ends at the *last* blank line; signature lines follow it.
        split = note.rfind("\n\n")
        if split < 0 or not note.endswith("\n"):
            raise DecodeError("a note is text, a blank line and signature lines")
        text, sig_block = note[: split + 1], note[split + 2 :]
        lines = sig_block.split("\n")[:-1]
        if not lines:
            raise DecodeError("a note needs at least one signature")
        if len(lines) > MAX_SIGNATURES:
            raise DecodeError("too many signatures")
        return cls(text, tuple(NoteSignature.parse_line(line) for line in lines))

    def with_signature(self, signature: NoteSignature) -> SignedNote:
        return SignedNote(self.text, (*self.signatures, signature))


def sign_note(text: str, name: str, private_key: bytes) -> NoteSignature:
    """A type-0x01 Ed25519 note signature over ``text``."""
    sk = _private(private_key)
    kid = key_id(name, SignatureType.ED25519, sk.public_key().public_bytes_raw())
    return NoteSignature(name, kid, sk.sign(text.encode()))


def cosign_note(text: str, name: str, private_key: bytes, timestamp: int) -> NoteSignature:
    """A type-0x04 ``cosignature/v1`` over a checkpoint ``text`` at POSIX ``timestamp``."""
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise ConfigurationError("cosignature timestamps are at most 2^63 - 1")
    sk = _private(private_key)
    kid = key_id(name, SignatureType.COSIGNATURE_V1, sk.public_key().public_bytes_raw())
    signature = sk.sign(_cosigned_message(text, timestamp))
    return NoteSignature(name, kid, timestamp.to_bytes(8, "big") + signature)


def _cosigned_message(text: str, timestamp: int) -> bytes:
    return COSIGNATURE_HEADER + f"time {timestamp}\n".encode() + text.encode()


def verify_signature(text: str, signature: NoteSignature, verifier: NoteVerifier) -> int | None:
    """Verify one signature line by a known key; return the cosignature timestamp (type 0x04).

    Raises `InvalidSignature`.
    """
    if signature.name != verifier.name or signature.key_id != verifier.key_id:
        raise InvalidSignature("signature is not from this key")
    if verifier.signature_type == SignatureType.ED25519:
        if len(signature.signature) != 64:
            raise InvalidSignature("Ed25519 signatures have 64 bytes")
        _verify_ed25519(verifier.public_key, signature.signature, text.encode())
        return None
    if len(signature.signature) != 72:
        raise InvalidSignature("cosignature/v1 is a timestamp and a 64-byte signature")
    timestamp = int.from_bytes(signature.signature[:8], "big")
    if timestamp > MAX_TIMESTAMP:
        raise InvalidSignature("cosignature timestamp exceeds 2^63 - 1")
    _verify_ed25519(
        verifier.public_key, signature.signature[8:], _cosigned_message(text, timestamp)
    )
    return timestamp


# --- checkpoints --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """c2sp.org/tlog-checkpoint note text: origin, tree size, root hash, extension lines."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin or "\n" in self.origin:
            raise ConfigurationError("the origin is one non-empty line")
        if not 0 <= self.size < 1 << 64:
            raise ConfigurationError("tree sizes are uint64")
        if len(self.root) != HASH_SIZE:
            raise ConfigurationError("roots have 32 bytes")
        if any(not line or "\n" in line for line in self.extensions):
            raise ConfigurationError("extension lines are non-empty single lines")

    def text(self) -> str:
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode()]
        return "".join(line + "\n" for line in (*lines, *self.extensions))

    @classmethod
    def from_text(cls, text: str) -> Checkpoint:
        _check_note_chars(text)
        if not text.endswith("\n"):
            raise DecodeError("checkpoint text ends with a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3 or any(not line for line in lines):
            raise DecodeError("a checkpoint has at least three non-empty lines")
        origin, size_text, root_text, *extensions = lines
        if not size_text.isascii() or not size_text.isdigit():
            raise DecodeError("tree size is an ASCII decimal")
        if size_text != "0" and size_text.startswith("0"):
            raise DecodeError("tree size has no leading zeroes")
        size = int(size_text)
        if size >= 1 << 64:
            raise DecodeError("tree size exceeds uint64")
        root = _b64decode(root_text, "root hash")
        if len(root) != HASH_SIZE:
            raise DecodeError("root hash is not 32 bytes")
        return cls(origin, size, root, tuple(extensions))


@dataclass(frozen=True, slots=True)
class SignedCheckpoint:
    """A checkpoint and its note signatures (log signature and witness cosignatures)."""

    checkpoint: Checkpoint
    signatures: tuple[NoteSignature, ...]

    def note(self) -> SignedNote:
        return SignedNote(self.checkpoint.text(), self.signatures)

    def encode(self) -> bytes:
        return self.note().encode()

    @classmethod
    def decode(cls, data: bytes) -> SignedCheckpoint:
        note = SignedNote.decode(data)
        return cls(Checkpoint.from_text(note.text), note.signatures)

    def with_signature(self, signature: NoteSignature) -> SignedCheckpoint:
        return SignedCheckpoint(self.checkpoint, (*self.signatures, signature))


def sign_checkpoint(checkpoint: Checkpoint, name: str, private_key: bytes) -> SignedCheckpoint:
    """The log signs a new checkpoint (its key name SHOULD be the origin)."""
    return SignedCheckpoint(checkpoint, (sign_note(checkpoint.text(), name, private_key),))


def cosign_checkpoint(
    signed: SignedCheckpoint, name: str, private_key: bytes, timestamp: int
) -> SignedCheckpoint:
    """A witness adds its cosignature (after checking consistency itself)."""
    return signed.with_signature(
        cosign_note(signed.checkpoint.text(), name, private_key, timestamp)
    )


@dataclass(frozen=True, slots=True)
class VerifiedCheckpoint:
    """A checkpoint signed by the log and cosigned by ``witnesses`` (name -> timestamp)."""

    checkpoint: Checkpoint
    witnesses: tuple[tuple[str, int], ...]


def verify_checkpoint(
    signed: SignedCheckpoint,
    log: NoteVerifier,
    witnesses: Sequence[NoteVerifier] = (),
    quorum: int = 0,
    origin: str | None = None,
) -> VerifiedCheckpoint:
    """Check the log signature, the origin, and at least ``quorum`` witness cosignatures.

    ``origin`` defaults to the log key's name. Raises `InvalidSignature` when a known key's
    signature fails or the log's is missing, `ValidationError` for a wrong origin or too few
    cosignatures.
    """
    if log.signature_type != SignatureType.ED25519:
        raise ConfigurationError("the log key is an Ed25519 (type 0x01) note key")
    if any(w.signature_type != SignatureType.COSIGNATURE_V1 for w in witnesses):
        raise ConfigurationError("witness keys are cosignature/v1 (type 0x04) keys")
    if signed.checkpoint.origin != (log.name if origin is None else origin):
        raise ValidationError(
            "checkpoint origin is not the expected log", rule="C2SP tlog-checkpoint"
        )
    text = signed.checkpoint.text()
    known = {(v.name, v.key_id): v for v in (log, *witnesses)}
    log_signed = False
    cosigned: dict[str, int] = {}
    for signature in signed.signatures:
        verifier = known.get((signature.name, signature.key_id))
        if verifier is None:
            continue  # signed-note: ignore unknown keys
        timestamp = verify_signature(text, signature, verifier)
        if verifier is log:
            log_signed = True
        elif timestamp is not None:
            cosigned[verifier.name] = max(timestamp, cosigned.get(verifier.name, 0))
    if not log_signed:
        raise InvalidSignature("checkpoint lacks the log's signature")
    if len(cosigned) < quorum:
        raise ValidationError(
            f"{len(cosigned)} trusted witness cosignatures, need {quorum}",
            rule="C2SP tlog-cosignature",
        )
    return VerifiedCheckpoint(signed.checkpoint, tuple(sorted(cosigned.items())))


__all__ = [
    "Checkpoint",
    "NoteSignature",
    "NoteVerifier",
    "SignatureType",
    "SignedCheckpoint",
    "SignedNote",
    "VerifiedCheckpoint",
    "cosign_checkpoint",
    "cosign_note",
    "ed25519_public_key",
    "key_id",
    "sign_checkpoint",
    "sign_note",
    "verify_checkpoint",
    "verify_signature",
]
