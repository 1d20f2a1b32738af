"""Message franking (invariant I7): round trip, every receiver and report check, HMAC key
ambiguity, a real AES-GCM "invisible salamander", key rotation and deletion, decoder fuzzing.

Expected values are computed independently of `doorless.franking`: byte layouts are written out
by hand, HMACs come from the standard library, signatures and AES-GCM from pyca directly.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import hashlib
import hmac
import importlib
import pkgutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from doorless import franking
from doorless.codec import decode, encode
from doorless.crypto import CipherSuiteId
from doorless.errors import (
    ConfigurationError,
    CryptoError,
    DecodeError,
    DecryptError,
    InvalidMac,
    InvalidSignature,
    StateError,
    ValidationError,
)
from doorless.franking import (
    AbuseReport,
    AttachmentDescriptor,
    AttachmentMismatch,
    FrankedContent,
    FrankingAAD,
    FrankingIntegrityTBS,
    FrankingKeyring,
    FrankingTagMismatch,
    FrankSuiteMismatch,
    GroupMismatch,
    InvalidFrankSignature,
    InvalidSalt,
    ReceivedFrank,
    ReportExpired,
    ReportReason,
    SafeAADItem,
    SenderIdentity,
    SenderMismatch,
    ServerFrank,
    ServerFrankingContext,
    ServerFrankMismatch,
    UnknownFrankingKey,
    frank_content,
    franking_tag,
    franking_tag_from_aad,
    make_report,
    open_attachment,
    seal_attachment,
    stamp,
    verify_received,
    verify_report,
)

# --- fixtures ----------------------------------------------------------------------------

ALICE = SenderIdentity(b"alice", b"phone")
MALLORY = SenderIdentity(b"mallory", b"laptop")
GROUP = b"group-1"
OTHER_GROUP = b"group-2"
SALT = bytes(range(16))
HMAC_KEY_0 = bytes([0xA0]) * 32
HMAC_KEY_1 = bytes([0xA1]) * 32
T0 = 1_700_000_000_000
DAY = 86_400_000
RETENTION = 30 * DAY
SERVER_SK = ed25519.Ed25519PrivateKey.from_private_bytes(bytes([7]) * 32)
SERVER_SK_RAW = SERVER_SK.private_bytes_raw()
SERVER_PK = SERVER_SK.public_key().public_bytes_raw()
ATTACKER_SK_RAW = bytes([9]) * 32
SUITE1 = int(CipherSuiteId.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519)


def content(**changes: Any) -> FrankedContent:
    base = FrankedContent(
        salt=SALT,
        sender=ALICE,
        group_id=GROUP,
        sent_at_ms=T0,
        media_type=b"text/plain;charset=utf-8",
        body=b"hello",
    )
    return dataclasses.replace(base, **changes)


def keyring() -> FrankingKeyring:
    return FrankingKeyring.create(HMAC_KEY_0, now_ms=T0, retention_ms=RETENTION)


def deliver(
    c: FrankedContent,
    ring: FrankingKeyring | None = None,
    *,
    server_sender: SenderIdentity = ALICE,
    group_id: bytes = GROUP,
    seq: int = 41,
) -> tuple[bytes, bytes, ServerFrank]:
    """Sender franks, server stamps: (application_data, authenticated_data, frank)."""
    msg = frank_content(c)
    frank = stamp(
        franking_tag_from_aad(msg.authenticated_data),
        sender=server_sender,
        group_id=group_id,
        accepted_at_ms=T0 + 5,
        server_seq=seq,
        keyring=ring or keyring(),
        signing_key=SERVER_SK_RAW,
    )
    return msg.application_data, msg.authenticated_data, frank


def receive(data: bytes, aad: bytes, frank: ServerFrank, **kw: Any) -> FrankedContent:
    args: dict[str, Any] = {
        "server_public_key": SERVER_PK,
        "mls_sender": ALICE,
        "group_id": GROUP,
    }
    args.update(kw)
    return verify_received(data, aad, frank, **args)


def check_report(report: AbuseReport, ring: FrankingKeyring | None = None, **kw: Any) -> Any:
    args: dict[str, Any] = {"server_public_key": SERVER_PK, "now_ms": T0 + DAY}
    args.update(kw)
    return verify_report(report, ring or keyring(), **args)


def raw_report(data: bytes, frank: ServerFrank) -> AbuseReport:
    """A report built without make_report's local checks (what an attacker can send)."""
    return AbuseReport(ReportReason.harassment, "", data, frank)


def _opaque(b: bytes) -> bytes:
    """Hand-written RFC 9420 §2.1.2 varint prefix (1 byte below 64, else 2 bytes)."""
    n = len(b)
    assert n < 0x4000
    return (bytes([n]) if n < 64 else bytes([0x40 | (n >> 8), n & 0xFF])) + b


# --- known answers -----------------------------------------------------------------------

EXPECTED_CONTENT = (
    b"\x01"  # version
    + _opaque(SALT)
    + _opaque(b"alice")
    + _opaque(b"phone")
    + _opaque(GROUP)
    + T0.to_bytes(8, "big")
    + _opaque(b"text/plain;charset=utf-8")
    + _opaque(b"hello")
    + b"\x00"  # no attachments
)


def test_franked_content_encoding_is_the_documented_layout() -> None:
    assert encode(content()) == EXPECTED_CONTENT
    assert decode(FrankedContent, EXPECTED_CONTENT) == content()


def test_tag_and_aad_known_answer() -> None:
    msg = frank_content(content())
    expected_tag = hmac.new(SALT, EXPECTED_CONTENT, hashlib.sha256).digest()
    assert msg.application_data == EXPECTED_CONTENT
    assert msg.franking_tag == expected_tag
    # SafeAAD: items<V> = 35 bytes; component 0x0020; aad_item_data<V> = 32 bytes of tag.
    assert msg.authenticated_data == bytes.fromhex("23002020") + expected_tag
    assert len(msg.authenticated_data) == 36


def test_server_frank_and_signature_known_answer() -> None:
    _, aad, frank = deliver(content())
    tag = aad[4:]
    context_bytes = (
        _opaque(b"alice") + _opaque(b"phone") + _opaque(GROUP)
        + (T0 + 5).to_bytes(8, "big") + (41).to_bytes(8, "big") + (0).to_bytes(4, "big")
    )  # fmt: skip
    assert frank.server_frank == hmac.new(HMAC_KEY_0, tag + context_bytes, hashlib.sha256).digest()
    tbs = tag + frank.server_frank + SUITE1.to_bytes(2, "big") + context_bytes
    label = b"MLS 1.0 Doorless FrankingIntegrityTBS"
    signed = _opaque(label) + _opaque(tbs)
    SERVER_SK.public_key().verify(frank.franking_integrity_signature, signed)  # pyca, raises
    sig = frank.franking_integrity_signature
    assert encode(frank) == (
        (T0 + 5).to_bytes(8, "big") + (41).to_bytes(8, "big") + bytes(4)
        + frank.server_frank + SUITE1.to_bytes(2, "big") + _opaque(sig)
    )  # fmt: skip


# --- round trip --------------------------------------------------------------------------


def test_round_trip_receive_report_verify() -> None:
    descriptor, _ = seal_attachment(b"cat picture", key=bytes(32), nonce=bytes(12))
    c = content(attachments=(descriptor,))
    data, aad, frank = deliver(c)
    assert receive(data, aad, frank) == c
    stored = decode(ReceivedFrank, encode(ReceivedFrank(data, aad, frank)))  # client store blob
    report = stored.report(ReportReason.spam, note="unsolicited ads ✉")
    assert report == make_report(data, aad, frank, ReportReason.spam, note="unsolicited ads ✉")
    wire = encode(report)
    assert decode(AbuseReport, wire) == report
    verified = check_report(decode(AbuseReport, wire), group_id=GROUP)
    assert verified.content == c
    assert verified.sender == ALICE
    assert verified.group_id == GROUP
    assert verified.reason is ReportReason.spam
    assert verified.note == "unsolicited ads ✉"
    assert verified.context == ServerFrankingContext(ALICE, GROUP, T0 + 5, 41, 0)
    assert verified.franking_tag == aad[4:]


def test_other_safe_aad_components_ride_along() -> None:
    extra = (SafeAADItem(0x0001, b"a"), SafeAADItem(0x0100, b"b"))
    msg = frank_content(content(), extra)
    items = decode(FrankingAAD, msg.authenticated_data).items()
    assert [i.component_id for i in items] == [0x0001, 0x0020, 0x0100]
    assert franking_tag_from_aad(msg.authenticated_data) == msg.franking_tag


# --- tampering ---------------------------------------------------------------------------

CONTENT_TAMPERS: dict[str, dict[str, Any]] = {
    "salt": {"salt": bytes(16)},
    "sender-user": {"sender": SenderIdentity(b"alicf", b"phone")},
    "sender-device": {"sender": SenderIdentity(b"alice", b"tablet")},
    "group": {"group_id": b"group-x"},
    "sent_at": {"sent_at_ms": T0 + 1},
    "media_type": {"media_type": b"text/html"},
    "body": {"body": b"hellO"},
    "attachments": {
        "attachments": (seal_attachment(b"x", key=bytes(32), nonce=bytes(12))[0],),
    },
}


@pytest.mark.parametrize("changes", CONTENT_TAMPERS.values(), ids=CONTENT_TAMPERS.keys())
def test_tampered_content_fails_receiver_and_report(changes: dict[str, Any]) -> None:
    _, aad, frank = deliver(content())
    forged = encode(content(**changes))
    with pytest.raises(FrankingTagMismatch):
        receive(forged, aad, frank)
    with pytest.raises(FrankingTagMismatch):
        make_report(forged, aad, frank, ReportReason.spam)
    # Sent to the server anyway: the server's HMAC was over the original tag.
    with pytest.raises(ServerFrankMismatch):
        check_report(raw_report(forged, frank))


def test_tampered_content_byte_flips_never_verify() -> None:
    data, aad, frank = deliver(content())
    for i in range(len(data)):
        flipped = data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :]
        with pytest.raises((DecodeError, ValidationError, CryptoError)):
            receive(flipped, aad, frank)
        with pytest.raises((DecodeError, ValidationError, CryptoError)):
            check_report(raw_report(flipped, frank))


@pytest.mark.parametrize("index", [4, 20, 35])
def test_tampered_tag_fails(index: int) -> None:
    data, aad, frank = deliver(content())
    bad = aad[:index] + bytes([aad[index] ^ 0x80]) + aad[index + 1 :]
    with pytest.raises(FrankingTagMismatch):
        receive(data, bad, frank)
    with pytest.raises(FrankingTagMismatch):
        make_report(data, bad, frank, ReportReason.spam)


def _flip(b: bytes) -> bytes:
    return bytes([b[0] ^ 0x01]) + b[1:]


FRANK_TAMPERS: dict[str, Callable[[ServerFrank], ServerFrank]] = {
    "accepted_at": lambda f: dataclasses.replace(f, accepted_at_ms=f.accepted_at_ms + 1),
    "server_seq": lambda f: dataclasses.replace(f, server_seq=f.server_seq + 1),
    "key_id": lambda f: dataclasses.replace(f, key_id=1),
    "server_frank": lambda f: dataclasses.replace(f, server_frank=_flip(f.server_frank)),
    "signature": lambda f: dataclasses.replace(
        f, franking_integrity_signature=_flip(f.franking_integrity_signature)
    ),
    "signature-truncated": lambda f: dataclasses.replace(
        f, franking_integrity_signature=f.franking_integrity_signature[:-1]
    ),
}


@pytest.mark.parametrize("tamper", FRANK_TAMPERS.values(), ids=FRANK_TAMPERS.keys())
def test_tampered_frank_fails_receiver_and_report(
    tamper: Callable[[ServerFrank], ServerFrank],
) -> None:
    # Key 1 exists in this keyring, so a changed key id is checked with a real (wrong) key.
    ring = keyring().rotate(HMAC_KEY_1, now_ms=T0 + DAY)
    data, aad, frank = deliver(content(), keyring())
    bad = tamper(frank)
    with pytest.raises(InvalidFrankSignature):
        receive(data, aad, bad)
    with pytest.raises((ServerFrankMismatch, InvalidFrankSignature)):
        check_report(raw_report(data, bad), ring)


def test_signature_suite_must_be_the_pinned_one() -> None:
    data, aad, frank = deliver(content())
    other = dataclasses.replace(frank, franking_signature_ciphersuite=3)
    with pytest.raises(FrankSuiteMismatch):
        receive(data, aad, other)
    with pytest.raises(FrankSuiteMismatch):
        receive(data, aad, frank, signature_suite=3)
    with pytest.raises(FrankSuiteMismatch):
        check_report(raw_report(data, other))


def test_wrong_server_key_fails() -> None:
    data, aad, frank = deliver(content())
    other_pk = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(32)).public_key()
    with pytest.raises(InvalidFrankSignature):
        receive(data, aad, frank, server_public_key=other_pk.public_bytes_raw())
    with pytest.raises(InvalidFrankSignature):
        receive(data, aad, frank, server_public_key=b"\x01" * 5)  # malformed key


@pytest.mark.parametrize(
    "aad",
    [b"", b"\x00", bytes.fromhex("03000100"), bytes.fromhex("22002020") + bytes(31)],
    ids=["empty", "no-items", "other-component-only", "short-tag"],
)
def test_unfranked_message_is_rejected(aad: bytes) -> None:
    data, _, frank = deliver(content())
    with pytest.raises(DecodeError):
        receive(data, aad, frank)


# --- salt length and HMAC key ambiguity --------------------------------------------------


def _ambiguous_twin(salt: bytes) -> bytes:
    """An HMAC key that gives the same MAC as ``salt`` (RFC 2104 key padding / hashing)."""
    if len(salt) > 64:
        return hashlib.sha256(salt).digest()
    return salt + b"\x00"


@pytest.mark.parametrize("length", [0, 15, 17, 32, 65])
def test_salt_length_other_than_16_is_rejected(length: int) -> None:
    salt = bytes(range(1, length + 1))
    # Why the rule exists: the salt has a twin key with the same HMAC.
    twin = _ambiguous_twin(salt)
    assert hmac.new(salt, b"m", hashlib.sha256).digest() == hmac.new(twin, b"m", "sha256").digest()

    c = content(salt=salt)
    data = encode(c)
    tag = hmac.new(salt, data, hashlib.sha256).digest()  # an honest HMAC over the bad salt
    aad = encode(FrankingAAD(tag))
    frank = stamp(
        tag,
        sender=ALICE,
        group_id=GROUP,
        accepted_at_ms=T0,
        server_seq=1,
        keyring=keyring(),
        signing_key=SERVER_SK_RAW,
    )
    with pytest.raises(InvalidSalt) as info:
        receive(data, aad, frank)
    assert info.value.rule == "FRANK-1"
    with pytest.raises(InvalidSalt):
        make_report(data, aad, frank, ReportReason.spam)
    with pytest.raises(InvalidSalt):
        check_report(raw_report(data, frank))
    with pytest.raises(InvalidSalt):
        franking_tag(salt, data)
    with pytest.raises(ConfigurationError):
        frank_content(c)


# --- sender, group, moved franks ---------------------------------------------------------


def test_spoofed_sender_in_content_is_dropped() -> None:
    # Mallory, authenticated as herself by MLS and the server, claims to be Alice.
    data, aad, frank = deliver(content(sender=ALICE), server_sender=MALLORY)
    with pytest.raises(SenderMismatch) as info:
        receive(data, aad, frank, mls_sender=MALLORY)
    assert info.value.rule == "FRANK-3"


def test_sender_not_the_one_the_server_authenticated_is_dropped() -> None:
    # Content and MLS say Alice (e.g. Mallory holds a stolen Alice leaf key), but the server
    # authenticated Mallory's session: the signature over the context does not verify.
    data, aad, frank = deliver(content(sender=ALICE), server_sender=MALLORY)
    with pytest.raises(InvalidFrankSignature):
        receive(data, aad, frank)
    with pytest.raises(ServerFrankMismatch):
        check_report(raw_report(data, frank))


def test_content_naming_another_group_is_dropped() -> None:
    data, aad, frank = deliver(content(group_id=OTHER_GROUP))
    with pytest.raises(GroupMismatch) as info:
        receive(data, aad, frank)
    assert info.value.rule == "FRANK-4"


def test_frank_moved_to_another_message_fails() -> None:
    _, _, frank_a = deliver(content(body=b"first"))
    data_b, aad_b, _ = deliver(content(body=b"second"))
    with pytest.raises(InvalidFrankSignature):
        receive(data_b, aad_b, frank_a)
    with pytest.raises(ServerFrankMismatch):
        check_report(raw_report(data_b, frank_a))


def test_frank_moved_to_another_group_fails() -> None:
    _, _, frank_g1 = deliver(content(group_id=GROUP), group_id=GROUP)
    c2 = content(group_id=OTHER_GROUP)
    data_g2, aad_g2, _ = deliver(c2, group_id=OTHER_GROUP)
    with pytest.raises(InvalidFrankSignature):
        receive(data_g2, aad_g2, frank_g1, group_id=OTHER_GROUP)
    with pytest.raises(ServerFrankMismatch):
        check_report(raw_report(data_g2, frank_g1))


def test_report_filed_under_another_group_fails() -> None:
    data, aad, frank = deliver(content())
    report = make_report(data, aad, frank, ReportReason.spam)
    with pytest.raises(GroupMismatch):
        check_report(report, group_id=OTHER_GROUP)


# --- forged reports ----------------------------------------------------------------------


def test_forged_report_without_server_key_is_rejected() -> None:
    # The forger franks a message Alice never sent and stamps it with its own HMAC key; it even
    # holds the server's signing key, so only the HMAC stands between it and a valid report.
    forger_ring = FrankingKeyring.create(bytes([0xEE]) * 32, now_ms=T0, retention_ms=RETENTION)
    data, aad, frank = deliver(content(body=b"words alice never wrote"), forger_ring)
    assert receive(data, aad, frank) is not None  # signature valid: the signing key leaked
    with pytest.raises(ServerFrankMismatch):
        check_report(make_report(data, aad, frank, ReportReason.threat))


def test_forged_report_with_random_frank_is_rejected() -> None:
    data, aad, _ = deliver(content())
    tag = aad[4:]
    context = ServerFrankingContext(ALICE, GROUP, T0, 1, 0)
    fake = hmac.new(b"guess" * 8, tag, hashlib.sha256).digest()
    tbs = FrankingIntegrityTBS(tag, fake, SUITE1, context)
    sig = ed25519.Ed25519PrivateKey.from_private_bytes(ATTACKER_SK_RAW).sign(encode(tbs))
    with pytest.raises(ServerFrankMismatch):
        check_report(raw_report(data, ServerFrank(T0, 1, 0, fake, SUITE1, sig)))


def test_forged_report_with_unissued_key_id_is_rejected() -> None:
    data, _, frank = deliver(content())
    with pytest.raises(UnknownFrankingKey) as info:
        check_report(raw_report(data, dataclasses.replace(frank, key_id=77)))
    assert info.value.rule == "FRANK-7"


# --- key rotation, retention and deletion ------------------------------------------------


def test_rotation_stamps_with_new_key_and_old_reports_still_verify() -> None:
    ring0 = keyring()
    data0, aad0, frank0 = deliver(content(body=b"old"), ring0)
    ring1 = ring0.rotate(HMAC_KEY_1, now_ms=T0 + 7 * DAY)
    data1, aad1, frank1 = deliver(content(body=b"new"), ring1)
    assert (frank0.key_id, frank1.key_id) == (0, 1)
    assert ring1.current.key_id == 1
    for data, aad, frank in ((data0, aad0, frank0), (data1, aad1, frank1)):
        report = make_report(data, aad, frank, ReportReason.spam)
        assert check_report(report, ring1, now_ms=T0 + 8 * DAY).content.body in {b"old", b"new"}
    assert ring1.verifiable_until_ms(0) == T0 + 7 * DAY + RETENTION
    assert ring1.verifiable_until_ms(1) is None


def test_reports_fail_as_documented_after_franking_key_deletion() -> None:
    data, aad, frank = deliver(content(), keyring())
    report = make_report(data, aad, frank, ReportReason.harassment)
    rotated_at = T0 + 7 * DAY
    ring = keyring().rotate(HMAC_KEY_1, now_ms=rotated_at)
    deadline = rotated_at + RETENTION
    # Still within retention: verifies.
    assert check_report(report, ring, now_ms=deadline - 1).sender == ALICE
    # Retention over, key not yet purged: already expired (the deadline is enforced by time).
    with pytest.raises(ReportExpired) as info:
        check_report(report, ring, now_ms=deadline)
    assert info.value.rule == "FRANK-7"
    # Purged by expire(): the key is gone and the report fails the same way.
    purged = ring.expire(deadline)
    assert [k.key_id for k in purged.keys] == [1]
    assert purged.verifiable_until_ms(0) == 0
    with pytest.raises(ReportExpired):
        check_report(report, purged, now_ms=deadline)
    # Explicit deletion (e.g. compromise) before the deadline.
    with pytest.raises(ReportExpired):
        check_report(report, ring.delete(0), now_ms=rotated_at + 1)
    # Receivers still verify the stored frank's signature: only reporting ends.
    assert receive(data, aad, frank) is not None


def test_keyring_rules() -> None:
    ring = keyring()
    with pytest.raises(StateError):
        ring.delete(0)  # the current key
    assert ring.expire(T0 + 10 * RETENTION) == ring  # the current key never expires
    with pytest.raises(ConfigurationError):
        FrankingKeyring.create(bytes(31), now_ms=T0, retention_ms=RETENTION)
    with pytest.raises(ConfigurationError):
        FrankingKeyring(RETENTION, 0, ())
    rotated = ring.rotate(HMAC_KEY_1, now_ms=T0 + 1)
    with pytest.raises(ConfigurationError):
        FrankingKeyring(RETENTION, 0, tuple(reversed(rotated.keys)))
    last = FrankingKeyring.create(HMAC_KEY_0, now_ms=T0, retention_ms=1, key_id=2**32 - 1)
    with pytest.raises(StateError):
        last.rotate(HMAC_KEY_1, now_ms=T0 + 1)
    with pytest.raises(UnknownFrankingKey):
        rotated.key_for_report(2, T0)  # not issued yet


# --- attachments and the invisible salamander --------------------------------------------


def test_attachment_round_trip_and_checks() -> None:
    key, nonce = bytes(range(32)), bytes(range(12))
    desc, ct = seal_attachment(b"holiday.jpg bytes", key=key, nonce=nonce, locator=b"blob/1")
    # Independent expectation from pyca AES-256-GCM.
    assert ct == AESGCM(key).encrypt(nonce, b"holiday.jpg bytes", b"")
    assert desc.plaintext_sha256 == hashlib.sha256(b"holiday.jpg bytes").digest()
    assert desc.ciphertext_sha256 == hashlib.sha256(ct).digest()
    assert open_attachment(desc, ct) == b"holiday.jpg bytes"
    with pytest.raises(AttachmentMismatch):
        open_attachment(desc, _flip(ct))
    with pytest.raises(DecryptError):
        open_attachment(dataclasses.replace(desc, key=bytes(32)), ct)
    with pytest.raises(AttachmentMismatch):
        open_attachment(dataclasses.replace(desc, size=desc.size + 1), ct)
    with pytest.raises(AttachmentMismatch):
        open_attachment(dataclasses.replace(desc, plaintext_sha256=bytes(32)), ct)


# GF(2^128) arithmetic of GCM (NIST SP 800-38D §6.3), for building the fixture only.
_R = 0xE1 << 120


def _gf_mul(x: int, y: int) -> int:
    z, v = 0, y
    for i in range(127, -1, -1):
        if (x >> i) & 1:
            z ^= v
        v = (v >> 1) ^ _R if v & 1 else v >> 1
    return z


def _gf_pow(x: int, n: int) -> int:
    result = 1 << 127  # the field's 1 in GCM bit order
    while n:
        if n & 1:
            result = _gf_mul(result, x)
        x = _gf_mul(x, x)
        n >>= 1
    return result


def _gf_inv(x: int) -> int:
    return _gf_pow(x, (1 << 128) - 2)


def _aes_block(key: bytes, block: bytes) -> int:
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return int.from_bytes(enc.update(block) + enc.finalize(), "big")


def _blocks(data: bytes) -> list[int]:
    return [int.from_bytes(data[i : i + 16], "big") for i in range(0, len(data), 16)]


def build_salamander(
    k1: bytes, k2: bytes, nonce: bytes, benign: bytes, abusive: bytes
) -> tuple[bytes, bytes, bytes]:
    """One AES-GCM ciphertext (with tag) valid under both keys (DGRW18, "invisible salamanders").

    The ciphertext is ``benign`` encrypted under k1, one free block, then ``abusive`` encrypted
    under k2. With empty AAD, tag_k = sum_j C_j H_k^(m-j+2) + L H_k + E_k(J0); the free block
    is solved so tag_k1 == tag_k2. Returns (ciphertext_with_tag, plaintext_k1, plaintext_k2).
    """
    assert len(benign) % 16 == 0 and len(abusive) % 16 == 0
    m = len(benign) // 16 + 1 + len(abusive) // 16
    free = len(benign) // 16  # 0-based index of the solved block
    stream1 = _blocks(AESGCM(k1).encrypt(nonce, bytes(16 * m), b"")[:-16])
    stream2 = _blocks(AESGCM(k2).encrypt(nonce, bytes(16 * m), b"")[:-16])
    c = [p ^ s for p, s in zip(_blocks(benign), stream1, strict=False)]
    c.append(0)
    c += [p ^ s for p, s in zip(_blocks(abusive), stream2[free + 1 :], strict=True)]
    h1, h2 = _aes_block(k1, bytes(16)), _aes_block(k2, bytes(16))
    j0 = nonce + b"\x00\x00\x00\x01"
    e1, e2 = _aes_block(k1, j0), _aes_block(k2, j0)
    length_block = (16 * m * 8).to_bytes(16, "big")  # len(A) = 0 || len(C) in bits
    acc = _gf_mul(int.from_bytes(length_block, "big"), h1 ^ h2) ^ e1 ^ e2
    for j, cj in enumerate(c):
        if j != free:
            e = m - j + 1  # block j (0-based) is multiplied by H^(m - j + 1)
            acc ^= _gf_mul(cj, _gf_pow(h1, e) ^ _gf_pow(h2, e))
    e = m - free + 1
    c[free] = _gf_mul(acc, _gf_inv(_gf_pow(h1, e) ^ _gf_pow(h2, e)))
    ct = b"".join(x.to_bytes(16, "big") for x in c)
    p1 = bytes(
        a ^ b for a, b in zip(ct, b"".join(s.to_bytes(16, "big") for s in stream1), strict=True)
    )
    p2 = bytes(
        a ^ b for a, b in zip(ct, b"".join(s.to_bytes(16, "big") for s in stream2), strict=True)
    )
    tag = AESGCM(k1).encrypt(nonce, p1, b"")[-16:]
    return ct + tag, p1, p2


K_BENIGN = bytes([0x11]) * 32
K_ABUSIVE = bytes([0x22]) * 32
NONCE = bytes([0x33]) * 12


@pytest.fixture(scope="module")
def salamander() -> tuple[bytes, bytes, bytes]:
    return build_salamander(
        K_BENIGN,
        K_ABUSIVE,
        NONCE,
        b"A picture of a cat, nothing to see ..".ljust(48, b"."),
        b"ABUSIVE CONTENT the sender wants to hide".ljust(48, b"!"),
    )


def test_salamander_fixture_really_opens_under_both_keys(
    salamander: tuple[bytes, bytes, bytes],
) -> None:
    ct, p1, p2 = salamander
    assert AESGCM(K_BENIGN).decrypt(NONCE, ct, b"") == p1  # pyca accepts the tag under k1
    assert AESGCM(K_ABUSIVE).decrypt(NONCE, ct, b"") == p2  # ... and under k2
    assert p1 != p2
    assert p1.startswith(b"A picture of a cat")
    assert p2.endswith(b"ABUSIVE CONTENT the sender wants to hide".ljust(48, b"!"))


def test_salamander_is_rejected(salamander: tuple[bytes, bytes, bytes]) -> None:
    ct, p1, p2 = salamander
    committed = AttachmentDescriptor(
        locator=b"blob/9",
        media_type=b"image/jpeg",
        key=K_BENIGN,
        nonce=NONCE,
        ciphertext_sha256=hashlib.sha256(ct).digest(),
        plaintext_sha256=hashlib.sha256(p1).digest(),
        size=len(p1),
    )
    # The honest opening is what both the receiver and a report see.
    assert open_attachment(committed, ct) == p1
    # Opening the same ciphertext (same hash) with the other key: AES-GCM accepts it, the
    # plaintext-hash commitment does not. So a recipient can never be shown p2 while the franked
    # content (and thus a report) says p1, nor the other way round.
    with pytest.raises(AttachmentMismatch) as info:
        open_attachment(dataclasses.replace(committed, key=K_ABUSIVE), ct)
    assert info.value.rule == "FRANK-8"
    abusive_commit = dataclasses.replace(committed, plaintext_sha256=hashlib.sha256(p2).digest())
    with pytest.raises(AttachmentMismatch):
        open_attachment(abusive_commit, ct)  # opens under its key to p1, not p2
    # The key sits inside the franked content, so a report cannot swap it either.
    data, aad, frank = deliver(content(attachments=(committed,)))
    swapped = encode(content(attachments=(dataclasses.replace(committed, key=K_ABUSIVE),)))
    with pytest.raises(FrankingTagMismatch):
        receive(swapped, aad, frank)
    verified = check_report(make_report(data, aad, frank, ReportReason.sexual_content))
    assert open_attachment(verified.content.attachments[0], ct) == p1


# --- hygiene -----------------------------------------------------------------------------


def test_secrets_and_plaintext_stay_out_of_reprs() -> None:
    desc, _ = seal_attachment(b"x", key=bytes([0xAB]) * 32, nonce=bytes(12))
    c = content(body=b"canary-body-7f3a", attachments=(desc,))
    data, aad, frank = deliver(c)
    texts = [
        repr(c),
        repr(desc),
        repr(keyring()),
        repr(frank_content(c)),
        repr(ReceivedFrank(data, aad, frank)),
        repr(make_report(data, aad, frank, ReportReason.spam, note="canary-note")),
        repr(check_report(make_report(data, aad, frank, ReportReason.spam))),
    ]
    for text in texts:
        assert "canary" not in text
        assert SALT.hex() not in text
        assert "\\xab" not in text
        assert HMAC_KEY_0.hex() not in text and "\\xa0" not in text


def test_every_franking_error_is_a_remote_validation_or_crypto_error() -> None:
    for error in (
        InvalidSalt,
        FrankingTagMismatch,
        SenderMismatch,
        GroupMismatch,
        FrankSuiteMismatch,
        InvalidFrankSignature,
        ServerFrankMismatch,
        UnknownFrankingKey,
        ReportExpired,
        AttachmentMismatch,
    ):
        assert issubclass(error, (ValidationError, CryptoError)), error
    assert issubclass(FrankingTagMismatch, InvalidMac)
    assert issubclass(InvalidFrankSignature, InvalidSignature)


# --- decoders: fuzz and round trips ------------------------------------------------------

DECODER_NAMES = sorted(franking.DECODERS)


@pytest.mark.parametrize("name", DECODER_NAMES)
@given(data=st.binary(max_size=300))
def test_decoders_accept_or_raise_decode_error(name: str, data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        franking.DECODERS[name](data)


def _valid_encodings() -> dict[str, bytes]:
    desc, _ = seal_attachment(b"att", key=bytes(32), nonce=bytes(12), locator=b"l")
    c = content(attachments=(desc,))
    data, aad, frank = deliver(c)
    report = make_report(data, aad, frank, ReportReason.other, note="n")
    ctx = frank.context(ALICE, GROUP)
    return {
        "SenderIdentity": encode(ALICE),
        "AttachmentDescriptor": encode(desc),
        "FrankedContent": data,
        "SafeAADItem": encode(SafeAADItem(0x20, b"x")),
        "FrankingAAD": encode(FrankingAAD(aad[4:], (SafeAADItem(1, b"a"),))),
        "ServerFrankingContext": encode(ctx),
        "FrankingIntegrityTBS": encode(FrankingIntegrityTBS(aad[4:], frank.server_frank, 1, ctx)),
        "ServerFrank": encode(frank),
        "AbuseReport": encode(report),
        "ReceivedFrank": encode(ReceivedFrank(data, aad, frank)),
    }


VALID = _valid_encodings()


@pytest.mark.parametrize("name", DECODER_NAMES)
@given(draw=st.data())
def test_decoders_on_mutated_valid_encodings(name: str, draw: st.DataObject) -> None:
    data = bytearray(VALID[name])
    for _ in range(draw.draw(st.integers(1, 4))):
        i = draw.draw(st.integers(0, len(data) - 1))
        data[i] = draw.draw(st.integers(0, 255))
    cut = draw.draw(st.integers(0, len(data)))
    try:
        value = franking.DECODERS[name](bytes(data[:cut]))
    except DecodeError:
        return
    assert encode(value) == bytes(data[:cut])  # type: ignore[arg-type]


@pytest.mark.parametrize("name", DECODER_NAMES)
def test_valid_encodings_round_trip_byte_exactly(name: str) -> None:
    value = franking.DECODERS[name](VALID[name])
    assert encode(value) == VALID[name]  # type: ignore[arg-type]


_bytes = st.binary(max_size=40)
_u64 = st.integers(0, 2**64 - 1)
_senders = st.builds(SenderIdentity, _bytes, _bytes)
_descriptors = st.builds(
    AttachmentDescriptor,
    locator=_bytes,
    media_type=_bytes,
    key=st.binary(min_size=32, max_size=32),
    nonce=st.binary(min_size=12, max_size=12),
    ciphertext_sha256=st.binary(min_size=32, max_size=32),
    plaintext_sha256=st.binary(min_size=32, max_size=32),
    size=_u64,
)
_contents = st.builds(
    FrankedContent,
    salt=_bytes,
    sender=_senders,
    group_id=_bytes,
    sent_at_ms=_u64,
    media_type=_bytes,
    body=st.binary(max_size=200),
    attachments=st.lists(_descriptors, max_size=3).map(tuple),
)
_aads = st.builds(
    FrankingAAD,
    franking_tag=st.binary(min_size=32, max_size=32),
    other_items=st.dictionaries(
        st.integers(0, 0xFFFF).filter(lambda i: i != 0x20), _bytes, max_size=3
    ).map(lambda d: tuple(SafeAADItem(k, v) for k, v in d.items())),
)
_franks = st.builds(
    ServerFrank,
    accepted_at_ms=_u64,
    server_seq=_u64,
    key_id=st.integers(0, 2**32 - 1),
    server_frank=st.binary(min_size=32, max_size=32),
    franking_signature_ciphersuite=st.integers(0, 0xFFFF),
    franking_integrity_signature=st.binary(max_size=80),
)
_reports = st.builds(
    AbuseReport,
    reason=st.sampled_from(ReportReason),
    note=st.text(max_size=30),
    franked_content=st.binary(max_size=100),
    frank=_franks,
)
_contexts = st.builds(
    ServerFrankingContext, _senders, _bytes, _u64, _u64, st.integers(0, 2**32 - 1)
)

ROUND_TRIPS: dict[str, tuple[type[Any], st.SearchStrategy[Any]]] = {
    "SenderIdentity": (SenderIdentity, _senders),
    "AttachmentDescriptor": (AttachmentDescriptor, _descriptors),
    "FrankedContent": (FrankedContent, _contents),
    "FrankingAAD": (FrankingAAD, _aads),
    "ServerFrankingContext": (ServerFrankingContext, _contexts),
    "ServerFrank": (ServerFrank, _franks),
    "AbuseReport": (AbuseReport, _reports),
    "ReceivedFrank": (ReceivedFrank, st.builds(ReceivedFrank, _bytes, _bytes, _franks)),
}


@pytest.mark.parametrize("name", sorted(ROUND_TRIPS))
@settings(max_examples=60, deadline=None)
@given(draw=st.data())
def test_structs_round_trip(name: str, draw: st.DataObject) -> None:
    cls, strategy = ROUND_TRIPS[name]
    value = draw.draw(strategy)
    wire = encode(value)
    assert decode(cls, wire) == value
    assert encode(decode(cls, wire)) == wire


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("FrankedContent", b"\x02" + EXPECTED_CONTENT[1:]),
        (
            "FrankingAAD",
            bytes.fromhex("08") + bytes.fromhex("0100 01 61") + bytes.fromhex("0001 01 62"),
        ),
        ("FrankingAAD", bytes.fromhex("48") + (bytes.fromhex("002020") + bytes(32)) * 2),
        ("AbuseReport", b"\x00" + VALID["AbuseReport"][1:]),
        ("AbuseReport", b"\x01\x01\xff" + VALID["AbuseReport"][3:]),
        ("FrankedContent", EXPECTED_CONTENT + b"\x00"),
    ],
    ids=[
        "content-version-2",
        "aad-unsorted",
        "aad-duplicate-frank",
        "report-reason-0",
        "report-note-not-utf8",
        "content-trailing-byte",
    ],
)
def test_decoder_rejections(name: str, data: bytes) -> None:
    with pytest.raises(DecodeError):
        franking.DECODERS[name](data)


# --- package layout ------------------------------------------------------------------------


def _franking_modules() -> list[Any]:
    return [
        importlib.import_module(f"doorless.franking.{info.name}")
        for info in pkgutil.iter_modules(franking.__path__)
    ]


def test_package_parts_are_documented_pure_and_small() -> None:
    """Each part says what it owns and cites the design; none does I/O, reads a clock or draws
    randomness (those are parameters); none grows past ~800 lines."""
    impure = {"os", "time", "random", "secrets", "socket", "asyncio", "datetime", "pathlib"}
    modules = _franking_modules()
    assert len(modules) >= 7
    for module in [franking, *modules]:
        assert "docs/franking.md" in (module.__doc__ or ""), module.__name__
        source = Path(module.__file__).read_text()
        assert len(source.splitlines()) <= 800, module.__name__
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                roots = {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module is not None:
                roots = {node.module.split(".")[0]}
            else:
                continue
            assert not roots & impure, (module.__name__, roots & impure)


def test_public_names_are_exported_once_from_the_package() -> None:
    assert len(set(franking.__all__)) == len(franking.__all__)
    for name in franking.__all__:
        obj = getattr(franking, name)
        home = getattr(obj, "__module__", None)
        if isinstance(obj, type) or callable(obj):
            assert home is not None and home.startswith("doorless.franking."), name
