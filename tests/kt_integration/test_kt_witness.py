"""The witness: cosigns the heads of a log that only grows, refuses any other (scenario 7)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from doorless.cli.main import app
from doorless.client.transport import DeviceIdentity, Transport
from doorless.kt.checkpoint import NoteVerifier, SignedCheckpoint, verify_checkpoint
from doorless.server.config import ServerConfig
from doorless.wire.kt import user_label
from doorless.witness import Witness, WitnessRefused, WitnessState

from .helpers import BASE_URL, WITNESS, Net, forked, network, sql


async def _cosigned_by_witness(net: Net) -> int:
    t = net.witness_transport()
    signed = SignedCheckpoint.decode((await t.kt_head(0)).checkpoint)
    log_key = NoteVerifier.from_vkey(net.server.ctx.kt.info().log_key)
    verified = verify_checkpoint(signed, log_key, [NoteVerifier.from_vkey(net.witness.vkey)], 1)
    return verified.checkpoint.size


@pytest.mark.asyncio
async def test_cosigns_consistent_heads(tmp_path: Path) -> None:
    async with network(tmp_path) as net:
        alice = await net.user("alice")  # the helper steps the witness
        assert await _cosigned_by_witness(net) == 1
        await net.link(alice, "alice-2")
        await net.user("bob")
        assert await _cosigned_by_witness(net) == 3
        again = await net.witness.step()
        assert (again.size, again.cosigned, again.new_entries) == (3, False, 0)
        # Long after, it cosigns the same head again (fresh cosignature timestamp).
        net.clock.advance(2 * 3600)
        assert (await net.witness.step()).cosigned


@pytest.mark.asyncio
async def test_state_survives_a_restart(tmp_path: Path) -> None:
    async with network(tmp_path) as net:
        alice = await net.user("alice")
        await net.link(alice, "alice-2")
        vkey, size = net.witness.vkey, net.witness.size
        source = net.witness.source
        net.witness.state.close()
        state = WitnessState(tmp_path / "witness")
        again = Witness(source, state, name=WITNESS, clock=net.clock)
        assert (again.vkey, again.size) == (vkey, size)
        net.witness = again
        await net.user("bob")  # steps the reloaded witness
        assert await _cosigned_by_witness(net) == 3


@pytest.mark.asyncio
async def test_7_refuses_a_rolled_back_head(tmp_path: Path) -> None:
    async with network(tmp_path) as net:
        alice = await net.user("alice")
        async with forked(net, name="old") as old:
            net.front.fork = None
            await net.link(alice, "alice-2")  # the witness cosigns size 2
            net.front.fork = old.app
            net.front.victims.add("witness")
            with pytest.raises(WitnessRefused, match="went back"):
                await net.witness.step()
            assert old.ctx.kt.size == 1
            net.front.victims.clear()
        # It goes on with the honest log.
        await net.user("bob")
        assert await _cosigned_by_witness(net) == 3


@pytest.mark.asyncio
async def test_7_refuses_a_fork(tmp_path: Path) -> None:
    async with network(tmp_path) as net:
        alice = await net.user("alice")
        async with forked(net) as fork:
            await net.link(alice, "alice-2")  # honest size 2, cosigned
            async with Transport(
                BASE_URL,
                DeviceIdentity.generate(),
                http_transport=httpx.ASGITransport(app=fork.app),
                retries=0,
            ) as carol:
                await carol.register("carol")  # fork size 2, another entry
            net.front.victims.add("witness")
            with pytest.raises(WitnessRefused, match=r"does not name the replayed log|entry 1"):
                await net.witness.step()


@pytest.mark.asyncio
async def test_7_refuses_a_log_whose_entry_changed(tmp_path: Path) -> None:
    """The server swaps the commitment of a logged version (e.g. to change a key) and
    recomputes its prefix roots: the log's history changed, the witness refuses."""
    async with network(tmp_path) as net:
        await net.user("alice")
        await net.user("bob")

        def tamper(config: ServerConfig) -> None:
            label = user_label("alice")
            sql(
                config, "UPDATE kt_versions SET commitment = ? WHERE label = ?", b"\x01" * 32, label
            )
            sql(config, "UPDATE kt_versions SET log_index = NULL")
            sql(config, "DELETE FROM kt_log")

        async with forked(net, tamper):
            net.front.victims.add("witness")
            with pytest.raises(WitnessRefused):
                await net.witness.step()


@pytest.mark.asyncio
async def test_7_refuses_a_checkpoint_by_another_key(tmp_path: Path) -> None:
    async with network(tmp_path) as net:
        await net.user("alice")

        def tamper(config: ServerConfig) -> None:
            sql(config, "UPDATE meta SET value = ? WHERE key = 'kt_log_seed'", "11" * 32)
            sql(config, "UPDATE kt_versions SET log_index = NULL")  # re-signed from scratch
            sql(config, "DELETE FROM kt_log")

        async with forked(net, tamper):
            net.front.victims.add("witness")
            with pytest.raises(WitnessRefused, match="does not verify"):
                await net.witness.step()


def test_witness_command_help() -> None:
    result = CliRunner().invoke(app, ["witness", "--help"])
    assert result.exit_code == 0
    assert "--server" in result.output and "--state" in result.output
