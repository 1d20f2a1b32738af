"""Bad MIMI content: each case raises the typed error, naming the rule it breaks.

The documents are built as plain CBOR items (with `cbor2` directly, or as hand-written hex where
the encoding itself is the point), never through the code under test.
"""

from __future__ import annotations

from typing import Any

import cbor2
import pytest

from doorless.content import (
    MAX_EXTENSIONS,
    MAX_PARTS,
    Disposition,
    ExternalPart,
    MimiContent,
    MultiPart,
    NestedPart,
    NullPart,
    SinglePart,
    decode,
    derive_message_id,
)
from doorless.errors import DecodeError, ValidationError

SALT = bytes(range(16))
MID = bytes([1]) + bytes(31)


def text_part(disposition: Any = 1, language: Any = "", body: bytes = b"hi") -> list[Any]:
    return [disposition, language, 1, "text/plain;charset=utf-8", body]


def container(**over: Any) -> list[Any]:
    fields: dict[str, Any] = {
        "salt": SALT,
        "replaces": None,
        "topic": b"",
        "expires": None,
        "reply": None,
        "ext": {1: "mimi://a.example/u/alice", 2: "mimi://a.example/r/room"},
        "body": text_part(),
    }
    fields.update(over)
    return list(fields.values())


def enc(item: Any) -> bytes:
    return cbor2.dumps(item, canonical=True)


def nest(levels: int) -> list[Any]:
    """A body whose MultiParts nest `levels` deep (1 = a single part)."""
    part = text_part()
    for _ in range(levels - 1):
        part = [1, "", 3, 2, [part, text_part()]]
    return part


def test_a_valid_container_decodes() -> None:
    content = decode(enc(container()))
    assert content.sender_uri == "mimi://a.example/u/alice"
    assert content.body.disposition is Disposition.RENDER


VALIDATION_CASES: dict[str, list[Any]] = {
    "salt-as-text": container(salt="0123456789abcdef"),
    "salt-15-octets": container(salt=bytes(15)),
    "replaces-31-octets": container(replaces=bytes(31)),
    "inReplyTo-as-int": container(reply=7),
    "topicId-as-text": container(topic="t"),
    "topicId-over-4096": container(topic=bytes(4097)),
    "expires-not-array": container(expires=5),
    "expires-relative-int": container(expires=[1, 10]),
    "expires-time-over-u32": container(expires=[True, 2**32]),
    "extensions-as-array": container(ext=[1, 2]),
    "senderUri-as-bytes": container(ext={1: b"mimi://a"}),
    "roomUri-as-int": container(ext={2: 5}),
    "extension-name-256-octets": container(ext={"x" * 256: 1}),
    "extension-value-4096-octets": container(ext={3: bytes(4093)}),  # 59 0ffd + 4093
    "extension-5-levels": container(ext={3: [[[[1]]]]}),
    "1025-extensions": container(ext={k: 0 for k in range(3, 3 + 1025)}),
    "six-fields": container()[:6],
    "eight-fields": [*container(), None],
    "container-as-map": {"salt": SALT},  # type: ignore[dict-item]
    "body-as-map": container(body={1: 1}),
    "disposition-as-text": container(body=text_part(disposition="render")),
    "disposition-256": container(body=text_part(disposition=256)),
    "disposition-bool": container(body=text_part(disposition=True)),
    "language-as-bytes": container(body=text_part(language=b"en")),
    "content-as-text": container(body=[1, "", 1, "text/plain", "hi"]),
    "single-missing-content": container(body=[1, "", 1, "text/plain"]),
    "null-with-extra-field": container(body=[1, "", 0, "x"]),
    "part-without-cardinality": container(body=[1, ""]),
    "unknown-cardinality-4": container(body=[1, "", 4, "text/plain", b""]),
    "unknown-partSemantics-3": container(body=[1, "", 3, 3, [text_part(), text_part()]]),
    "multipart-one-part": container(body=[1, "", 3, 2, [text_part()]]),
    "multipart-parts-not-array": container(body=[1, "", 3, 2, 5]),
    "nested-5-levels": container(body=nest(5)),
    "1025-parts": container(body=[1, "", 3, 2, [[1, "", 0]] * 1024]),
    "external-11-fields": container(
        body=[6, "", 2, "video/mp4", "https://x", 0, 0, 1, b"k", b"n", b"", 1, b"h", "d"]
    ),
    "external-size-negative": container(
        body=[6, "", 2, "video/mp4", "https://x", 0, -1, 1, b"k", b"n", b"", 1, b"h", "d", "f"]
    ),
    "external-encAlg-over-u16": container(
        body=[6, "", 2, "video/mp4", "https://x", 0, 0, 2**16, b"k", b"n", b"", 1, b"h", "", ""]
    ),
    "external-hashAlg-over-u8": container(
        body=[6, "", 2, "video/mp4", "https://x", 0, 0, 1, b"k", b"n", b"", 256, b"h", "", ""]
    ),
    "external-key-without-encAlg": container(
        body=[6, "", 2, "video/mp4", "https://x", 0, 0, 0, b"k", b"", b"", 0, b"", "", ""]
    ),
}


@pytest.mark.parametrize("name", sorted(VALIDATION_CASES))
def test_cddl_violation_is_a_validation_error(name: str) -> None:
    with pytest.raises(ValidationError) as info:
        decode(enc(VALIDATION_CASES[name]))
    assert info.value.rule.startswith("draft-ietf-mimi-content-08 ")


def test_limits_are_inclusive() -> None:
    # The draft's numbers, typed here rather than read from the module under test.
    assert (MAX_PARTS, MAX_EXTENSIONS) == (1024, 1024)
    ext = {k: 0 for k in range(3, 3 + 1024)}
    assert len(decode(enc(container(ext=ext))).extensions) == 1024
    assert decode(enc(container(body=nest(4)))).body.depth() == 4
    body = [1, "", 3, 2, [[1, "", 0]] * 1023]
    assert decode(enc(container(body=body))).body.count() == 1024
    assert len(decode(enc(container(topic=bytes(4096)))).topic_id) == 4096
    value = decode(enc(container(ext={3: bytes(4092)}))).extension(3)  # 4095 octets encoded
    assert value == bytes(4092)


def test_unknown_disposition_is_kept_and_treated_as_render() -> None:
    # Draft 9.1: an unrecognised disposition is legitimate and treated as render.
    data = enc(container(body=text_part(disposition=42)))
    content = decode(data)
    assert content.body.disposition == 42
    assert not isinstance(content.body.disposition, Disposition)
    assert content.body.effective_disposition is Disposition.RENDER
    assert content.encode() == data


def test_unknown_extensions_are_kept_in_order() -> None:
    ext = {1: "mimi://a", 2: "mimi://r", 3: [1, b"x"], -5: {"k": 1}, "private": True}
    data = enc(container(ext=ext))
    content = decode(data)
    assert [k for k, _ in content.extensions] == [3, -5, "private"]
    assert content.extension(-5) == {"k": 1}
    assert content.encode() == data


def _hex(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


# A valid container in hand-written hex (empty extensions, a text/plain part); each case
# below changes one encoding detail of it.
_HEAD = "87 50" + SALT.hex() + "f6 40 f6 f6"
_EXT = "a0"
_BODY = "85 01 60 01 6a 746578742f706c61696e 42 6869"  # [1, "", 1, "text/plain", h'6869']

_BIG = "746578742f706c61696e 5b 7fff0000ffffffff"
DECODE_CASES: dict[str, bytes] = {
    "empty": b"",
    "truncated": _hex(_HEAD + _EXT + _BODY)[:-1],
    "trailing-byte": _hex(_HEAD + _EXT + _BODY + "00"),
    "int-not-shortest": _hex(_HEAD + _EXT + "85 1801 60 01 6a 746578742f706c61696e 42 6869"),
    "length-not-shortest": _hex(_HEAD + _EXT + "85 01 60 01 780a 746578742f706c61696e 42 6869"),
    "array-length-not-shortest": _hex("9807 50" + SALT.hex() + "f6 40 f6 f6" + _EXT + _BODY),
    "indefinite-array": _hex(_HEAD + _EXT + "9f 01 60 01 6a 746578742f706c61696e 42 6869 ff"),
    "indefinite-bytes": _hex(
        _HEAD + _EXT + "85 01 60 01 6a 746578742f706c61696e 5f 41 68 41 69 ff"
    ),
    "indefinite-map": _hex(_HEAD + "bf ff" + _BODY),
    "duplicate-map-key": _hex(_HEAD + "a2 03 00 03 01" + _BODY),
    "duplicate-key-1-and-true": _hex(_HEAD + "a2 01 61 61 f5 00" + _BODY),
    # RFC 8949 4.2.1 sorts keys bytewise: 24 (1818) before -1 (20). RFC 7049's length-first
    # "canonical" order puts -1 first, which the draft forbids (6.1).
    "keys-in-rfc7049-order": _hex(_HEAD + "a2 20 00 1818 00" + _BODY),
    "keys-unsorted": _hex(_HEAD + "a2 04 00 03 00" + _BODY),
    "float-not-shortest": _hex(_HEAD + "a1 03 fb 3ff8000000000000" + _BODY),
    "nan-not-preferred": _hex(_HEAD + "a1 03 fa 7fc00001" + _BODY),
    "bignum-that-fits": _hex(_HEAD + "a1 03 c2 41 05" + _BODY),
    "invalid-utf8": _hex(_HEAD + _EXT + "85 01 61 ff 01 6a 746578742f706c61696e 42 6869"),
    "huge-bytes-length": _hex(
        _HEAD + _EXT + "85 01 60 01 6a 746578742f706c61696e 5b 7fffffffffffffff"
    ),
    "huge-array-length": _hex("9b 7fffffffffffffff 00"),
    "float-map-key": _hex(_HEAD + "a1 03 a1 f9 3c00 00" + _BODY),
    "undefined": _hex(_HEAD + "a1 03 f7" + _BODY),
    "deep-cbor-nesting": b"\x81" * 5000 + b"\x00",
}


@pytest.mark.parametrize("name", sorted(DECODE_CASES))
def test_bad_cbor_is_a_decode_error(name: str) -> None:
    with pytest.raises(DecodeError):
        decode(DECODE_CASES[name])


def test_deterministic_twins_of_the_bad_encodings_decode() -> None:
    # The cases above fail for their encoding alone: the same items, encoded right, decode.
    decode(_hex(_HEAD + _EXT + _BODY))
    decode(_hex(_HEAD + "a2 1818 00 20 00" + _BODY))
    decode(_hex(_HEAD + "a1 03 f9 3e00" + _BODY))
    decode(_hex(_HEAD + "a1 03 f9 7e00" + _BODY))


@pytest.mark.parametrize(
    ("tag", "tagged"),
    [
        pytest.param(1, "c1 1a 514b67b0", id="epoch-datetime"),
        pytest.param(0, "c0 74 323031332d30332d32315432303a30343a30305a", id="text-datetime"),
        pytest.param(35, "d823 62 612a", id="regex"),
        pytest.param(36, "d824 61 61", id="mime"),
        pytest.param(37, "d825 50" + "00" * 16, id="uuid"),
        pytest.param(258, "d90102 81 01", id="set"),
        pytest.param(28, "d81c 81 d81d 00", id="shared-cycle"),
        pytest.param(32, "d820 72 687474703a2f2f6578616d706c652e636f6d", id="uri"),
    ],
)
def test_tags_stay_plain_tags(tag: int, tagged: str) -> None:
    # cbor2 would turn these into datetimes, compiled regexes, parsed MIME, sets, or a list
    # that contains itself; an extension value keeps each as an uninterpreted tag.
    data = _hex(_HEAD + "a1 03" + tagged + _BODY)
    content = decode(data)
    value = content.extension(3)
    assert isinstance(value, cbor2.CBORTag)
    assert value.tag == tag
    assert content.encode() == data


def test_self_described_cbor_is_not_a_container() -> None:
    # Tag 55799 is kept as a tag, so the document is not the mimiContent array.
    with pytest.raises(ValidationError):
        decode(_hex("d9d9f7" + _HEAD + _EXT + _BODY))


def test_extension_depth_example_of_section_6_3() -> None:
    # The draft's own example: the extensions map has exactly 4 levels (map, array, array, tag).
    uri = cbor2.CBORTag(32, "http://example.com")
    ext = {1: "mimi://a.example/u/alice", 256: [[b"\x12\x34", uri], [b"\x34\x56", 5771]]}
    content = decode(enc(container(ext=ext)))
    assert content.sender_uri == "mimi://a.example/u/alice"
    deeper = {256: [[[cbor2.CBORTag(32, "http://example.com")]]]}
    with pytest.raises(ValidationError):
        decode(enc(container(ext=deeper)))


def test_integer_map_key_beyond_double_precision() -> None:
    # Draft 6.2 (data model): integer keys must be exact as a double, at any depth.
    with pytest.raises(DecodeError):
        decode(enc(container(ext={2**53: 1})))
    with pytest.raises(DecodeError):
        decode(enc(container(ext={3: {-(2**53): 1}})))
    decode(enc(container(ext={2**53 - 1: 1, 3: {-(2**53) + 1: 1}})))


def test_size_limit() -> None:
    data = enc(container(body=text_part(body=bytes(2000))))
    assert decode(data, max_size=len(data)).body.count() == 1
    with pytest.raises(DecodeError):
        decode(data, max_size=len(data) - 1)


def test_non_bytes_input() -> None:
    with pytest.raises(DecodeError):
        decode("87")  # type: ignore[arg-type]


def test_constructors_refuse_what_the_decoder_refuses() -> None:
    single = NestedPart(Disposition.RENDER, "", SinglePart("text/plain", b"x"))
    with pytest.raises(ValidationError):
        MultiPart(semantics=7, parts=(single, single))  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        MimiContent(bytes(15), None, b"", None, None, single)
    with pytest.raises(ValidationError):
        MimiContent(SALT, None, b"", None, None, single, extensions=((1, "dup sender"),))
    with pytest.raises(ValidationError):
        MimiContent(SALT, None, b"", None, None, single, extensions=((3, 1), (3, 2)))
    with pytest.raises(ValidationError):
        NestedPart(Disposition.RENDER, "", "text")  # type: ignore[arg-type]
    with pytest.raises(DecodeError):  # draft 6.2: the data model, as the decoder checks it
        MimiContent(SALT, None, b"", None, None, single, extensions=((3, {1.5: 0}),))
    null = NestedPart(Disposition.RENDER, "", NullPart())
    with pytest.raises(ValidationError):
        ExternalPart("", "https://x", 0, 0, 0, b"key", b"", b"", 0, b"", "", "")
    assert null.count() == 1


def test_message_id_rejects_unknown_hash_and_long_uris() -> None:
    with pytest.raises(ValidationError):
        derive_message_id("a", "b", b"", SALT, hash_alg=2)
    with pytest.raises(ValidationError):
        derive_message_id("a" * 65536, "b", b"", SALT)
    assert derive_message_id("a" * 65535, "b", b"", SALT)[0] == 1
