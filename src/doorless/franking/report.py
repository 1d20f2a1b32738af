"""Abuse reports (``docs/franking.md`` §1 steps 4-5 and §3; MIMI §Report abuse).

Owns the reporter's side (`ReceivedFrank`, what a client keeps with a verified message, and
`make_report`) and the server's check (`verify_report` -> `VerifiedReport`): the tag, the
server's own HMAC (FRANK-6), the key that made it (FRANK-7) and its signature (FRANK-5). The
clock (``now_ms``) and the keys are parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from doorless.codec import Reader, Writer, decode
from doorless.franking.constants import DEFAULT_SIGNATURE_SUITE
from doorless.franking.errors import GroupMismatch, ServerFrankMismatch
from doorless.franking.keyring import FrankingKeyring
from doorless.franking.receiver import open_content, verify_frank_signature
from doorless.franking.sender import franking_tag, franking_tag_from_aad
from doorless.franking.stamp import server_frank_mac
from doorless.franking.structures import (
    AbuseReport,
    FrankedContent,
    ReportReason,
    SenderIdentity,
    ServerFrank,
    ServerFrankingContext,
)
from doorless.secret import constant_time_equal


def make_report(
    franked_content: bytes,
    authenticated_data: bytes,
    frank: ServerFrank,
    reason: ReportReason,
    note: str = "",
) -> AbuseReport:
    """A recipient's report of one stored message (the three values `verify_received` took).

    Re-checks the salt and tag so a client never sends a report that cannot verify. Only a
    holder of the decrypted content (a recipient) knows the salt that opens the tag.
    """
    open_content(franked_content, franking_tag_from_aad(authenticated_data))
    return AbuseReport(ReportReason(reason), note, franked_content, frank)


@dataclass(frozen=True, slots=True, repr=False)
class ReceivedFrank:
    """What a receiver keeps with a verified message so it can report it later (the client
    store's ``franking`` blob is ``encode(ReceivedFrank)``)::

        struct {
          opaque application_data<V>;     // the FrankedContent bytes as received
          opaque authenticated_data<V>;   // the MLS authenticated_data (FrankingAAD)
          ServerFrank frank;
        } ReceivedFrank;

    It holds the salt and the plaintext: store it encrypted, like the message itself.
    """

    application_data: bytes
    authenticated_data: bytes
    frank: ServerFrank

    def __repr__(self) -> str:
        return f"ReceivedFrank(<{len(self.application_data)} bytes>, frank={self.frank!r})"

    def push(self, w: Writer) -> None:
        w.push_opaque(self.application_data)
        w.push_opaque(self.authenticated_data)
        self.frank.push(w)

    @classmethod
    def pull(cls, r: Reader) -> Self:
        return cls(r.pull_opaque(), r.pull_opaque(), ServerFrank.pull(r))

    def report(self, reason: ReportReason, note: str = "") -> AbuseReport:
        """`make_report` for this message."""
        return make_report(self.application_data, self.authenticated_data, self.frank, reason, note)


@dataclass(frozen=True, slots=True, repr=False)
class VerifiedReport:
    """A report whose message the server has proven it delivered, from ``context.sender``."""

    reason: ReportReason
    note: str
    content: FrankedContent
    context: ServerFrankingContext
    franking_tag: bytes

    def __repr__(self) -> str:
        return (
            f"VerifiedReport(reason={self.reason.name}, sender={self.context.sender!r}, "
            f"group_id={self.context.group_id.hex()}, server_seq={self.context.server_seq})"
        )

    @property
    def sender(self) -> SenderIdentity:
        return self.context.sender

    @property
    def group_id(self) -> bytes:
        return self.context.group_id


def verify_report(
    report: AbuseReport,
    keyring: FrankingKeyring,
    *,
    server_public_key: bytes,
    now_ms: int,
    group_id: bytes | None = None,
    signature_suite: int = DEFAULT_SIGNATURE_SUITE,
) -> VerifiedReport:
    """The server's check of a report: the tag, its own HMAC over (tag, context), and its own
    signature (so the accepted frank is byte for byte the one receivers verified).

    The context is rebuilt from the revealed content (sender, group) and the frank (time,
    sequence number, key id), so a frank moved to another message or group, any edited field,
    or a frank made without the server key fails (`ServerFrankMismatch`). ``group_id``, when
    given, is the group the report was filed under. ``server_public_key`` is the franking
    signature key that was pinned when the message was stamped. Raises `DecodeError`,
    `InvalidSalt`, `FrankingTagMismatch`, `GroupMismatch`, `ReportExpired`,
    `UnknownFrankingKey`, `ServerFrankMismatch`, `FrankSuiteMismatch` or
    `InvalidFrankSignature`. The server then checks from its membership log that the reporter
    was a member of the group at ``context.server_seq``.
    """
    content = decode(FrankedContent, report.franked_content)
    tag = franking_tag(content.salt, report.franked_content)
    if group_id is not None and content.group_id != group_id:
        raise GroupMismatch("the reported message belongs to another group", rule="FRANK-4")
    key = keyring.key_for_report(report.frank.key_id, now_ms)
    context = report.frank.context(content.sender, content.group_id)
    if not constant_time_equal(server_frank_mac(key, tag, context), report.frank.server_frank):
        raise ServerFrankMismatch("the server frank is not ours [FRANK-6]")
    verify_frank_signature(tag, report.frank, context, server_public_key, signature_suite)
    return VerifiedReport(report.reason, report.note, content, context, tag)
