"""C2SP signed notes, checkpoints and witness cosignatures.

Known-answer data: the PeterNeumann key and note of golang.org/x/mod/sumdb/note (the signed-note
reference implementation) and the example checkpoint of c2sp.org/tlog-cosignature.
"""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from doorless.errors import ConfigurationError, DecodeError, InvalidSignature, ValidationError
from doorless.kt.checkpoint import (
    Checkpoint,
    NoteSignature,
    NoteVerifier,
    SignatureType,
    SignedCheckpoint,
    SignedNote,
    cosign_checkpoint,
    ed25519_public_key,
    ed25519_verifier,
    key_id,
    sign_checkpoint,
    sign_note,
    verify_checkpoint,
    verify_signature,
)

# --- golang.org/x/mod/sumdb/note reference key and note ----------------------------------------

GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_SIG = (
    "\u2014 PeterNeumann "
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)


def go_seed() -> bytes:
    raw = base64.b64decode(GO_SKEY.split("+", 4)[4])  # the key material may contain "+"
    assert raw[0] == 1  # Ed25519
    return raw[1:]


def test_go_reference_note() -> None:
    verifier = NoteVerifier.from_vkey(GO_VKEY)
    assert verifier.name == "PeterNeumann"
    assert verifier.signature_type == SignatureType.ED25519
    assert verifier.key_id.hex() == "c74f20a3"
    assert verifier.vkey() == GO_VKEY
    assert ed25519_public_key(go_seed()) == verifier.public_key
    # Ed25519 is deterministic: our signature line is the published one, byte for byte.
    signature = sign_note(GO_TEXT, "PeterNeumann", go_seed())
    assert signature.line() == GO_SIG
    note = SignedNote.decode((GO_TEXT + "\n" + GO_SIG).encode())
    assert note == SignedNote(GO_TEXT, (signature,))
    assert note.encode() == (GO_TEXT + "\n" + GO_SIG).encode()
    assert verify_signature(note.text, note.signatures[0], verifier) is None
    with pytest.raises(InvalidSignature):
        verify_signature(GO_TEXT.replace("you", "we"), note.signatures[0], verifier)


@pytest.mark.parametrize(
    "vkey",
    [
        "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
        "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a3",
        "PeterNeumann+c74f20a3+!!!!",
    ],
    ids=["wrong-length", "unknown-type", "wrong-id", "space-in-name", "no-key", "not-base64"],
)
def test_bad_verifier_keys(vkey: str) -> None:
    with pytest.raises(DecodeError):
        NoteVerifier.from_vkey(vkey)


# --- c2sp.org/tlog-cosignature example ---------------------------------------------------------

C2SP_NOTE = (
    "example.com/behind-the-sofa\n"
    "20852163\n"
    "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    "\n"
    "\u2014 example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5"
    "/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
    "\u2014 witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dl"
    "rDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n"
)


def test_c2sp_example_checkpoint_parses() -> None:
    signed = SignedCheckpoint.decode(C2SP_NOTE.encode())
    cp = signed.checkpoint
    assert cp.origin == "example.com/behind-the-sofa"
    assert cp.size == 20852163
    assert cp.root == base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")
    assert cp.extensions == ()
    log_sig, cosig = signed.signatures
    assert len(log_sig.signature) == 64
    # The cosignature is u64 timestamp || Ed25519 signature; the spec's example says "time
    # 1679315147".
    assert len(cosig.signature) == 72
    assert int.from_bytes(cosig.signature[:8], "big") == 1679315147
    assert signed.encode() == C2SP_NOTE.encode()


# --- our own signing and verification ---------------------------------------------------------

LOG_SEED = hashlib.sha256(b"log key").digest()
WITNESS_SEEDS = [hashlib.sha256(b"witness %d" % i).digest() for i in range(3)]
ORIGIN = "doorless.example/kt"
LOG = NoteVerifier(ORIGIN, SignatureType.ED25519, ed25519_public_key(LOG_SEED))
WITNESSES = [
    NoteVerifier(f"w{i}.example", SignatureType.COSIGNATURE_V1, ed25519_public_key(seed))
    for i, seed in enumerate(WITNESS_SEEDS)
]
CHECKPOINT = Checkpoint(ORIGIN, 1234, bytes(range(32)))


def cosigned(n: int, timestamp: int = 1_700_000_000) -> SignedCheckpoint:
    signed = sign_checkpoint(CHECKPOINT, ORIGIN, LOG_SEED)
    for i in range(n):
        signed = cosign_checkpoint(signed, f"w{i}.example", WITNESS_SEEDS[i], timestamp + i)
    return signed


def test_checkpoint_text() -> None:
    root_b64 = base64.b64encode(bytes(range(32))).decode()
    assert CHECKPOINT.text() == f"{ORIGIN}\n1234\n{root_b64}\n"
    with_ext = Checkpoint(ORIGIN, 0, bytes(32), ("ext one",))
    assert with_ext.text().endswith("\next one\n")
    assert Checkpoint.from_text(with_ext.text()) == with_ext


def test_key_ids() -> None:
    pk = ed25519_public_key(LOG_SEED)
    assert key_id(ORIGIN, 1, pk) == hashlib.sha256(ORIGIN.encode() + b"\n\x01" + pk).digest()[:4]
    assert (
        WITNESSES[0].key_id
        == hashlib.sha256(b"w0.example\n\x04" + WITNESSES[0].public_key).digest()[:4]
    )


def test_cosignature_signed_message() -> None:
    signed = cosigned(1, timestamp=1679315147)
    cosig = signed.signatures[1]
    assert cosig.signature[:8] == (1679315147).to_bytes(8, "big")
    message = b"cosignature/v1\ntime 1679315147\n" + CHECKPOINT.text().encode()
    Ed25519PublicKey.from_public_bytes(WITNESSES[0].public_key).verify(cosig.signature[8:], message)


def test_verify_with_quorum() -> None:
    signed = SignedCheckpoint.decode(cosigned(3).encode())
    verified = verify_checkpoint(signed, LOG, WITNESSES, quorum=2)
    assert verified.checkpoint == CHECKPOINT
    assert verified.witnesses == (
        ("w0.example", 1_700_000_000),
        ("w1.example", 1_700_000_001),
        ("w2.example", 1_700_000_002),
    )
    verify_checkpoint(cosigned(2), LOG, WITNESSES, quorum=2)
    verify_checkpoint(cosigned(0), LOG)


def test_unknown_signatures_are_ignored() -> None:
    stranger = hashlib.sha256(b"stranger").digest()
    signed = cosign_checkpoint(cosigned(1), "stranger.example", stranger, 5)
    # a signature claiming a known name but with another key ID is unknown too
    impostor = cosign_checkpoint(signed, "w1.example", stranger, 5)
    assert verify_checkpoint(impostor, LOG, WITNESSES, quorum=1).witnesses == (
        ("w0.example", 1_700_000_000),
    )
    with pytest.raises(ValidationError):
        verify_checkpoint(impostor, LOG, WITNESSES, quorum=2)


def test_a_bad_known_signature_rejects_the_note() -> None:
    signed = cosigned(2)
    bad = NoteSignature(
        signed.signatures[2].name,
        signed.signatures[2].key_id,
        signed.signatures[2].signature[:8] + bytes(64),
    )
    tampered = SignedCheckpoint(CHECKPOINT, (*signed.signatures[:2], bad))
    with pytest.raises(InvalidSignature):
        verify_checkpoint(tampered, LOG, WITNESSES, quorum=1)
    # a witness timestamp changed after signing
    ts_changed = NoteSignature(
        bad.name, bad.key_id, (5).to_bytes(8, "big") + signed.signatures[2].signature[8:]
    )
    with pytest.raises(InvalidSignature):
        verify_checkpoint(
            SignedCheckpoint(CHECKPOINT, (*signed.signatures[:2], ts_changed)), LOG, WITNESSES
        )


def test_checkpoint_rejections() -> None:
    signed = cosigned(1)
    other = Checkpoint(ORIGIN, 1235, CHECKPOINT.root)
    with pytest.raises(InvalidSignature):  # a different checkpoint under the same signatures
        verify_checkpoint(SignedCheckpoint(other, signed.signatures), LOG, WITNESSES, quorum=1)
    with pytest.raises(InvalidSignature):  # the log's signature is missing
        verify_checkpoint(SignedCheckpoint(CHECKPOINT, signed.signatures[1:]), LOG, WITNESSES)
    with pytest.raises(ValidationError):  # too few witnesses
        verify_checkpoint(signed, LOG, WITNESSES, quorum=2)
    with pytest.raises(ValidationError):  # another log's checkpoint
        verify_checkpoint(signed, LOG, WITNESSES, origin="other.example/log")
    with pytest.raises(InvalidSignature):  # a log signature of the wrong length
        bad = NoteSignature(ORIGIN, LOG.key_id, b"\x00" * 10)
        verify_checkpoint(SignedCheckpoint(CHECKPOINT, (bad,)), LOG)


@pytest.mark.parametrize(
    "text",
    [
        "origin\n01\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",  # leading zero
        "origin\n-1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
        "origin\n1\nAAAA\n",  # root too short
        "origin\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB=\n",  # non-canonical base64
        "origin\n1\n",  # missing root
        "origin\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",  # no final newline
        "origin\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n",  # empty extension line
        "\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",  # empty origin
        "origin\n18446744073709551616\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",  # > u64
        "origin\t\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",  # control character
        "origin\n\u0661\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",  # non-ASCII digit
    ],
)
def test_malformed_checkpoint_text(text: str) -> None:
    with pytest.raises(DecodeError):
        Checkpoint.from_text(text)


@pytest.mark.parametrize(
    "note",
    [
        b"text\n",  # no signatures
        b"text\n\n",  # blank line but no signature
        b"text\n\n- name AAAAAAA=\n",  # hyphen, not em dash
        "text\n\n\u2014 name AAAA\n".encode(),  # signature shorter than key ID + 1
        "text\n\n\u2014 na+me AAAAAAA=\n".encode(),  # '+' in key name
        "text\n\n\u2014 name AAAAAAA= extra\n".encode(),
        "text\n\n\u2014 name AAAAAAA=".encode(),  # no final newline
        b"\xff\xfe\n\n",  # not UTF-8
    ],
)
def test_malformed_notes(note: bytes) -> None:
    with pytest.raises(DecodeError):
        SignedNote.decode(note)


# --- fuzz ----------------------------------------------------------------------------------------


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_signed_checkpoint_decoder_fuzz_bytes(data: bytes) -> None:
    try:
        signed = SignedCheckpoint.decode(data)
    except DecodeError:
        return
    assert signed.encode() == data


note_text = st.lists(
    st.sampled_from(
        ["origin", "0", "12", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "", "x y"]
    ),
    max_size=6,
)
sig_lines = st.lists(
    st.tuples(
        st.sampled_from(["\u2014 ", "- ", ""]),
        st.sampled_from(["n", "a+b", ""]),
        st.binary(max_size=80),
    ),
    max_size=3,
)


@settings(max_examples=300)
@given(note_text, sig_lines)
def test_signed_checkpoint_decoder_fuzz_structured(
    lines: list[str], sigs: list[tuple[str, str, bytes]]
) -> None:
    text = "".join(line + "\n" for line in lines) + "\n"
    text += "".join(f"{dash}{name} {base64.b64encode(raw).decode()}\n" for dash, name, raw in sigs)
    data = text.encode()
    try:
        signed = SignedCheckpoint.decode(data)
    except DecodeError:
        return
    assert signed.encode() == data


@settings(max_examples=300)
@given(
    st.one_of(
        st.text(max_size=80),
        st.builds(
            lambda name, kid, raw: f"{name}+{kid}+{base64.b64encode(raw).decode()}",
            st.text(max_size=10),
            st.sampled_from(["c74f20a3", "00000000", "zz"]),
            st.binary(max_size=40),
        ),
    )
)
def test_vkey_decoder_fuzz(vkey: str) -> None:
    try:
        verifier = NoteVerifier.from_vkey(vkey)
    except DecodeError:
        return
    assert verifier.vkey() == vkey


def test_a_configured_log_key_is_an_ed25519_verifier_key() -> None:
    assert ed25519_verifier(GO_VKEY, "the log key") == NoteVerifier.from_vkey(GO_VKEY)
    cosigner = NoteVerifier("w", SignatureType.COSIGNATURE_V1, ed25519_public_key(b"w" * 32))
    with pytest.raises(ConfigurationError, match=r"kt\.log_key must be an Ed25519"):
        ed25519_verifier(cosigner.vkey(), "kt.log_key")
    for junk in ("", "name+00000000+AAAA", GO_VKEY.replace("c74f20a3", "c74f20a4")):
        with pytest.raises(ConfigurationError, match="the log key is not a note verifier key"):
            ed25519_verifier(junk, "the log key")
