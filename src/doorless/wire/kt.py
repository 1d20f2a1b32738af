"""What the key-transparency endpoints' two ends agree on (``docs/protocol-http.md``, "Key
transparency"): labels, the canonical `Device` entry of a Doorless device, the shape rules the
server enforces on an uploaded `DeviceList`, and the JSON of ``/v1/kt/*`` answers.

Imported by the server (`doorless.server.kt_service`, the routes), the client transport and
verifier (`doorless.client.kt`) and the witness, so it imports nothing but the core.

Labels (decision, see the trade-off below)
    An account's label is ``u:<username>`` (`doorless.kt.device_list.account_label` over the
    ASCII username), and its `DeviceList` has ``user_id = username``. One label per username
    means the server cannot keep two device-list chains for one name: whoever searches "bob"
    and bob's own monitoring devices see the same chain, and the binary ladder pins its
    greatest version. The alternative the KT core docstring suggests, a random 128-bit user id
    as the label, hides which usernames exist from whoever reads the audit log, but then the
    username -> user id mapping needs its own protection: served by the server alone, it lets
    the server show Alice a second, entirely fake chain for "bob" under another user id, which
    bob's devices never monitor (a split identity nothing detects); put in KT under a label
    derived from the username, it is just as enumerable as ``u:<username>``. Without a VRF no
    choice hides usernames, so we keep the simple, strictly safer one. The cost: search keys
    are a public hash (`doorless.kt.commitment`), so anyone reading ``/v1/kt/audit`` (witnesses,
    auditors) can test a guessed username and learn whether it exists and how many device-list
    versions it has and when they were added. The server's directory already tells any logged-in
    user whether a username exists. An ECVRF later replaces the search-key hash without changing
    labels or proof formats.

Device entries
    A Doorless device's MLS signature key *is* its Ed25519 device key (`doorless.client.
    conversations`), so its entry is ``Device(device_id = ASCII hex id, cipher_suite (an
    Ed25519 suite), signature_key = device key, identity = SenderIdentity(username,
    device_id))`` — the identity of its MLS BasicCredential.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from doorless.codec import decode, encode
from doorless.errors import DecodeError, ValidationError
from doorless.franking import SenderIdentity
from doorless.kt.checkpoint import SignedCheckpoint
from doorless.kt.combined import AuditEntry
from doorless.kt.device_list import Device, DeviceList, account_label
from doorless.kt.ladder import SearchResponse, VersionResponse
from doorless.kt.log_entry import LogEntry
from doorless.kt.prefix_tree import PrefixProof
from doorless.wire import protocol

T = TypeVar("T")

# MLS cipher suites whose signature scheme is Ed25519 (the device key's): 1 and 3.
ED25519_SUITES = frozenset({1, 3})
DEFAULT_SUITE = 1
ORIGIN_PREFIX = "doorless-kt/"
MAX_AUDIT_PAGE = 1000
MAX_VERSIONS_PER_SEARCH = 256
_RULE = "Doorless KT account"


def origin_of(server_id: str) -> str:
    """The checkpoint origin (and log key name) of a server."""
    return ORIGIN_PREFIX + server_id


def user_label(username: str) -> bytes:
    """``u:<username>``: the KT label of an account (see the module docstring)."""
    return account_label(username.encode("ascii"))


def credential_identity(username: str, device_id: str) -> bytes:
    """The identity of the device's MLS BasicCredential (`make_credential` in the client)."""
    return SenderIdentity(username.encode("ascii"), device_id.encode("ascii")).credential_identity()


def device_entry(
    username: str, device_id: str, device_key: bytes, cipher_suite: int = DEFAULT_SUITE
) -> Device:
    """The canonical `Device` of a Doorless device."""
    return Device(
        device_id.encode("ascii"),
        cipher_suite,
        device_key,
        credential_identity(username, device_id),
    )


def device_id_text(device: Device) -> str:
    """The hex device id of an entry (`ValidationError` if it is not one)."""
    try:
        text = device.device_id.decode("ascii")
    except UnicodeDecodeError:
        raise ValidationError("device id is not ASCII", rule=_RULE) from None
    if not protocol.is_device_id(text):
        raise ValidationError("device id is not a Doorless device id", rule=_RULE)
    return text


def check_entries(dl: DeviceList, username: str) -> dict[str, bytes]:
    """Check that every entry is a canonical Doorless device of ``username``; return
    ``{device_id: device_key}``. Raises `ValidationError`."""
    if dl.user_id != username.encode("ascii"):
        raise ValidationError("the device list names another account", rule=_RULE)
    keys: dict[str, bytes] = {}
    for device in dl.devices:
        device_id = device_id_text(device)
        if device.cipher_suite not in ED25519_SUITES:
            raise ValidationError("device keys are Ed25519 (cipher suite 1 or 3)", rule=_RULE)
        if len(device.signature_key) != protocol.DEVICE_KEY_LENGTH:
            raise ValidationError("device keys have 32 bytes", rule=_RULE)
        if protocol.device_id_of(device.signature_key) != device_id:
            raise ValidationError("device id is not the id of its key", rule=_RULE)
        if device.identity != credential_identity(username, device_id):
            raise ValidationError("credential identity does not name the device", rule=_RULE)
        keys[device_id] = device.signature_key
    return keys


def check_devices(dl: DeviceList, username: str, expected: dict[str, bytes]) -> None:
    """The list holds exactly the devices ``expected`` (id -> key), canonically."""
    if check_entries(dl, username) != expected:
        raise ValidationError(
            "the device list does not hold exactly the account's devices", rule=_RULE
        )


# --- JSON of the /v1/kt answers ----------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise DecodeError(f"{what} is not a base64 string")
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise DecodeError(f"{what} is not base64") from None


def _field(data: Any, key: str, kind: type, what: str) -> Any:
    if not isinstance(data, dict):
        raise DecodeError(f"{what} is not a JSON object")
    value = data.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise DecodeError(f"{what}.{key} is missing or has the wrong type")
    return value


def _optional(data: dict[str, Any], key: str, parse: Callable[[Any], T]) -> T | None:
    value = data.get(key)
    return None if value is None else parse(value)


def _hashes(value: Any, what: str) -> tuple[bytes, ...]:
    if not isinstance(value, list) or len(value) > 128:
        raise DecodeError(f"{what} is not a list of hashes")
    out = tuple(unb64(v, what) for v in value)
    if any(len(h) != 32 for h in out):
        raise DecodeError(f"{what} holds a hash that is not 32 bytes")
    return out


@dataclass(frozen=True, slots=True)
class KtInfo:
    """``GET /v1/kt/info``: the log's origin and key, and the witnesses it collects from."""

    origin: str
    log_key: str  # c2sp.org/signed-note verifier key
    witnesses: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"origin": self.origin, "log_key": self.log_key, "witnesses": list(self.witnesses)}

    @classmethod
    def from_json(cls, data: Any) -> KtInfo:
        witnesses = _field(data, "witnesses", list, "kt info")
        if not all(isinstance(w, str) for w in witnesses):
            raise DecodeError("kt info.witnesses are not strings")
        return cls(
            _field(data, "origin", str, "kt info"),
            _field(data, "log_key", str, "kt info"),
            tuple(witnesses),
        )


@dataclass(frozen=True, slots=True)
class KtHead:
    """A signed checkpoint, the consistency proof from the size the client asked about, and
    the log's last entry with its inclusion proof (searches use that entry's prefix tree)."""

    checkpoint: bytes  # the signed note: log signature and witness cosignatures
    since: int
    consistency: tuple[bytes, ...]
    last_entry: LogEntry | None  # None only for the empty log
    last_entry_proof: tuple[bytes, ...]

    def signed(self) -> SignedCheckpoint:
        return SignedCheckpoint.decode(self.checkpoint)

    def to_json(self) -> dict[str, Any]:
        return {
            "checkpoint": self.checkpoint.decode("utf-8"),
            "since": self.since,
            "consistency": [b64(h) for h in self.consistency],
            "last_entry": None if self.last_entry is None else b64(encode(self.last_entry)),
            "last_entry_proof": [b64(h) for h in self.last_entry_proof],
        }

    @classmethod
    def from_json(cls, data: Any) -> KtHead:
        note = _field(data, "checkpoint", str, "kt head")
        since = _field(data, "since", int, "kt head")
        if since < 0:
            raise DecodeError("kt head.since is negative")
        entry = _optional(
            data, "last_entry", lambda v: decode(LogEntry, unb64(v, "kt head.last_entry"))
        )
        return cls(
            note.encode("utf-8"),
            since,
            _hashes(_field(data, "consistency", list, "kt head"), "kt head.consistency"),
            entry,
            _hashes(_field(data, "last_entry_proof", list, "kt head"), "kt head proof"),
        )


@dataclass(frozen=True, slots=True)
class KtSearch:
    """``GET /v1/kt/search``: a head, and in its last prefix tree either the greatest version
    of the label (with the requested earlier versions) or a proof that it has none."""

    head: KtHead
    label: bytes
    result: SearchResponse | None
    absent: PrefixProof | None
    versions: tuple[VersionResponse, ...]  # versions from_version .. greatest - 1, in order

    def to_json(self) -> dict[str, Any]:
        return {
            "head": self.head.to_json(),
            "label": self.label.hex(),
            "result": None if self.result is None else b64(encode(self.result)),
            "absent": None if self.absent is None else b64(encode(self.absent)),
            "versions": [b64(encode(v)) for v in self.versions],
        }

    @classmethod
    def from_json(cls, data: Any) -> KtSearch:
        head = KtHead.from_json(_field(data, "head", dict, "kt search"))
        try:
            label = bytes.fromhex(_field(data, "label", str, "kt search"))
        except ValueError:
            raise DecodeError("kt search.label is not hex") from None
        result = _optional(
            data, "result", lambda v: decode(SearchResponse, unb64(v, "kt search.result"))
        )
        absent = _optional(
            data, "absent", lambda v: decode(PrefixProof, unb64(v, "kt search.absent"))
        )
        if (result is None) == (absent is None):
            raise DecodeError("kt search has exactly one of result and absent")
        raw_versions = _field(data, "versions", list, "kt search")
        if len(raw_versions) > MAX_VERSIONS_PER_SEARCH:
            raise DecodeError("kt search has too many versions")
        versions = tuple(
            decode(VersionResponse, unb64(v, "kt search.versions")) for v in raw_versions
        )
        return cls(head, label, result, absent, versions)


@dataclass(frozen=True, slots=True)
class KtAuditItem:
    index: int
    log_entry: LogEntry
    audit: AuditEntry


@dataclass(frozen=True, slots=True)
class KtAudit:
    """``GET /v1/kt/audit``: what log entries ``start ..`` added, for witnesses to replay."""

    size: int
    entries: tuple[KtAuditItem, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "entries": [
                {
                    "index": e.index,
                    "log_entry": b64(encode(e.log_entry)),
                    "audit": b64(encode(e.audit)),
                }
                for e in self.entries
            ],
        }

    @classmethod
    def from_json(cls, data: Any) -> KtAudit:
        size = _field(data, "size", int, "kt audit")
        raw = _field(data, "entries", list, "kt audit")
        if len(raw) > MAX_AUDIT_PAGE:
            raise DecodeError("kt audit page is too long")
        entries = tuple(
            KtAuditItem(
                _field(item, "index", int, "kt audit entry"),
                decode(LogEntry, unb64(_field(item, "log_entry", str, "entry"), "log entry")),
                decode(AuditEntry, unb64(_field(item, "audit", str, "entry"), "audit entry")),
            )
            for item in raw
        )
        return cls(size, entries)


def encode_device_list(dl: DeviceList) -> str:
    return b64(dl.encode())


def decode_device_list_b64(value: str) -> DeviceList:
    return decode(DeviceList, unb64(value, "device list"))


def expected_after_link(
    current: dict[str, bytes], device_id: str, device_key: bytes
) -> dict[str, bytes]:
    return {**current, device_id: device_key}


def expected_after_revoke(current: dict[str, bytes], device_id: str) -> dict[str, bytes]:
    return {k: v for k, v in current.items() if k != device_id}


def sorted_devices(devices: Sequence[Device]) -> tuple[Device, ...]:
    """Entries in a canonical order (by device id), so equal sets give equal lists."""
    return tuple(sorted(devices, key=lambda d: d.device_id))


__all__ = [
    "DEFAULT_SUITE",
    "ED25519_SUITES",
    "KtAudit",
    "KtAuditItem",
    "KtHead",
    "KtInfo",
    "KtSearch",
    "check_devices",
    "check_entries",
    "credential_identity",
    "decode_device_list_b64",
    "device_entry",
    "device_id_text",
    "encode_device_list",
    "origin_of",
    "sorted_devices",
    "user_label",
]
