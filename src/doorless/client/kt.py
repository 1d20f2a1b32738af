"""Client-side key transparency: verify every head, every device list and every peer key.

`KtVerifier` is the one object a client keeps per server (its errors, settings and the
verified state it returns are in `doorless.client.kt_types`, re-exported here). It asks the
server's ``/v1/kt/*`` endpoints through a `KtSource` (the `doorless.client.transport.Transport`)
and holds only public state: the pinned log key, the last verified checkpoint
(`TrustedHead`, which the caller persists through ``on_head``) and the device lists it
verified in this session. Its rules (design notes §1.3 "Client rules"):

1. **Heads.** A checkpoint must carry the log's signature and at least ``quorum`` cosignatures
   of the configured witnesses (`KtUnavailable` when it lacks them: retry later). It must be
   proven consistent with the persisted `TrustedHead`: a smaller size is `KtRollback`, the
   same size with another root or a failed consistency proof is `KtFork`. The new head is
   persisted only after the whole answer verified. ``quorum = 0`` is allowed but logs a loud
   warning (`KtVerifier.insecure`): without a witness, nothing stops the server from showing
   different clients different logs.
2. **Device lists.** A user's `DeviceList` is searched under ``u:<username>`` in the last log
   entry's prefix tree (binary ladder: the greatest version is pinned), and its whole chain is
   verified from version 0 (or from the last version verified in this session): each version
   signed by a device of the previous one (`doorless.kt.device_list.verify_chain`), bound to
   the label and version, every entry canonical. Any failure is a `KtViolation`.
3. **Peer keys.** `check_leaf` / `check_device`: a LeafNode whose (user, device, signature
   key) is not in that user's verified device list raises `KeyNotInTransparencyLog`. Call it
   for every leaf a Welcome's tree, an Add or a commit path brings in, before accepting it.
4. **Own label.** `monitor_own` (on start and periodically) reports devices nobody of the
   account approved: live devices of the server's directory that are not in the verified list,
   devices the directory revoked that the list still holds, and versions signed with this
   device's key that this device did not make (`note_published` records the ones it made).
   The caller turns each into an alarm event and a CLI warning.
5. **Gossip.** `check_gossip` compares a log checkpoint a contact verified (carried inside
   their encrypted messages) with this device's: same size, same root; different sizes, a
   consistency proof from the server; failing that, `KtFork` (the server showed the two
   devices different logs). Only the log's signature is needed, no witness.

`next_list` builds the next version for a link or a revocation from the *verified* current
list, so a device never signs a successor of a list the server made up.

Error tree (all `doorless.errors.RemoteError`)::

    KtError
     ├── KtUnavailable             no verifiable head now (too few cosignatures): retry later
     ├── KtViolation               the server provably misbehaved (bad proof, bad chain, ...)
     │    ├── KtRollback           the log or a label went back
     │    └── KtFork               a head not consistent with the one verified before
     └── KeyNotInTransparencyLog   a key that is not in its user's verified device list
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from doorless.client.kt_types import (
    DirectoryDevice,
    GossipResult,
    KeyNotInTransparencyLog,
    KtConfig,
    KtError,
    KtFork,
    KtRollback,
    KtSource,
    KtStored,
    KtUnavailable,
    KtViolation,
    LogView,
    TrustedHead,
    UnapprovedDevice,
    VerifiedDeviceList,
)
from doorless.errors import (
    ConfigurationError,
    DecodeError,
    InvalidSignature,
    ValidationError,
)
from doorless.franking import SenderIdentity
from doorless.kt.checkpoint import (
    NoteVerifier,
    SignedCheckpoint,
    ed25519_verifier,
    verify_checkpoint,
)
from doorless.kt.combined import verify_latest_entry
from doorless.kt.device_list import (
    Device,
    DeviceList,
    check_binding,
    create_device_list,
    decode_device_list,
    next_device_list,
    verify_chain,
)
from doorless.kt.errors import InvalidProof
from doorless.kt.ladder import verify_greatest_version, verify_label_absent, verify_version
from doorless.kt.log_entry import LogEntry
from doorless.kt.merkle import EMPTY_ROOT, verify_consistency
from doorless.mls.credential import BasicCredential
from doorless.mls.leaf_node import LeafNode
from doorless.wire import protocol
from doorless.wire.kt import (
    DEFAULT_SUITE,
    KtHead,
    KtSearch,
    check_entries,
    device_entry,
    sorted_devices,
    user_label,
)

log = logging.getLogger("doorless.client.kt")
T = TypeVar("T")

INSECURE_WARNING = (
    "KEY TRANSPARENCY WITHOUT WITNESSES: no witness cosignature is required (quorum 0), so the "
    "server could show this device a different log than everyone else's, noticed only "
    "afterwards (at the first message exchanged with a contact who sees the real log). "
    "Configure at least one independent witness (the CLI: 'doorless config set kt.witnesses "
    "KEY', with a key you got from the witness itself, not from the server; "
    "docs/key-transparency.md)."
)


# --- the verifier ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Head:
    size: int
    root: bytes


@dataclass(slots=True)
class _Answer:
    head: TrustedHead
    entry: LogEntry | None


class KtVerifier:
    """See the module docstring. One per client; calls must not overlap (the client's lock).

    ``trusted``: the persisted `TrustedHead`; ``on_head`` persists a newly verified one (it is
    awaited before the head is adopted). ``published`` and ``on_published``: digests of the
    device lists this device signed, and how to persist a new one; when ``on_published`` is
    None, `monitor_own` cannot tell this device's own signatures apart and skips that check.
    ``loader`` (optional) supplies the persisted `KtStored` on first use instead, and
    ``on_log_key`` persists a log key pinned on first use.
    """

    def __init__(
        self,
        source: KtSource,
        config: KtConfig | None = None,
        *,
        trusted: TrustedHead | None = None,
        on_head: Callable[[TrustedHead], Awaitable[None]] | None = None,
        published: Collection[bytes] = (),
        on_published: Callable[[bytes], Awaitable[None]] | None = None,
        loader: Callable[[], Awaitable[KtStored]] | None = None,
        on_log_key: Callable[[str], Awaitable[None]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.source = source
        self.config = config or KtConfig()
        self.trusted = trusted
        self.on_head = on_head
        self.published = set(published)
        self.on_published = on_published
        self._loader = loader
        self.on_log_key = on_log_key
        self.clock = clock
        self._witnesses = self.config.witness_verifiers()
        self._log_key = (
            None if self.config.log_key is None else self._parse_log_key(self.config.log_key)
        )
        self._lists: dict[str, VerifiedDeviceList] = {}
        self._history: dict[str, dict[int, DeviceList]] = {}
        self._warned = False
        self._gossip_checked: set[bytes] = set()  # contacts' checkpoints within the trusted log
        self._gossip_forks: dict[bytes, str] = {}  # contacts' checkpoints proven to be a fork

    # --- configuration ---------------------------------------------------------------------

    @property
    def insecure(self) -> bool:
        """True when no witness cosignature is required (quorum 0)."""
        return self.config.quorum == 0

    @property
    def log_key(self) -> str | None:
        """The pinned log key (after the first verified answer, if it was not configured)."""
        return None if self._log_key is None else self._log_key.vkey()

    @staticmethod
    def _parse_log_key(vkey: str) -> NoteVerifier:
        return ed25519_verifier(vkey, "the KT log key")

    async def load(self) -> None:
        """Load the persisted state now (it is otherwise loaded on first use)."""
        await self._load()

    async def _load(self) -> None:
        loader, self._loader = self._loader, None
        if loader is None:
            return
        stored = await loader()
        if self.trusted is None:
            self.trusted = stored.trusted
        self.published |= stored.published
        if stored.log_key is not None:
            key = self._parse_log_key(stored.log_key)
            if self._log_key is not None and self._log_key != key:
                raise ConfigurationError("the configured KT log key differs from the pinned one")
            self._log_key = key

    async def _key(self) -> NoteVerifier:
        await self._load()
        if self._log_key is None:
            info = await self.source.kt_info()
            try:
                key = self._parse_log_key(info.log_key)
            except ConfigurationError as exc:
                raise KtViolation(f"the server's KT log key is unusable: {exc}") from None
            if key.name != info.origin:
                raise KtViolation("the KT log key is not named after the log's origin")
            if self.on_log_key is not None:
                await self.on_log_key(key.vkey())
            self._log_key = key  # trust on first use
        return self._log_key

    def _warn(self) -> None:
        if self.insecure and not self._warned:
            self._warned = True
            log.warning(INSECURE_WARNING)

    # --- heads -----------------------------------------------------------------------------

    def _since(self) -> int:
        return 0 if self.trusted is None else self.trusted.size

    async def _check_head(self, head: KtHead) -> _Answer:
        """Verify a head against the configured keys and the trusted head (rule 1)."""
        self._warn()
        key = await self._key()
        try:
            signed = SignedCheckpoint.decode(head.checkpoint)
        except DecodeError as exc:
            raise KtViolation(f"malformed checkpoint: {exc}") from None
        try:
            # The log's own signature first: a rollback or a fork signed by the log is
            # evidence against the log, whether or not a witness also signed it.
            verify_checkpoint(signed, key)
        except InvalidSignature as exc:
            raise KtViolation(f"checkpoint signature: {exc}") from None
        except ValidationError as exc:
            raise KtViolation(f"checkpoint: {exc}") from None
        cp = signed.checkpoint
        trusted = self.trusted
        if trusted is not None:
            if head.since != trusted.size:
                raise KtViolation("the head answers for another size than asked")
            if cp.size < trusted.size:
                raise KtRollback(
                    f"the log went back from size {trusted.size} to {cp.size} (rollback)"
                )
            if cp.size == trusted.size:
                if cp.root != trusted.root:
                    raise KtFork(f"two different logs of size {cp.size} (split view)")
            elif trusted.size > 0:
                try:
                    verify_consistency(
                        trusted.size, cp.size, trusted.root, cp.root, head.consistency
                    )
                except InvalidProof:
                    raise KtFork(
                        f"the log of size {cp.size} does not extend the verified log of size "
                        f"{trusted.size} (fork or removed entries)"
                    ) from None
        try:
            verify_checkpoint(signed, key, self._witnesses, self.config.quorum)
        except InvalidSignature as exc:
            raise KtViolation(f"witness cosignature: {exc}") from None
        except ValidationError as exc:
            raise KtUnavailable(f"the log's head is not witnessed yet ({exc})") from None
        if cp.size == 0:
            if cp.root != EMPTY_ROOT or head.last_entry is not None:
                raise KtViolation("an empty log has the empty root and no entry")
            entry = None
        else:
            if head.last_entry is None:
                raise KtViolation("the head lacks its last log entry")
            try:
                verify_latest_entry(cp.size, cp.root, head.last_entry, list(head.last_entry_proof))
            except InvalidProof:
                raise KtViolation("the last log entry is not in the checkpoint's log") from None
            entry = head.last_entry
        new = TrustedHead(cp.size, cp.root, head.checkpoint, int(self.clock() * 1000))
        return _Answer(new, entry)

    async def _advance(self, head: TrustedHead) -> None:
        """Adopt a fully verified head (persisting it first)."""
        if self.trusted is not None and head.size <= self.trusted.size:
            return
        if self.on_head is not None:
            await self.on_head(head)
        self.trusted = head

    async def _witnessed(self, fetch: Callable[[], Awaitable[T]]) -> T:
        """``fetch()``, again while it raises `KtUnavailable`, for up to
        ``config.witness_wait`` seconds (the witnesses cosign a new head within their polling
        interval)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.witness_wait
        delay = 0.05
        while True:
            try:
                return await fetch()
            except KtUnavailable:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise
                await asyncio.sleep(min(delay, remaining))
                delay = min(delay * 2, 1.0)

    async def refresh(self) -> TrustedHead:
        """Fetch, verify and adopt the latest head."""
        await self._load()

        async def fetch() -> _Answer:
            return await self._check_head(await self.source.kt_head(self._since()))

        answer = await self._witnessed(fetch)
        await self._advance(answer.head)
        assert self.trusted is not None
        return self.trusted

    # --- device lists ----------------------------------------------------------------------

    async def _search(
        self, label: bytes, from_version: int
    ) -> tuple[_Answer, tuple[int, bytes] | None, list[tuple[int, bytes]]]:
        """Verified (head, greatest (version, value) or None, earlier (version, value)s)."""
        await self._load()  # the persisted head decides which consistency proof to ask for

        async def fetch() -> tuple[KtSearch, _Answer]:
            response = await self.source.kt_search(label, self._since(), from_version)
            if response.label != label:
                raise KtViolation("the search answered for another label")
            return response, await self._check_head(response.head)

        response, answer = await self._witnessed(fetch)
        if answer.entry is None:
            if response.result is not None:
                raise KtViolation("a version in an empty log")
            return answer, None, []
        root = answer.entry.prefix_tree
        try:
            if response.result is None:
                assert response.absent is not None  # KtSearch.from_json: exactly one
                verify_label_absent(root, label, response.absent)
                if response.versions:
                    raise KtViolation("versions of an absent label")
                return answer, None, []
            greatest = verify_greatest_version(root, label, response.result)
            earlier = [verify_version(root, label, v) for v in response.versions]
        except InvalidProof as exc:
            raise KtViolation(f"search proof does not verify: {exc}") from None
        start = min(from_version, greatest.version)
        if [v.version for v in earlier] != list(range(start, start + len(earlier))) or (
            earlier and earlier[-1].version >= greatest.version
        ):
            raise KtViolation("the search returned other versions than asked")
        if not earlier and start < greatest.version:
            raise KtViolation("the search left out the versions asked for")
        return (
            answer,
            (greatest.version, greatest.value),
            [(v.version, v.value) for v in earlier],
        )

    async def device_list(self, username: str) -> VerifiedDeviceList:
        """``username``'s current device list, verified (rule 2); raises
        `KeyNotInTransparencyLog` if the user has none, `KtViolation` if the server lies."""
        if not protocol.is_username(username):
            raise ConfigurationError(f"invalid username {username!r}")
        label = user_label(username)
        cached = self._lists.get(username)
        current = cached.device_list if cached is not None else None
        while True:
            start = 0 if current is None else current.version + 1
            answer, greatest, earlier = await self._search(label, start)
            if greatest is None:
                if current is not None:
                    raise KtRollback(f"the device list of {username} disappeared from the log")
                await self._advance(answer.head)
                raise KeyNotInTransparencyLog(
                    f"{username} has no device list in the transparency log", username, ""
                )
            version, value = greatest
            if current is not None and version < current.version:
                raise KtRollback(
                    f"the device list of {username} went back from version "
                    f"{current.version} to {version}"
                )
            if current is not None and version == current.version:
                if value != current.encode():
                    raise KtFork(f"version {version} of {username}'s device list changed")
                chain: list[tuple[int, bytes]] = []
            elif earlier and earlier[-1][0] + 1 < version:
                chain = earlier  # the answer was cut short: verify these, then ask again
            else:
                chain = [*earlier, greatest]
            current = self._verify_chain(username, chain, current)
            await self._advance(answer.head)
            if current is not None and current.version == version:
                verified = VerifiedDeviceList(username, current, answer.head.size)
                self._lists[username] = verified
                return verified

    def _verify_chain(
        self, username: str, chain: Sequence[tuple[int, bytes]], trusted: DeviceList | None
    ) -> DeviceList | None:
        lists: list[DeviceList] = []
        try:
            for version, value in chain:
                dl = decode_device_list(value)
                check_binding(dl, username.encode("ascii"), version)
                check_entries(dl, username)
                lists.append(dl)
            if not lists:
                return trusted
            last = verify_chain(lists, trusted)
        except (DecodeError, ValidationError, InvalidSignature) as exc:
            raise KtViolation(
                f"the device list of {username} in the transparency log is invalid: {exc}"
            ) from None
        history = self._history.setdefault(username, {})
        for dl in lists:
            history[dl.version] = dl
        return last

    def cached(self, username: str) -> VerifiedDeviceList | None:
        """The list verified in this session, if any (no network)."""
        return self._lists.get(username)

    # --- peer keys (rule 3) ----------------------------------------------------------------

    async def check_device(self, username: str, device_id: str, signature_key: bytes) -> Device:
        """The KT entry of (username, device_id) if it has ``signature_key``; else
        `KeyNotInTransparencyLog`. Uses the session's verified list, refreshed once when the
        device is not in it (it may have been linked since)."""
        verified = self._lists.get(username)
        for fetch in (verified is None, verified is not None):
            if fetch:
                verified = await self.device_list(username)
            assert verified is not None
            entry = verified.device(device_id)
            if entry is not None and entry.signature_key == signature_key:
                return entry
        raise KeyNotInTransparencyLog(
            f"device {device_id[:8]} of {username} with this key is not in the "
            "transparency log: refusing it",
            username,
            device_id,
        )

    async def check_leaf(self, leaf: LeafNode) -> Device:
        """Rule 3 for one LeafNode: its credential names (user, device) and its signature key
        must be that device's entry in the user's verified device list."""
        credential = leaf.credential
        if not isinstance(credential, BasicCredential):
            raise KeyNotInTransparencyLog("a leaf without a basic credential", "", "")
        try:
            identity = SenderIdentity.from_credential_identity(credential.identity)
            username = identity.user_id.decode("ascii")
            device_id = identity.device_id.decode("ascii")
        except (DecodeError, UnicodeDecodeError):
            raise KeyNotInTransparencyLog(
                "a leaf whose credential names no device", "", ""
            ) from None
        if not protocol.is_username(username) or not protocol.is_device_id(device_id):
            raise KeyNotInTransparencyLog("a leaf whose credential names no device", "", "")
        entry = await self.check_device(username, device_id, leaf.signature_key)
        if entry.identity != credential.identity:
            raise KeyNotInTransparencyLog(
                "the leaf's credential differs from the transparency log's", username, device_id
            )
        return entry

    async def check_leaves(self, leaves: Iterable[LeafNode]) -> None:
        for leaf in leaves:
            await self.check_leaf(leaf)

    # --- own label (rule 4) ----------------------------------------------------------------

    async def note_published(self, dl: DeviceList) -> None:
        """Record that this device signed ``dl`` (call before uploading it)."""
        await self._load()
        digest = dl.hash()
        if digest not in self.published:
            if self.on_published is not None:
                await self.on_published(digest)
            self.published.add(digest)

    async def monitor_own(
        self,
        username: str,
        device_id: str,
        directory: Sequence[DirectoryDevice] | None = None,
    ) -> list[UnapprovedDevice]:
        """Check this account's own label: returns the devices that none of the account's
        devices approved (empty when all is well). `KtViolation` (an invalid chain, a
        rollback, a fork) is itself the loudest alarm and propagates."""
        verified = await self.device_list(username)
        alarms: list[UnapprovedDevice] = []
        listed = verified.devices()
        for d in directory or ():
            in_list = listed.get(d.device_id)
            if d.revoked_at is None and in_list != d.device_key:
                alarms.append(
                    UnapprovedDevice(
                        d.device_id,
                        "registered on the server but not in the account's signed device list "
                        "(a ghost device)",
                    )
                )
            elif d.revoked_at is not None and in_list is not None:
                alarms.append(
                    UnapprovedDevice(
                        d.device_id, "revoked on the server but still in the account's device list"
                    )
                )
        if self.on_published is not None:
            alarms.extend(self._not_signed_by_us(username, device_id))
        return alarms

    def _not_signed_by_us(self, username: str, device_id: str) -> list[UnapprovedDevice]:
        own = device_id.encode("ascii")
        history = self._history.get(username, {})
        alarms: list[UnapprovedDevice] = []
        for version, dl in sorted(history.items()):
            if dl.tbs.signer_device_id != own or dl.hash() in self.published:
                continue
            before = history.get(version - 1)
            old = {d.device_id for d in before.devices} if before is not None else set()
            for device in sorted({d.device_id for d in dl.devices} - old) or [own]:
                alarms.append(
                    UnapprovedDevice(
                        device.decode("ascii"),
                        f"device list version {version} was signed with this device's key, but "
                        "not by this device (is the key stolen?)",
                    )
                )
        return alarms

    # --- checkpoint gossip (rule 5) --------------------------------------------------------

    async def check_gossip(self, checkpoint: bytes) -> GossipResult:
        """Check a log checkpoint a contact verified (it travels inside their encrypted
        message, docs/key-transparency.md) against this device's view of the log.

        Returns ``UNVERIFIABLE`` when the note is not a checkpoint signed by the pinned log key
        (the contact cannot be checked against this log: a bug, another server, or a contact
        that lies; it proves nothing about the server). Raises `KtFork` when the two heads
        cannot both belong to one log: the same size with another root, or a server that
        cannot prove the smaller one is a prefix of the larger (both are signed by the log:
        they are evidence against it). The comparison needs only the log's signature; when the
        contact's head is newer than this device's, this device first catches up (`refresh`,
        with its witness policy, persisting the new head as usual). Network errors and
        `KtUnavailable` propagate (retry later). A checkpoint found to be a prefix of this
        device's log is remembered, so the same one costs no request again."""
        if checkpoint in self._gossip_checked:
            return GossipResult.CONSISTENT  # a prefix of the (append-only) trusted log
        if checkpoint in self._gossip_forks:
            raise KtFork(self._gossip_forks[checkpoint])
        key = await self._key()
        try:
            signed = SignedCheckpoint.decode(checkpoint)
            verify_checkpoint(signed, key)
        except (DecodeError, InvalidSignature, ValidationError):
            return GossipResult.UNVERIFIABLE
        theirs = signed.checkpoint
        mine = self.trusted if self.trusted is not None else await self.refresh()
        if theirs.size > mine.size:
            # Catch up first (a fully verified head, witnessed as configured, adopted as
            # usual): the contact's head is then usually a prefix of this device's, which one
            # answer of the server proves, and later messages carrying it cost nothing.
            mine = await self.refresh()
        try:
            result = await self._compare(_Head(theirs.size, theirs.root), mine, key)
        except KtFork as exc:
            self._gossip_forks[checkpoint] = str(exc)  # the next message costs no request
            raise
        if theirs.size <= mine.size:
            self._gossip_checked.add(checkpoint)
        return result

    def known_fork(self, checkpoint: bytes) -> bool:
        """True when ``checkpoint`` was already proven a fork in this session."""
        return checkpoint in self._gossip_forks

    async def _compare(self, theirs: _Head, mine: TrustedHead, key: NoteVerifier) -> GossipResult:
        if theirs.size == mine.size:
            if not hmac.compare_digest(theirs.root, mine.root):
                raise KtFork(
                    f"a contact was shown another log of size {theirs.size} than this device "
                    "(split view)"
                )
            return GossipResult.CONSISTENT
        small, large = sorted([(theirs.size, theirs.root), (mine.size, mine.root)])
        proof_b: list[bytes]
        for _ in range(3):  # the log may grow between two answers: ask again
            size_a, root_a, proof_a = await self._signed_head(small[0], key)
            if size_a <= large[0]:
                size_b, root_b, proof_b = size_a, root_a, []  # no second answer needed
                break
            size_b, root_b, proof_b = await self._signed_head(large[0], key)
            if size_a == size_b:
                break
        else:
            raise KtUnavailable("the log grew during the gossip check: retry later")
        if not hmac.compare_digest(root_a, root_b):
            raise KtFork(f"the server signed two different logs of size {size_a}")
        if size_a < large[0]:
            raise KtFork(
                f"the server's log (size {size_a}) does not reach the head of size {large[0]} "
                "that this device or a contact verified (split view or rollback)"
            )
        for (size, root), proof in ((small, proof_a), (large, proof_b)):
            try:
                if size == size_a:
                    if not hmac.compare_digest(root, root_a):
                        raise InvalidProof("another root")
                elif size > 0:
                    verify_consistency(size, size_a, root, root_a, proof)
            except InvalidProof:
                raise KtFork(
                    f"the log head of size {size} that this device or a contact verified is "
                    f"not part of the server's log of size {size_a} (split view)"
                ) from None
        return GossipResult.CONSISTENT

    async def view(self) -> LogView:
        """The latest head (refreshed now) and the pinned log key."""
        head = await self.refresh()
        key = await self._key()
        return LogView(key.vkey(), head.size, head.root, head.checkpoint)

    async def _signed_head(self, since: int, key: NoteVerifier) -> tuple[int, bytes, list[bytes]]:
        """The server's latest (size, root) signed by the log, and its consistency proof from
        ``since`` (no witness needed: this is only compared with other log-signed heads)."""
        head = await self.source.kt_head(since)
        try:
            signed = SignedCheckpoint.decode(head.checkpoint)
            verify_checkpoint(signed, key)
        except DecodeError as exc:
            raise KtViolation(f"malformed checkpoint: {exc}") from None
        except (InvalidSignature, ValidationError) as exc:
            raise KtViolation(f"checkpoint signature: {exc}") from None
        if head.since != since:
            raise KtViolation("the head answers for another size than asked")
        return signed.checkpoint.size, signed.checkpoint.root, list(head.consistency)

    # --- building the next version ---------------------------------------------------------

    async def next_list(
        self,
        username: str,
        signer_device_id: str,
        private_key: bytes,
        change: Callable[[list[Device]], list[Device]],
        ts: int,
    ) -> DeviceList:
        """The version after the *verified* current list of ``username``, with its devices
        changed by ``change``, signed by this device (which must be on the list)."""
        current = (await self.device_list(username)).device_list
        devices = sorted_devices(change(list(current.devices)))
        try:
            return next_device_list(
                current, devices, max(ts, current.tbs.ts), signer_device_id.encode(), private_key
            )
        except ConfigurationError as exc:
            raise KtViolation(f"cannot extend the account's device list: {exc}") from None


def first_list(
    username: str,
    device_id: str,
    device_key: bytes,
    private_key: bytes,
    ts: int,
    cipher_suite: int = DEFAULT_SUITE,
) -> DeviceList:
    """Version 0 of a new account's device list, signed by its first device."""
    return create_device_list(
        username.encode("ascii"),
        device_entry(username, device_id, device_key, cipher_suite),
        private_key,
        ts,
    )


def with_device(entry: Device) -> Callable[[list[Device]], list[Device]]:
    """A `KtVerifier.next_list` change that adds (or replaces) one device."""

    def change(devices: list[Device]) -> list[Device]:
        return [d for d in devices if d.device_id != entry.device_id] + [entry]

    return change


def without_device(device_id: str) -> Callable[[list[Device]], list[Device]]:
    """A `KtVerifier.next_list` change that removes one device."""
    raw = device_id.encode("ascii")

    def change(devices: list[Device]) -> list[Device]:
        return [d for d in devices if d.device_id != raw]

    return change


__all__ = [
    "INSECURE_WARNING",
    "DirectoryDevice",
    "GossipResult",
    "KeyNotInTransparencyLog",
    "KtConfig",
    "KtError",
    "KtFork",
    "KtRollback",
    "KtSource",
    "KtStored",
    "KtUnavailable",
    "KtVerifier",
    "KtViolation",
    "LogView",
    "TrustedHead",
    "UnapprovedDevice",
    "VerifiedDeviceList",
    "first_list",
    "with_device",
    "without_device",
]
