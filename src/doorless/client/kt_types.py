"""The key-transparency client's errors, settings and verified state (`doorless.client.kt`
holds the verifier that uses them; its docstring says what is checked and why)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from doorless.errors import (
    ConfigurationError,
    DecodeError,
    RemoteError,
)
from doorless.kt.checkpoint import (
    NoteVerifier,
    SignatureType,
)
from doorless.kt.device_list import (
    Device,
    DeviceList,
)
from doorless.wire.kt import (
    KtHead,
    KtInfo,
    KtSearch,
)

# --- errors -------------------------------------------------------------------------------------


class KtError(RemoteError):
    """Key transparency could not vouch for something."""


class KtUnavailable(KtError):
    """No head meeting the witness policy is available now (transient: retry later)."""


class KtViolation(KtError):
    """The server's answers contradict the transparency log's guarantees."""


class KtRollback(KtViolation):
    """The log, or a label's greatest version, is older than one already verified."""


class KtFork(KtViolation):
    """A head that is not an extension of the head verified before (split view)."""


class KeyNotInTransparencyLog(KtError):
    """A (user, device, key) that is not in the user's verified device list."""

    def __init__(self, message: str, username: str, device_id: str) -> None:
        super().__init__(message)
        self.username = username
        self.device_id = device_id


# --- configuration and state ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KtConfig:
    """Whom to trust. ``log_key`` None: pin the server's key on first use (`KtVerifier.log_key`
    then holds it; persist it and pass it here next time)."""

    witnesses: tuple[str, ...] = ()  # c2sp signed-note verifier keys (cosignature/v1)
    quorum: int = 0
    log_key: str | None = None
    witness_wait: float = 0.0  # seconds to wait for the witnesses to cosign a new head

    def __post_init__(self) -> None:
        if self.witness_wait < 0:
            raise ConfigurationError("witness_wait cannot be negative")
        if self.quorum < 0:
            raise ConfigurationError("the witness quorum cannot be negative")
        if self.quorum > len(self.witnesses):
            raise ConfigurationError(
                f"a quorum of {self.quorum} needs at least as many witness keys"
            )

    def witness_verifiers(self) -> tuple[NoteVerifier, ...]:
        try:
            verifiers = tuple(NoteVerifier.from_vkey(w) for w in self.witnesses)
        except DecodeError as exc:
            raise ConfigurationError(f"invalid witness key: {exc}") from None
        if any(v.signature_type != SignatureType.COSIGNATURE_V1 for v in verifiers):
            raise ConfigurationError("witness keys are cosignature/v1 (type 0x04) keys")
        return verifiers


@dataclass(frozen=True, slots=True)
class TrustedHead:
    """The last verified checkpoint (the client store's ``kt_checkpoint`` row)."""

    size: int
    root: bytes
    checkpoint: bytes  # the signed note as received
    verified_at: int  # Unix milliseconds


@dataclass(frozen=True, slots=True)
class KtStored:
    """What a client persists for its verifier (loaded lazily through ``loader``)."""

    trusted: TrustedHead | None = None
    log_key: str | None = None  # the pinned log key
    published: frozenset[bytes] = frozenset()  # digests of lists this device signed


@dataclass(frozen=True, slots=True)
class VerifiedDeviceList:
    """A user's device list, verified up to ``version`` in the head of ``head_size``."""

    username: str
    device_list: DeviceList
    head_size: int

    @property
    def version(self) -> int:
        return self.device_list.version

    def devices(self) -> dict[str, bytes]:
        """``{device_id: device key}``."""
        return {d.device_id.decode("ascii"): d.signature_key for d in self.device_list.devices}

    def device(self, device_id: str) -> Device | None:
        return self.device_list.device(device_id.encode("ascii"))


@dataclass(frozen=True, slots=True)
class LogView:
    """This device's view of the log, to compare out of band (``doorless verify``): the
    pinned log key with its fingerprint, and the latest verified checkpoint."""

    log_key: str
    size: int
    root: bytes
    checkpoint: bytes  # the signed note, as `check_gossip` takes it

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the log key, first 128 bits in groups of four hex digits."""
        digest = hashlib.sha256(self.log_key.encode("utf-8")).hexdigest()[:32]
        return " ".join(digest[i : i + 4] for i in range(0, 32, 4))


class GossipResult(StrEnum):
    """What `KtVerifier.check_gossip` found (a fork is `KtFork`, not a result)."""

    CONSISTENT = "consistent"  # both heads are of one log
    UNVERIFIABLE = "unverifiable"  # not a checkpoint of this log: proves nothing


@dataclass(frozen=True, slots=True)
class UnapprovedDevice:
    """A device of this account that none of its devices approved (an alarm)."""

    device_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class DirectoryDevice:
    """What `monitor_own` needs of the server's directory entry (a `transport.DeviceInfo`
    has these fields)."""

    device_id: str
    device_key: bytes
    revoked_at: int | None


class KtSource(Protocol):
    """Where answers come from (`doorless.client.transport.Transport` implements it)."""

    async def kt_info(self) -> KtInfo: ...

    async def kt_head(self, since: int) -> KtHead: ...

    async def kt_search(self, label: bytes, since: int, from_version: int) -> KtSearch: ...
