"""RFC 9420 wire structures: framing (§6), group context (§8.1), proposals and commit (§12),
welcome (§12.4.3).

Property tests: every decoder either decodes or raises DecodeError (arbitrary bytes, and
mutations of the official messages.json encodings, which reach much deeper); valid structures
round-trip byte-exactly. Negative tests: one per framing rule.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from doorless.codec import Reader, Writer, decode, encode
from doorless.crypto import CipherSuiteId, cipher_suite
from doorless.errors import ConfigurationError, DecodeError, InvalidSignature
from doorless.mls.extensions import Extension
from doorless.mls.framing import (
    AuthenticatedContent,
    Content,
    ContentType,
    FramedContent,
    FramedContentAuthData,
    MLSMessage,
    PrivateContentAAD,
    PrivateMessage,
    PrivateMessageContent,
    PublicMessage,
    Routing,
    Sender,
    SenderData,
    SenderDataAAD,
    SenderExternal,
    SenderMember,
    SenderNewMemberCommit,
    SenderNewMemberProposal,
    WireFormat,
    authenticated_content_tbm,
    content_type_of,
    framed_content_tbs,
    peek_routing,
    pull_sender,
)
from doorless.mls.group_context import GroupContext, ProtocolVersion
from doorless.mls.key_package import KeyPackage
from doorless.mls.nodes import HPKECiphertext
from doorless.mls.proposals import (
    Add,
    Commit,
    ExternalInit,
    ExternalPSK,
    GroupContextExtensions,
    PreSharedKey,
    PreSharedKeyID,
    Proposal,
    ProposalRef,
    ProposalType,
    ReInit,
    Remove,
    ResumptionPSK,
    ResumptionPSKUsage,
    Update,
    make_proposal_ref,
    pull_proposal,
    pull_proposal_or_ref,
    push_proposal,
)
from doorless.mls.welcome import (
    EncryptedGroupSecrets,
    GroupInfo,
    GroupSecrets,
    PathSecret,
    Welcome,
    group_info_tbs,
)

MESSAGES = Path(__file__).parents[1] / "vectors" / "mls" / "messages.json"


@cache
def _cases() -> list[dict[str, str]]:
    with MESSAGES.open("rb") as f:
        cases: list[dict[str, str]] = json.load(f)
    return cases


def _field(name: str, i: int = 0) -> bytes:
    return bytes.fromhex(_cases()[i][name])


# --- decoders under test ----------------------------------------------------------------------


def _decode_with(pull: Callable[[Reader], object]) -> Callable[[bytes], object]:
    def run(data: bytes) -> object:
        r = Reader(data)
        value = pull(r)
        r.expect_end()
        return value

    return run


def _private_content(content_type: ContentType) -> Callable[[bytes], object]:
    return lambda data: PrivateMessageContent.decode(data, content_type)


DECODERS: dict[str, Callable[[bytes], object]] = {
    "MLSMessage": lambda d: decode(MLSMessage, d),
    "peek_routing": peek_routing,
    "Proposal": _decode_with(pull_proposal),
    "ProposalOrRef": _decode_with(pull_proposal_or_ref),
    "Commit": lambda d: decode(Commit, d),
    "Welcome": lambda d: decode(Welcome, d),
    "GroupInfo": lambda d: decode(GroupInfo, d),
    "GroupSecrets": lambda d: decode(GroupSecrets, d),
    "EncryptedGroupSecrets": lambda d: decode(EncryptedGroupSecrets, d),
    "GroupContext": lambda d: decode(GroupContext, d),
    "PreSharedKeyID": lambda d: decode(PreSharedKeyID, d),
    "Sender": _decode_with(pull_sender),
    "FramedContent": lambda d: decode(FramedContent, d),
    "AuthenticatedContent": lambda d: decode(AuthenticatedContent, d),
    "PublicMessage": lambda d: decode(PublicMessage, d),
    "PrivateMessage": lambda d: decode(PrivateMessage, d),
    "PrivateMessageContent[application]": _private_content(ContentType.application),
    "PrivateMessageContent[proposal]": _private_content(ContentType.proposal),
    "PrivateMessageContent[commit]": _private_content(ContentType.commit),
    "SenderData": lambda d: decode(SenderData, d),
    "SenderDataAAD": lambda d: decode(SenderDataAAD, d),
    "PrivateContentAAD": lambda d: decode(PrivateContentAAD, d),
    "Add": lambda d: decode(Add, d),
    "Update": lambda d: decode(Update, d),
    "ReInit": lambda d: decode(ReInit, d),
}

# Which messages.json field is a valid encoding for each decoder (None: no vector field; the
# bytes come from encoding a built value in `SEEDS`). MLSMessage and peek_routing get all the
# MLSMessage fields; see `_seeds`.
_MLS_MESSAGE_FIELDS = (
    "mls_welcome",
    "mls_group_info",
    "mls_key_package",
    "public_message_application",
    "public_message_proposal",
    "public_message_commit",
    "private_message",
)


def _body_of(field: str) -> bytes:
    """The body of an MLSMessage field (skipping version and wire_format)."""
    return _field(field)[4:]


def _seeds(name: str) -> list[bytes]:
    proposal_fields = [
        ("add_proposal", ProposalType.add),
        ("update_proposal", ProposalType.update),
        ("remove_proposal", ProposalType.remove),
        ("pre_shared_key_proposal", ProposalType.psk),
        ("re_init_proposal", ProposalType.reinit),
        ("external_init_proposal", ProposalType.external_init),
        ("group_context_extensions_proposal", ProposalType.group_context_extensions),
    ]
    proposals = [t.to_bytes(2, "big") + _field(f) for f, t in proposal_fields]
    public = decode(PublicMessage, _body_of("public_message_commit"))
    table: dict[str, list[bytes]] = {
        "MLSMessage": [_field(f) for f in _MLS_MESSAGE_FIELDS],
        "peek_routing": [_field(f) for f in _MLS_MESSAGE_FIELDS],
        "Proposal": proposals,
        "ProposalOrRef": [b"\x01" + p for p in proposals] + [b"\x02\x20" + bytes(32)],
        "Commit": [_field("commit")],
        "Welcome": [_body_of("mls_welcome")],
        "GroupInfo": [_body_of("mls_group_info")],
        "GroupSecrets": [_field("group_secrets")],
        "EncryptedGroupSecrets": [encode(decode(Welcome, _body_of("mls_welcome")).secrets[0])],
        "GroupContext": [encode(decode(GroupInfo, _body_of("mls_group_info")).group_context)],
        "PreSharedKeyID": [_field("pre_shared_key_proposal")],
        "Sender": [b"\x01\x00\x00\x00\x07", b"\x02\x00\x00\x00\x01", b"\x03", b"\x04"],
        "FramedContent": [encode(public.content)],
        "AuthenticatedContent": [encode(public.authenticated_content())],
        "PublicMessage": [_body_of(f) for f in _MLS_MESSAGE_FIELDS if f.startswith("public")],
        "PrivateMessage": [_body_of("private_message")],
        "PrivateMessageContent[application]": [b"\x03abc\x02\x00\x00" + bytes(5)],
        "PrivateMessageContent[proposal]": [proposals[3] + b"\x01\x00" + bytes(3)],
        "PrivateMessageContent[commit]": [_field("commit") + b"\x01\x00\x02\xaa\xbb" + bytes(2)],
        "SenderData": [bytes(range(12))],
        "SenderDataAAD": [b"\x02gi" + bytes(8) + b"\x01"],
        "PrivateContentAAD": [b"\x02gi" + bytes(8) + b"\x03\x01x"],
        "Add": [_field("add_proposal")],
        "Update": [_field("update_proposal")],
        "ReInit": [_field("re_init_proposal")],
    }
    return table[name]


def _mutate(data: bytes, draw: Callable[[st.SearchStrategy[Any]], Any]) -> bytes:
    """Flip, insert, delete or truncate at a few positions of ``data``."""
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        pos = draw(st.integers(0, max(len(buf) - 1, 0)))
        if op == "flip" and buf:
            buf[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and buf:
            buf[pos] = draw(st.sampled_from([0x00, 0x01, 0x02, 0x3F, 0x40, 0x80, 0xC0, 0xFF]))
        elif op == "insert":
            buf[pos:pos] = draw(st.binary(min_size=1, max_size=4))
        elif op == "delete" and buf:
            del buf[pos : pos + draw(st.integers(1, 4))]
        elif op == "truncate":
            del buf[pos:]
    return bytes(buf)


def _decodes_or_decode_error(run: Callable[[bytes], object], data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        run(data)


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_seed_is_valid(name: str) -> None:
    """The seeds of the mutation fuzzer decode (so mutations start from deep inside)."""
    for seed in _seeds(name):
        DECODERS[name](seed)


@pytest.mark.parametrize("name", sorted(DECODERS))
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=256))
def test_arbitrary_bytes_decode_or_raise_decode_error(name: str, data: bytes) -> None:
    _decodes_or_decode_error(DECODERS[name], data)


@pytest.mark.parametrize("name", sorted(DECODERS))
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(draw=st.data())
def test_mutated_encodings_decode_or_raise_decode_error(name: str, draw: st.DataObject) -> None:
    seed = draw.draw(st.sampled_from(_seeds(name)))
    _decodes_or_decode_error(DECODERS[name], _mutate(seed, draw.draw))


# --- round trips of built values --------------------------------------------------------------

_opaque = st.binary(max_size=40)
_u32 = st.integers(0, 2**32 - 1)
_u64 = st.integers(0, 2**64 - 1)


@st.composite
def _extensions(draw: st.DrawFn) -> tuple[Extension, ...]:
    types = draw(st.lists(st.integers(0, 0xFFFF), max_size=4, unique=True))
    return tuple(Extension(t, draw(_opaque)) for t in types)


@cache
def _vector_add() -> Add:
    return decode(Add, _field("add_proposal"))


@cache
def _vector_update() -> Update:
    return decode(Update, _field("update_proposal"))


_psk_ids = st.builds(
    PreSharedKeyID,
    st.one_of(
        st.builds(ExternalPSK, _opaque),
        st.builds(ResumptionPSK, st.sampled_from(ResumptionPSKUsage), _opaque, _u64),
    ),
    _opaque,
)
_proposals: st.SearchStrategy[Proposal] = st.one_of(
    st.builds(_vector_add),
    st.builds(_vector_update),
    st.builds(Remove, _u32),
    st.builds(PreSharedKey, _psk_ids),
    st.builds(
        ReInit,
        _opaque,
        st.integers(0, 0xFFFF),
        st.integers(0, 0xFFFF),
        _extensions(),
    ),
    st.builds(ExternalInit, _opaque),
    st.builds(GroupContextExtensions, _extensions()),
)
_commits = st.builds(
    Commit,
    st.lists(st.one_of(_proposals, st.builds(ProposalRef, _opaque)), max_size=3).map(tuple),
    st.none(),
)
_senders: st.SearchStrategy[Sender] = st.one_of(
    st.builds(SenderMember, _u32),
    st.builds(SenderExternal, _u32),
    st.builds(SenderNewMemberProposal),
    st.builds(SenderNewMemberCommit),
)
_contents: st.SearchStrategy[Content] = st.one_of(_opaque, _proposals, _commits)
_framed = st.builds(FramedContent, _opaque, _u64, _senders, _opaque, _contents)


def _auth_for(content_type: ContentType, draw: st.DrawFn) -> FramedContentAuthData:
    tag = draw(_opaque) if content_type == ContentType.commit else None
    return FramedContentAuthData(draw(_opaque), tag)


@st.composite
def _public_messages(draw: st.DrawFn) -> PublicMessage:
    content = draw(_framed)
    tag = draw(_opaque) if isinstance(content.sender, SenderMember) else None
    return PublicMessage(content, _auth_for(content.content_type, draw), tag)


@st.composite
def _authenticated_contents(draw: st.DrawFn) -> AuthenticatedContent:
    content = draw(_framed)
    wire_format = draw(
        st.sampled_from([WireFormat.mls_public_message, WireFormat.mls_private_message])
    )
    return AuthenticatedContent(wire_format, content, _auth_for(content.content_type, draw))


@st.composite
def _private_contents(draw: st.DrawFn) -> PrivateMessageContent:
    content = draw(_contents)
    auth = _auth_for(content_type_of(content), draw)
    return PrivateMessageContent(content, auth, draw(st.integers(0, 64)))


_group_contexts = st.builds(
    GroupContext,
    st.sampled_from([*CipherSuiteId, 0x7A7A]),
    _opaque,
    _u64,
    _opaque,
    _opaque,
    _extensions(),
)
_group_infos = st.builds(GroupInfo, _group_contexts, _extensions(), _opaque, _u32, _opaque)
_hpke_ciphertexts = st.builds(HPKECiphertext, _opaque, _opaque)
_welcomes = st.builds(
    Welcome,
    st.sampled_from([*CipherSuiteId, 0x7A7A]),
    st.lists(st.builds(EncryptedGroupSecrets, _opaque, _hpke_ciphertexts), max_size=3).map(tuple),
    _opaque,
)
_group_secrets = st.builds(
    GroupSecrets,
    _opaque,
    st.none() | st.builds(PathSecret, _opaque),
    st.lists(_psk_ids, max_size=3).map(tuple),
)
_private_messages = st.builds(
    PrivateMessage, _opaque, _u64, st.sampled_from(ContentType), _opaque, _opaque, _opaque
)
_mls_messages = st.builds(
    MLSMessage,
    st.one_of(
        _public_messages(),
        _private_messages,
        _welcomes,
        _group_infos,
        st.just(decode(MLSMessage, _field("mls_key_package")).body),
    ),
)

ROUND_TRIPS: dict[str, st.SearchStrategy[Any]] = {
    "Commit": _commits,
    "FramedContent": _framed,
    "AuthenticatedContent": _authenticated_contents(),
    "PublicMessage": _public_messages(),
    "PrivateMessage": _private_messages,
    "GroupContext": _group_contexts,
    "GroupInfo": _group_infos,
    "GroupSecrets": _group_secrets,
    "Welcome": _welcomes,
    "MLSMessage": _mls_messages,
    "SenderData": st.builds(SenderData, _u32, _u32, st.binary(min_size=4, max_size=4)),
    "SenderDataAAD": st.builds(SenderDataAAD, _opaque, _u64, st.sampled_from(ContentType)),
    "PrivateContentAAD": st.builds(
        PrivateContentAAD, _opaque, _u64, st.sampled_from(ContentType), _opaque
    ),
    "PreSharedKeyID": _psk_ids,
}


@pytest.mark.parametrize("name", sorted(ROUND_TRIPS))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(draw=st.data())
def test_round_trip(name: str, draw: st.DataObject) -> None:
    value = draw.draw(ROUND_TRIPS[name])
    data = encode(value)
    again = decode(type(value), data)
    assert again == value
    assert encode(again) == data


@settings(max_examples=60, deadline=None)
@given(proposal=_proposals)
def test_proposal_round_trip(proposal: Proposal) -> None:
    w = Writer()
    push_proposal(w, proposal)
    data = w.getvalue()
    assert int.from_bytes(data[:2], "big") == proposal.proposal_type
    again = DECODERS["Proposal"](data)
    assert again == proposal


@settings(max_examples=60, deadline=None)
@given(value=_private_contents())
def test_private_message_content_round_trip(value: PrivateMessageContent) -> None:
    data = value.encode()
    assert data.endswith(bytes(value.padding))
    again = PrivateMessageContent.decode(data, value.content_type)
    assert again == value


# --- MLSMessage envelope (§6) -----------------------------------------------------------------


def _private_message() -> PrivateMessage:
    return PrivateMessage(b"group", 7, ContentType.application, b"ad", b"esd", b"ct")


def test_mls_message_layout() -> None:
    # version 1, wire_format 2, then the PrivateMessage fields (§6, §6.3)
    want = (
        b"\x00\x01\x00\x02"
        + b"\x05group"
        + (7).to_bytes(8, "big")
        + b"\x01"
        + b"\x02ad\x03esd\x02ct"
    )
    assert encode(MLSMessage(_private_message())) == want
    assert decode(MLSMessage, want).body == _private_message()


@pytest.mark.parametrize("version", [0, 2, 0xFFFF])
def test_mls_message_rejects_other_versions(version: int) -> None:
    data = version.to_bytes(2, "big") + encode(MLSMessage(_private_message()))[2:]
    with pytest.raises(DecodeError, match="version"):
        decode(MLSMessage, data)


@pytest.mark.parametrize("wire_format", [0, 6, 0xFFFF])
def test_mls_message_rejects_unknown_wire_format(wire_format: int) -> None:
    data = b"\x00\x01" + wire_format.to_bytes(2, "big") + encode(_private_message())
    with pytest.raises(DecodeError, match="WireFormat"):
        decode(MLSMessage, data)


def test_mls_message_rejects_body_of_another_wire_format() -> None:
    data = b"\x00\x01\x00\x03" + encode(_private_message())  # says welcome, holds a private msg
    with pytest.raises(DecodeError):
        decode(MLSMessage, data)


@pytest.mark.parametrize("field", _MLS_MESSAGE_FIELDS)
def test_mls_message_rejects_trailing_bytes(field: str) -> None:
    with pytest.raises(DecodeError, match="trailing"):
        decode(MLSMessage, _field(field) + b"\x00")


@pytest.mark.parametrize("field", _MLS_MESSAGE_FIELDS)
def test_mls_message_rejects_truncation(field: str) -> None:
    with pytest.raises(DecodeError):
        decode(MLSMessage, _field(field)[:-1])


def test_group_context_rejects_other_versions() -> None:
    gc = GroupContext(CipherSuiteId(1), b"g", 0, b"th", b"cth")
    data = encode(gc)
    assert data[:2] == b"\x00\x01"
    with pytest.raises(DecodeError, match="version"):
        decode(GroupContext, b"\x00\x02" + data[2:])


def test_group_context_layout() -> None:
    gc = GroupContext(CipherSuiteId(3), b"g", 1, b"th", b"c", (Extension(5, b"x"),))
    want = b"\x00\x01\x00\x03\x01g" + (1).to_bytes(8, "big") + b"\x02th\x01c" + b"\x04\x00\x05\x01x"
    assert encode(gc) == want
    assert gc.version == ProtocolVersion.mls10


def test_unknown_cipher_suite_is_kept() -> None:
    gc = decode(GroupContext, b"\x00\x01\x7a\x7a\x00" + bytes(8) + b"\x00\x00\x00")
    assert gc.cipher_suite == 0x7A7A


# --- Sender, content type, enums --------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "sender"),
    [
        (b"\x01\x00\x00\x01\x00", SenderMember(256)),
        (b"\x02\x00\x00\x00\x02", SenderExternal(2)),
        (b"\x03", SenderNewMemberProposal()),
        (b"\x04", SenderNewMemberCommit()),
    ],
    ids=["member", "external", "new_member_proposal", "new_member_commit"],
)
def test_sender_layout(data: bytes, sender: Sender) -> None:
    assert DECODERS["Sender"](data) == sender


@pytest.mark.parametrize("sender_type", [0, 5, 0xFF])
def test_sender_rejects_unknown_type(sender_type: int) -> None:
    with pytest.raises(DecodeError, match="sender type"):
        DECODERS["Sender"](bytes([sender_type]) + bytes(4))


def _framed_bytes(content_type: int, body: bytes, sender: bytes = b"\x03") -> bytes:
    return b"\x01g" + bytes(8) + sender + b"\x00" + bytes([content_type]) + body


@pytest.mark.parametrize("content_type", [0, 4, 0xFF])
def test_framed_content_rejects_unknown_content_type(content_type: int) -> None:
    with pytest.raises(DecodeError, match="ContentType"):
        decode(FramedContent, _framed_bytes(content_type, b"\x00"))


@pytest.mark.parametrize("content_type", [0, 4])
def test_private_message_rejects_unknown_content_type(content_type: int) -> None:
    data = b"\x01g" + bytes(8) + bytes([content_type]) + b"\x00\x00\x00"
    with pytest.raises(DecodeError, match="ContentType"):
        decode(PrivateMessage, data)


@pytest.mark.parametrize("proposal_type", [0, 8, 0x0A0A, 0xFFFF])
def test_proposal_rejects_unknown_type(proposal_type: int) -> None:
    with pytest.raises(DecodeError, match="proposal type"):
        DECODERS["Proposal"](proposal_type.to_bytes(2, "big") + b"\x00\x00\x00\x00")


@pytest.mark.parametrize("kind", [0, 3, 0xFF])
def test_proposal_or_ref_rejects_unknown_type(kind: int) -> None:
    with pytest.raises(DecodeError, match="ProposalOrRefType"):
        DECODERS["ProposalOrRef"](bytes([kind]) + b"\x00")


def test_proposal_or_ref_reference() -> None:
    ref = DECODERS["ProposalOrRef"](b"\x02\x03abc")
    assert ref == b"abc"
    assert isinstance(ref, bytes)


@pytest.mark.parametrize(
    "data",
    [b"\x00\x00\x00", b"\x03\x00\x00", b"\x02\x00\x00\x00" + bytes(8) + b"\x00"],
    ids=["psktype-0", "psktype-3", "usage-0"],
)
def test_psk_id_rejects_unknown_enums(data: bytes) -> None:
    with pytest.raises(DecodeError, match="unknown"):
        decode(PreSharedKeyID, data)


def test_psk_id_layout() -> None:
    external = PreSharedKeyID(ExternalPSK(b"id"), b"nonce")
    assert encode(external) == b"\x01\x02id\x05nonce"
    resumption = PreSharedKeyID(ResumptionPSK(ResumptionPSKUsage.branch, b"g", 9), b"n")
    assert encode(resumption) == b"\x02\x03\x01g" + (9).to_bytes(8, "big") + b"\x01n"


def test_remove_layout() -> None:
    w = Writer()
    push_proposal(w, Remove(5))
    assert w.getvalue() == b"\x00\x03\x00\x00\x00\x05"


def test_reinit_keeps_unknown_version_and_suite() -> None:
    reinit = decode(ReInit, b"\x01g\x00\x02\x7a\x7a\x00")
    assert reinit.version == 2
    assert reinit.cipher_suite == 0x7A7A


# --- optional<T> presence octet (§2.1.3) ------------------------------------------------------


def test_commit_path_presence_octet_must_be_0_or_1() -> None:
    assert decode(Commit, b"\x00\x00") == Commit()
    with pytest.raises(DecodeError, match="presence"):
        decode(Commit, b"\x00\x02")


def test_group_secrets_path_secret_presence_octet_must_be_0_or_1() -> None:
    assert decode(GroupSecrets, b"\x01j\x01\x01p\x00").path_secret == PathSecret(b"p")
    with pytest.raises(DecodeError, match="presence"):
        decode(GroupSecrets, b"\x01j\x02\x01p\x00")


def test_commit_rejects_trailing_bytes() -> None:
    with pytest.raises(DecodeError, match="trailing"):
        decode(Commit, _field("commit") + b"\x00")


# --- confirmation_tag (§6.1) and membership_tag (§6.2) ----------------------------------------


@pytest.mark.parametrize(
    ("content", "tag", "ok"),
    [
        (Commit(), b"tag", True),
        (Commit(), None, False),
        (b"app", None, True),
        (b"app", b"tag", False),
        (Remove(1), None, True),
        (Remove(1), b"tag", False),
    ],
    ids=["commit+tag", "commit-no-tag", "app", "app+tag", "proposal", "proposal+tag"],
)
def test_confirmation_tag_present_exactly_for_commits(
    content: Content, tag: bytes | None, ok: bool
) -> None:
    framed = FramedContent(b"g", 0, SenderNewMemberProposal(), b"", content)
    auth = FramedContentAuthData(b"sig", tag)
    build: list[Callable[[], object]] = [
        lambda: AuthenticatedContent(WireFormat.mls_public_message, framed, auth),
        lambda: PublicMessage(framed, auth),
        lambda: PrivateMessageContent(content, auth),
    ]
    for make in build:
        if ok:
            make()
        else:
            with pytest.raises(ConfigurationError, match="confirmation_tag"):
                make()


def test_confirmation_tag_is_decoded_only_for_commits() -> None:
    # A proposal PublicMessage from an external sender: signature then nothing.
    proposal = _framed_bytes(
        ContentType.proposal, b"\x00\x03\x00\x00\x00\x01", b"\x02\x00\x00\x00\x00"
    )
    msg = decode(PublicMessage, proposal + b"\x03sig")
    assert msg.auth == FramedContentAuthData(b"sig", None)
    with pytest.raises(DecodeError, match="trailing"):
        decode(PublicMessage, proposal + b"\x03sig\x03tag")
    # A commit needs the tag after the signature.
    commit = _framed_bytes(ContentType.commit, b"\x00\x00", b"\x02\x00\x00\x00\x00")
    assert decode(PublicMessage, commit + b"\x03sig\x03tag").auth.confirmation_tag == b"tag"
    with pytest.raises(DecodeError):
        decode(PublicMessage, commit + b"\x03sig")


@pytest.mark.parametrize(
    ("sender", "tag", "ok"),
    [
        (SenderMember(0), b"mt", True),
        (SenderMember(0), None, False),
        (SenderExternal(0), None, True),
        (SenderExternal(0), b"mt", False),
        (SenderNewMemberCommit(), None, True),
        (SenderNewMemberProposal(), b"mt", False),
    ],
    ids=["member+tag", "member-no-tag", "external", "external+tag", "nmc", "nmp+tag"],
)
def test_membership_tag_present_exactly_for_members(
    sender: Sender, tag: bytes | None, ok: bool
) -> None:
    framed = FramedContent(b"g", 0, sender, b"", b"app")
    auth = FramedContentAuthData(b"sig")
    if ok:
        msg = PublicMessage(framed, auth, tag)
        assert decode(PublicMessage, encode(msg)) == msg
    else:
        with pytest.raises(ConfigurationError, match="membership_tag"):
            PublicMessage(framed, auth, tag)


def test_membership_tag_is_required_on_the_wire_for_members() -> None:
    data = _framed_bytes(ContentType.application, b"\x01a", b"\x01\x00\x00\x00\x00") + b"\x01s"
    with pytest.raises(DecodeError):
        decode(PublicMessage, data)
    assert decode(PublicMessage, data + b"\x02mt").membership_tag == b"mt"


# --- FramedContentTBS (§6.1) and AuthenticatedContentTBM (§6.2) -------------------------------


def test_framed_content_tbs_layout() -> None:
    gc = GroupContext(CipherSuiteId(1), b"g", 3, b"t", b"c")
    member = FramedContent(b"g", 3, SenderMember(1), b"", b"hi")
    content_bytes = b"\x01g" + (3).to_bytes(8, "big") + b"\x01\x00\x00\x00\x01\x00\x01\x02hi"
    assert encode(member) == content_bytes
    tbs = framed_content_tbs(WireFormat.mls_private_message, member, gc)
    assert tbs == b"\x00\x01\x00\x02" + content_bytes + encode(gc)
    ac = AuthenticatedContent(WireFormat.mls_private_message, member, FramedContentAuthData(b"s"))
    assert ac.tbs(gc) == tbs
    assert authenticated_content_tbm(tbs, ac.auth) == tbs + b"\x01s"


@pytest.mark.parametrize(
    ("sender", "needs_context"),
    [
        (SenderMember(0), True),
        (SenderNewMemberCommit(), True),
        (SenderExternal(0), False),
        (SenderNewMemberProposal(), False),
    ],
    ids=["member", "new_member_commit", "external", "new_member_proposal"],
)
def test_framed_content_tbs_context_presence(sender: Sender, needs_context: bool) -> None:
    gc = GroupContext(CipherSuiteId(1), b"g", 0, b"", b"")
    framed = FramedContent(b"g", 0, sender, b"", b"x")
    good, bad = (gc, None) if needs_context else (None, gc)
    tbs = framed_content_tbs(WireFormat.mls_public_message, framed, good)
    assert tbs.endswith(encode(gc)) == needs_context
    with pytest.raises(ConfigurationError, match="GroupContext"):
        framed_content_tbs(WireFormat.mls_public_message, framed, bad)


# --- PrivateMessageContent padding (§6.3.1) ---------------------------------------------------


def test_private_message_content_padding_zeros_are_accepted() -> None:
    value = PrivateMessageContent.decode(b"\x02hi\x01s" + bytes(10), ContentType.application)
    assert value == PrivateMessageContent(b"hi", FramedContentAuthData(b"s"), 10)
    assert value.encode() == b"\x02hi\x01s" + bytes(10)


@pytest.mark.parametrize("position", [0, 4, 9])
def test_private_message_content_rejects_nonzero_padding(position: int) -> None:
    padding = bytearray(10)
    padding[position] = 1
    with pytest.raises(DecodeError, match="padding"):
        PrivateMessageContent.decode(b"\x02hi\x01s" + bytes(padding), ContentType.application)


def test_private_message_content_commit_needs_confirmation_tag() -> None:
    body = b"\x00\x00\x01s\x02ct"
    assert PrivateMessageContent.decode(body, ContentType.commit).auth.confirmation_tag == b"ct"
    # Without the tag after the signature a commit's plaintext is cut short.
    with pytest.raises(DecodeError):
        PrivateMessageContent.decode(b"\x00\x00\x01s", ContentType.commit)


def test_private_message_content_rejects_negative_padding() -> None:
    with pytest.raises(ConfigurationError):
        PrivateMessageContent(b"", FramedContentAuthData(b""), -1)


def test_sender_data_layout_and_reuse_guard_length() -> None:
    sd = SenderData(1, 2, b"\xaa\xbb\xcc\xdd")
    assert encode(sd) == b"\x00\x00\x00\x01\x00\x00\x00\x02\xaa\xbb\xcc\xdd"
    with pytest.raises(ConfigurationError):
        SenderData(1, 2, b"abc")
    with pytest.raises(DecodeError):
        decode(SenderData, bytes(11))


def test_aad_layouts() -> None:
    assert encode(SenderDataAAD(b"g", 1, ContentType.commit)) == (
        b"\x01g" + (1).to_bytes(8, "big") + b"\x03"
    )
    assert encode(PrivateContentAAD(b"g", 1, ContentType.proposal, b"ad")) == (
        b"\x01g" + (1).to_bytes(8, "big") + b"\x02\x02ad"
    )


# --- proposal references (§5.2) ---------------------------------------------------------------


def test_make_proposal_ref_is_refhash() -> None:
    label = b"MLS 1.0 Proposal Reference"
    value = b"\x00\x01" + bytes(100)
    # RefHash(label, value) = H(opaque label<V> || opaque value<V>), computed by hand here.
    want = hashlib.sha256(bytes([len(label)]) + label + b"\x40\x66" + value).digest()
    assert make_proposal_ref(cipher_suite(1), value) == want
    want384 = hashlib.sha384(bytes([len(label)]) + label + b"\x40\x66" + value).digest()
    assert make_proposal_ref(cipher_suite(7), value) == want384


# --- GroupInfo signatures (§12.4.3) -----------------------------------------------------------


def _group_info_fixture() -> tuple[GroupContext, tuple[Extension, ...]]:
    gc = GroupContext(CipherSuiteId(1), b"group", 4, b"tree", b"cth", (Extension(2, b"t"),))
    return gc, (Extension(4, b"pub"),)


def test_group_info_tbs_layout() -> None:
    gc, ext = _group_info_fixture()
    want = encode(gc) + b"\x06\x00\x04\x03pub" + b"\x03tag" + b"\x00\x00\x00\x09"
    assert group_info_tbs(gc, ext, b"tag", 9) == want


@pytest.mark.parametrize("suite_id", [1, 2, 3])
def test_group_info_sign_and_verify(suite_id: int) -> None:
    cs = cipher_suite(suite_id)
    keys = cs.generate_signature_key_pair()
    gc, ext = _group_info_fixture()
    gi = GroupInfo.sign(cs, keys.private_key, gc, ext, b"tag", 2)
    gi.verify(cs, keys.public_key)
    # The signature is SignWithLabel(., "GroupInfoTBS", GroupInfoTBS): check it independently.
    cs.verify_with_label(
        keys.public_key, b"GroupInfoTBS", group_info_tbs(gc, ext, b"tag", 2), gi.signature
    )
    assert decode(GroupInfo, encode(gi)) == gi
    for tampered in (
        GroupInfo(gc, ext, b"tag", 3, gi.signature),
        GroupInfo(gc, (), b"tag", 2, gi.signature),
        GroupInfo(gc, ext, b"tah", 2, gi.signature),
    ):
        with pytest.raises(InvalidSignature):
            tampered.verify(cs, keys.public_key)
    other = cs.generate_signature_key_pair()
    with pytest.raises(InvalidSignature):
        gi.verify(cs, other.public_key)


# --- Welcome, GroupSecrets --------------------------------------------------------------------


def test_group_secrets_repr_hides_secrets() -> None:
    gs = GroupSecrets(b"\x5a" * 32, PathSecret(b"\xa5" * 32))
    text = repr(gs)
    # 0x5a is "Z": a bytes repr would show ZZZZ, a hex dump 5a5a.
    assert "5a5a" not in text and "ZZZZ" not in text
    assert "\\xa5" not in text and "a5a5" not in text


def test_welcome_secrets_for() -> None:
    entry = EncryptedGroupSecrets(b"ref-b", HPKECiphertext(b"k", b"c"))
    welcome = Welcome(
        CipherSuiteId(1),
        (EncryptedGroupSecrets(b"ref-a", entry.encrypted_group_secrets), entry),
        b"",
    )
    assert welcome.secrets_for(b"ref-b") is entry
    assert welcome.secrets_for(b"ref-c") is None


def test_welcome_layout() -> None:
    welcome = Welcome(
        CipherSuiteId(2), (EncryptedGroupSecrets(b"r", HPKECiphertext(b"k", b"c")),), b"egi"
    )
    assert encode(welcome) == b"\x00\x02\x06\x01r\x01k\x01c\x03egi"


# --- peek_routing -----------------------------------------------------------------------------


def test_peek_routing_private_message() -> None:
    data = encode(MLSMessage(_private_message()))
    assert peek_routing(data) == Routing(
        WireFormat.mls_private_message, b"group", 7, ContentType.application
    )


def test_peek_routing_public_message() -> None:
    framed = FramedContent(b"gid", 12, SenderExternal(0), b"", Remove(1))
    msg = PublicMessage(framed, FramedContentAuthData(b"sig"))
    assert peek_routing(encode(MLSMessage(msg))) == (
        WireFormat.mls_public_message,
        b"gid",
        12,
        ContentType.proposal,
    )


def test_peek_routing_group_info() -> None:
    gc, ext = _group_info_fixture()
    gi = GroupInfo(gc, ext, b"t", 0, b"s")
    assert peek_routing(encode(MLSMessage(gi))) == (
        WireFormat.mls_group_info,
        b"group",
        4,
        None,
    )


@pytest.mark.parametrize(
    ("field", "wire_format"),
    [("mls_welcome", WireFormat.mls_welcome), ("mls_key_package", WireFormat.mls_key_package)],
)
def test_peek_routing_without_group(field: str, wire_format: WireFormat) -> None:
    assert peek_routing(_field(field)) == (wire_format, None, None, None)


@pytest.mark.parametrize("data", [b"", b"\x00", b"\x00\x01\x00\x02", b"garbage!"])
def test_peek_routing_rejects_garbage(data: bytes) -> None:
    with pytest.raises(DecodeError):
        peek_routing(data)


def test_key_package_is_an_mls_message_body() -> None:
    msg = decode(MLSMessage, _field("mls_key_package"))
    assert isinstance(msg.body, KeyPackage)
    assert msg.wire_format == WireFormat.mls_key_package
