"""Commitments and search keys of the KEYTRANS draft, suite KT_128_SHA256_Ed25519.

Commitment (draft-ietf-keytrans-protocol §"Commitment", §"Update Format", IANA §"KT Cipher
Suites")::

    struct { opaque value<0..2^32-1>; UpdateSuffix suffix; } UpdateValue;  // suffix empty
    struct {
      opaque opening[Nc];            // Nc = 16
      opaque label<0..2^8-1>;
      uint32 version;
      UpdateValue update;
    } CommitmentValue;
    commitment = HMAC-SHA256(Kc, CommitmentValue)

with ``Kc`` the 16 bytes whose hex encoding is ``d821f8790d97709796b4d7903357c3f5`` (the draft
says "the byte sequence equal to the hex-encoded string"; earlier revisions said "the 16 byte
hex-decoded value", and independent implementations (katie) use the 16 decoded bytes). The
fixed key makes HMAC a commitment scheme: hiding thanks to the random opening, binding because
HMAC-SHA256 under a known key is collision resistant. The opening is a parameter (the caller
draws it from its CSPRNG); this module reads no randomness. `UpdateSuffix` is empty because
Doorless runs in contact-monitoring mode (it only carries a signature in third-party management).

Search keys: the draft maps each (label, version) to a prefix-tree search key with a VRF,
ECVRF-EDWARDS25519-SHA512-TAI (RFC 9381), so that the server can prove the mapping while
outsiders cannot enumerate labels. pyca/cryptography has no ECVRF, and we do not implement
elliptic-curve primitives by hand. The two fallbacks and why we choose the first:

* **public hash** (chosen): ``search_key = SHA-256("Doorless KT search key v1" || 0x00 ||
  VrfInput)``. Every client recomputes it, so the server cannot equivocate: the search key of
  (label, version) is fixed, and the binary ladder's guarantee (one greatest version per
  prefix tree) holds exactly as with a VRF. Cost: label privacy. Anyone who sees search keys
  (auditors, witnesses, the audit endpoint) can test a guessed label and learn its number of
  versions. Labels must therefore be unguessable or non-sensitive: Doorless labels are
  ``u:<user_id>`` with random 128-bit user ids, and a user id is already needed to search.
* HMAC-SHA256 under a server key: hides labels from outsiders, but not from the server, and
  clients could not check a search key, so a server could show different search keys (and
  values) for the same label to different users, defeating transparency. Rejected.

The output length equals VRF.Nh = 32, so an ECVRF can replace `search_key` later without any
change to the prefix tree or proof formats (BinaryLadderStep then gains the 80-byte VRF proof).
"""

from __future__ import annotations

import hashlib
import hmac

from doorless.codec import Writer
from doorless.errors import ConfigurationError, InvalidMac
from doorless.kt._wire import push_opaque_fixed
from doorless.secret import constant_time_equal

KC = bytes.fromhex("d821f8790d97709796b4d7903357c3f5")
NC = 16  # opening size
HASH_SIZE = 32  # Hash.Nh and VRF.Nh
MAX_VERSION = (1 << 32) - 1

SEARCH_KEY_CONTEXT = b"Doorless KT search key v1\x00"


def _check_label_version(label: bytes, version: int) -> None:
    if len(label) > 255:
        raise ConfigurationError("KT labels have at most 255 bytes")
    if not 0 <= version <= MAX_VERSION:
        raise ConfigurationError(f"version {version} is not a uint32")


def vrf_input(label: bytes, version: int) -> bytes:
    """``struct { opaque label<0..2^8-1>; uint32 version; } VrfInput;``"""
    _check_label_version(label, version)
    w = Writer()
    push_opaque_fixed(w, label, 1)
    w.push_uint32(version)
    return w.getvalue()


def search_key(label: bytes, version: int) -> bytes:
    """The prefix-tree search key of (label, version): a public hash in place of the VRF."""
    return hashlib.sha256(SEARCH_KEY_CONTEXT + vrf_input(label, version)).digest()


def commitment_value(opening: bytes, label: bytes, version: int, value: bytes) -> bytes:
    """The encoded ``CommitmentValue`` (with an empty `UpdateSuffix`)."""
    if len(opening) != NC:
        raise ConfigurationError(f"openings have {NC} bytes")
    _check_label_version(label, version)
    w = Writer()
    w.push_bytes(opening)
    push_opaque_fixed(w, label, 1)
    w.push_uint32(version)
    push_opaque_fixed(w, value, 4)
    return w.getvalue()


def commit(opening: bytes, label: bytes, version: int, value: bytes) -> bytes:
    """commitment = HMAC(Kc, CommitmentValue)."""
    return hmac.new(KC, commitment_value(opening, label, version, value), "sha256").digest()


def verify_commitment(
    commitment: bytes, opening: bytes, label: bytes, version: int, value: bytes
) -> None:
    """Raise `InvalidMac` unless ``commitment`` opens to ``value`` for (label, version)."""
    if len(opening) != NC:
        raise InvalidMac(f"openings have {NC} bytes")
    if not constant_time_equal(commit(opening, label, version, value), commitment):
        raise InvalidMac("commitment does not open to this value")


__all__ = [
    "HASH_SIZE",
    "KC",
    "MAX_VERSION",
    "NC",
    "commit",
    "commitment_value",
    "search_key",
    "verify_commitment",
    "vrf_input",
]
