"""``doorless demo``: the whole system on this machine, in a few seconds.

It starts the real server (``doorless server``, a separate process) in a temporary folder,
creates three users with the client library (each with its own encrypted profile), runs a short
group conversation with a file, and shows side by side what each client read and what the
server stored: opaque ciphertext, which it deletes once delivered. Then it searches every byte
the server wrote (database, write-ahead log, attachment blobs, its log) for the plaintexts and
reports what it found (nothing: invariant I1). Everything is deleted at the end (``--keep``
keeps the folder).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import secrets
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from doorless import client as dl
from doorless.cli.common import state
from doorless.cli.output import emit_json, safe_text, size
from doorless.cli.session import CliError, run
from doorless.wire.errors import ErrorCode

if TYPE_CHECKING:
    from doorless.client import Client

USERS = ("alice", "bob", "carol")
STARTUP_TIMEOUT = 30.0
DEMO_PASSPHRASE = "demo passphrase, not a secret"

# The conversation: (sender, text). The file holds a random canary as well, so that finding
# nothing on the server's disk is about this run's data.
SCRIPT = (
    ("alice", "Hi both! Lunch on Friday?"),
    ("bob", "Friday works for me. The usual place?"),
    ("carol", "Yes! I'll book a table for three."),
    ("alice", "Great, see you there."),
)
FILE_NAME = "menu.txt"
FILE_TEXT = "Friday menu: soup, bread, and a secret dessert (canary {tag})\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class ServerProcess:
    """``doorless server`` in a child process, its log in a file."""

    data_dir: Path
    log_path: Path
    port: int = field(default_factory=_free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "doorless.cli.main",
            "server",
            "--data-dir",
            str(self.data_dir),
            "--port",
            str(self.port),
        ]

    async def start(self) -> None:
        import httpx

        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command, stdout=log, stderr=log, stdin=subprocess.DEVNULL
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        async with httpx.AsyncClient() as http:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise CliError(
                        ErrorCode.SERVER_FAILED, f"the server exited: see {self.log_path}"
                    )
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get(f"{self.url}/v1/info", timeout=2)).status_code == 200:
                        return
                await asyncio.sleep(0.1)
        raise CliError(ErrorCode.SERVER_FAILED, "the server did not start in time")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


@dataclass(frozen=True)
class Stored:
    """One ciphertext the server holds, as read from its database (a read-only connection)."""

    size: int
    tail: str  # hex of the last bytes (the first ones are the cleartext MLS header)
    queued_for: int  # devices it waits for


def server_payloads(database: Path) -> list[tuple[int, Stored]]:
    """The payloads the server stores (id, ciphertext summary), oldest first. Empty if the
    database cannot be read (this demo reads the server's tables only to show them)."""
    if not database.exists():
        return []
    try:
        conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
        try:
            rows = conn.execute(
                "SELECT p.id, length(p.data), hex(substr(p.data, -6)), "
                "(SELECT count(*) FROM queue q WHERE q.payload_id = p.id) "
                "FROM payloads p ORDER BY p.id"
            ).fetchall()
        finally:
            conn.close()
    except sqlite3.Error:
        return []
    return [(int(r[0]), Stored(int(r[1]), str(r[2]).lower(), int(r[3]))) for r in rows]


def scan(root: Path, needles: list[bytes]) -> tuple[int, int, list[str]]:
    """(files, bytes, hits): every byte of every file under ``root`` searched for each
    needle; a hit names the file."""
    files = total = 0
    hits: list[str] = []
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        data = path.read_bytes()
        files += 1
        total += len(data)
        hits.extend(f"{path.name}: {n[:20]!r}" for n in needles if n in data)
    return files, total, hits


@dataclass
class Line:
    """One message of the conversation and what became of it."""

    sender: str
    text: str
    message_id: str = ""
    stored: Stored | None = None
    read: dict[str, str] = field(default_factory=dict)


class Demo:
    def __init__(self, root: Path, console: Console, quiet: bool) -> None:
        self.root = root
        self.console = console
        self.quiet = quiet
        self.tag = secrets.token_hex(8)
        self.server = ServerProcess(root / "server", root / "server.log")
        self.clients: dict[str, Client] = {}
        self.lines: list[Line] = []

    def say(self, text: str) -> None:
        if not self.quiet:
            self.console.print(text, highlight=False)

    @property
    def database(self) -> Path:
        from doorless.server.config import ServerConfig

        return ServerConfig(self.server.data_dir).database_path

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        try:
            yield
        finally:
            for c in self.clients.values():
                with contextlib.suppress(Exception):
                    await c.close()
            self.server.stop()

    async def run(self) -> dict[str, Any]:
        started = time.monotonic()
        async with self.running():
            await self.server.start()
            self.say(
                f"[bold]server[/]  doorless server --data-dir {self.server.data_dir} "
                f"--port {self.server.port}  (a separate process)"
            )
            options = dl.ClientOptions(push=False, key_package_target=4)
            for user in USERS:
                self.clients[user] = await dl.Client.create_account(
                    self.root / "profiles" / user,
                    DEMO_PASSPHRASE,
                    server_url=self.server.url,
                    username=user,
                    options=options,
                )
            self.say(
                "[bold]users[/]   alice, bob, carol: one device each, every profile "
                "encrypted at rest (SQLCipher, key from a passphrase)"
            )
            alice = self.clients["alice"]
            group = await alice.create_group("lunch", ["bob", "carol"])
            for user in ("bob", "carol"):
                await self.clients[user].sync()
            self.say(
                f"[bold]group[/]   alice created #lunch with bob and carol: an MLS group "
                f"(epoch {group.epoch}, {len(group.devices)} leaves)"
            )
            await self.converse(group.id)
            return await self.report(time.monotonic() - started)

    async def converse(self, conversation_id: str) -> None:
        """Each message is sent, the server's copy noted, then everyone fetches."""
        script = list(SCRIPT)
        file_text = FILE_TEXT.format(tag=self.tag)
        steps: list[tuple[str, str, bytes | None]] = [(s, t, None) for s, t in script]
        steps.insert(2, ("bob", f"[file] {FILE_NAME}", file_text.encode()))
        for sender, text, data in steps:
            before = {pid for pid, _ in server_payloads(self.database)}
            client = self.clients[sender]
            if data is None:
                info = await client.send_text(conversation_id, text)
            else:
                info = await client.send_file(conversation_id, data, name=FILE_NAME)
            if info.state is not dl.MessageState.SENT:
                raise CliError(
                    ErrorCode.FAILED, f"the demo message was not sent ({info.state.value})"
                )
            new = [s for pid, s in server_payloads(self.database) if pid not in before]
            line = Line(sender, text if data is None else file_text.strip(), info.message_id)
            line.stored = new[-1] if new else None
            self.lines.append(line)
            for user, c in self.clients.items():
                if user != sender:
                    await c.sync()
        for user, c in self.clients.items():
            for m in await c.history(conversation_id, limit=None):
                found = next((x for x in self.lines if x.message_id == m.message_id), None)
                if found is None:
                    continue
                line = found
                if m.outgoing:
                    line.read[user] = "(sent it)"
                elif m.file is not None:
                    content = (await c.download(m)).decode("utf-8", "replace").strip()
                    line.read[user] = f"{m.file.name}: {content}"
                else:
                    line.read[user] = m.text or ""

    async def report(self, elapsed: float) -> dict[str, Any]:
        table = Table(
            title="What each client read, and what the server stored",
            show_lines=True,
            expand=False,
        )
        table.add_column("#", justify="right")
        for user in USERS:
            table.add_column(f"{user} read", overflow="fold", ratio=3)
        table.add_column("the server stored (until delivered)", overflow="fold", ratio=2)
        for i, line in enumerate(self.lines, 1):
            stored = line.stored
            cell = (
                f"{size(stored.size)} of ciphertext ...{stored.tail}, "
                f"queued for {stored.queued_for} devices"
                if stored is not None
                else "(not readable)"
            )
            # What the clients read is peer text: rendered safe, and a Text (never markup).
            read = (Text(safe_text(line.read.get(u, "-"))) for u in USERS)
            table.add_row(str(i), *read, cell)
        if not self.quiet:
            self.console.print()
            self.console.print(table)

        left = sum(s.queued_for for _, s in server_payloads(self.database))
        # Every byte the server wrote, while it runs (with its write-ahead log) and after it
        # stopped (its last writes), and its log.
        needles = [line.text.encode() for line in self.lines]
        needles.append(self.tag.encode())
        files, total, hits = scan(self.server.data_dir, needles)
        self.server.stop()
        files_after, total_after, hits_after = scan(self.server.data_dir, needles)
        files, total = max(files, files_after), max(total, total_after)
        hits.extend(h for h in hits_after if h not in hits)
        log_bytes = self.server.log_path.read_bytes() if self.server.log_path.exists() else b""
        hits.extend(f"server.log: {n[:20]!r}" for n in needles if n in log_bytes)
        every_read = all(len(line.read) == len(USERS) for line in self.lines)
        self.say(
            f"\n[bold]delivered[/] every message reached every member: "
            f"{'yes' if every_read else 'NO'}; the server deleted each ciphertext once all "
            f"recipients acknowledged it ({left} still queued)"
        )
        verdict = "[green]none found[/]" if not hits else f"[red]FOUND: {', '.join(hits)}[/]"
        self.say(
            f"[bold]I1 check[/] searched {files} files ({size(total)}: database, WAL, encrypted "
            f"attachment) and the server log ({size(len(log_bytes))}) for the "
            f"{len(needles) - 1} plaintexts and the canary {self.tag}: {verdict}"
        )
        self.say(f"[bold]time[/]    {elapsed:.1f} s")
        return {
            "server_url": self.server.url,
            "users": list(USERS),
            "messages": [
                {
                    "sender": line.sender,
                    "text": line.text,
                    "read": line.read,
                    "stored": dataclasses.asdict(line.stored) if line.stored else None,
                }
                for line in self.lines
            ],
            "delivered_to_all": every_read,
            "still_queued": left,
            "scanned_files": files,
            "scanned_bytes": total + len(log_bytes),
            "plaintext_hits": hits,
            "seconds": round(elapsed, 2),
        }


@contextlib.contextmanager
def _workspace(keep: bool) -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="doorless-demo-"))
    try:
        yield root
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


def demo(
    ctx: typer.Context,
    keep: Annotated[
        bool, typer.Option("--keep", help="Keep the temporary folder (server data, profiles).")
    ] = False,
) -> None:
    """Run a local server and three users in a temporary folder; show what each client read
    and what the server stored (ciphertext only), then clean up. Takes a few seconds."""
    st = state(ctx)
    console = Console(highlight=False)
    # The demo talks to 127.0.0.1 only: never through a proxy the environment may name.
    for name in ("NO_PROXY", "no_proxy"):
        os.environ[name] = ",".join(filter(None, ["127.0.0.1,localhost", os.environ.get(name)]))

    async def main() -> None:
        with _workspace(keep) as root:
            result = await Demo(root, console, quiet=st.json).run()
            if keep and not st.json:
                console.print(f"kept: {root}")
            result["folder"] = str(root) if keep else None
        if st.json:
            emit_json(result)
        if result["plaintext_hits"] or not result["delivered_to_all"]:
            raise CliError(ErrorCode.FAILED, "the demo found a problem (see above)")

    run(st, main)


__all__ = ["Demo", "ServerProcess", "demo", "scan", "server_payloads"]
