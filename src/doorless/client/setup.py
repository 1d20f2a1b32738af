"""Setting a profile up: creating an account (its first device), linking a new device to an
existing account (`DeviceLink`), and opening a finished profile. An interrupted setup resumes
with the same device key; a profile is usable (`open`) only once its setup is done."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from doorless.client import devices
from doorless.client.conversations import make_credential
from doorless.client.core import Session, SetupIncomplete
from doorless.client.errors import Conflict, NotFound, Unauthorized
from doorless.client.options import ClientOptions, PassphraseArg
from doorless.client.store import Account, ProfileStore, Transaction
from doorless.client.transport import DeviceIdentity, Transport
from doorless.codec import encode
from doorless.errors import ConfigurationError, StateError
from doorless.wire import protocol

if TYPE_CHECKING:
    from doorless.client.client import Client

log = logging.getLogger("doorless.client")

# Settings keys of the profile store.
_SETTING_SERVER_ID = "server_id"


_SETTING_SETUP = "setup"


_SETUP_REGISTER = "register"


_SETUP_LINK = "link"


_SETUP_DONE = "done"


async def _open_store(
    profile_dir: str | os.PathLike[str], passphrase: PassphraseArg, options: ClientOptions
) -> ProfileStore:
    # Argon2id takes a noticeable time: keep it off the event loop.
    return await asyncio.to_thread(
        ProfileStore.open,
        profile_dir,
        passphrase,
        argon2=options.argon2,
        lock_timeout=options.lock_timeout,
    )


def _make_transport(
    server_url: str, identity: DeviceIdentity, server_id: str | None, options: ClientOptions
) -> Transport:
    return Transport(
        server_url,
        identity,
        server_id=server_id,
        ssl_context=options.ssl_context,
        timeout=options.timeout,
        retries=options.retries,
        backoff=options.backoff,
        http_transport=options.http_transport,
    )


async def _already_registered(transport: Transport) -> bool:
    """True if the server knows this device (an earlier, interrupted setup got that far)."""
    try:
        await transport.authenticate()
    except Unauthorized:
        return False
    return True


def _read_setup(tx: Transaction) -> tuple[Account | None, str | None, str | None]:
    return tx.get_account(), tx.get_setting(_SETTING_SETUP), tx.get_setting(_SETTING_SERVER_ID)


async def _begin_setup(
    store: ProfileStore, mode: str, server_url: str, username: str, options: ClientOptions
) -> tuple[Account, Transport]:
    """Create (or resume) the account row of a profile being set up, and its transport."""
    if not protocol.is_username(username):
        raise ConfigurationError(f"invalid username {username!r}")
    account, setup, server_id = await store.run_transaction(_read_setup)
    if account is not None:
        if setup == _SETUP_DONE:
            raise StateError("this profile already has an account")
        if setup != mode or account.username != username or account.server_url != server_url:
            raise StateError("this profile is being set up for another account")
        identity = DeviceIdentity.from_private_key(account.signature_private_key.value)
    else:
        identity = DeviceIdentity.generate()
    transport = _make_transport(server_url, identity, server_id, options)
    try:
        pinned = await transport.server_id()
        if account is None:
            credential = make_credential(username, identity.device_id)
            new = Account(
                username=username,
                server_url=server_url,
                device_id=identity.device_id,
                cipher_suite=options.cipher_suite,
                signature_private_key=identity.private_key,
                signature_public_key=identity.public_key,
                credential=encode(credential),
                created_at=int(options.clock() * 1000),
            )

            def write(tx: Transaction) -> None:
                tx.put_account(new)
                tx.set_setting(_SETTING_SERVER_ID, pinned)
                tx.set_setting(_SETTING_SETUP, mode)

            await store.run_transaction(write)
            account = new
    except BaseException:
        await transport.aclose()
        raise
    return account, transport


class DeviceLink:
    """A new device waiting to be approved by an existing device of the account.

    Show `code` and `fingerprint` to the user; they enter the code on a device they already
    have, compare the fingerprint, and approve (`Client.approve_link`). Then `complete`
    returns the new device's `Client`. If this process stops before that, call
    `Client.begin_link` again with the same profile: it resumes with the same device key.
    """

    def __init__(
        self,
        store: ProfileStore,
        transport: Transport,
        account: Account,
        options: ClientOptions,
        code: str,
        expires_at: int,
        device_name: str,
        wrap: Callable[[Session], Client],
    ) -> None:
        self._store = store
        self._transport = transport
        self._account = account
        self._options = options
        self.code = code
        self.expires_at = expires_at
        self.device_id = account.device_id
        self._device_name = device_name
        self._done = False
        self._wrap = wrap

    def fingerprint(self) -> str:
        """The device id in groups of four (the existing device shows the same)."""
        return " ".join(self.device_id[i : i + 4] for i in range(0, len(self.device_id), 4))

    async def complete(self, *, timeout: float | None = None, poll_interval: float = 1.0) -> Client:
        """Wait for the approval (`TimeoutError` after ``timeout`` seconds; call again to keep
        waiting), then finish the setup and return the client."""
        if self._done:
            raise StateError("this link was already completed")
        if not await _already_registered(self._transport):
            try:
                await self._transport.wait_for_link_approval(
                    self.code, poll_interval=poll_interval, timeout=timeout
                )
            except NotFound:
                # The request expired or is gone: fine if it was approved in the meantime.
                if not await _already_registered(self._transport):
                    raise
        session = Session(self._store, self._transport, self._account, self._options)
        await finish_setup(session, self._device_name)
        self._done = True
        return self._wrap(session)

    async def cancel(self) -> None:
        """Stop waiting: close the profile (it can be resumed with `Client.begin_link`)."""
        if not self._done:
            self._done = True
            await self._transport.aclose()
            await self._store.aclose()


async def create_account(
    profile_dir: str | os.PathLike[str],
    passphrase: PassphraseArg,
    *,
    server_url: str,
    username: str,
    invite_code: str | None,
    device_name: str,
    options: ClientOptions | None,
) -> Session:
    """Register ``username`` with a new profile as its first device (`Client.create_account`)."""
    opts = options or ClientOptions()
    store = await _open_store(profile_dir, passphrase, opts)
    transport: Transport | None = None
    try:
        account, transport = await _begin_setup(store, _SETUP_REGISTER, server_url, username, opts)
        try:
            await transport.register(username, invite_code)
        except Conflict:
            if not await _already_registered(transport):
                raise
        await transport.authenticate()
        session = Session(store, transport, account, opts)
        await finish_setup(session, device_name)
        return session
    except BaseException:
        if transport is not None:
            await transport.aclose()
        await store.aclose()
        raise


async def begin_link(
    profile_dir: str | os.PathLike[str],
    passphrase: PassphraseArg,
    *,
    server_url: str,
    username: str,
    device_name: str,
    options: ClientOptions | None,
    wrap: Callable[[Session], Client],
) -> DeviceLink:
    """Start adding a new profile as another device of ``username`` (see `DeviceLink`)."""
    opts = options or ClientOptions()
    store = await _open_store(profile_dir, passphrase, opts)
    transport: Transport | None = None
    try:
        account, transport = await _begin_setup(store, _SETUP_LINK, server_url, username, opts)
        ticket = await transport.request_link(username)
        return DeviceLink(
            store, transport, account, opts, ticket.code, ticket.expires_at, device_name, wrap
        )
    except BaseException:
        if transport is not None:
            await transport.aclose()
        await store.aclose()
        raise


async def open_profile(
    profile_dir: str | os.PathLike[str], passphrase: PassphraseArg, *, options: ClientOptions | None
) -> Session:
    """Open an existing, fully set-up profile: everything is restored from its store."""
    opts = options or ClientOptions()
    store = await _open_store(profile_dir, passphrase, opts)
    try:
        account, setup, server_id = await store.run_transaction(_read_setup)
        if account is None:
            raise ConfigurationError(f"no Doorless account in {profile_dir}")
        if setup != _SETUP_DONE:
            raise SetupIncomplete(
                "this profile's setup did not finish: run the account creation or the "
                "device link again"
            )
        identity = DeviceIdentity.from_private_key(account.signature_private_key.value)
        transport = _make_transport(account.server_url, identity, server_id, opts)
        return Session(store, transport, account, opts)
    except BaseException:
        await store.aclose()
        raise


async def finish_setup(s: Session, device_name: str) -> None:
    """The last steps of a setup: publish KeyPackages, record the account's devices, pin
    the franking key, persist the key-transparency state, and mark the profile ready."""
    await devices.top_up_key_packages(s)
    # A bad directory entry is alarmed and left out, not a failed setup.
    await devices.list_devices(s, {s.me.device_id: device_name})
    await s.franking_key()  # pinned from the server we registered with
    await s.kt.load()  # persists the device list this device signed at registration
    await s.tx(lambda tx: tx.set_setting(_SETTING_SETUP, _SETUP_DONE))


__all__ = ["DeviceLink", "begin_link", "create_account", "finish_setup", "open_profile"]
