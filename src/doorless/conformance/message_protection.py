"""Checker for ``message-protection.json`` (README-upstream.md, "Message Protection").

For the proposal, the commit and the application data, with leaf 1 of a two-leaf secret tree as
the sender (RFC 9420 §6.1-§6.3):

* the given PublicMessage (none for application data) passes its membership tag and signature
  and carries the raw content; the given PrivateMessage decrypts, verifies and carries it;
* content we protect ourselves (signed with ``signature_priv``) unprotects again, as a
  PublicMessage (which must be refused for application data) and as a PrivateMessage (random
  reuse guard, some padding), decrypted from a receiver's own fresh secret tree.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from doorless.codec import Reader, Writer, decode, encode
from doorless.conformance import Case, VectorMismatch, expect, h
from doorless.crypto import CipherSuite, cipher_suite
from doorless.errors import ConfigurationError, DoorlessError
from doorless.mls.application_messages import open_application, seal_application
from doorless.mls.framing import (
    AuthenticatedContent,
    Content,
    FramedContent,
    FramedContentAuthData,
    MLSMessage,
    PrivateMessage,
    PublicMessage,
    SenderMember,
    WireFormat,
    push_content,
)
from doorless.mls.group_context import GroupContext
from doorless.mls.message_protection import (
    UnverifiedContent,
    protect_private,
    protect_public,
    sign_framed_content,
    unprotect_private,
    unprotect_public,
)
from doorless.mls.proposals import Commit, pull_proposal
from doorless.mls.schedule import MembershipKey, SenderDataSecret
from doorless.mls.secret_tree import SecretTree
from doorless.mls.tree_math import LeafIndex
from doorless.secret import EncryptionSecret

SENDER = SenderMember(1)


def _pull_application(r: Reader) -> Content:
    return r.pull_bytes(r.remaining())


def _pull_proposal(r: Reader) -> Content:
    return pull_proposal(r)


def _pull_commit(r: Reader) -> Content:
    return Commit.pull(r)


_RAW: dict[str, Callable[[Reader], Content]] = {
    "proposal": _pull_proposal,
    "commit": _pull_commit,
    "application": _pull_application,
}


def _decode_raw(kind: str, data: bytes) -> Content:
    r = Reader(data)
    value = _RAW[kind](r)
    r.expect_end()
    return value


def _encode_content(content: Content) -> bytes:
    """The content as the vector gives it: application data raw, a Proposal or Commit encoded."""
    if isinstance(content, bytes):
        return content
    w = Writer()
    push_content(w, content)
    return w.getvalue()


class _Case:
    def __init__(self, case: Case) -> None:
        self.suite: CipherSuite = cipher_suite(case["cipher_suite"])
        self.context = GroupContext(
            cipher_suite=self.suite.id,
            group_id=h(case["group_id"]),
            epoch=case["epoch"],
            tree_hash=h(case["tree_hash"]),
            confirmed_transcript_hash=h(case["confirmed_transcript_hash"]),
            extensions=(),
        )
        self.signature_priv = h(case["signature_priv"])
        self.signature_pub = h(case["signature_pub"])
        self.encryption_secret = EncryptionSecret(h(case["encryption_secret"]))
        self.sender_data_secret = SenderDataSecret(h(case["sender_data_secret"]))
        self.membership_key = MembershipKey(h(case["membership_key"]))

    def tree(self) -> SecretTree:
        return SecretTree.create(self.suite, self.encryption_secret, 2)

    def verified(self, field: str, unverified: UnverifiedContent, raw: bytes) -> None:
        try:
            verified = unverified.verify(self.suite, self.signature_pub)
        except DoorlessError as exc:
            raise VectorMismatch(f"{field}.signature", f"does not verify: {exc}") from exc
        framed = verified.authenticated_content.content
        expect(
            f"{field}.sender",
            framed.sender.leaf_index if isinstance(framed.sender, SenderMember) else None,
            1,
        )
        expect(f"{field}.content", _encode_content(framed.content), raw)

    def given_public(self, field: str, data: bytes, raw: bytes) -> FramedContentAuthData:
        try:
            message = decode(MLSMessage, data).body
            if not isinstance(message, PublicMessage):
                raise VectorMismatch(field, "is not a PublicMessage")
            unverified = unprotect_public(self.suite, message, self.context, self.membership_key)
        except DoorlessError as exc:
            raise VectorMismatch(field, f"does not unprotect: {exc}") from exc
        self.verified(field, unverified, raw)
        return message.auth

    def given_private(self, field: str, data: bytes, raw: bytes) -> None:
        try:
            message = decode(MLSMessage, data).body
            if not isinstance(message, PrivateMessage):
                raise VectorMismatch(field, "is not a PrivateMessage")
            decrypted = unprotect_private(
                self.suite, message, self.context, self.tree(), self.sender_data_secret
            )
        except DoorlessError as exc:
            raise VectorMismatch(field, f"does not unprotect: {exc}") from exc
        self.verified(field, decrypted.content, raw)

    def sign(
        self, wire_format: WireFormat, content: Content, confirmation_tag: bytes | None
    ) -> AuthenticatedContent:
        framed = FramedContent(self.context.group_id, self.context.epoch, SENDER, b"", content)
        signature = sign_framed_content(
            self.suite, self.signature_priv, wire_format, framed, self.context
        )
        return AuthenticatedContent(
            wire_format, framed, FramedContentAuthData(signature, confirmation_tag)
        )

    def own_public(self, kind: str, content: Content, tag: bytes | None, raw: bytes) -> None:
        field = f"{kind} (own PublicMessage)"
        signed = self.sign(WireFormat.mls_public_message, content, tag)
        try:
            message = protect_public(self.suite, signed, self.context, self.membership_key)
            wire = encode(MLSMessage(message))
            body = decode(MLSMessage, wire).body
            assert isinstance(body, PublicMessage)
            unverified = unprotect_public(self.suite, body, self.context, self.membership_key)
        except DoorlessError as exc:
            raise VectorMismatch(field, f"does not round-trip: {exc}") from exc
        self.verified(field, unverified, raw)

    def own_private(self, kind: str, content: Content, tag: bytes | None, raw: bytes) -> None:
        field = f"{kind} (own PrivateMessage)"
        signed = self.sign(WireFormat.mls_private_message, content, tag)
        try:
            protected = protect_private(
                self.suite, signed, self.tree(), self.sender_data_secret, os.urandom(4), padding=7
            )
            wire = encode(MLSMessage(protected.message))
            body = decode(MLSMessage, wire).body
            assert isinstance(body, PrivateMessage)
            decrypted = unprotect_private(
                self.suite, body, self.context, self.tree(), self.sender_data_secret
            )
        except DoorlessError as exc:
            raise VectorMismatch(field, f"does not round-trip: {exc}") from exc
        self.verified(field, decrypted.content, raw)

    def lean_application(self, data: bytes, raw: bytes) -> None:
        """The lean application path (`application_messages`) on the vector's message, and
        its own message opened by the generic path."""
        field = "application_priv (lean path)"
        try:
            message = decode(MLSMessage, data).body
            if not isinstance(message, PrivateMessage):
                raise VectorMismatch(field, "is not a PrivateMessage")
            decrypted = open_application(
                self.suite,
                message,
                self.context,
                self.tree(),
                self.sender_data_secret,
                lambda leaf: leaf == SENDER.leaf_index,
            )
            verified = decrypted.verify(self.suite, self.signature_pub)
        except DoorlessError as exc:
            raise VectorMismatch(field, f"does not open: {exc}") from exc
        expect(f"{field}.sender", decrypted.sender, SENDER.leaf_index)
        expect(f"{field}.content", verified.data, raw)
        field = "application (own PrivateMessage, lean path)"
        try:
            sealed = seal_application(
                self.suite,
                self.signature_priv,
                self.context,
                LeafIndex(SENDER.leaf_index),
                raw,
                b"",
                self.tree(),
                self.sender_data_secret,
                os.urandom(4),
            )
            body = decode(MLSMessage, sealed.message).body
            assert isinstance(body, PrivateMessage)
            unverified = unprotect_private(
                self.suite, body, self.context, self.tree(), self.sender_data_secret
            )
        except DoorlessError as exc:
            raise VectorMismatch(field, f"does not round-trip: {exc}") from exc
        self.verified(field, unverified.content, raw)


def check(case: Case) -> None:
    c = _Case(case)
    for kind in ("proposal", "commit", "application"):
        raw = h(case[kind])
        try:
            content = _decode_raw(kind, raw)
        except DoorlessError as exc:
            raise VectorMismatch(kind, f"does not decode: {exc}") from exc
        tag: bytes | None = None
        if kind == "application":
            signed = c.sign(WireFormat.mls_public_message, content, None)
            try:
                protect_public(c.suite, signed, c.context, c.membership_key)
            except ConfigurationError:
                pass  # refused, as the vector requires
            else:
                raise VectorMismatch("application", "was protected as a PublicMessage")
        else:
            auth = c.given_public(f"{kind}_pub", h(case[f"{kind}_pub"]), raw)
            tag = auth.confirmation_tag
            c.own_public(kind, content, tag, raw)
        c.given_private(f"{kind}_priv", h(case[f"{kind}_priv"]), raw)
        c.own_private(kind, content, tag, raw)
        if kind == "application":
            c.lean_application(h(case["application_priv"]), raw)
