"""The background work of a started client: the receive loop (WebSocket push with
reconnects, HTTP fetches with backoff) and the maintenance loop (pruning, device and block-list
sync, transparency monitoring, purging expired messages, KeyPackage top-up, retrying the
outbox); starting and closing the client."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from doorless.client import contact_safety, devices, inbox, outbox
from doorless.client.core import KEY_PACKAGE_LIFETIME_MS, MAX_BACKOFF, Session
from doorless.client.store import Transaction
from doorless.errors import DoorlessError, StateError
from doorless.wire.messages import QueuedMessage

log = logging.getLogger("doorless.client")

_PROCESSED_RETENTION_MS = 30 * 24 * 3600 * 1000


_BLOCKS_INTERVAL = 300.0  # seconds between reads of the account's block list


async def start(s: Session) -> None:
    """Receive, retry pending sends and top up KeyPackages in the background."""
    if s.closed:
        raise StateError("the client is closed")
    if not s.tasks:
        for job in (receive_loop(s), maintenance_loop(s)):
            task = asyncio.create_task(job)
            s.tasks.add(task)


async def close(s: Session) -> None:
    """Stop the background tasks, close the connection and the profile (idempotent)."""
    if s.closed:
        return
    s.closed = True
    for task in s.tasks:
        task.cancel()
    await asyncio.gather(*s.tasks, return_exceptions=True)
    s.tasks.clear()
    async with s.lock:  # let a running operation finish its transaction
        s.hub.close()
        await s.transport.aclose()
        await s.store.aclose()


async def purge_expired(s: Session, *, vacuum: bool = False) -> int:
    """Delete disappearing messages whose time has come (``secure_delete`` overwrites
    them, a WAL checkpoint drops the old page images; ``vacuum`` also rebuilds the file).
    Runs in the background and on `sync`; returns how many were deleted."""
    deleted = await s.store.run(s.store.delete_expired, s.now_ms())
    if vacuum:
        await s.store.run(s.store.vacuum)
    elif deleted:
        await s.store.run(s.store.checkpoint)
    return deleted


async def prune(s: Session) -> None:
    """Forget what can no longer be needed: KeyPackages past their lifetime (claimed
    packages whose Welcome never came, replaced last-resort packages) and dedupe marks of
    queue entries acknowledged long ago (the server deleted them on the ack)."""
    now = s.now_ms()

    def write(tx: Transaction) -> None:
        tx.prune_processed(now - _PROCESSED_RETENTION_MS)
        packages = tx.list_key_packages()
        newest_last = max((k.created_at for k in packages if k.last_resort), default=None)
        for k in packages:
            if k.created_at < now - KEY_PACKAGE_LIFETIME_MS and k.created_at != newest_last:
                tx.delete_key_package(k.ref)

    await s.tx(write)


async def receive_loop(s: Session) -> None:
    """Background: sync and flush the outbox, then follow the push stream (or poll);
    back off while the server cannot be reached."""
    delay = s.options.backoff
    while True:
        try:
            async with s.lock:
                await inbox.sync_locked(s)
                await outbox.flush_locked(s)
            if s.options.push:
                await push_session(s)
            else:
                await asyncio.sleep(s.options.poll_interval)
            delay = s.options.backoff
        except asyncio.CancelledError:
            raise
        except DoorlessError as e:
            log.info("receiving paused (%s); retrying in %.1fs", type(e).__name__, delay)
            await asyncio.sleep(delay)
            delay = min(MAX_BACKOFF, max(delay, 0.1) * 2)
        except Exception:
            log.exception("unexpected error while receiving; retrying")
            await asyncio.sleep(delay)
            delay = min(MAX_BACKOFF, max(delay, 0.1) * 2)


async def push_session(s: Session) -> None:
    """Process pushed messages as they come, acknowledging each after its transaction."""
    stream = s.transport.push(after=0, max_reconnects=2)
    try:
        async for event in stream:
            if isinstance(event, QueuedMessage):
                async with s.lock:
                    await inbox.handle_inbound_locked(s, event)
                await stream.ack([event.seq])
            else:
                s.check_key_packages.set()
    finally:
        await stream.aclose()


async def _step(name: str, job: Callable[[], Awaitable[object]]) -> bool:
    """Run one maintenance step; a failure pauses only this step (logged), never the
    others: a poisoned directory entry must not stop expiry, KeyPackages or retries."""
    try:
        await job()
    except asyncio.CancelledError:
        raise
    except DoorlessError as e:
        log.info("maintenance step %s paused (%s: %s)", name, type(e).__name__, e)
        return False
    except Exception:
        log.exception("unexpected error in the client's maintenance step %s", name)
        return False
    return True


async def maintenance_loop(s: Session) -> None:
    """Background: purge expired messages, prune, sync devices and blocks, monitor key
    transparency, top up KeyPackages and retry due outbox items. Each step runs on its
    own (`_step`): one that fails is retried next round while the others go on."""
    devices_checked = False
    blocks_read_at = -_BLOCKS_INTERVAL
    loop = asyncio.get_running_loop()
    kt_checked_at = loop.time()
    top_up = False

    async def flush() -> None:
        async with s.lock:
            await outbox.flush_locked(s, due_only=True)

    while True:
        await _step("expiry", lambda: purge_expired(s))
        if not devices_checked:
            await _step("prune", lambda: prune(s))
            # checks the transparency log first
            devices_checked = await _step("devices", lambda: devices.sync_devices(s))
            kt_checked_at = loop.time()
        if loop.time() - kt_checked_at >= s.options.kt_monitor_interval:
            kt_checked_at = loop.time()
            await _step("transparency", lambda: devices.check_transparency(s))
        if loop.time() - blocks_read_at >= _BLOCKS_INTERVAL and await _step(
            "blocks", lambda: contact_safety.sync_blocks(s)
        ):
            blocks_read_at = loop.time()
        if s.check_key_packages.is_set():
            s.check_key_packages.clear()
            top_up = True
        if top_up:  # until it succeeds, once a round
            top_up = not await _step("key packages", lambda: devices.top_up_key_packages(s))
        await _step("outbox", flush)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(s.check_key_packages.wait(), s.options.retry_interval)
