"""Refusals of the delivery rules (`doorless.server.delivery`, `doorless.server.groups`) and
the authenticated sender they judge; `doorless.server.errors` maps each onto an HTTP status and
an `doorless.wire.errors.ErrorCode`."""

from __future__ import annotations

from typing import Protocol

from doorless.errors import RemoteError


class DeliveryRefused(RemoteError):
    """A send breaks a delivery rule; nothing was queued."""


class MalformedMessage(DeliveryRefused):
    """The bytes are not an MLSMessage of a kind that may be sent (``malformed_message``)."""


class InvalidSend(DeliveryRefused):
    """The recipients or the combination of parts break a rule (``invalid_request``)."""


class MessageTooLarge(DeliveryRefused):
    """A message is larger than ``max_message_size`` (``payload_too_large``)."""


class InvalidHandshake(DeliveryRefused):
    """A handshake message or GroupInfo is not valid for the group's state
    (``invalid_handshake``)."""


class NotGroupMember(DeliveryRefused):
    """The device is not a member of the group (``not_group_member``)."""


class UnknownGroup(DeliveryRefused):
    """The server keeps no state for this group (``not_found``)."""


class Sender(Protocol):
    """The device the server authenticated on the submitting connection
    (`doorless.server.auth.AuthedDevice`); never a value read from the message."""

    @property
    def username(self) -> str: ...

    @property
    def device_id(self) -> str: ...


__all__ = [
    "DeliveryRefused",
    "InvalidHandshake",
    "InvalidSend",
    "MalformedMessage",
    "MessageTooLarge",
    "NotGroupMember",
    "Sender",
    "UnknownGroup",
]
