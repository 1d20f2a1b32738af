"""Doorless against ts-mls on the post-quantum suites, both directions.

ts-mls 1.6.4 offers PQ suites under its own ids 77-88 (with its optional packages
``@hpke/hybridkem-x-wing``, ``@hpke/ml-kem``, ``@noble/post-quantum``). Doorless supports the
ones that map onto primitives it has, under the same ids (a group's suite id is on the wire):

| ts-mls id | ts-mls name | Doorless | why (not) |
|-----------|-------------|----------|-----------|
| 77, 78 | MLS_128_MLKEM512_* | no | ML-KEM-512 is in no MLS PQ draft suite and not in pyca |
| 79, 80 | MLS_256_MLKEM768_*_SHA384_Ed25519 | no | MLS KDF HKDF-SHA512 but hash SHA-384 |
| 81, 82, 85, 86 | MLS_256_MLKEM1024_* | no | ML-KEM-1024 is not wired as an HPKE KEM here |
| 83, 84 | MLS_256_XWING_{AES256GCM,CHACHA20POLY1305}_SHA512_Ed25519 | yes | X-Wing + HKDF-SHA512 |
| 87, 88 | MLS_256_XWING_{AES256GCM,CHACHA20POLY1305}_SHA512_MLDSA87 | yes | and ML-DSA-87 |

The one ts-mls-specific rule: its X-Wing DeriveKeyPair is hpke-js's SHAKE256(ikm, 32) with no
HPKE label (draft-ietf-hpke-pq §5 has SHAKE256.LabeledDerive), which Doorless applies to these
ids only (`doorless.pq_kem.SeedDerivation`). The draft's own suites (0xF001, 0xF006, 0xF009)
have no ts-mls counterpart.
"""

from __future__ import annotations

import pytest
from interop_group import EXPORTER_CONTEXT, EXPORTER_LABEL, MixedGroup
from tsmls import TsMls

from doorless.crypto import CipherSuiteId, cipher_suite

# ts-mls id -> the Doorless suite of the same primitives (the same id: it is on the wire).
TSMLS_PQ_SUITES: dict[int, CipherSuiteId] = {
    83: CipherSuiteId.MLS_256_XWING_AES256GCM_SHA512_Ed25519,
    84: CipherSuiteId.MLS_256_XWING_CHACHA20POLY1305_SHA512_Ed25519,
    87: CipherSuiteId.MLS_256_XWING_AES256GCM_SHA512_MLDSA87,
    88: CipherSuiteId.MLS_256_XWING_CHACHA20POLY1305_SHA512_MLDSA87,
}
SUITES = list(TSMLS_PQ_SUITES)
suite_param = pytest.mark.parametrize("suite", SUITES, ids=[f"tsmls{s}" for s in SUITES])


def test_mapping_table_is_the_same_primitives() -> None:
    for ts_id, ours in TSMLS_PQ_SUITES.items():
        suite = cipher_suite(ours)
        assert int(ours) == ts_id and suite.is_post_quantum and suite.hash_length == 64


@suite_param
def test_tsmls_creates_doorless_joins(ts: TsMls, suite: int) -> None:
    g = MixedGroup(ts, suite, "private")
    alice = g.create("tsmls")
    dora = g.new_member("doorless")
    g.add(alice, [dora])
    g.send(alice, b"post-quantum from ts-mls")
    g.send(dora, b"post-quantum from Doorless")
    g.self_update(dora)  # a Doorless UpdatePath: X-Wing node keys ts-mls must re-derive
    g.self_update(alice)  # and the reverse
    assert g.check().epoch == 3
    assert ts.export_secret(alice, EXPORTER_LABEL, EXPORTER_CONTEXT, 32) == g.peer(
        dora
    ).state.export_secret(EXPORTER_LABEL.encode(), EXPORTER_CONTEXT, 32)


@suite_param
def test_doorless_creates_tsmls_joins(ts: TsMls, suite: int) -> None:
    g = MixedGroup(ts, suite, "public")
    dora = g.create("doorless")
    alice = g.new_member("tsmls")
    g.add(dora, [alice])
    g.send(dora, b"hello ts-mls")
    g.send(alice, b"hello Doorless")
    # Each side adds a member of the other, updates, and removes a member of the other.
    bob, dan = g.new_member("tsmls"), g.new_member("doorless")
    g.add(alice, [dan])
    g.add(dan, [bob])
    g.self_update(bob)
    g.remove(dora, bob)
    g.remove(alice, dan)
    assert g.check().epoch == 6
    g.send(dora, b"two left")
    g.send(alice, b"and back")


@suite_param
def test_doorless_joins_by_external_commit(ts: TsMls, suite: int) -> None:
    """An external commit (its kem_output is an X-Wing encapsulation to the external_pub and
    the init secret an HPKE export, §8.3) processed by ts-mls members."""
    g = MixedGroup(ts, suite)
    alice = g.create("tsmls")
    dora = g.new_member("doorless")
    g.add(alice, [dora, g.new_member("tsmls")])
    eve = g.join_external(dora, ratchet_tree_extension=True)
    g.send(eve, b"I joined on my own")
    g.self_update(alice)  # ts-mls's path now encrypts to Eve too
    g.send(alice, b"welcome eve")
    assert g.check().epoch == 3
