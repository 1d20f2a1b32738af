"""The real ``doorless`` program, as separate processes, against the real server process:
accounts, linking a second device, direct messages and a file, ``receive``, the error lines
and exit codes people see, a message queued while the server is down, and the JSON-RPC
daemon on stdin/stdout. Then the canary scans over the server and every profile."""

from __future__ import annotations

import hashlib
import json
import os
import queue
import secrets
import subprocess
import threading
from pathlib import Path
from typing import IO, Any

from .helpers import PASSPHRASE, ServerProcess, doorless_command, run_cli, scan


def lines(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def problems(stderr: str) -> list[str]:
    """stderr without the libraries' ``warning: ...`` lines."""
    return [line for line in stderr.splitlines() if not line.startswith("warning: ")]


def of_type(items: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [x for x in items if x.get("type") == kind]


class LineReader:
    """Lines of a child's stdout, read by a thread (so a test can wait with a timeout)."""

    def __init__(self, stream: IO[str]) -> None:
        self._queue: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self._queue.put(line)

    def next(self, timeout: float = 60) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self._queue.get(timeout=timeout))
        return value


def spawn(profile: Path, *args: str, json_output: bool = True) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOORLESS_")}
    env["DOORLESS_PASSPHRASE"] = PASSPHRASE
    argv = [*doorless_command(), "--profile", str(profile)]
    argv += ["--json"] if json_output else []
    return subprocess.Popen(
        [*argv, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_the_doorless_program_end_to_end(server: ServerProcess, tmp_path: Path) -> None:
    p = {name: tmp_path / "profiles" / name for name in ("alice", "bob", "bob2")}
    canaries = [f"canary-{i}-{secrets.token_hex(12)}" for i in range(4)]
    url = server.url

    r = run_cli(p["alice"], "account", "create", "--server", url, "alice")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("created @alice on " + url)
    r = run_cli(p["bob"], "account", "create", "--server", url, "bob", json_output=True)
    assert r.returncode == 0 and json.loads(r.stdout)["username"] == "bob"

    # --- bob links a second device: the new one waits, the old one approves -------------
    link = spawn(p["bob2"], "device", "link", "--server", url, "bob", "--timeout", "90")
    assert link.stdout is not None
    reader = LineReader(link.stdout)
    requested = reader.next()
    assert requested["type"] == "link_requested"
    wrong = run_cli(p["bob"], "device", "approve", requested["code"], "--fingerprint", "00")
    assert wrong.returncode == 1
    assert problems(wrong.stderr)[-1].endswith("not approved")
    r = run_cli(
        p["bob"], "device", "approve", requested["code"], "--fingerprint", requested["fingerprint"]
    )
    assert r.returncode == 0, r.stderr
    linked = reader.next()
    assert linked["type"] == "linked" and linked["device_id"] == requested["device_id"]
    assert link.wait(60) == 0

    # --- alice writes to bob (both his devices) -------------------------------------------
    r = run_cli(p["alice"], "send", "@bob", f"hello {canaries[0]}")
    assert r.returncode == 0 and r.stdout.startswith("sent message to @bob"), r.stderr
    secret_file = tmp_path / "notes.txt"
    secret_file.write_bytes(f"file body {canaries[1]}\n".encode() * 1000)
    r = run_cli(p["alice"], "send-file", "@bob", secret_file, json_output=True)
    assert r.returncode == 0, r.stderr
    file_message = json.loads(r.stdout)
    assert file_message["file"]["sha256"] == hashlib.sha256(secret_file.read_bytes()).hexdigest()

    for device in ("bob", "bob2"):
        r = run_cli(p[device], "receive", json_output=True)
        assert r.returncode == 0, r.stderr
        got = lines(r.stdout)
        assert len(of_type(got, "conversation_joined")) == 1
        messages = [x["message"] for x in of_type(got, "message_received")]
        assert [m["kind"] for m in messages] == ["text", "file"]
        assert messages[0]["text"] == f"hello {canaries[0]}"
    assert run_cli(p["bob2"], "receive", json_output=True).stdout == ""  # each message once
    out = tmp_path / "downloaded.txt"
    r = run_cli(p["bob2"], "download", file_message["message_id"], "--output", out)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == secret_file.read_bytes()
    out.unlink()

    # --- what people see when something is wrong: one line, exit 1 (2 for usage) ----------
    r = run_cli(p["alice"], "send", "@nobody", "hi")
    assert (r.returncode, problems(r.stderr), r.stdout) == (1, ["error: unknown user @nobody"], "")
    r = run_cli(p["alice"], "receive", passphrase="wrong")
    assert r.returncode == 1
    assert problems(r.stderr) == [f"error: wrong passphrase for profile {p['alice']}"]
    r = run_cli(p["alice"], "send", "@bob")  # no text, and an empty stdin
    assert (r.returncode, problems(r.stderr)) == (2, ["error: the message is empty"])

    server.stop()
    r = run_cli(p["alice"], "receive")
    assert r.returncode == 1
    (line,) = problems(r.stderr)
    assert line.startswith("error: cannot reach the server"), r.stderr
    r = run_cli(p["alice"], "send", "@bob", "sent while the server was down")
    assert r.returncode == 0 and "queued" in r.stdout and "warning" in r.stderr
    server.start()
    r = run_cli(p["alice"], "receive", json_output=True)
    assert [x["message"]["state"] for x in of_type(lines(r.stdout), "message_sent")] == ["sent"]
    got = lines(run_cli(p["bob"], "receive", json_output=True).stdout)
    texts = [x["message"]["text"] for x in of_type(got, "message_received")]
    assert texts == ["sent while the server was down"]

    # --- the daemon on stdin/stdout --------------------------------------------------------
    daemon = spawn(p["alice"], "daemon", "--json-rpc", json_output=False)
    assert daemon.stdin is not None and daemon.stdout is not None
    answers = LineReader(daemon.stdout)

    def call(id_: int, method: str, **params: Any) -> dict[str, Any]:
        assert daemon.stdin is not None
        body = {"jsonrpc": "2.0", "id": id_, "method": method, "params": params}
        daemon.stdin.write(json.dumps(body) + "\n")
        daemon.stdin.flush()
        while True:
            message = answers.next()
            if message.get("id") == id_:
                return message
            notifications.append(message)

    notifications: list[dict[str, Any]] = []
    assert call(1, "whoami")["result"]["username"] == "alice"
    r = run_cli(p["bob"], "send", "@alice", f"to the daemon {canaries[2]}")
    assert r.returncode == 0, r.stderr
    while not any(n["params"]["type"] == "message_received" for n in notifications):
        notifications.append(answers.next())
    event = next(n for n in notifications if n["params"]["type"] == "message_received")
    assert event["method"] == "event" and "id" not in event
    assert event["params"]["message"]["text"] == f"to the daemon {canaries[2]}"
    reply = call(2, "send", user="@bob", text=f"from the daemon {canaries[3]}")
    assert reply["result"]["state"] == "sent"
    assert call(3, "send", user="@nobody", text="x")["error"]["data"]["error"] == "unknown_user"
    daemon.stdin.close()  # EOF: the daemon stops
    assert daemon.wait(60) == 0
    got = lines(run_cli(p["bob2"], "receive", json_output=True).stdout)
    assert [x["message"]["text"] for x in of_type(got, "message_received")][-1] == (
        f"from the daemon {canaries[3]}"
    )

    # --- I1 and I6: no canary in what the server wrote or logged, nor in any profile --------
    server.stop()
    needles = [c.encode() for c in canaries]
    assert scan([server.data_dir, server.log_path], needles) == []
    assert scan(list(p.values()), needles) == []
