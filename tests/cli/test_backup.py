"""The daemon's ``createBackup`` and ``approveLink``'s history parameter, over a fake client
(the commands themselves run end to end in tests/e2e/test_backup.py and
test_history_handoff.py)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, cast

from doorless.cli import rpc
from doorless.cli.main import app  # noqa: F401  (registers every module's methods)
from doorless.client import BackupSummary, Client, HistoryChoice, HistorySent, WeakPassphrase
from doorless.client.transport import PendingLink


class BackupClient:
    profile_dir = Path("/nonexistent/profile")

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def create_backup(self, path: str, **kwargs: Any) -> BackupSummary:
        self.calls.append((path, kwargs))
        if kwargs["passphrase"] == "weak":
            raise WeakPassphrase("the backup passphrase is too short")
        key = None if kwargs["passphrase"] else "ABCD-" * 12 + "EFGH"
        return BackupSummary(Path(path), 123, 2, 5, 0, key)


def call(client: object, method: str, params: Any) -> Any:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
    return json.loads(asyncio.run(rpc.dispatch(cast(Client, client), body)))


def test_create_backup() -> None:
    fake = BackupClient()
    result = call(fake, "createBackup", {"file": "/tmp/b", "attachments": True})["result"]
    assert result == {
        "file": "/tmp/b",
        "size": 123,
        "conversations": 2,
        "messages": 5,
        "attachments": 0,
        "recovery_key": "ABCD-" * 12 + "EFGH",
    }
    path, kwargs = fake.calls[0]
    assert path == "/tmp/b" and kwargs["attachments"] is True
    assert kwargs["passphrase"] is None and "config.toml" in kwargs["profile_files"]
    result = call(fake, "createBackup", {"file": "/tmp/c", "passphrase": "long enough words"})
    assert result["result"]["recovery_key"] is None
    weak = call(fake, "createBackup", {"file": "/tmp/d", "passphrase": "weak"})["error"]
    assert weak["data"]["error"] == "invalid" and "too short" in weak["message"]
    assert call(fake, "createBackup", {})["error"]["data"]["error"] == "usage"


class LinkClient:
    profile_dir = Path("/nonexistent/profile")
    device = "ab" * 16

    def __init__(self) -> None:
        self.handed: list[tuple[str, HistoryChoice]] = []

    async def get_link(self, code: str) -> Any:
        class Link:
            device_id = LinkClient.device

        return cast(PendingLink, Link())

    async def approve_link(self, pending: Any) -> Any:
        from doorless.client import DeviceRef

        return DeviceRef("alice", self.device)

    async def send_history(self, device_id: str, choice: HistoryChoice) -> HistorySent:
        self.handed.append((device_id, choice))
        return HistorySent(device_id, 7, 2, 0)


def test_approve_link_hands_over_the_chosen_history() -> None:
    fake = LinkClient()
    params = {"code": "K7QM", "fingerprint": fake.device}
    assert call(fake, "approveLink", params)["result"]["history"] is None
    assert fake.handed == []
    result = call(fake, "approveLink", {**params, "history": "all"})["result"]
    assert result["history"] == {"messages": 7, "conversations": 2, "since": 0}
    assert fake.handed == [(fake.device, HistoryChoice(everything=True))]
    bad = call(fake, "approveLink", {**params, "history": "days:0"})["error"]
    assert bad["data"]["error"] == "usage" and len(fake.handed) == 1
