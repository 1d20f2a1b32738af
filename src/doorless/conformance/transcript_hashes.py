"""Checker for ``transcript-hashes.json`` (README-upstream.md, "Transcript Hashes").

The AuthenticatedContent must hold a Commit whose confirmation tag is the MAC of the new
confirmed transcript hash (RFC 9420 §6.1), and both transcript hashes must follow from the
interim one before it (§8.2).
"""

from __future__ import annotations

from doorless.codec import decode
from doorless.conformance import Case, VectorMismatch, expect, h
from doorless.crypto import cipher_suite
from doorless.errors import DecodeError, InvalidMac
from doorless.mls.framing import AuthenticatedContent, ContentType
from doorless.mls.schedule import ConfirmationKey, transcript_hashes, verify_confirmation_tag


def check(case: Case) -> None:
    suite = cipher_suite(case["cipher_suite"])
    try:
        content = decode(AuthenticatedContent, h(case["authenticated_content"]))
    except DecodeError as exc:
        raise VectorMismatch("authenticated_content", f"does not decode: {exc}") from exc
    expect("authenticated_content.content_type", content.content.content_type, ContentType.commit)
    confirmed, interim = transcript_hashes(
        suite, h(case["interim_transcript_hash_before"]), content
    )
    expect("confirmed_transcript_hash_after", confirmed, h(case["confirmed_transcript_hash_after"]))
    expect("interim_transcript_hash_after", interim, h(case["interim_transcript_hash_after"]))
    tag = content.auth.confirmation_tag
    assert tag is not None  # a commit's auth always has one
    try:
        verify_confirmation_tag(suite, ConfirmationKey(h(case["confirmation_key"])), confirmed, tag)
    except InvalidMac as exc:
        raise VectorMismatch("authenticated_content.auth.confirmation_tag", str(exc)) from exc
