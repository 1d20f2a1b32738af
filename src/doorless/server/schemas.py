"""Request and response bodies of the HTTP API (they are also the OpenAPI schema).

Binary fields are standard base64 strings (``format: byte``). Request models forbid unknown
fields, so a typo is an error instead of being ignored.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, WithJsonSchema

from doorless.server.config import Registration
from doorless.wire import protocol


def _from_base64(value: Any) -> Any:
    if isinstance(value, str):
        return protocol.b64decode(value)  # DecodeError is a ValueError: a validation error
    if isinstance(value, bytes):  # built in Python (responses); JSON never gives bytes
        return value
    raise ValueError("expected a base64 string")


B64 = Annotated[
    bytes,
    BeforeValidator(_from_base64),
    PlainSerializer(protocol.b64encode, return_type=str),
    WithJsonSchema({"type": "string", "format": "byte", "contentEncoding": "base64"}),
]
Username = Annotated[str, Field(pattern=protocol.USERNAME_PATTERN)]
DeviceId = Annotated[str, Field(pattern=protocol.DEVICE_ID_PATTERN)]
MessageId = Annotated[str, Field(pattern=protocol.MESSAGE_ID_PATTERN)]

# Integers that reach the database must fit a signed 64-bit column.
MAX_SEQ = 2**62


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


# --- server ---------------------------------------------------------------------------------


class Limits(BaseModel):
    max_message_size: int
    max_recipients: int
    max_attachment_size: int
    max_key_package_size: int
    max_key_packages_per_upload: int
    max_key_packages_stored: int
    key_package_low_watermark: int
    attachment_ttl: int
    token_ttl: int
    challenge_ttl: int
    link_ttl: int


class ServerInfo(BaseModel):
    server_id: str = Field(description="Random id of this deployment; every signature binds it")
    version: str
    registration: Registration
    limits: Limits
    franking_public_key: B64 = Field(
        description="Ed25519 key that signs franks (docs/franking.md); clients pin it"
    )


# --- accounts and devices -------------------------------------------------------------------


class RegisterRequest(Request):
    username: Username
    device_key: B64 = Field(description="Ed25519 public key of the first device (32 bytes)")
    signature: B64 = Field(description="Device key's signature over register_content")
    invite_code: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    device_list: B64 | None = Field(
        None, description="Key transparency: DeviceList version 0 signed by this device"
    )


class RegisterResponse(BaseModel):
    username: str
    device_id: str


class DeviceInfo(BaseModel):
    device_id: str
    device_key: B64
    approved_by: str | None = Field(description="Approving device; null for the first device")
    approval_signature: B64 = Field(
        description="device_approval_content signed by approved_by (register_content signed "
        "by the device itself for the first device)"
    )
    created_at: int
    revoked_at: int | None


class DeviceList(BaseModel):
    username: str
    devices: list[DeviceInfo]


# --- authentication -------------------------------------------------------------------------


class Challenge(BaseModel):
    nonce: B64
    expires_at: int
    server_id: str


class TokenRequest(Request):
    device_id: DeviceId
    nonce: B64
    signature: B64


class TokenResponse(BaseModel):
    token: str
    expires_at: int
    device_id: str
    username: str


# --- device linking -------------------------------------------------------------------------


class LinkRequest(Request):
    username: Username
    device_key: B64
    signature: B64 = Field(description="New device key's signature over link_request_content")


class LinkCreated(BaseModel):
    code: str
    device_id: str
    expires_at: int


class PendingLink(BaseModel):
    code: str
    username: str
    device_id: str
    device_key: B64
    created_at: int
    expires_at: int
    approved: bool


class LinkStatus(BaseModel):
    code: str
    state: Literal["pending", "approved"]


class ApproveRequest(Request):
    device_id: DeviceId
    device_key: B64
    signature: B64 = Field(description="Approver's signature over device_approval_content")
    device_list: B64 | None = Field(
        None, description="Key transparency: the account's next DeviceList, signed by the approver"
    )


class RevokeRequest(Request):
    device_list: B64 | None = Field(
        None, description="Key transparency: the account's next DeviceList, signed by this device"
    )


# --- key packages ---------------------------------------------------------------------------


class KeyPackageUpload(Request):
    key_packages: list[B64] = Field(
        default_factory=list, description="MLSMessage(mls_key_package) each"
    )
    last_resort: B64 | None = Field(None, description="Replaces the last-resort KeyPackage")


class KeyPackageStatus(BaseModel):
    count: int = Field(description="One-time KeyPackages left")
    last_resort: bool
    low_watermark: int = Field(description="Upload more when count falls below this")


class ClaimedKeyPackage(BaseModel):
    device_id: str
    key_package: B64
    last_resort: bool


class UserKeyPackages(BaseModel):
    username: str
    key_packages: list[ClaimedKeyPackage]
    missing: list[str] = Field(description="Live devices that have no KeyPackage at all")


# --- delivery -------------------------------------------------------------------------------


class WelcomePart(Request):
    data: B64 = Field(description="MLSMessage(mls_welcome)")
    recipients: list[DeviceId]


class SendRequest(Request):
    message_id: MessageId = Field(description="Client-chosen idempotency key")
    data: B64 = Field(description="MLSMessage (public, private, welcome or group_info)")
    recipients: list[DeviceId]
    welcome: WelcomePart | None = Field(
        None, description="Welcome of this commit: delivered if and only if the commit is"
    )
    group_info: B64 | None = Field(
        None,
        description="MLSMessage(mls_group_info) of the epoch this commit starts, signed by the "
        "committer: required for commits to registered groups",
    )


class SendResponse(BaseModel):
    message_id: str
    group_epoch: int | None = Field(description="The group's epoch after this message")
    duplicate: bool


class QueuedMessage(BaseModel):
    seq: int
    data: B64
    received_at: int
    frank: B64 | None = Field(
        default=None, description="The server's frank of an application message (ServerFrank)"
    )


class MessagePage(BaseModel):
    messages: list[QueuedMessage]
    more: bool


class AckRequest(Request):
    seqs: Annotated[list[Annotated[int, Field(ge=1, le=MAX_SEQ)]], Field(max_length=1000)]


class AckResponse(BaseModel):
    acknowledged: int


class RegisterGroupRequest(Request):
    group_info: B64 = Field(description="MLSMessage(mls_group_info) signed by this device's leaf")
    ratchet_tree: B64 = Field(description="The encoded ratchet_tree extension value")


class GroupInfoResponse(BaseModel):
    group_id: str = Field(description="hex")
    epoch: int
    group_info: B64 = Field(description="MLSMessage(mls_group_info) of the current epoch")
    ratchet_tree: B64 = Field(description="The encoded ratchet_tree extension value")


class GroupEpoch(BaseModel):
    group_id: str = Field(description="hex")
    epoch: int


# --- attachments ----------------------------------------------------------------------------


class AttachmentInfo(BaseModel):
    attachment_id: str
    size: int
    expires_at: int
