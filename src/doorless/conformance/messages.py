"""Checker for ``messages.json``: every structure decodes and re-encodes byte-exactly.

Each field of a case is one encoded structure (README-upstream.md, "Messages"); the MLSMessage
fields must also carry the wire format (and, for public messages, the content type) their name
promises.
"""

from __future__ import annotations

from typing import NamedTuple

from doorless.codec import Reader, Struct, Writer, decode, encode
from doorless.conformance import Case, VectorMismatch, expect, h
from doorless.errors import DecodeError
from doorless.mls.framing import ContentType, MLSMessage, PublicMessage, WireFormat
from doorless.mls.nodes import pull_ratchet_tree, push_ratchet_tree
from doorless.mls.proposals import (
    Add,
    Commit,
    ExternalInit,
    GroupContextExtensions,
    PreSharedKey,
    ReInit,
    Remove,
    Update,
)
from doorless.mls.welcome import GroupSecrets


def _ratchet_tree_round_trip(data: bytes) -> bytes:
    """``optional<Node> ratchet_tree<V>`` exactly as on the wire."""
    r = Reader(data)
    nodes = pull_ratchet_tree(r)
    r.expect_end()
    w = Writer()
    push_ratchet_tree(w, nodes)
    return w.getvalue()


class _Field(NamedTuple):
    structure: type[Struct] | None  # None: the ratchet tree, which is a vector, not a struct
    wire_format: WireFormat | None = None
    content_type: ContentType | None = None


_FIELDS: dict[str, _Field] = {
    "mls_welcome": _Field(MLSMessage, WireFormat.mls_welcome),
    "mls_group_info": _Field(MLSMessage, WireFormat.mls_group_info),
    "mls_key_package": _Field(MLSMessage, WireFormat.mls_key_package),
    "ratchet_tree": _Field(None),
    "group_secrets": _Field(GroupSecrets),
    "add_proposal": _Field(Add),
    "update_proposal": _Field(Update),
    "remove_proposal": _Field(Remove),
    "pre_shared_key_proposal": _Field(PreSharedKey),
    "re_init_proposal": _Field(ReInit),
    "external_init_proposal": _Field(ExternalInit),
    "group_context_extensions_proposal": _Field(GroupContextExtensions),
    "commit": _Field(Commit),
    "public_message_application": _Field(
        MLSMessage, WireFormat.mls_public_message, ContentType.application
    ),
    "public_message_proposal": _Field(
        MLSMessage, WireFormat.mls_public_message, ContentType.proposal
    ),
    "public_message_commit": _Field(MLSMessage, WireFormat.mls_public_message, ContentType.commit),
    "private_message": _Field(MLSMessage, WireFormat.mls_private_message),
}


def _check_field(name: str, spec: _Field, data: bytes) -> None:
    try:
        if spec.structure is None:
            expect(name, _ratchet_tree_round_trip(data), data)
            return
        value = decode(spec.structure, data)
    except DecodeError as exc:
        raise VectorMismatch(name, f"does not decode: {exc}") from exc
    expect(name, encode(value), data)
    if isinstance(value, MLSMessage) and spec.wire_format is not None:
        expect(f"{name}.wire_format", value.wire_format, spec.wire_format)
        if spec.content_type is not None and isinstance(value.body, PublicMessage):
            expect(f"{name}.content_type", value.body.content.content_type, spec.content_type)


def check(case: Case) -> None:
    missing = sorted(set(_FIELDS) - set(case))
    if missing:
        raise VectorMismatch("case", f"missing fields {missing}")
    for name, spec in _FIELDS.items():
        _check_field(name, spec, h(case[name]))
