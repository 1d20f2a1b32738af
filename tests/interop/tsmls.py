"""Python side of the ts-mls interop driver (``driver.mjs``, JSON lines over a pipe).

`TsMls` spawns ``node driver.mjs`` and mirrors its methods; binary values are `bytes` here and
hex on the wire. One `TsMls` is one ts-mls client holding any number of named members; each
member has one signature key, its published key packages and at most one group::

    with TsMls() as ts:
        kp = ts.create_key_package("bob", suite=1).key_package
        ts.create_group("alice", group_id=b"g", suite=1)
        added = ts.add_members("alice", [kp])
        ts.join_from_welcome("bob", added.welcome, ratchet_tree=ts.ratchet_tree("alice"))

Failures reported by the driver raise `TsMlsError` (with ts-mls's error type and message);
a driver that does not answer in time is killed and raises `TsMlsTimeout`. `ensure_installed()`
runs ``npm ci`` in this folder when ``node_modules`` is missing; `unavailable_reason()` says
why the driver cannot run here (no node, no npm), or None.
"""

from __future__ import annotations

import fcntl
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

INTEROP_DIR = Path(__file__).resolve().parent
DRIVER = INTEROP_DIR / "driver.mjs"
NODE_MODULES = INTEROP_DIR / "node_modules"

WireFormat = Literal["public", "private"]


class TsMlsError(Exception):
    """The driver answered a request with an error (ts-mls rejected it, or bad parameters)."""

    def __init__(self, method: str, error_type: str, message: str) -> None:
        super().__init__(f"ts-mls {method}: {error_type}: {message}")
        self.method = method
        self.error_type = error_type
        self.message = message


class TsMlsTimeout(TsMlsError):
    """The driver did not answer in time; it has been killed."""


class TsMlsUnavailable(RuntimeError):
    """node/npm are missing, or installing ts-mls failed."""


MIN_NODE_MAJOR = 20  # ts-mls needs Node.js 20+ (WebCrypto Ed25519, ES2022)


def unavailable_reason() -> str | None:
    """Why the driver cannot run on this machine, or None if node and npm are there."""
    node = shutil.which("node")
    if node is None:
        return (
            f"node (Node.js >= {MIN_NODE_MAJOR}) is not on PATH; the ts-mls interop tests need it"
        )
    try:
        version = subprocess.run(
            [node, "--version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout.strip()
        major = int(version.lstrip("v").split(".")[0])
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        return f"cannot run {node} --version: {exc}"
    if major < MIN_NODE_MAJOR:
        return f"node {version} is too old; ts-mls needs Node.js >= {MIN_NODE_MAJOR}"
    if not (NODE_MODULES / "ts-mls").is_dir() and shutil.which("npm") is None:
        return "npm is not on PATH and tests/interop/node_modules is missing"
    return None


def ensure_installed(timeout: float = 600.0) -> None:
    """Install the pinned ts-mls (``npm ci``, from package-lock.json) if node_modules is missing."""
    reason = unavailable_reason()
    if reason is not None:
        raise TsMlsUnavailable(reason)
    if _installed_matches_pin():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise TsMlsUnavailable("npm is not on PATH")
    # pytest-xdist workers may all get here at once: one npm ci at a time, then re-check.
    lock_path = Path(tempfile.gettempdir()) / "doorless-tsmls-npm-ci.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _installed_matches_pin():
            _npm_ci(npm, timeout)


def _installed_matches_pin() -> bool:
    """node_modules holds the ts-mls version package.json pins (else npm ci is due)."""
    installed = NODE_MODULES / "ts-mls" / "package.json"
    if not installed.is_file():
        return False
    pinned = json.loads((INTEROP_DIR / "package.json").read_text())["dependencies"]["ts-mls"]
    return bool(json.loads(installed.read_text())["version"] == pinned)


def _npm_ci(npm: str, timeout: float) -> None:
    try:
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=INTEROP_DIR,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise TsMlsUnavailable(f"npm ci in {INTEROP_DIR.name} took over {timeout} s") from exc
    if done.returncode != 0:
        raise TsMlsUnavailable(
            f"npm ci failed (exit {done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
        )


# ------------------------------------------------------------------------------------------------
# results


@dataclass(frozen=True, slots=True)
class KeyPackageInfo:
    key_package: bytes  # MLSMessage(mls_key_package)
    key_package_ref: bytes
    signature_key: bytes


@dataclass(frozen=True, slots=True)
class CommitResult:
    commit: bytes  # MLSMessage(mls_public_message | mls_private_message)
    welcome: bytes | None  # MLSMessage(mls_welcome), when the commit adds members
    epoch: int  # the epoch the commit leads to


@dataclass(frozen=True, slots=True)
class JoinResult:
    epoch: int
    leaf_index: int
    group_id: bytes


@dataclass(frozen=True, slots=True)
class ProcessedMessage:
    kind: str  # "application", "commit" or "proposal"
    epoch: int  # the receiver's epoch after processing
    sender_leaf: int | None
    removed: bool  # the receiver was removed by this commit
    application_data: bytes | None


@dataclass(frozen=True, slots=True)
class Member:
    leaf_index: int
    identity: bytes
    signature_key: bytes


@dataclass(frozen=True, slots=True)
class GroupSummary:
    epoch: int
    group_id: bytes
    cipher_suite: int
    leaf_index: int
    group_context: bytes  # encoded GroupContext (RFC 9420 §8.1)
    tree_hash: bytes
    confirmed_transcript_hash: bytes
    members: tuple[Member, ...]
    active: str  # ts-mls groupActiveState: "active", "removedFromGroup", ...
    pending_commit: bool


def _hex(value: bytes) -> str:
    return bytes(value).hex()


def _bytes(value: Any) -> bytes:
    if not isinstance(value, str):
        raise TypeError(f"expected a hex string from the driver, got {type(value).__name__}")
    return bytes.fromhex(value)


# ------------------------------------------------------------------------------------------------
# the client


class TsMls:
    """One ``node driver.mjs`` process; use as a context manager (or call `close`)."""

    def __init__(self, *, timeout: float = 60.0, node: str | None = None) -> None:
        reason = unavailable_reason()
        if reason is not None:
            raise TsMlsUnavailable(reason)
        if not (NODE_MODULES / "ts-mls").is_dir():
            raise TsMlsUnavailable("ts-mls is not installed; call tsmls.ensure_installed() first")
        self.timeout = timeout
        self._next_id = 0
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._stderr: deque[str] = deque(maxlen=50)
        self._proc: subprocess.Popen[str] | None = subprocess.Popen(
            [node or shutil.which("node") or "node", str(DRIVER)],
            cwd=INTEROP_DIR,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            bufsize=1,
            env={**os.environ, "NODE_NO_WARNINGS": "1"},
        )
        assert self._proc.stdout is not None and self._proc.stderr is not None
        threading.Thread(
            target=self._pump, args=(self._proc.stdout, self._lines.put), daemon=True
        ).start()
        threading.Thread(
            target=self._pump, args=(self._proc.stderr, self._stderr.append), daemon=True
        ).start()

    @staticmethod
    def _pump(stream: Any, sink: Any) -> None:
        for line in stream:
            sink(line)
        sink(None)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.close()
            proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()

    def _stderr_tail(self) -> str:
        tail = "".join(line for line in self._stderr if line is not None).strip()
        return f"\ndriver stderr:\n{tail}" if tail else ""

    def call(
        self, method: str, params: dict[str, Any] | None = None, *, timeout: float | None = None
    ) -> dict[str, Any]:
        """Send one request and wait for its answer; the raw JSON result (hex strings)."""
        proc = self._proc
        if proc is None or proc.stdin is None:
            raise TsMlsError(method, "Closed", "the driver is closed")
        self._next_id += 1
        request_id = self._next_id
        line = json.dumps({"id": request_id, "method": method, "params": params or {}})
        try:
            proc.stdin.write(line + "\n")
            proc.stdin.flush()
        except OSError as exc:
            raise TsMlsError(
                method, "DriverDied", f"cannot write to driver: {exc}{self._stderr_tail()}"
            ) from exc
        wait = self.timeout if timeout is None else timeout
        while True:
            try:
                answer = self._lines.get(timeout=wait)
            except queue.Empty:
                self._kill()
                raise TsMlsTimeout(
                    method,
                    "Timeout",
                    f"no answer within {wait} s; driver killed{self._stderr_tail()}",
                ) from None
            if answer is None:
                self._kill()
                raise TsMlsError(method, "DriverDied", f"the driver exited{self._stderr_tail()}")
            response = json.loads(answer)
            if response.get("id") == request_id:
                break
        if "error" in response:
            error = response["error"]
            raise TsMlsError(method, str(error.get("type")), str(error.get("message")))
        result: dict[str, Any] = response["result"]
        return result

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()
            proc.wait()

    # -- methods mirroring driver.mjs -----------------------------------------------------------

    def ping(self) -> dict[str, Any]:
        """Versions: ``{"ts_mls_version": ..., "node_version": ...}``."""
        return self.call("ping")

    def create_key_package(
        self,
        member: str,
        suite: int = 1,
        *,
        identity: str | None = None,
        grease: bool = True,
        compressed_signature_key: bool = False,
        lifetime: tuple[int, int] | None = None,
    ) -> KeyPackageInfo:
        """A fresh KeyPackage of ``member`` (created on first use with ``identity``, default its
        name, and a new signature key), as an MLSMessage. ``grease`` keeps ts-mls's random GREASE
        values in the capabilities; ``compressed_signature_key`` keeps ts-mls's compressed SEC1
        P-256/384/521 keys instead of the RFC's uncompressed form."""
        params: dict[str, Any] = {
            "member": member,
            "suite": suite,
            "grease": grease,
            "compressed_signature_key": compressed_signature_key,
        }
        if identity is not None:
            params["identity"] = identity
        if lifetime is not None:
            params["lifetime"] = [str(lifetime[0]), str(lifetime[1])]
        r = self.call("create_key_package", params)
        return KeyPackageInfo(
            _bytes(r["key_package"]), _bytes(r["key_package_ref"]), _bytes(r["signature_key"])
        )

    def create_group(
        self, member: str, group_id: bytes, suite: int = 1, *, grease: bool = True
    ) -> int:
        """A new one-member group at epoch 0; returns the epoch."""
        r = self.call(
            "create_group",
            {"member": member, "group_id": _hex(group_id), "suite": suite, "grease": grease},
        )
        return int(r["epoch"])

    @staticmethod
    def _commit_params(
        member: str,
        wire_format: WireFormat,
        ratchet_tree_extension: bool,
        pending: bool,
        authenticated_data: bytes | None,
    ) -> dict[str, Any]:
        params: dict[str, Any] = {
            "member": member,
            "wire_format": wire_format,
            "ratchet_tree_extension": ratchet_tree_extension,
            "pending": pending,
        }
        if authenticated_data is not None:
            params["authenticated_data"] = _hex(authenticated_data)
        return params

    @staticmethod
    def _commit_result(r: dict[str, Any]) -> CommitResult:
        welcome = r.get("welcome")
        return CommitResult(
            _bytes(r["commit"]), None if welcome is None else _bytes(welcome), int(r["epoch"])
        )

    def add_members(
        self,
        member: str,
        key_packages: list[bytes],
        *,
        wire_format: WireFormat = "private",
        ratchet_tree_extension: bool = False,
        pending: bool = False,
        authenticated_data: bytes | None = None,
    ) -> CommitResult:
        """One commit adding every key package (MLSMessage bytes); commit and welcome back.
        ts-mls applies its own commit at once unless ``pending`` (see merge_pending_commit)."""
        params = self._commit_params(
            member, wire_format, ratchet_tree_extension, pending, authenticated_data
        )
        params["key_packages"] = [_hex(kp) for kp in key_packages]
        return self._commit_result(self.call("add_members", params))

    def self_update(
        self,
        member: str,
        *,
        wire_format: WireFormat = "private",
        pending: bool = False,
        authenticated_data: bytes | None = None,
    ) -> CommitResult:
        """An empty commit with an UpdatePath (fresh leaf and path keys)."""
        params = self._commit_params(member, wire_format, False, pending, authenticated_data)
        return self._commit_result(self.call("self_update", params))

    def remove_member(
        self,
        member: str,
        leaf_index: int,
        *,
        wire_format: WireFormat = "private",
        pending: bool = False,
        authenticated_data: bytes | None = None,
    ) -> CommitResult:
        """A commit removing the member at ``leaf_index``."""
        params = self._commit_params(member, wire_format, False, pending, authenticated_data)
        params["leaf_index"] = leaf_index
        return self._commit_result(self.call("remove_member", params))

    def merge_pending_commit(self, member: str) -> int:
        """Apply the commit made with ``pending=True``; returns the new epoch."""
        return int(self.call("merge_pending_commit", {"member": member})["epoch"])

    def clear_pending_commit(self, member: str) -> int:
        """Drop the commit made with ``pending=True``; returns the (unchanged) epoch."""
        return int(self.call("clear_pending_commit", {"member": member})["epoch"])

    def join_from_welcome(
        self, member: str, welcome: bytes, ratchet_tree: bytes | None = None
    ) -> JoinResult:
        """Join with a Welcome (MLSMessage) sent to one of ``member``'s key packages; the
        ratchet tree (encoded ``optional<Node> ratchet_tree<V>``) is needed unless the GroupInfo
        carries the ratchet_tree extension."""
        params: dict[str, Any] = {"member": member, "welcome": _hex(welcome)}
        if ratchet_tree is not None:
            params["ratchet_tree"] = _hex(ratchet_tree)
        r = self.call("join_from_welcome", params)
        return JoinResult(int(r["epoch"]), int(r["leaf_index"]), _bytes(r["group_id"]))

    def process_message(self, member: str, message: bytes) -> ProcessedMessage:
        """Process a PublicMessage or PrivateMessage (MLSMessage bytes)."""
        r = self.call("process_message", {"member": member, "message": _hex(message)})
        data = r.get("application_data")
        sender = r.get("sender_leaf")
        return ProcessedMessage(
            kind=str(r["kind"]),
            epoch=int(r["epoch"]),
            sender_leaf=None if sender is None else int(sender),
            removed=bool(r["removed"]),
            application_data=None if data is None else _bytes(data),
        )

    def encrypt(
        self, member: str, plaintext: bytes, *, authenticated_data: bytes | None = None
    ) -> bytes:
        """An application message: MLSMessage(mls_private_message) bytes."""
        params: dict[str, Any] = {"member": member, "plaintext": _hex(plaintext)}
        if authenticated_data is not None:
            params["authenticated_data"] = _hex(authenticated_data)
        return _bytes(self.call("encrypt", params)["message"])

    def export_secret(self, member: str, label: str, context: bytes, length: int) -> bytes:
        """MLS-Exporter(label, context, length) of the current epoch (RFC 9420 §8.5)."""
        r = self.call(
            "export_secret",
            {"member": member, "label": label, "context": _hex(context), "length": length},
        )
        return _bytes(r["secret"])

    def epoch(self, member: str) -> int:
        return int(self.call("epoch", {"member": member})["epoch"])

    def epoch_authenticator(self, member: str) -> bytes:
        return _bytes(self.call("epoch_authenticator", {"member": member})["epoch_authenticator"])

    def group_info(self, member: str, *, ratchet_tree_extension: bool = False) -> bytes:
        """A signed GroupInfo (MLSMessage) with external_pub, and ratchet_tree if asked."""
        r = self.call(
            "group_info", {"member": member, "ratchet_tree_extension": ratchet_tree_extension}
        )
        return _bytes(r["group_info"])

    def ratchet_tree(self, member: str) -> bytes:
        """The encoded ratchet tree (``optional<Node> ratchet_tree<V>``, RFC 9420 §12.4.3.3)."""
        return _bytes(self.call("ratchet_tree", {"member": member})["ratchet_tree"])

    def group_summary(self, member: str) -> GroupSummary:
        r = self.call("group_summary", {"member": member})
        return GroupSummary(
            epoch=int(r["epoch"]),
            group_id=_bytes(r["group_id"]),
            cipher_suite=int(r["cipher_suite"]),
            leaf_index=int(r["leaf_index"]),
            group_context=_bytes(r["group_context"]),
            tree_hash=_bytes(r["tree_hash"]),
            confirmed_transcript_hash=_bytes(r["confirmed_transcript_hash"]),
            members=tuple(
                Member(int(m["leaf_index"]), _bytes(m["identity"]), _bytes(m["signature_key"]))
                for m in r["members"]
            ),
            active=str(r["active"]),
            pending_commit=bool(r["pending_commit"]),
        )

    def bench(
        self,
        n: int,
        suite: int = 1,
        *,
        runs: int = 3,
        messages: int = 20,
        message_size: int = 1024,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Time ts-mls inside Node for a group of ``n`` (see bench_driver.mjs); milliseconds."""
        return self.call(
            "bench",
            {
                "n": n,
                "suite": suite,
                "runs": runs,
                "messages": messages,
                "message_size": message_size,
            },
            timeout=timeout,
        )
