"""Post-quantum by default, through the real server process: a 3-user conversation created
with defaults by the ``doorless`` program is post-quantum (hybrid X-Wing suite) and every
member's ``conversations`` says so; with a client that publishes classic KeyPackages only
(as before the PQ suites) in it, the conversation falls back to the classic suite."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from doorless.client import Client

from .helpers import PASSPHRASE, Devices, ServerProcess, options, run_cli

HYBRID = "MLS_128_MLKEM768X25519_AES128GCM_SHA256_Ed25519"
CLASSIC = "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519"


def _ok(profile: Path, *args: str, json_output: bool = False) -> str:
    r = run_cli(profile, *args, json_output=json_output)
    assert r.returncode == 0, r.stderr
    return r.stdout


def _suites(profile: Path) -> dict[str, tuple[str, bool]]:
    out = json.loads(_ok(profile, "conversations", json_output=True))
    return {c["name"]: (c["cipher_suite"], c["post_quantum"]) for c in out["conversations"]}


def test_three_users_with_defaults_talk_post_quantum(server: ServerProcess, tmp_path: Path) -> None:
    p = {u: tmp_path / "profiles" / u for u in ("alice", "bob", "carol")}
    for user, profile in p.items():
        _ok(profile, "account", "create", "--server", server.url, user)
    _ok(p["alice"], "group", "create", "team", "--member", "@bob", "--member", "@carol")
    _ok(p["alice"], "send", "--group", "team", "quantum-safe hello")
    assert _suites(p["alice"]) == {"team": (HYBRID, True)}
    line = _ok(p["alice"], "conversations").strip()
    assert line.endswith(f"{HYBRID} (post-quantum)") and "#team" in line
    for member in ("bob", "carol"):
        got = [json.loads(x) for x in _ok(p[member], "receive", json_output=True).splitlines()]
        texts = [e["message"]["text"] for e in got if e.get("type") == "message_received"]
        assert texts == ["quantum-safe hello"]
        assert _suites(p[member]) == {"team": (HYBRID, True)}


def test_a_classic_only_client_makes_the_conversation_classic(
    server: ServerProcess, tmp_path: Path
) -> None:
    p = {u: tmp_path / "profiles" / u for u in ("alice", "bob")}
    for user, profile in p.items():
        _ok(profile, "account", "create", "--server", server.url, user)
    net = Devices(server.url, tmp_path / "library")

    async def old_client() -> None:
        # A client from before the PQ suites: it publishes classic KeyPackages only.
        await net.account("olga", post_quantum=False)
        await net.close_all()

    asyncio.run(old_client())
    _ok(p["alice"], "group", "create", "mixed", "--member", "@bob", "--member", "@olga")
    _ok(p["alice"], "group", "create", "new", "--member", "@bob")
    assert _suites(p["alice"]) == {"mixed": (CLASSIC, False), "new": (HYBRID, True)}

    async def old_client_reads() -> list[str]:
        olga = await Client.open(
            net.profile("olga"), PASSPHRASE, options=options(post_quantum=False)
        )
        try:
            await olga.sync()
            (conv,) = await olga.conversations()
            assert (conv.cipher_suite, conv.post_quantum) == (CLASSIC, False)
            await olga.send_text(conv.id, "from the old client")
        finally:
            await olga.close()
        return [conv.name]

    assert asyncio.run(old_client_reads()) == ["mixed"]
    got = [json.loads(x) for x in _ok(p["bob"], "receive", json_output=True).splitlines()]
    assert [e["message"]["text"] for e in got if e.get("type") == "message_received"] == [
        "from the old client"
    ]
    assert _suites(p["bob"]) == {"mixed": (CLASSIC, False), "new": (HYBRID, True)}
