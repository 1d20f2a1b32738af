"""The mapping of Doorless actions to MIMI content containers and back (doorless.wire.rich),
and the ``content`` payload kind."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from doorless.codec import decode, encode
from doorless.content import (
    Disposition,
    Expiration,
    ExternalPart,
    MimiContent,
    MultiPart,
    NestedPart,
    NullPart,
    PartSemantics,
    SinglePart,
    derive_message_id,
)
from doorless.content import decode as decode_content
from doorless.errors import ConfigurationError, DecodeError, ValidationError
from doorless.franking import AttachmentDescriptor, SenderIdentity
from doorless.franking.errors import FrankingTagMismatch
from doorless.franking.receiver import open_content
from doorless.wire import rich
from doorless.wire.payload import (
    MAX_TEXT_BYTES,
    FileBody,
    Payload,
    PayloadKind,
    content_of,
    content_payload,
    frank_payload,
    payload_of,
)

SALT = bytes(range(16))
TARGET = b"\x01" + bytes(31)
GID = b"group-1"
DESCRIPTOR = AttachmentDescriptor(
    locator=b"att-123",
    media_type=b"image/png",
    key=b"k" * 32,
    nonce=b"n" * 12,
    ciphertext_sha256=b"c" * 32,
    plaintext_sha256=b"p" * 32,
    size=1234,
)


def _round(content: MimiContent) -> rich.Rich:
    """Encode, decode (the content decoder's checks) and classify."""
    return rich.classify(decode_content(content.encode()))


def test_text_is_one_gfm_mimi_part_with_mentions_of_members() -> None:
    content = rich.post(
        "hi @bob and @eve, mail me@example.com",
        salt=SALT,
        members=frozenset({"alice", "bob"}),
        expires_s=60,
    )
    part = content.body.part
    assert isinstance(part, SinglePart) and content.body.disposition is Disposition.RENDER
    assert part.content_type == "text/markdown;variant=GFM-MIMI"
    assert part.content == b"hi [@bob](mimi://doorless/u/bob) and @eve, mail me@example.com"
    assert content.expires == Expiration(relative=True, time=60)
    post = _round(content)
    assert isinstance(post, rich.Post)
    assert (post.text, post.mentions) == ("hi @bob and @eve, mail me@example.com", ("bob",))
    assert post.in_reply_to is None and post.expires == Expiration(True, 60)


def test_a_mention_is_shown_by_its_uri_not_the_senders_label() -> None:
    # The link text is only a hint (draft "Link and Mention handling"): never "@admin".
    assert rich.displayed("ask [@admin](mimi://doorless/u/mallory)") == (
        "ask @mallory",
        ("mallory",),
    )


def test_reply_reaction_unreaction_edit_delete() -> None:
    reply = _round(rich.post("yes", salt=SALT, in_reply_to=TARGET))
    assert isinstance(reply, rich.Post) and reply.in_reply_to == TARGET
    assert _round(rich.reaction(TARGET, "👍", salt=SALT)) == rich.Reaction(TARGET, "👍")
    other = b"\x01" + b"\x02" * 31
    assert _round(rich.unreaction(other, TARGET, salt=SALT)) == rich.Unreaction(other)
    edit = _round(rich.edit(TARGET, "fixed @bob", salt=SALT, members=frozenset({"bob"})))
    assert isinstance(edit, rich.Edit)
    assert (edit.target, edit.text, edit.mentions) == (TARGET, "fixed @bob", ("bob",))
    assert _round(rich.delete(TARGET, salt=SALT)) == rich.Delete(TARGET)
    assert _round(rich.read_up_to(TARGET, salt=SALT)) == rich.ReadUpTo(TARGET)
    assert _round(rich.typing(True, salt=SALT)) == rich.Typing(True)
    assert _round(rich.typing(False, salt=SALT)) == rich.Typing(False)


def test_delete_and_unlike_have_the_drafts_shape() -> None:
    """As the draft's delete and unlike examples: replaces, a NullPart body, the
    disposition render (delete) or reaction (unlike)."""
    delete = rich.delete(TARGET, salt=SALT)
    assert delete.replaces == TARGET and isinstance(delete.body.part, NullPart)
    assert delete.body.disposition is Disposition.RENDER
    unlike = rich.unreaction(TARGET, b"\x01" * 32, salt=SALT)
    assert unlike.body.disposition is Disposition.REACTION
    assert isinstance(unlike.body.part, NullPart) and unlike.in_reply_to == b"\x01" * 32


def test_file_is_an_external_part_with_key_nonce_and_hashes() -> None:
    content = rich.attachment("cat.png", DESCRIPTOR, salt=SALT)
    part = content.body.part
    assert isinstance(part, ExternalPart)
    assert content.body.disposition is Disposition.ATTACHMENT
    assert (part.key, part.nonce, part.content_hash) == (b"k" * 32, b"n" * 12, b"p" * 32)
    assert (part.filename, part.content_type, part.size) == ("cat.png", "image/png", 1234)
    post = _round(content)
    assert isinstance(post, rich.Post) and post.attachment == DESCRIPTOR
    assert post.file_name == "cat.png" and post.text is None
    assert rich.attachments_of(content) == (DESCRIPTOR,)


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(
            MimiContent(
                SALT,
                None,
                b"",
                None,
                None,
                NestedPart(
                    Disposition.RENDER,
                    "",
                    MultiPart(
                        PartSemantics.CHOOSE_ONE,
                        (
                            NestedPart(Disposition.RENDER, "", SinglePart("text/plain", b"a")),
                            NestedPart(Disposition.RENDER, "", SinglePart("text/html", b"a")),
                        ),
                    ),
                ),
            ),
            id="multipart",
        ),
        pytest.param(
            MimiContent(
                SALT, None, b"", None, None, NestedPart(1, "", SinglePart("text/html", b"<b>"))
            ),
            id="html",
        ),
        pytest.param(
            MimiContent(
                SALT, None, b"", None, None, NestedPart(1, "", SinglePart(rich.MARKDOWN, b"\xff"))
            ),
            id="not-utf8",
        ),
        pytest.param(
            MimiContent(
                SALT, None, b"", None, None, NestedPart(2, "", SinglePart(rich.PLAIN, b"x"))
            ),
            id="reaction-to-nothing",
        ),
        pytest.param(
            MimiContent(
                SALT, None, b"", None, TARGET, NestedPart(2, "", SinglePart(rich.PLAIN, b""))
            ),
            id="empty-reaction",
        ),
        pytest.param(
            MimiContent(
                SALT, None, b"", None, None, NestedPart(0, "", SinglePart(rich.TYPING, b"7"))
            ),
            id="bad-typing",
        ),
        pytest.param(
            MimiContent(
                SALT, None, b"", None, None, NestedPart(0, "", SinglePart(rich.READ_UP_TO, b""))
            ),
            id="receipt-of-nothing",
        ),
        pytest.param(
            MimiContent(
                SALT, TARGET, b"", None, None, NestedPart(6, "", SinglePart("image/png", b"x"))
            ),
            id="replacement-attachment",
        ),
        pytest.param(
            MimiContent(SALT, None, b"", None, None, NestedPart(1, "", NullPart())),
            id="empty-message",
        ),
    ],
)
def test_unsupported_shapes_are_refused(content: MimiContent) -> None:
    with pytest.raises(ValidationError):
        rich.classify(content)


def test_an_attachment_that_is_not_ours_is_refused() -> None:
    good = rich.attachment("a.bin", DESCRIPTOR, salt=SALT).body.part
    assert isinstance(good, ExternalPart)
    for change in (
        {"url": "https://example.com/x"},
        {"enc_alg": 1},
        {"hash_alg": 2},
        {"url": good.url.replace("ciphertext-sha256=", "ciphertext-sha256=zz")},
        {"key": b"short"},
    ):
        fields = {f: getattr(good, f) for f in good.__dataclass_fields__}
        bad = ExternalPart(**{**fields, **change})
        content = MimiContent(SALT, None, b"", None, None, NestedPart(6, "", bad))
        with pytest.raises(ValidationError):
            rich.classify(content)


def test_message_id_is_the_drafts_derivation_over_implied_uris() -> None:
    content = rich.post("x", salt=SALT)
    expected = derive_message_id(
        "mimi://doorless/u/alice", f"mimi://doorless/r/{GID.hex()}", content.encode(), SALT
    )
    assert rich.message_id_of(content, "alice", GID) == expected
    assert rich.message_id_of(content, "bob", GID) != expected


def test_content_payload_round_trip_and_franking_covers_the_container() -> None:
    content = rich.attachment("cat.png", DESCRIPTOR, salt=SALT)
    payload = content_payload(content, 1_700_000_000_000, b"m" * 16)
    assert payload.kind is PayloadKind.content
    again = decode(Payload, encode(payload))
    assert content_of(again) == content
    franked = frank_payload(
        payload, sender=SenderIdentity(b"alice", b"dev"), group_id=GID, salt=b"s" * 16
    )
    opened = open_content(franked.application_data, franked.franking_tag)
    # The tag commits to the franked content, whose body is the whole payload (so the whole
    # container) and whose attachments are the container's (file key and hashes).
    assert opened.body == encode(payload) and opened.attachments == (DESCRIPTOR,)
    assert payload_of(opened) == payload
    encoded = content.encode()
    at = franked.application_data.index(encoded)
    for offset in (0, len(encoded) // 2, len(encoded) - 1):  # any byte of the container
        data = bytearray(franked.application_data)
        data[at + offset] ^= 1
        with pytest.raises(FrankingTagMismatch):
            open_content(bytes(data), franked.franking_tag)


def test_a_garbled_container_is_a_typed_error() -> None:
    payload = Payload(b"m" * 16, 1, PayloadKind.content, b"\x85garbage")
    with pytest.raises(DecodeError):
        content_of(payload)


def test_old_file_body_still_decodes() -> None:
    body = FileBody("a.txt", DESCRIPTOR)
    assert decode(FileBody, encode(body)) == body


def test_reprs_show_no_content() -> None:
    secret = "canary-text-1234"
    for action in (
        _round(rich.post(secret, salt=SALT)),
        _round(rich.edit(TARGET, secret, salt=SALT, members=frozenset())),
        rich.Reaction(TARGET, secret),
    ):
        assert secret not in repr(action)


def test_the_largest_text_fits_and_a_larger_container_is_refused() -> None:
    members = frozenset({"bob"})
    biggest = rich.post("x" * (MAX_TEXT_BYTES - 5) + " @bob", salt=SALT, members=members)
    assert content_of(content_payload(biggest, 1)) == biggest
    with pytest.raises(ConfigurationError):
        content_payload(rich.post("@bob " * (MAX_TEXT_BYTES // 5), salt=SALT, members=members), 1)


_SAMPLES = [
    rich.post("hi [@bob](mimi://doorless/u/bob)", salt=SALT, in_reply_to=TARGET).encode(),
    rich.attachment("a.png", DESCRIPTOR, salt=SALT).encode(),
    rich.reaction(TARGET, "👍", salt=SALT).encode(),
    rich.unreaction(TARGET, TARGET, salt=SALT).encode(),
    rich.read_up_to(TARGET, salt=SALT).encode(),
]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(_SAMPLES), st.integers(min_value=0), st.integers(0, 255))
def test_a_mutated_container_is_classified_or_refused_with_a_typed_error(
    sample: bytes, at: int, value: int
) -> None:
    data = bytearray(sample)
    data[at % len(data)] = value
    payload = Payload(b"m" * 16, 1, PayloadKind.content, bytes(data))
    try:
        action = rich.classify(content_of(payload))
    except (DecodeError, ValidationError) as e:  # what a receiver turns into invalid_payload
        assert str(e)
        return
    kinds = (rich.Post, rich.Reaction, rich.Unreaction, rich.Edit, rich.Delete, rich.ReadUpTo)
    assert isinstance(action, (*kinds, rich.Typing))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_are_refused_with_a_typed_error(data: bytes) -> None:
    payload = Payload(b"m" * 16, 1, PayloadKind.content, data)
    with pytest.raises((DecodeError, ValidationError)):
        rich.classify(content_of(payload))
