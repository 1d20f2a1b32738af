"""Safety numbers: a number two people compare to know they see each other's real keys.

The number covers the *verified key sets* of both users: the device lists that key
transparency vouched for (`doorless.client.kt.VerifiedDeviceList`). Each user's half is
computed like Signal's numeric fingerprint (version 0 of "NumericFingerprint")::

    h = SHA-512(0x0000 || key_set || username)
    repeat 5200 times: h = SHA-512(h || key_set)
    half = 30 decimal digits: 6 chunks of 5 bytes of h, each as big-endian int mod 100000

with ``key_set`` the concatenation, over the user's devices sorted by id, of
``opaque device_id<V> || opaque signature_key<V>``. The safety number is the two halves
ordered (the smaller first), 60 digits, so both people see the same number. Any change to
either key set (a device linked, revoked, or a key swapped) changes it; this is why a device
added to an account changes its safety number, like Signal's when someone reinstalls.

The QR code carries ``"DLSN" || 0x01 || the two halves' 30-byte hashes (ordered like the
digits)``; scanning the other's code and comparing (`matches_scanned`) replaces reading the
60 digits aloud. `qr_text` renders it for a terminal (the ``qrcode`` package).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping
from dataclasses import dataclass

import qrcode

from doorless.codec import Writer
from doorless.errors import ConfigurationError
from doorless.secret import constant_time_equal

ITERATIONS = 5200
FINGERPRINT_VERSION = b"\x00\x00"
QR_PREFIX = b"DLSN\x01"
HALF_BYTES = 30


def key_set(devices: Mapping[str, bytes]) -> bytes:
    """The canonical encoding of ``{device_id: signature_key}``."""
    w = Writer()
    for device_id in sorted(devices):
        w.push_opaque(device_id.encode("ascii"))
        w.push_opaque(devices[device_id])
    return w.getvalue()


def user_fingerprint(username: str, devices: Mapping[str, bytes]) -> bytes:
    """The 30-byte fingerprint of one user's key set (see the module docstring)."""
    material = key_set(devices)
    h = hashlib.sha512(FINGERPRINT_VERSION + material + username.encode("ascii")).digest()
    for _ in range(ITERATIONS):
        h = hashlib.sha512(h + material).digest()
    return h[:HALF_BYTES]


def digits_of(fingerprint: bytes) -> str:
    """30 digits: six 5-byte chunks, each big-endian mod 100000."""
    return "".join(
        f"{int.from_bytes(fingerprint[i : i + 5], 'big') % 100000:05d}"
        for i in range(0, HALF_BYTES, 5)
    )


@dataclass(frozen=True, slots=True)
class SafetyNumber:
    """The safety number of ``local`` and ``remote`` (usernames) and their halves."""

    local: str
    remote: str
    local_fingerprint: bytes
    remote_fingerprint: bytes

    def _ordered(self) -> tuple[bytes, bytes]:
        a, b = self.local_fingerprint, self.remote_fingerprint
        return (a, b) if digits_of(a) <= digits_of(b) else (b, a)

    @property
    def digits(self) -> str:
        """The 60 digits both people see."""
        first, second = self._ordered()
        return digits_of(first) + digits_of(second)

    def display(self) -> str:
        """12 groups of 5 digits in 3 lines (how Signal shows it)."""
        d = self.digits
        groups = [d[i : i + 5] for i in range(0, 60, 5)]
        return "\n".join(" ".join(groups[i : i + 4]) for i in range(0, 12, 4))

    def qr_payload(self) -> bytes:
        first, second = self._ordered()
        return QR_PREFIX + first + second

    def qr_text(self) -> str:
        """The QR code as text for a terminal (two characters per module)."""
        return qr_text(self.qr_payload())


def safety_number(
    local: str,
    local_devices: Mapping[str, bytes],
    remote: str,
    remote_devices: Mapping[str, bytes],
) -> SafetyNumber:
    """The safety number of two users' verified key sets (``{device_id: key}`` each)."""
    if local == remote:
        raise ConfigurationError("a safety number is between two different users")
    return SafetyNumber(
        local,
        remote,
        user_fingerprint(local, local_devices),
        user_fingerprint(remote, remote_devices),
    )


def matches_scanned(number: SafetyNumber, scanned: bytes) -> bool:
    """True if the other person's QR code shows the same pair of key sets."""
    return len(scanned) == len(number.qr_payload()) and constant_time_equal(
        scanned, number.qr_payload()
    )


def qr_text(payload: bytes) -> str:
    """Render ``payload`` as a QR code made of text."""
    qr = qrcode.QRCode(border=2, error_correction=qrcode.constants.ERROR_CORRECT_M)
    qr.add_data(payload)
    qr.make(fit=True)
    out = io.StringIO()
    qr.print_ascii(out=out, invert=True)
    return out.getvalue()


__all__ = [
    "SafetyNumber",
    "digits_of",
    "key_set",
    "matches_scanned",
    "qr_text",
    "safety_number",
    "user_fingerprint",
]
