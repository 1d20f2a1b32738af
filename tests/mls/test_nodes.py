"""UpdatePathNode's ciphertext vector decoded on access (`ReceivedCiphertexts`, RFC 9420 §7.6):
the same items, the same bytes and the same `DecodeError`s as decoding it eagerly."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from doorless.codec import Reader, Writer, decode, encode, push_struct
from doorless.errors import DecodeError
from doorless.mls.nodes import HPKECiphertext, ReceivedCiphertexts, UpdatePathNode


def vector(items: list[HPKECiphertext]) -> bytes:
    """The content of ``HPKECiphertext encrypted_path_secret<V>`` (without its length)."""
    w = Writer()
    for item in items:
        item.push(w)
    return w.getvalue()


def eager(data: bytes) -> list[HPKECiphertext]:
    r = Reader(data)
    out = []
    while not r.eof():
        out.append(HPKECiphertext.pull(r))
    return out


def uniform(n: int, kem: int = 32, ct: int = 48) -> list[HPKECiphertext]:
    return [HPKECiphertext(bytes([i % 256]) * kem, bytes([i % 7]) * ct) for i in range(n)]


@pytest.mark.parametrize(
    ("n", "kem", "ct"),
    [(0, 32, 48), (1, 32, 48), (5000, 32, 48), (3, 0, 0), (4, 100, 20000), (2, 65, 97)],
)
def test_uniform_vectors(n: int, kem: int, ct: int) -> None:
    items = uniform(n, kem, ct)
    lazy = ReceivedCiphertexts(vector(items))
    assert len(lazy) == n
    assert list(lazy) == items
    assert lazy == tuple(items)
    if n:
        assert lazy[n - 1] == items[-1]
        assert lazy[-1] == items[-1]
        assert lazy[n // 2] == items[n // 2]
        with pytest.raises(IndexError):
            lazy[n]
    assert lazy.encoded == vector(items)
    assert lazy != vector(items)  # a vector of ciphertexts is not its bytes


def test_mixed_sizes_take_the_walk() -> None:
    items = [*uniform(3), HPKECiphertext(b"k" * 32, b"c" * 47), *uniform(2)]
    lazy = ReceivedCiphertexts(vector(items))
    assert list(lazy) == items
    assert len(lazy) == 6
    assert lazy[3] == items[3]


@pytest.mark.parametrize(
    "data",
    [
        vector(uniform(4))[:-1],  # truncated last item
        vector(uniform(4)) + b"\x01",  # a trailing partial item
        b"\x20" + b"k" * 32 + b"\x40\x01",  # non-minimal varint length
        b"\xc0\x00",  # reserved varint prefix
        vector(uniform(2)) + b"\x20" + b"k" * 31,  # same prefix, short body: not a stride
    ],
    ids=["truncated", "trailing", "non-minimal", "reserved-prefix", "short-last"],
)
def test_malformed_vectors_fail_when_received(data: bytes) -> None:
    with pytest.raises(DecodeError):
        eager(data)
    with pytest.raises(DecodeError):
        ReceivedCiphertexts(data)


@given(
    st.lists(st.builds(HPKECiphertext, st.binary(max_size=80), st.binary(max_size=80)), max_size=8)
)
def test_update_path_node_round_trips_byte_exact(items: list[HPKECiphertext]) -> None:
    node = UpdatePathNode(b"key", tuple(items))
    data = encode(node)
    received = decode(UpdatePathNode, data)
    assert isinstance(received.encrypted_path_secret, ReceivedCiphertexts)
    assert received == node
    assert list(received.encrypted_path_secret) == items
    assert encode(received) == data  # re-encoded from the bytes as received
    w = Writer()
    w.push_vector(items, push_struct)
    assert data == b"\x03key" + w.getvalue()


@given(st.binary(max_size=200))
def test_arbitrary_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    try:
        expected = eager(data)
    except DecodeError:
        with pytest.raises(DecodeError):
            ReceivedCiphertexts(data)
        return
    assert list(ReceivedCiphertexts(data)) == expected
