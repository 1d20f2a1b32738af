"""`Transport`: one device's connection to one server, all endpoint groups together."""

from __future__ import annotations

from doorless.client.transport.accounts import AccountEndpoints
from doorless.client.transport.attachments import AttachmentEndpoints
from doorless.client.transport.push import PushEndpoints
from doorless.client.transport.relay import RelayEndpoints


class Transport(AccountEndpoints, PushEndpoints, AttachmentEndpoints, RelayEndpoints):
    """One device's connection to one server.

    ``device`` may be None for calls that need no identity (``server_info``). ``server_id``
    pins the server: signatures are bound to it, and an answer from another deployment is
    refused. ``http_transport`` replaces the network (tests use ``httpx.ASGITransport``).
    """


__all__ = ["Transport"]
