"""The KT-lite ``DeviceList``: the value stored under an account's label (design notes §1.3).

Each version lists the account's devices (device id, MLS signature key and its cipher suite,
MLS credential identity) and is signed by one of the account's devices with its MLS signature
key, so the server cannot forge a list, and a device added behind the owner's back is visible
to every device that monitors the label. Encoded with `doorless.codec` (RFC 9420 varints)::

    struct {
      opaque device_id<V>;
      uint16 cipher_suite;            // MLS cipher suite of signature_key
      opaque signature_key<V>;        // the device's MLS signature public key
      opaque identity<V>;             // the device's MLS credential identity
    } Device;

    struct {
      opaque user_id<V>;
      uint32 version;                 // equals the KT version of the label
      uint64 ts;                      // milliseconds since the Unix epoch (a parameter)
      Device devices<V>;
      opaque prev_hash<V>;            // SHA-256 of the previous DeviceList; empty in version 0
      opaque signer_device_id<V>;
    } DeviceListTBS;

    struct {
      DeviceListTBS tbs;
      opaque signature<V>;            // SignWithLabel(signer key, "Doorless DeviceListTBS", tbs)
    } DeviceList;

The signature uses RFC 9420 §5.1.2 SignWithLabel (label "MLS 1.0 Doorless DeviceListTBS"), so
it can never be confused with a signature on an MLS structure.

Chain rules (each violation is a `ValidationError` with the rule id; a bad signature is an
`InvalidSignature`):

* DL-1: a list has at least one device, device ids are non-empty and unique, every cipher
  suite is supported, and the signer is named.
* DL-2: version 0 has an empty prev_hash and is signed by one of its own devices (the new
  account's first device).
* DL-3: version n > 0 follows version n - 1 exactly (no rollback, no gap).
* DL-4: prev_hash is the hash of the previous version.
* DL-5: user_id never changes.
* DL-6: version n > 0 is signed by a device of version n - 1 (a device removed in n - 1, or
  one only added in n, cannot sign), with that device's key from version n - 1.
* DL-7: ts never decreases.
* DL-8: a list read from KT has the user id and version of the label and version it was
  found under (`check_binding`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Self

from doorless.codec import Reader, Writer, decode, encode, push_struct
from doorless.crypto import CipherSuite, cipher_suite
from doorless.errors import ConfigurationError, DecodeError, ValidationError

SIGNATURE_LABEL = b"Doorless DeviceListTBS"
ACCOUNT_LABEL_PREFIX = b"u:"
MAX_VERSION = (1 << 32) - 1


def account_label(user_id: bytes) -> bytes:
    """The KT label of an account: ``u:<user_id>``."""
    label = ACCOUNT_LABEL_PREFIX + user_id
    if len(label) > 255:
        raise ConfigurationError("user ids have at most 253 bytes")
    return label


@dataclass(frozen=True, slots=True)
class Device:
    device_id: bytes
    cipher_suite: int
    signature_key: bytes
    identity: bytes

    def push(self, w: Writer) -> None:
        w.push_opaque(self.device_id)
        w.push_uint16(self.cipher_suite)
        w.push_opaque(self.signature_key)
        w.push_opaque(self.identity)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        return cls(r.pull_opaque(), r.pull_uint16(), r.pull_opaque(), r.pull_opaque())


@dataclass(frozen=True, slots=True)
class DeviceListTBS:
    user_id: bytes
    version: int
    ts: int
    devices: tuple[Device, ...]
    prev_hash: bytes
    signer_device_id: bytes

    def push(self, w: Writer) -> None:
        w.push_opaque(self.user_id)
        w.push_uint32(self.version)
        w.push_uint64(self.ts)
        w.push_vector(self.devices, push_struct)
        w.push_opaque(self.prev_hash)
        w.push_opaque(self.signer_device_id)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        user_id = r.pull_opaque()
        version = r.pull_uint32()
        ts = r.pull_uint64()
        devices = tuple(r.pull_vector(Device.pull))
        return cls(user_id, version, ts, devices, r.pull_opaque(), r.pull_opaque())

    def device(self, device_id: bytes) -> Device | None:
        return next((d for d in self.devices if d.device_id == device_id), None)


@dataclass(frozen=True, slots=True)
class DeviceList:
    tbs: DeviceListTBS
    signature: bytes

    def push(self, w: Writer) -> None:
        self.tbs.push(w)
        w.push_opaque(self.signature)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        return cls(DeviceListTBS.pull(r), r.pull_opaque())

    @property
    def user_id(self) -> bytes:
        return self.tbs.user_id

    @property
    def version(self) -> int:
        return self.tbs.version

    @property
    def devices(self) -> tuple[Device, ...]:
        return self.tbs.devices

    def device(self, device_id: bytes) -> Device | None:
        return self.tbs.device(device_id)

    def hash(self) -> bytes:
        """SHA-256 of the encoded list: the next version's prev_hash."""
        return hashlib.sha256(encode(self)).digest()

    def encode(self) -> bytes:
        """The KT value."""
        return encode(self)


def decode_device_list(value: bytes) -> DeviceList:
    """Decode a KT value (`DecodeError` on malformed bytes, including trailing bytes)."""
    return decode(DeviceList, value)


# --- signing ------------------------------------------------------------------------------------


def _suite(device: Device) -> CipherSuite:
    try:
        return cipher_suite(device.cipher_suite)
    except DecodeError:
        raise ValidationError(
            f"device uses unsupported cipher suite {device.cipher_suite}", rule="KT-lite DL-1"
        ) from None


def sign_device_list(tbs: DeviceListTBS, signer: Device, private_key: bytes) -> DeviceList:
    """Sign ``tbs`` as ``signer`` (whose entry, in the previous version or in version 0 this
    one, gives the key and suite)."""
    if signer.device_id != tbs.signer_device_id:
        raise ConfigurationError("the signer is not the device named in signer_device_id")
    suite = _suite(signer)
    if suite.signature_public_key(private_key) != signer.signature_key:
        raise ConfigurationError("the private key does not belong to the signing device")
    return DeviceList(tbs, suite.sign_with_label(private_key, SIGNATURE_LABEL, encode(tbs)))


def create_device_list(user_id: bytes, device: Device, private_key: bytes, ts: int) -> DeviceList:
    """Version 0 of a new account, signed by its first device."""
    tbs = DeviceListTBS(user_id, 0, ts, (device,), b"", device.device_id)
    return sign_device_list(tbs, device, private_key)


def next_device_list(
    prev: DeviceList,
    devices: Sequence[Device],
    ts: int,
    signer_device_id: bytes,
    private_key: bytes,
) -> DeviceList:
    """The version after ``prev`` listing ``devices``, signed by a device of ``prev``."""
    signer = prev.device(signer_device_id)
    if signer is None:
        raise ConfigurationError("the signer must be a device of the previous version")
    if prev.version >= MAX_VERSION:
        raise ConfigurationError("no version after 2^32 - 1")
    tbs = DeviceListTBS(
        prev.user_id, prev.version + 1, ts, tuple(devices), prev.hash(), signer_device_id
    )
    return sign_device_list(tbs, signer, private_key)


# --- verification -------------------------------------------------------------------------------


def _fail(message: str, rule: str) -> ValidationError:
    return ValidationError(message, rule=f"KT-lite {rule}")


def _check_well_formed(dl: DeviceList) -> None:
    devices = dl.devices
    if not devices:
        raise _fail("a device list has at least one device", "DL-1")
    ids = [d.device_id for d in devices]
    if any(not i for i in ids) or len(set(ids)) != len(ids):
        raise _fail("device ids are non-empty and unique", "DL-1")
    for device in devices:
        _suite(device)
    if not dl.tbs.signer_device_id:
        raise _fail("the signer is named", "DL-1")


def _verify_signature(dl: DeviceList, signer: Device) -> None:
    _suite(signer).verify_with_label(
        signer.signature_key, SIGNATURE_LABEL, encode(dl.tbs), dl.signature
    )


def verify_first(dl: DeviceList) -> None:
    """Verify version 0 of an account (rules DL-1, DL-2)."""
    _check_well_formed(dl)
    if dl.version != 0:
        raise _fail(f"expected version 0, got {dl.version}", "DL-2")
    if dl.tbs.prev_hash:
        raise _fail("version 0 has no previous hash", "DL-2")
    signer = dl.device(dl.tbs.signer_device_id)
    if signer is None:
        raise _fail("version 0 is signed by one of its own devices", "DL-2")
    _verify_signature(dl, signer)


def verify_successor(prev: DeviceList, dl: DeviceList) -> None:
    """Verify that ``dl`` validly follows ``prev`` (which the caller already trusts)."""
    _check_well_formed(dl)
    if dl.version != prev.version + 1:
        raise _fail(f"version {dl.version} does not follow version {prev.version}", "DL-3")
    if dl.tbs.prev_hash != prev.hash():
        raise _fail("prev_hash is not the hash of the previous version", "DL-4")
    if dl.user_id != prev.user_id:
        raise _fail("the user id changed", "DL-5")
    signer = prev.device(dl.tbs.signer_device_id)
    if signer is None:
        raise _fail("the signer is not a device of the previous version", "DL-6")
    if dl.tbs.ts < prev.tbs.ts:
        raise _fail("the timestamp went backwards", "DL-7")
    _verify_signature(dl, signer)


def verify_chain(lists: Sequence[DeviceList], trusted: DeviceList | None = None) -> DeviceList:
    """Verify consecutive versions; start from ``trusted`` (already verified) or version 0.

    Returns the last list. An empty ``lists`` returns ``trusted``.
    """
    prev = trusted
    for dl in lists:
        if prev is None:
            verify_first(dl)
        else:
            verify_successor(prev, dl)
        prev = dl
    if prev is None:
        raise ConfigurationError("nothing to verify")
    return prev


def check_binding(dl: DeviceList, user_id: bytes, version: int) -> None:
    """DL-8: the list found in KT under (account_label(user_id), version) must say so."""
    if dl.user_id != user_id:
        raise _fail("the device list belongs to another user", "DL-8")
    if dl.version != version:
        raise _fail(f"device list version {dl.version} stored as KT version {version}", "DL-8")


__all__ = [
    "ACCOUNT_LABEL_PREFIX",
    "SIGNATURE_LABEL",
    "Device",
    "DeviceList",
    "DeviceListTBS",
    "account_label",
    "check_binding",
    "create_device_list",
    "decode_device_list",
    "next_device_list",
    "sign_device_list",
    "verify_chain",
    "verify_first",
    "verify_successor",
]
