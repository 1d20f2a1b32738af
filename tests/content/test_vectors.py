"""The draft-ietf-mimi-content-08 examples (tests/vectors/mimi-content/), one case per example.

Each `.cbor` decodes, validates and re-encodes byte-exactly; the expectations below are typed in
by hand from the example's `.edn` (not computed by the code under test), and the message id
printed at the top of each `.edn` is derived again (draft 3.3).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from doorless.content import (
    Disposition,
    Expiration,
    ExternalPart,
    MimiContent,
    MultiPart,
    NullPart,
    PartSemantics,
    SinglePart,
    decode,
    decode_derived,
    derive_message_id,
)

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "mimi-content"
ROOM = "mimi://example.com/r/engineering_team"
ALICE = "mimi://example.com/u/alice-smith"
BOB = "mimi://example.com/u/bob-jones"
CATHY = "mimi://example.com/u/cathy-washington"
MD = "text/markdown;variant=GFM-MIMI"
PLAIN = "text/plain;charset=utf-8"
ORIGINAL_ID = "017ce54837404c3696e0c747b985cb172716d0ed0a3d249ca63ace7d82a096f4"
REPLY_ID = "015354973c2b65ca937bf1e035ae53a5ab80e947afa43d46920d4202e5cc0b27"
REACTION_ID = "0158c4288911e50a8f6be3f47746b6682f10fd91bc8c05557aa589a3157aff68"


@dataclass(frozen=True)
class Expect:
    message_id: str
    salt: str
    sender: str
    disposition: Disposition
    kind: type
    replaces: str | None = None
    in_reply_to: str | None = None
    content_type: str | None = None
    content: bytes | None = None


EXAMPLES = {
    "original": Expect(
        ORIGINAL_ID,
        "5eed9406c2545547ab6f09f20a18b003",
        ALICE,
        Disposition.RENDER,
        SinglePart,
        content_type=MD,
        content=b"Hi everyone, we just shipped release 2.0. __Good  work__!",
    ),
    "reply": Expect(
        REPLY_ID,
        "11a458c73b8dd2cf404db4b378b8fe4d",
        BOB,
        Disposition.RENDER,
        SinglePart,
        in_reply_to=ORIGINAL_ID,
        content_type=MD,
        content=b"Right on! _Congratulations_ 'all!",
    ),
    "reaction": Expect(
        REACTION_ID,
        "d37bc0e6a8b4f04e9e6382375f587bf6",
        CATHY,
        Disposition.REACTION,
        SinglePart,
        in_reply_to=ORIGINAL_ID,
        content_type=PLAIN,
        content="\u2764".encode(),
    ),
    "mention": Expect(
        "018d825adf9f6be00dcafc5704c4102f5022e74219d0b603e4ba7622654042af",
        "04f290e215d0f82d1750bfa8b7dc089d",
        CATHY,
        Disposition.RENDER,
        SinglePart,
        in_reply_to=ORIGINAL_ID,
        content_type=MD,
        content=b"Kudos to [@Alice Smith](mimi://example.com/u/alice-smith)"
        b" for making the release happen!",
    ),
    "mention-html": Expect(
        "01967ff8e9a66819738ad5cf26d2e0388a3b81d86b0f61d129c077d043ee2a4e",
        "15d9705fd5bf5e02b0af47c85f8b98fe",
        CATHY,
        Disposition.RENDER,
        SinglePart,
        in_reply_to=ORIGINAL_ID,
        content_type="text/html;charset=utf-8",
    ),
    "edit": Expect(
        "014028c0deddbdea56bec26172f6ede953d11024cb82b8192b5e2aea62d7fb47",
        "b8c2e6d8800ecf45df39be6c45f4c042",
        BOB,
        Disposition.RENDER,
        SinglePart,
        replaces=REPLY_ID,
        in_reply_to=ORIGINAL_ID,
        content_type=MD,
        content=b"Right on! _Congratulations_ y'all!",
    ),
    "delete": Expect(
        "011d9efc78d04d4dcf4d82b07d5199bbef37011c1f0c7e004b6111c6dda504b4",
        "0a590d73b2c7761c39168be5ebf7f2e6",
        BOB,
        Disposition.RENDER,
        NullPart,
        replaces=REPLY_ID,
        in_reply_to=ORIGINAL_ID,
    ),
    "unlike": Expect(
        "013aadbb8f313253c8930f4e93c6ca54b2ed06d258185bdcec3870534c8a4ec4",
        "c5ba86dc9fd272e58ca52ec805b79199",
        CATHY,
        Disposition.REACTION,
        NullPart,
        replaces=REACTION_ID,
        in_reply_to=ORIGINAL_ID,
    ),
    "expiring": Expect(
        "01e59db8173939facc2c8a4a0f0ae8d0c7a11a81239626630c9464a8d6717a03",
        "33be993eb39f418f9295afc2ae160d2d",
        ALICE,
        Disposition.RENDER,
        SinglePart,
        content_type=MD,
    ),
    "attachment": Expect(
        "0176180c7d19a925021fe446d241134d05c38e0d999cdc0f39c391d2377ed9d1",
        "18fac6371e4e53f1aeaf8a013155c166",
        BOB,
        Disposition.ATTACHMENT,
        ExternalPart,
        content_type="video/mp4",
    ),
    "conferencing": Expect(
        "01496d15a8dba28d7397f9868b70768e4a67f765d5b5b1ae9e03848c5fdeb0ba",
        "678ac6cd54de049c3e9665cd212470fa",
        ALICE,
        Disposition.SESSION,
        ExternalPart,
        content_type="",
    ),
    "multipart-1": Expect(
        "01da5a515ec5db42cc4dcc19b90c3c31245d8a1cfcce11318f24eb11dce0990e",
        "261c953e178af653fe3d42641b91d814",
        ALICE,
        Disposition.RENDER,
        MultiPart,
    ),
    "multipart-2": Expect(
        "01d65918c6c51c8e76546337276ae6f4bfd873d867d5cb57c76bcdca3d999dd7",
        "8528dc2d92e4f1944d62042907ab94d0",
        ALICE,
        Disposition.REACTION,
        MultiPart,
    ),
    "multipart-3": Expect(
        "01cfebeadbdb83c1eefb6403ba4852daf8bbbf9cd53bf5035a74d5d741950c9f",
        "b8362793168d18c049b882d4642a2274",
        ALICE,
        Disposition.RENDER,
        MultiPart,
    ),
}


def test_every_example_file_has_a_case() -> None:
    files = {p.stem for p in VECTORS.glob("*.cbor")} - {"implied-original"}
    assert files == set(EXAMPLES)


def _load(name: str) -> tuple[bytes, MimiContent]:
    data = (VECTORS / f"{name}.cbor").read_bytes()
    return data, decode(data)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_decodes_and_reencodes_byte_exactly(name: str) -> None:
    data, content = _load(name)
    assert content.encode() == data


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_fields_match_the_edn(name: str) -> None:
    expect = EXAMPLES[name]
    _, content = _load(name)
    assert content.salt.hex() == expect.salt
    assert content.sender_uri == expect.sender
    assert content.room_uri == ROOM
    assert content.extensions == ()
    assert content.replaces == (None if expect.replaces is None else bytes.fromhex(expect.replaces))
    assert content.in_reply_to == (
        None if expect.in_reply_to is None else bytes.fromhex(expect.in_reply_to)
    )
    assert content.body.disposition is expect.disposition
    assert type(content.body.part) is expect.kind
    if expect.content_type is not None:
        part = content.body.part
        assert isinstance(part, SinglePart | ExternalPart)
        assert part.content_type == expect.content_type
    if expect.content is not None:
        assert isinstance(content.body.part, SinglePart)
        assert content.body.part.content == expect.content


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_message_id_matches(name: str) -> None:
    data, content = _load(name)
    expected = bytes.fromhex(EXAMPLES[name].message_id)
    assert content.sender_uri is not None
    assert derive_message_id(content.sender_uri, ROOM, data, content.salt) == expected
    assert content.message_id(content.sender_uri, ROOM) == expected


def test_expiring_has_absolute_expiry() -> None:
    _, content = _load("expiring")
    assert content.expires == Expiration(relative=False, time=1644390004)
    assert content.topic_id == b""


def test_attachment_external_part_fields() -> None:
    _, content = _load("attachment")
    part = content.body.part
    assert isinstance(part, ExternalPart)
    assert content.body.language == "en"
    assert part.url == "https://example.com/storage/8ksB4bSrrRE.mp4"
    assert (part.expires, part.size, part.enc_alg, part.hash_alg) == (0, 708234961, 1, 1)
    assert part.key == bytes.fromhex("21399320958a6f4c745dde670d95e0d8")
    assert part.nonce == bytes.fromhex("c86cf2c33f21527d1dd76f5b")
    assert part.aad == b""
    assert part.content_hash == bytes.fromhex(
        "9ab17a8cf0890baaae7ee016c7312fcc080ba46498389458ee44f0276e783163"
    )
    assert (part.description, part.filename) == ("2 hours of key signing video", "bigfile.mp4")
    assert "21399320" not in repr(part)  # the file key stays out of reprs


def test_conferencing_session_part() -> None:
    _, content = _load("conferencing")
    part = content.body.part
    assert isinstance(part, ExternalPart)
    assert content.topic_id == b"Foo 118"
    assert part.url == "https://example.com/join/12345"
    assert (part.enc_alg, part.key, part.nonce, part.hash_alg) == (0, b"", b"", 0)
    assert part.description == "Join the Foo 118 conference"


def test_multipart_2_reactions() -> None:
    _, content = _load("multipart-2")
    part = content.body.part
    assert isinstance(part, MultiPart)
    assert part.semantics is PartSemantics.PROCESS_ALL
    contents = [p.part.content for p in part.parts if isinstance(p.part, SinglePart)]
    assert contents == [b"\xe2\x9d\xa4", b"\xf0\x9f\xa5\xb3", b"\xf0\x9f\xa4\x9e"]


def test_multipart_3_part_indexes_and_depth() -> None:
    # The partIndex comments of multipart-3.edn: 11 parts, depth first, nested 4 deep.
    _, content = _load("multipart-3")
    parts = content.body.walk()
    assert len(parts) == 11
    assert content.body.depth() == 4
    assert content.body.part.semantics is PartSemantics.CHOOSE_ONE  # type: ignore[union-attr]
    gif, png = parts[5].part, parts[10].part
    assert isinstance(gif, SinglePart) and gif.content_type == "image/gif"
    assert isinstance(png, SinglePart) and png.content_type == "image/png"
    assert parts[5].disposition is Disposition.INLINE
    assert [p.language for p in parts[3:5]] == ["en", "fr"]
    assert parts[3].part.content.startswith(b"<html><body><h1>Welcome!")  # type: ignore[union-attr]


def test_implied_original_derived_values() -> None:
    data = (VECTORS / "implied-original.cbor").read_bytes()
    derived = decode_derived(data)
    assert derived.encode() == data
    # The .cbor and .pretty carry an older id of the original message (the one the draft's own
    # hex dumps of the reply and reaction still show); only the .edn was updated to ORIGINAL_ID.
    stale = "01b0084467273cc43d6f0ebeac13eb84229c4fffe8f6c3594c905f47779e5a79"
    assert derived.message_id == bytes.fromhex(stale)
    assert derived.hub_accepted_timestamp == 1644387225019
    assert derived.mls_group_id == bytes.fromhex(
        "eeee0d12a7b5b5b78115ad1a1ddb13811c83fd7387c43e66799a594beeda26bf"
    )
    assert derived.sender_leaf_index == 4
    assert derived.sender_client_url == (
        "mimi://example.com/d/3b52249d-68f9-45ce-8bf5-c799f3cad7ec/0003"
    )
    assert (derived.sender_user_url, derived.room_url) == (ALICE, ROOM)
    # The original example's id, derived as the draft says, is the .edn's, not the stale one.
    original = (VECTORS / "original.cbor").read_bytes()
    derived_id = derive_message_id(ALICE, ROOM, original, decode(original).salt)
    assert derived_id == bytes.fromhex(ORIGINAL_ID) != derived.message_id
