"""The app's client: opened at start when the profile has an account, else made by the page.

The page speaks the daemon's JSON-RPC 2.0 over a WebSocket (`doorless.cli.daemon`,
``docs/json-rpc.md``): every method of `doorless.cli.rpc.METHODS`, the same notifications, plus
the few methods below that a page needs and a bot does not (``appStatus``, and before there is
an account ``createAccount`` / ``beginLink`` / ``cancelLink``). The keys stay in this process;
the page only shows what the methods return.
"""

from __future__ import annotations

import asyncio
import base64
import io
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

import qrcode
import qrcode.image.svg

from doorless import client as dl
from doorless.cli import config as profile_config
from doorless.cli import rpc
from doorless.cli.account import account_json
from doorless.cli.common import State
from doorless.cli.daemon import Connection, Daemon
from doorless.cli.session import CliError, client_options, open_client, parse_user
from doorless.errors import DoorlessError
from doorless.wire.errors import ErrorCode

if TYPE_CHECKING:
    from doorless.cli.config import ProfileConfig
    from doorless.client import Client, DeviceLink

log = logging.getLogger("doorless.app")

JSON = dict[str, Any]


def qr_data_uri(data: str | bytes) -> str:
    """A QR code of ``data`` as an SVG ``data:`` URI (an <img> source: never markup)."""
    image = qrcode.make(data, image_factory=qrcode.image.svg.SvgPathImage, border=2)
    out = io.BytesIO()
    image.save(out)
    return "data:image/svg+xml;base64," + base64.b64encode(out.getvalue()).decode("ascii")


# The methods that exist only before the profile has an account.
SETUP = frozenset({"createAccount", "beginLink", "cancelLink"})


class AppRuntime:
    """One profile's client (once it exists) and the pages connected to it."""

    def __init__(self, st: State, config: ProfileConfig | None = None) -> None:
        self.st = st
        self.config = config
        self.client: Client | None = None
        self.daemon: Daemon | None = None
        self.connections: set[Connection] = set()
        self.link: DeviceLink | None = None
        self._link_error: str | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.methods: dict[str, rpc.Method] = {
            name: rpc.Method(name, handler, (handler.__doc__ or "").strip())
            for name, handler in (
                ("appStatus", self._status),
                ("createAccount", self._create_account),
                ("beginLink", self._begin_link),
                ("cancelLink", self._cancel_link),
                ("qrCode", self._qr_code),
            )
        }

    # --- lifetime ---------------------------------------------------------------------------

    def spawn(self, job: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(job)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def start(self) -> None:
        """Open the profile's client if it has an account (else the page creates one)."""
        if profile_config.has_profile_data(self.st.profile):
            await self._ready(await open_client(self.st, push=True, config=self.config))

    async def _ready(self, client: Client) -> None:
        self.client = client
        daemon = Daemon(client)
        daemon.connections = self.connections  # one set: pages connected before get events
        self.daemon = daemon
        events = client.events()  # subscribed before anything can happen
        daemon.spawn(daemon.pump_events(events))
        await client.start()
        await self._broadcast_status()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.link is not None:
            await self.link.cancel()
        if self.daemon is not None:
            await self.daemon.close()
        if self.client is not None:
            await self.client.close()

    # --- requests ---------------------------------------------------------------------------

    async def handle(self, connection: Connection, line: str) -> None:
        if self.client is None:
            table: dict[str, rpc.Method] = self.methods
        else:
            table = {**rpc.METHODS, **{n: m for n, m in self.methods.items() if n not in SETUP}}
        answer = await rpc.dispatch(self.client, line, methods=table, profile=self.st.profile)
        if answer is not None:
            await connection.send(answer)

    async def _broadcast_status(self) -> None:
        line = rpc.notification("app", await self._status(None, rpc.Params({})))
        for connection in [c for c in self.connections if c.open]:
            await connection.send(line)

    # --- the app's own methods ----------------------------------------------------------------

    async def _status(self, _client: Any, params: rpc.Params) -> JSON:
        """``{state: "ready"|"linking"|"new", account, link}``: what the page should show."""
        params.done()
        if self.client is not None:
            return {"state": "ready", "account": account_json(self.client), "link": None}
        if self.link is not None:
            code = self.link.code
            return {
                "state": "linking",
                "account": None,
                "link": {
                    "code": code,
                    "fingerprint": self.link.fingerprint(),
                    "device_id": self.link.device_id,
                    "expires_at": self.link.expires_at,
                    "qr": qr_data_uri(code),
                },
            }
        return {"state": "new", "account": None, "link": None, "error": self._link_error}

    def _require_new(self) -> None:
        if self.client is not None or self.link is not None:
            raise CliError(ErrorCode.INVALID_STATE, "this profile already has an account")

    async def _open_new(
        self, params: rpc.Params, open_with: Callable[[str | None], Awaitable[Any]]
    ) -> Any:
        passphrase = params.opt_string("passphrase") or None
        params.done()
        try:
            return await open_with(passphrase)
        except dl.KeyUnavailable:
            raise CliError(
                ErrorCode.USAGE, "choose a passphrase: it encrypts this profile on disk"
            ) from None

    async def _create_account(self, _client: Any, params: rpc.Params) -> JSON:
        """Register ``username`` on ``server_url`` (optional ``invite``, ``device_name``,
        ``passphrase``) with this profile as its first device. Result: the app status."""
        self._require_new()
        name = parse_user(params.string("username"))
        server_url = params.string("server_url")
        invite = params.opt_string("invite") or None
        device_name = params.opt_string("device_name") or ""

        async def open_with(passphrase: str | None) -> Client:
            return await dl.Client.create_account(
                self.st.profile,
                passphrase,
                server_url=server_url,
                username=name,
                invite_code=invite,
                device_name=device_name,
                options=client_options(push=True, profile=self.st.profile, config=self.config),
            )

        client = await self._open_new(params, open_with)
        await self._ready(client)
        return await self._status(None, rpc.Params({}))

    async def _begin_link(self, _client: Any, params: rpc.Params) -> JSON:
        """Make this empty profile a new device of ``username`` on ``server_url`` (optional
        ``device_name``, ``passphrase``). Result: the app status with the link code, its QR
        and this device's fingerprint; an ``app`` notification follows once approved."""
        self._require_new()
        name = parse_user(params.string("username"))
        server_url = params.string("server_url")
        device_name = params.opt_string("device_name") or ""

        async def open_with(passphrase: str | None) -> DeviceLink:
            return await dl.Client.begin_link(
                self.st.profile,
                passphrase,
                server_url=server_url,
                username=name,
                device_name=device_name,
                options=client_options(push=True, profile=self.st.profile, config=self.config),
            )

        self.link = await self._open_new(params, open_with)
        self._link_error = None
        self.spawn(self._await_link())
        return await self._status(None, rpc.Params({}))

    async def _await_link(self) -> None:
        link = self.link
        assert link is not None
        try:
            client = await link.complete()
        except (DoorlessError, TimeoutError) as exc:
            await link.cancel()
            self.link = None
            self._link_error = f"the link did not complete: {exc}"
            log.warning("device link failed: %s", type(exc).__name__)
            await self._broadcast_status()
            return
        self.link = None
        await self._ready(client)

    async def _qr_code(self, _client: Any, params: rpc.Params) -> JSON:
        """A QR code to show: ``hex`` (bytes, e.g. a safety number's ``qr_payload``) or
        ``text``. Result: ``{image}``, an SVG ``data:`` URI."""
        given_hex, text = params.opt_string("hex"), params.opt_string("text")
        params.done()
        if (given_hex is None) == (text is None):
            raise rpc.InvalidParams("give exactly one of 'hex', 'text'")
        if given_hex is not None:
            try:
                data: str | bytes = bytes.fromhex(given_hex)
            except ValueError:
                raise rpc.InvalidParams("'hex' is not hexadecimal") from None
        else:
            assert text is not None
            data = text
        if len(data) > 1024:
            raise rpc.InvalidParams("too long for a QR code")
        return {"image": qr_data_uri(data)}

    async def _cancel_link(self, _client: Any, params: rpc.Params) -> JSON:
        """Stop waiting for approval of this device. Result: the app status."""
        params.done()
        if self.link is None:
            raise CliError(ErrorCode.INVALID_STATE, "no device link is pending")
        link, self.link = self.link, None
        for task in list(self._tasks):
            task.cancel()
        await link.cancel()
        return await self._status(None, rpc.Params({}))


__all__ = ["AppRuntime", "qr_data_uri"]
