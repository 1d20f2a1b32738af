"""SFrame (RFC 9605): end-to-end encryption of media frames, as a protocol-core module.

No I/O, no clock, no global randomness: keys come in as parameters, counters are the caller's to
persist. The pieces, each citing its section:

- `SFrameSuite` and `suite_params`: the cipher suites of §4.5 (plus suites 6-8, see below);
- `Header`, `encode_header`, `decode_header`: the header of §4.3;
- `derive_key_salt`: the HKDF key and salt derivation of §4.4.2;
- `aead_encrypt`/`aead_decrypt`: the suite's AEAD, including the AES-CTR + HMAC construction of
  §4.5.1, built from pyca/cryptography's AES-CTR, HMAC and AES-GCM;
- `SFrameSender`: encrypts under one KID with a counter that can never repeat in one object and
  resumes from a persisted reservation (§9.1);
- `SFrameReceiver`: decrypts by KID, with a per-KID replay window (§9.3, RFC 3711 §3.3.2 style);
- `mls_base_key`, `mls_base_key_from_secret`, `MlsKidLayout`: MLS keying per §5.2, as pure
  functions over the MLS exporter (a function, or an epoch's exporter secret); nothing from
  `doorless.mls` is imported.

Suites 6-8 (AES-256-CTR with HMAC-SHA512, 80/64/32-bit tags) are not in RFC 9605's registry:
the sframe-wg repository added them and their vectors in 2025. They are supported so that
every published vector is checked; prefer suites 1-5 for interoperability.

A frame that fails to parse raises `DecodeError`; one whose tag does not verify raises
`FrameDecryptError`; a replayed or too-old counter raises `ReplayedFrame`; an unknown KID raises
`UnknownKeyId`. None of them changes any state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from types import ModuleType
from typing import TYPE_CHECKING, NamedTuple, NoReturn, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as pyca_hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand

from doorless.crypto import CipherSuite
from doorless.errors import (
    ConfigurationError,
    DecodeError,
    DecryptError,
    StateError,
    ValidationError,
)
from doorless.secret import ExporterSecret, Secret, constant_time_equal

if TYPE_CHECKING:
    from doorless._sframe_native import FrameKey

try:
    from doorless import _sframe_native
except ImportError:  # built without a C compiler or OpenSSL's headers: same results, slower
    _sframe_native = None  # type: ignore[assignment]

native: ModuleType | None = _sframe_native
"""The per-frame path in C (`_sframe_native.c`, on OpenSSL), or None; the Python below is the
reference it must agree with (tests set this to None to run it). Read when a sender or
receiver is made."""

__all__ = [
    "MAX_VALUE",
    "MAX_WINDOW",
    "MLS_BASE_KEY_LABEL",
    "BaseKey",
    "CounterExhausted",
    "Decrypted",
    "DerivedKeys",
    "FrameDecryptError",
    "Header",
    "MlsKidLayout",
    "ReplayedFrame",
    "SFrameKey",
    "SFrameReceiver",
    "SFrameSalt",
    "SFrameSecret",
    "SFrameSender",
    "SFrameSuite",
    "SuiteParams",
    "UnknownKeyId",
    "aead_decrypt",
    "aead_encrypt",
    "decode_header",
    "derive_key_salt",
    "encode_header",
    "index_bits_for",
    "key_label",
    "mls_base_key",
    "mls_base_key_from_secret",
    "nonce_for",
    "salt_label",
    "suite_params",
]

MAX_VALUE = (1 << 64) - 1
"""KID and CTR are unsigned 64-bit values (§4.3: at most 8 bytes)."""

MLS_BASE_KEY_LABEL = b"SFrame 1.0 Base Key"
"""§5.2: ``base_key = MLS-Exporter("SFrame 1.0 Base Key", "", AEAD.Nk)``."""


# --- errors ---------------------------------------------------------------------------------


class FrameDecryptError(DecryptError):
    """The frame's authentication tag does not verify (tampered, forged or wrong key)."""


class ReplayedFrame(ValidationError):
    """The frame's CTR was already accepted for its KID, or is older than the replay window."""


class UnknownKeyId(ValidationError):
    """No decryption key is known for the frame's KID (§4.4.4: the caller MAY buffer and retry)."""


class CounterExhausted(StateError):
    """The sender has no reserved counter left: reserve (and persist) more before encrypting."""


# --- secrets --------------------------------------------------------------------------------


class BaseKey(Secret):
    """§4.4.1 ``base_key``: the secret a KID stands for."""

    __slots__ = ()


class SFrameSecret(Secret):
    """§4.4.2 ``sframe_secret = HKDF-Extract("", base_key)``."""

    __slots__ = ()


class SFrameKey(Secret):
    """§4.4.2 ``sframe_key`` (for AES-CTR suites, ``enc_key || auth_key``)."""

    __slots__ = ()


class SFrameSalt(Secret):
    """§4.4.2 ``sframe_salt``."""

    __slots__ = ()


# --- cipher suites (§4.5, §8.1) -------------------------------------------------------------


class SFrameSuite(IntEnum):
    AES_128_CTR_HMAC_SHA256_80 = 0x0001
    AES_128_CTR_HMAC_SHA256_64 = 0x0002
    AES_128_CTR_HMAC_SHA256_32 = 0x0003
    AES_128_GCM_SHA256_128 = 0x0004
    AES_256_GCM_SHA512_128 = 0x0005
    # Not in RFC 9605: added by the sframe-wg repository after the RFC (see the module docstring).
    AES_256_CTR_HMAC_SHA512_80 = 0x0006
    AES_256_CTR_HMAC_SHA512_64 = 0x0007
    AES_256_CTR_HMAC_SHA512_32 = 0x0008


@dataclass(frozen=True, slots=True)
class SuiteParams:
    """The constants of §4.5's table. ``nka`` is None for the GCM suites."""

    suite: SFrameSuite
    hash_name: str
    nh: int
    nka: int | None
    nk: int
    nn: int
    nt: int

    def hash(self) -> hashes.HashAlgorithm:
        return hashes.SHA256() if self.hash_name == "sha256" else hashes.SHA512()


def _ctr(suite: SFrameSuite, h: str, nh: int, nka: int, nt: int) -> SuiteParams:
    return SuiteParams(suite, h, nh, nka, nka + nh, 12, nt)


_SUITES: dict[SFrameSuite, SuiteParams] = {
    SFrameSuite.AES_128_CTR_HMAC_SHA256_80: _ctr(
        SFrameSuite.AES_128_CTR_HMAC_SHA256_80, "sha256", 32, 16, 10
    ),
    SFrameSuite.AES_128_CTR_HMAC_SHA256_64: _ctr(
        SFrameSuite.AES_128_CTR_HMAC_SHA256_64, "sha256", 32, 16, 8
    ),
    SFrameSuite.AES_128_CTR_HMAC_SHA256_32: _ctr(
        SFrameSuite.AES_128_CTR_HMAC_SHA256_32, "sha256", 32, 16, 4
    ),
    SFrameSuite.AES_128_GCM_SHA256_128: SuiteParams(
        SFrameSuite.AES_128_GCM_SHA256_128, "sha256", 32, None, 16, 12, 16
    ),
    SFrameSuite.AES_256_GCM_SHA512_128: SuiteParams(
        SFrameSuite.AES_256_GCM_SHA512_128, "sha512", 64, None, 32, 12, 16
    ),
    SFrameSuite.AES_256_CTR_HMAC_SHA512_80: _ctr(
        SFrameSuite.AES_256_CTR_HMAC_SHA512_80, "sha512", 64, 32, 10
    ),
    SFrameSuite.AES_256_CTR_HMAC_SHA512_64: _ctr(
        SFrameSuite.AES_256_CTR_HMAC_SHA512_64, "sha512", 64, 32, 8
    ),
    SFrameSuite.AES_256_CTR_HMAC_SHA512_32: _ctr(
        SFrameSuite.AES_256_CTR_HMAC_SHA512_32, "sha512", 64, 32, 4
    ),
}


def suite_params(suite: int) -> SuiteParams:
    """The constants of ``suite``; `ConfigurationError` for a value that is no known suite."""
    try:
        return _SUITES[SFrameSuite(suite)]
    except ValueError:
        raise ConfigurationError(f"unknown SFrame cipher suite {suite:#06x}") from None


# --- header (§4.3) --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Header:
    """§4.3: ``|X| K |Y| C |  KID...  |  CTR...  |``; values 0-7 live in the config byte."""

    kid: int
    ctr: int

    def __post_init__(self) -> None:
        if not (0 <= self.kid <= MAX_VALUE and 0 <= self.ctr <= MAX_VALUE):
            raise ConfigurationError("SFrame KID and CTR must be in 0..2**64-1")

    def encode(self) -> bytes:
        return encode_header(self.kid, self.ctr)


def _length(value: int) -> int:
    return (value.bit_length() + 7) // 8


def encode_header(kid: int, ctr: int) -> bytes:
    """The minimal §4.3 encoding of (KID, CTR)."""
    if kid < 8 and ctr < 8 and kid >= 0 and ctr >= 0:
        return bytes(((kid << 4) | ctr,))
    if not (0 <= kid <= MAX_VALUE and 0 <= ctr <= MAX_VALUE):
        raise ConfigurationError("SFrame KID and CTR must be in 0..2**64-1")
    config = 0
    tail = b""
    if kid < 8:
        config |= kid << 4
    else:
        n = _length(kid)
        config |= 0x80 | ((n - 1) << 4)
        tail = kid.to_bytes(n, "big")
    if ctr < 8:
        config |= ctr
    else:
        n = _length(ctr)
        config |= 0x08 | (n - 1)
        tail += ctr.to_bytes(n, "big")
    return bytes((config,)) + tail


def _parse_header(data: bytes) -> tuple[int, int, int]:
    """(KID, CTR, header length) of the header at the start of ``data``; see `decode_header`."""
    if not data:
        raise DecodeError("SFrame header: empty input")
    config = data[0]
    if not config & 0x88:
        return config >> 4, config & 0x07, 1
    pos = 1
    if config & 0x80:
        n = ((config >> 4) & 0x07) + 1
        raw = data[1 : 1 + n]
        if len(raw) < n:
            raise DecodeError("SFrame header: truncated KID")
        kid = int.from_bytes(raw, "big")
        if raw[0] == 0 or kid < 8:
            raise DecodeError("SFrame header: KID not minimally encoded (RFC9605 4.3)")
        pos += n
    else:
        kid = (config >> 4) & 0x07
    if config & 0x08:
        n = (config & 0x07) + 1
        raw = data[pos : pos + n]
        if len(raw) < n:
            raise DecodeError("SFrame header: truncated CTR")
        ctr = int.from_bytes(raw, "big")
        if raw[0] == 0 or ctr < 8:
            raise DecodeError("SFrame header: CTR not minimally encoded (RFC9605 4.3)")
        pos += n
    else:
        ctr = config & 0x07
    return kid, ctr, pos


def decode_header(data: bytes) -> tuple[Header, int]:
    """Parse the header at the start of ``data``: the header and its length in bytes.

    Rejects (`DecodeError`) a truncated header and a non-minimal encoding (§4.3: a value MUST
    use the fewest bytes; 0-7 MUST sit in the config byte).
    """
    kid, ctr, n = _parse_header(data)
    return Header(kid, ctr), n


# --- key derivation (§4.4.2) ----------------------------------------------------------------


def key_label(suite: SFrameSuite, kid: int) -> bytes:
    """``"SFrame 1.0 Secret key " + KID (8 bytes) + cipher_suite (2 bytes)``."""
    return b"SFrame 1.0 Secret key " + kid.to_bytes(8, "big") + int(suite).to_bytes(2, "big")


def salt_label(suite: SFrameSuite, kid: int) -> bytes:
    """``"SFrame 1.0 Secret salt " + KID (8 bytes) + cipher_suite (2 bytes)``."""
    return b"SFrame 1.0 Secret salt " + kid.to_bytes(8, "big") + int(suite).to_bytes(2, "big")


@dataclass(frozen=True, slots=True)
class DerivedKeys:
    """The outputs of §4.4.2 ``derive_key_salt`` (and its intermediate ``sframe_secret``)."""

    secret: SFrameSecret
    key: SFrameKey
    salt: SFrameSalt


def derive_key_salt(suite: SFrameSuite, kid: int, base_key: BaseKey) -> DerivedKeys:
    if not 0 <= kid <= MAX_VALUE:
        raise ConfigurationError("SFrame KID must be in 0..2**64-1")
    p = suite_params(suite)
    secret = HKDF.extract(p.hash(), b"", base_key.value)
    key = HKDFExpand(p.hash(), p.nk, key_label(p.suite, kid)).derive(secret)
    salt = HKDFExpand(p.hash(), p.nn, salt_label(p.suite, kid)).derive(secret)
    return DerivedKeys(SFrameSecret(secret), SFrameKey(key), SFrameSalt(salt))


def nonce_for(salt: SFrameSalt, ctr: int) -> bytes:
    """§4.4.3: ``sframe_salt XOR encode_big_endian(CTR, Nn)``."""
    n = len(salt.value)
    return (int.from_bytes(salt.value, "big") ^ ctr).to_bytes(n, "big")


# --- AEAD (§4.5, §4.5.1) --------------------------------------------------------------------


class _Aead:
    """One key's AEAD, set up once (the per-frame path only encrypts)."""

    __slots__ = ("_enc", "_gcm", "_mac", "_nt", "_tag_len_bytes")

    def __init__(self, params: SuiteParams, key: SFrameKey) -> None:
        if len(key.value) != params.nk:
            raise ConfigurationError(f"SFrame key must be {params.nk} bytes")
        self._nt = params.nt
        self._gcm: AESGCM | None = None
        self._enc: algorithms.AES | None = None
        self._mac: pyca_hmac.HMAC | None = None
        self._tag_len_bytes = params.nt.to_bytes(8, "big")
        if params.nka is None:
            self._gcm = AESGCM(key.value)
        else:
            # §4.5.1 derive_subkeys: enc_key = key[..Nka], auth_key = key[Nka..].
            self._enc = algorithms.AES(key.value[: params.nka])
            # HMAC keyed once; each tag continues from a copy (cheaper than keying again).
            self._mac = pyca_hmac.HMAC(key.value[params.nka :], params.hash())

    def _tag(self, nonce: bytes, aad: bytes, ct: bytes) -> bytes:
        # §4.5.1 compute_tag: HMAC(auth_key, len(aad) || len(ct) || Nt || nonce || aad || ct)[..Nt]
        assert self._mac is not None
        mac = self._mac.copy()
        mac.update(
            len(aad).to_bytes(8, "big")
            + len(ct).to_bytes(8, "big")
            + self._tag_len_bytes
            + nonce
            + aad
            + ct
        )
        return mac.finalize()[: self._nt]

    def _ctr(self, nonce: bytes, data: bytes) -> bytes:
        assert self._enc is not None
        # initial_counter = nonce || 0x00000000
        ctx = Cipher(self._enc, modes.CTR(nonce + b"\x00\x00\x00\x00")).encryptor()
        return ctx.update(data) + ctx.finalize()

    # Both have pyca's AEAD signature (nonce, data, aad); open raises pyca's `InvalidTag`,
    # which the callers translate into `FrameDecryptError` at one place each.

    def _ctr_hmac_seal(self, nonce: bytes, pt: bytes, aad: bytes) -> bytes:
        ct = self._ctr(nonce, pt)
        return ct + self._tag(nonce, aad, ct)

    def _ctr_hmac_open(self, nonce: bytes, ct: bytes, aad: bytes) -> bytes:
        if len(ct) < self._nt:
            raise InvalidTag
        inner, tag = ct[: len(ct) - self._nt], ct[len(ct) - self._nt :]
        if not constant_time_equal(tag, self._tag(nonce, aad, inner)):
            raise InvalidTag
        return self._ctr(nonce, inner)

    def seal_function(self) -> Callable[[bytes, bytes, bytes], bytes]:
        """``AEAD.Encrypt`` as ``seal(nonce, plaintext, aad)`` (pyca's own for GCM)."""
        return self._gcm.encrypt if self._gcm is not None else self._ctr_hmac_seal

    def open_function(self) -> Callable[[bytes, bytes, bytes], bytes]:
        """``AEAD.Decrypt`` as ``open(nonce, ciphertext, aad)``; raises pyca's `InvalidTag`."""
        return self._gcm.decrypt if self._gcm is not None else self._ctr_hmac_open


def aead_encrypt(suite: SFrameSuite, key: SFrameKey, nonce: bytes, aad: bytes, pt: bytes) -> bytes:
    """``AEAD.Encrypt(key, nonce, aad, pt)`` of ``suite`` (tag appended)."""
    return _Aead(suite_params(suite), key).seal_function()(nonce, pt, aad)


def aead_decrypt(suite: SFrameSuite, key: SFrameKey, nonce: bytes, aad: bytes, ct: bytes) -> bytes:
    """``AEAD.Decrypt``; raises `FrameDecryptError` when the tag does not verify."""
    try:
        return _Aead(suite_params(suite), key).open_function()(nonce, ct, aad)
    except InvalidTag:
        raise FrameDecryptError("SFrame frame does not authenticate") from None


# --- sender (§4.4.3, §9.1) ------------------------------------------------------------------


def _native_key(
    module: ModuleType, params: SuiteParams, derived: DerivedKeys, window: int
) -> FrameKey:
    """The C path's key object of one KID."""
    key: FrameKey = module.FrameKey(
        derived.key.value, derived.salt.value, window, params.nka or 0, params.hash_name, params.nt
    )
    return key


def _frame_sealer(
    params: SuiteParams, derived: DerivedKeys
) -> Callable[[bytes, int, bytes, bytes], bytes]:
    """``seal(header, ctr, plaintext, metadata) -> header || ciphertext`` of §4.4.3."""
    if native is not None:
        return _native_key(native, params, derived, 0).seal_frame
    seal = _Aead(params, derived.key).seal_function()
    salt_int = int.from_bytes(derived.salt.value, "big")

    def seal_frame(header: bytes, ctr: int, plaintext: bytes, metadata: bytes) -> bytes:
        # int.to_bytes is big-endian by default (Python 3.11+), as §4.4.3 needs.
        nonce = (salt_int ^ ctr).to_bytes(12)
        return header + seal(nonce, plaintext, header + metadata if metadata else header)

    return seal_frame


def _kid_prefixes(kid: int) -> tuple[bytes, ...]:
    """For a CTR of n bytes (index n, 1-8), the config byte and KID bytes that precede it."""
    return tuple(encode_header(kid, 1 << (8 * n - 1))[:-n] if n else b"" for n in range(9))


class SFrameSender:
    """Encrypts frames under one KID. Its key is for encryption only (§4.4.1).

    Counters follow §9.1: the caller reserves a block with `reserve`, persists the returned
    bound, then encrypts; after a restart it resumes with ``next_ctr=`` that persisted bound.
    Within one object a CTR is never used twice, and `encrypt` refuses (`CounterExhausted`)
    once the reservation is used up, so a counter that was not persisted is never used.
    """

    __slots__ = (
        "_headers",
        "_kid",
        "_limit",
        "_next",
        "_seal_frame",
        "_suite",
        "_two",
        "_two_len",
        "_wide",
    )

    def __init__(self, suite: SFrameSuite, kid: int, base_key: BaseKey, *, next_ctr: int = 0):
        if not 0 <= next_ctr <= MAX_VALUE + 1:
            raise ConfigurationError("SFrame next_ctr must be in 0..2**64")
        derived = derive_key_salt(suite, kid, base_key)
        self._suite = SFrameSuite(suite)
        self._kid = kid
        self._seal_frame = _frame_sealer(suite_params(suite), derived)
        # §4.3 headers precomputed: whole for CTRs below 256 (CTR 0-7 in the config byte, then
        # one CTR byte); for a CTR of n bytes, the header as an int to OR the CTR into and its
        # length (two-byte CTRs, the next 65,280 frames, in slots of their own).
        self._headers = tuple(encode_header(kid, ctr) for ctr in range(256))
        self._wide = tuple(
            (int.from_bytes(prefix) << 8 * n, len(prefix) + n)
            for n, prefix in enumerate(_kid_prefixes(kid))
        )
        self._two, self._two_len = self._wide[2]
        self._next = next_ctr
        self._limit = next_ctr

    def __repr__(self) -> str:
        return f"SFrameSender(suite={self._suite.name}, kid={self._kid}, next_ctr={self._next})"

    def __reduce__(self) -> NoReturn:
        # A copy (copy, deepcopy, pickle) would be a second sender with the same counters.
        raise TypeError("an SFrameSender cannot be copied; persist reserved_until instead")

    @property
    def kid(self) -> int:
        return self._kid

    @property
    def next_ctr(self) -> int:
        """The CTR the next `encrypt` uses."""
        return self._next

    @property
    def reserved_until(self) -> int:
        """CTRs below this bound may be used; persist it before encrypting (§9.1)."""
        return self._limit

    def reserve(self, count: int) -> int:
        """Allow ``count`` more frames; returns the new bound, which the caller persists and
        passes back as ``next_ctr`` after a restart."""
        if count <= 0:
            raise ConfigurationError("reserve a positive number of counters")
        limit = min(self._limit + count, MAX_VALUE + 1)
        if limit == self._limit:
            raise CounterExhausted("SFrame counter space of this KID is used up")
        self._limit = limit
        return limit

    def encrypt(self, plaintext: bytes, metadata: bytes = b"") -> bytes:
        """§4.4.3 ``encrypt(CTR, KID, metadata, plaintext)`` with the next CTR: header || ct."""
        ctr = self._next
        if ctr >= self._limit:
            raise CounterExhausted("no reserved SFrame counter left; call reserve() first")
        # The counter moves first: whatever happens below, this CTR is spent.
        self._next = ctr + 1
        if ctr < 256:
            header = self._headers[ctr]
        elif ctr < 65536:
            header = (self._two | ctr).to_bytes(self._two_len)
        else:
            prefix, length = self._wide[(ctr.bit_length() + 7) >> 3]
            header = (prefix | ctr).to_bytes(length)
        return self._seal_frame(header, ctr, plaintext, metadata)


# --- receiver (§4.4.4, §9.3) ----------------------------------------------------------------


class Decrypted(NamedTuple):
    """What `SFrameReceiver.decrypt` returns: the frame's KID and CTR, and its plaintext."""

    kid: int
    ctr: int
    plaintext: bytes


if native is not None:
    native.set_result_type(Decrypted)

MAX_WINDOW = 1 << 16
"""The largest replay window an `SFrameReceiver` takes (it keeps a byte per frame per KID)."""


class _WindowKey(Protocol):
    """One KID's key and replay window: `_ReceiveKey`, or the C path's ``FrameKey``."""

    highest: int

    @property
    def seen(self) -> bytearray: ...
    @property
    def salt_int(self) -> int: ...
    def open(self, nonce: bytes, data: bytes, aad: bytes, /) -> bytes: ...


class _ReceiveKey:
    """One KID's key and replay window (RFC 3711 §3.3.2 style): ``highest`` CTR accepted and a
    ring of ``window`` bytes where ``seen[ctr % window]`` says whether ``ctr`` was accepted, for
    the CTRs ``highest - window + 1 .. highest`` (moving ``highest`` clears the slots of the
    CTRs it skips, so no slot ever speaks for a CTR outside the window)."""

    __slots__ = ("highest", "open", "salt_int", "seen")

    def __init__(
        self, open_: Callable[[bytes, bytes, bytes], bytes], salt_int: int, window: int
    ) -> None:
        self.open = open_
        self.salt_int = salt_int
        self.highest = -1
        self.seen = bytearray(window)


def _skip_to(entry: _WindowKey, ctr: int) -> None:
    """Forget the CTRs between ``highest`` and ``ctr`` (a jump ahead: frames lost or late)."""
    seen = entry.seen
    window = len(seen)
    count = ctr - entry.highest - 1
    if count >= window:
        seen[:] = bytes(window)
        return
    start = (entry.highest + 1) % window
    if start + count <= window:
        seen[start : start + count] = bytes(count)
    else:
        seen[start:] = bytes(window - start)
        seen[: start + count - window] = bytes(start + count - window)


def _bitmap(entry: _WindowKey) -> int:
    """The window as an int whose bit i says ``highest - i`` was accepted."""
    seen = entry.seen
    window = len(seen)
    depth = min(window, entry.highest + 1)
    return sum(1 << i for i in range(depth) if seen[(entry.highest - i) % window])


class SFrameReceiver:
    """Decrypts frames by KID; its keys are for decryption only (§4.4.1).

    ``window`` is the replay window per KID in frames (0 turns replay checks off, at most
    `MAX_WINDOW`): a CTR already accepted, or ``window`` or more below the highest accepted,
    raises `ReplayedFrame`. A frame that fails in any way changes nothing: the window moves
    only after the tag verified.
    """

    __slots__ = ("_keys", "_open_frame", "_suite", "_window")

    def __init__(self, suite: SFrameSuite, *, window: int = 128) -> None:
        if not 0 <= window <= MAX_WINDOW:
            raise ConfigurationError(f"replay window must be in 0..{MAX_WINDOW}")
        self._suite = SFrameSuite(suite)
        self._window = window
        self._keys: dict[int, _WindowKey] = {}
        # The C path for a frame (None: one it leaves to the Python path below, which decides).
        self._open_frame: (
            Callable[[dict[int, _WindowKey], bytes, bytes], Decrypted | None] | None
        ) = native.open_frame if native is not None else None

    def __repr__(self) -> str:
        return f"SFrameReceiver(suite={self._suite.name}, kids={sorted(self._keys)})"

    def add_key(self, kid: int, base_key: BaseKey) -> None:
        """Install (or replace, with a fresh replay window) the key for ``kid``."""
        derived = derive_key_salt(self._suite, kid, base_key)
        params = suite_params(self._suite)
        entry: _WindowKey
        if self._open_frame is not None and native is not None:
            entry = _native_key(native, params, derived, self._window)
        else:
            entry = _ReceiveKey(
                _Aead(params, derived.key).open_function(),
                int.from_bytes(derived.salt.value, "big"),
                self._window,
            )
        self._keys[kid] = entry

    def remove_key(self, kid: int) -> None:
        self._keys.pop(kid, None)

    def remove_where(self, predicate: Callable[[int], bool]) -> None:
        """Drop every KID for which ``predicate`` holds (e.g. an MLS epoch's, §5.2)."""
        for kid in [k for k in self._keys if predicate(k)]:
            self.remove_key(kid)

    def kids(self) -> frozenset[int]:
        return frozenset(self._keys)

    def window_of(self, kid: int) -> tuple[int, int]:
        """(highest CTR accepted or -1, bitmap whose bit i says ``highest - i`` was accepted)
        of ``kid``'s replay window."""
        entry = self._keys[kid]
        return entry.highest, _bitmap(entry)

    def decrypt(self, frame: bytes, metadata: bytes = b"") -> Decrypted:
        """§4.4.4 ``decrypt(metadata, sframe_ciphertext)``: KID, CTR and plaintext."""
        # The C path answers a plainly valid frame in one call; anything else it leaves to the
        # reference path below, which decides (and raises the typed error).
        open_frame = self._open_frame
        if open_frame is not None:
            decrypted = open_frame(self._keys, frame, metadata)
            if decrypted is not None:
                return decrypted
        kid, ctr, end = _parse_header(frame)  # DecodeError first: a cut or non-minimal header
        entry = self._keys.get(kid)
        if entry is None:
            raise UnknownKeyId(f"no SFrame key for KID {kid}", "RFC9605 4.4.4")
        window = self._window
        highest = entry.highest
        if window and ctr <= highest:
            if highest - ctr >= window:
                raise ReplayedFrame("SFrame CTR is older than the replay window", "RFC9605 9.3")
            if entry.seen[ctr % window]:
                raise ReplayedFrame("SFrame CTR was already received", "RFC9605 9.3")
        header = frame[:end]
        try:
            plaintext = entry.open(
                (entry.salt_int ^ ctr).to_bytes(12), frame[end:], header + metadata
            )
        except InvalidTag:
            raise FrameDecryptError("SFrame frame does not authenticate") from None
        if window:  # §9.3: the window moves only after the tag verified
            if ctr > highest:
                _skip_to(entry, ctr)
                entry.highest = ctr
            entry.seen[ctr % window] = 1
        return Decrypted(kid, ctr, plaintext)


# --- MLS keying (§5.2) ----------------------------------------------------------------------

Exporter = Callable[[bytes, bytes, int], bytes]
"""``MLS-Exporter(label, context, length)``, e.g. ``Group.export_secret``."""


def mls_base_key(export: Exporter, suite: SFrameSuite) -> BaseKey:
    """§5.2: ``base_key = MLS-Exporter("SFrame 1.0 Base Key", "", AEAD.Nk)`` for one epoch."""
    return BaseKey(export(MLS_BASE_KEY_LABEL, b"", suite_params(suite).nk))


def mls_base_key_from_secret(
    mls_suite: CipherSuite, exporter_secret: ExporterSecret, suite: SFrameSuite
) -> BaseKey:
    """`mls_base_key` from an epoch's ``exporter_secret`` directly (RFC 9420 §8.5)::

    ExpandWithLabel(DeriveSecret(exporter_secret, "SFrame 1.0 Base Key"), "exported",
                    Hash(""), AEAD.Nk)
    """
    derived = mls_suite.derive_secret(exporter_secret.value, MLS_BASE_KEY_LABEL)
    length = suite_params(suite).nk
    return BaseKey(mls_suite.expand_with_label(derived, b"exported", mls_suite.hash(b""), length))


def index_bits_for(group_size: int) -> int:
    """§5.2 ``S``: the smallest value with ``group_size <= 1 << S``."""
    if group_size < 1:
        raise ConfigurationError("group size must be at least 1")
    return (group_size - 1).bit_length()


@dataclass(frozen=True, slots=True)
class MlsKidLayout:
    """§5.2 KID layout: ``context (64-S-E bits) | sender index (S bits) | epoch % 2**E``."""

    epoch_bits: int
    index_bits: int

    def __post_init__(self) -> None:
        if self.epoch_bits < 0 or self.index_bits < 0 or self.epoch_bits + self.index_bits > 64:
            raise ConfigurationError("MLS KID layout needs E, S >= 0 and E + S <= 64")

    def kid(self, sender_index: int, epoch: int, context: int = 0) -> int:
        """``KID = (context << (S + E)) + (sender_index << E) + (epoch % (1 << E))``."""
        e, s = self.epoch_bits, self.index_bits
        if not 0 <= sender_index < (1 << s):
            raise ConfigurationError(f"sender index {sender_index} does not fit in {s} bits")
        if not 0 <= context < (1 << (64 - s - e)):
            raise ConfigurationError(f"context {context} does not fit in {64 - s - e} bits")
        if epoch < 0:
            raise ConfigurationError("epoch must be >= 0")
        return (context << (s + e)) + (sender_index << e) + (epoch % (1 << e))

    def split(self, kid: int) -> tuple[int, int, int]:
        """The (context, sender index, epoch low bits) a KID carries."""
        e, s = self.epoch_bits, self.index_bits
        return kid >> (s + e), (kid >> e) & ((1 << s) - 1), kid & ((1 << e) - 1)

    def epoch_bits_of(self, kid: int) -> int:
        return kid & ((1 << self.epoch_bits) - 1)
