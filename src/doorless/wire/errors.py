"""The stable error codes: one enum for the server's API, the client, the CLI and the daemon.

Programs switch on these strings, so a value never changes once released. The server sends one
as ``{"error": code, "message": text}`` with its HTTP status (table in ``docs/protocol-http.md``);
the client keeps it on `doorless.client.ServerError.code`; the CLI prints it with ``--json`` and
the daemon puts it in ``error.data.error``. `StrEnum` so a member is its string on the wire.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    # The server's API (HTTP status in brackets).
    MALFORMED_MESSAGE = "malformed_message"  # [400] not a valid MLSMessage of the right kind
    INVALID_REQUEST = "invalid_request"  # [400/422] a field breaks a rule or the schema
    INVALID_SIGNATURE = "invalid_signature"  # [400] a signature in the body does not verify
    INVALID_HANDSHAKE = "invalid_handshake"  # [400] a commit/GroupInfo is invalid for the group
    UNKNOWN_RECIPIENT = "unknown_recipient"  # [400] a recipient is not a live device
    INVALID_REPORT = "invalid_report"  # [400] an abuse report does not verify
    REPORT_EXPIRED = "report_expired"  # [400] the frank's key was retired
    UNAUTHORIZED = "unauthorized"  # [401] missing, unknown or expired bearer token
    AUTH_FAILED = "auth_failed"  # [401] challenge unknown/expired/used, or bad signature
    DEVICE_REVOKED = "device_revoked"  # [401] to the device itself (its key or token): revoked
    FORBIDDEN = "forbidden"  # [403] not allowed for this device
    INVITE_REQUIRED = "invite_required"  # [403] registration needs a valid invite
    NOT_GROUP_MEMBER = "not_group_member"  # [403] this device is not a member of the group
    NOT_FOUND = "not_found"  # [404] no such route, user, device, link, attachment
    METHOD_NOT_ALLOWED = "method_not_allowed"  # [405]
    CONFLICT = "conflict"  # [409] the state does not allow it
    USERNAME_TAKEN = "username_taken"  # [409]
    DEVICE_EXISTS = "device_exists"  # [409] this device key is already registered
    EPOCH_CONFLICT = "epoch_conflict"  # [409] another commit took this epoch
    GROUP_EXISTS = "group_exists"  # [409] the server already knows a group with this id
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"  # [409] message id reused for other content
    TOO_MANY_KEY_PACKAGES = "too_many_key_packages"  # [409]
    KT_CONFLICT = "kt_conflict"  # [409] the device list changed: read it again and retry
    PAYLOAD_TOO_LARGE = "payload_too_large"  # [413]
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"  # [415]
    RATE_LIMITED = "rate_limited"  # [429] Retry-After says when
    INTERNAL = "internal"  # [500] a bug; never expected
    UNAVAILABLE = "unavailable"  # [503] the server's database is unreachable; Retry-After

    # The CLI and the daemon: failures of a command (besides the server's codes above).
    USAGE = "usage"  # wrong arguments (exit status 2)
    INVALID = "invalid"  # an argument or file is invalid
    INVALID_STATE = "invalid_state"  # not possible in the current state
    FAILED = "failed"  # the operation did not succeed
    REJECTED = "rejected"  # the server refused the request
    SERVER_ERROR = "server_error"  # the server failed (5xx)
    SERVER_UNREACHABLE = "server_unreachable"
    SERVER_FAILED = "server_failed"  # a server this program started did not run
    TOO_LARGE = "too_large"  # too large for the server
    REMOTE_ERROR = "remote_error"  # bad input from the server or a peer
    UNKNOWN_USER = "unknown_user"
    UNKNOWN_CONVERSATION = "unknown_conversation"
    AMBIGUOUS = "ambiguous"  # a name matches more than one thing
    NOT_A_MEMBER = "not_a_member"
    USER_UNAVAILABLE = "user_unavailable"  # no device of theirs can be added now
    NO_ACCOUNT = "no_account"  # the profile has no account yet
    WRONG_PASSPHRASE = "wrong_passphrase"
    NO_PASSPHRASE = "no_passphrase"  # no passphrase given and none can be asked for
    PROFILE_LOCKED = "profile_locked"  # another process has the profile open
    SETUP_INCOMPLETE = "setup_incomplete"  # the profile was not set up completely
    STORE_ERROR = "store_error"  # the profile's store cannot be used
    FINGERPRINT_MISMATCH = "fingerprint_mismatch"
    CANCELLED = "cancelled"
    SOCKET_IN_USE = "socket_in_use"
    INTERRUPTED = "interrupted"
    TIMEOUT = "timeout"
    OS_ERROR = "os_error"
    ERROR = "error"  # anything else (a server HTTP error without a code, an unexpected failure)


__all__ = ["ErrorCode"]
