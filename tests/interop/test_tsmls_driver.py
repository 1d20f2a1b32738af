"""The ts-mls driver on its own: two or three ts-mls members through `TsMls`, suites 1, 2, 3.

These prove the harness works before Doorless plugs in. The last group of tests reads every
MLSMessage the driver emits with Doorless's decoder (`doorless.mls.framing.MLSMessage`) and
checks the byte-exact round trip, plus the key package refs and signatures, so a deviation in
ts-mls's encodings shows up here first.
"""

from __future__ import annotations

import importlib
import itertools
from dataclasses import dataclass

import pytest
from tsmls import CommitResult, TsMls, TsMlsError, TsMlsTimeout

from doorless.codec import Reader

SUITES = [1, 2, 3]
# RFC 9420 §6: MLSMessage wire formats.
WF_PUBLIC, WF_PRIVATE, WF_WELCOME, WF_GROUP_INFO, WF_KEY_PACKAGE = 1, 2, 3, 4, 5
_names = itertools.count()


def fresh(prefix: str) -> str:
    """A member name unused in this driver process (the driver is shared per module)."""
    return f"{prefix}{next(_names)}"


def header(message: bytes) -> tuple[int, int]:
    """(version, wire_format) of an MLSMessage, read by hand (RFC 9420 §6)."""
    r = Reader(message)
    return r.pull_uint16(), r.pull_uint16()


@dataclass
class Pair:
    alice: str
    bob: str
    suite: int


def make_pair(ts: TsMls, suite: int, *, wire_format: str = "private") -> Pair:
    alice, bob = fresh("alice"), fresh("bob")
    kp = ts.create_key_package(bob, suite).key_package
    assert ts.create_group(alice, group_id=alice.encode(), suite=suite) == 0
    added = ts.add_members(alice, [kp], wire_format=wire_format)  # type: ignore[arg-type]
    assert added.welcome is not None
    joined = ts.join_from_welcome(bob, added.welcome, ratchet_tree=ts.ratchet_tree(alice))
    assert (joined.epoch, joined.leaf_index, joined.group_id) == (1, 1, alice.encode())
    return Pair(alice, bob, suite)


def assert_in_sync(ts: TsMls, *members: str) -> None:
    epochs = {ts.epoch(m) for m in members}
    auths = {ts.epoch_authenticator(m) for m in members}
    exports = {ts.export_secret(m, "doorless test", b"ctx", 32) for m in members}
    trees = {ts.ratchet_tree(m) for m in members}
    assert len(epochs) == len(auths) == len(exports) == len(trees) == 1


# ------------------------------------------------------------------------------------------------
# the driver itself


def test_ping_reports_pinned_version(ts: TsMls) -> None:
    info = ts.ping()
    assert info["ts_mls_version"] == "1.6.4"
    assert info["node_version"].startswith("v")


@pytest.mark.parametrize("suite", SUITES)
def test_key_package_is_an_mls_message(ts: TsMls, suite: int) -> None:
    info = ts.create_key_package(fresh("kp"), suite)
    assert header(info.key_package) == (1, WF_KEY_PACKAGE)
    r = Reader(info.key_package[4:])
    assert r.pull_uint16() == 1  # KeyPackage.version = mls10
    assert r.pull_uint16() == suite
    init_key = r.pull_opaque()
    encryption_key = r.pull_opaque()
    signature_key = r.pull_opaque()
    assert signature_key == info.signature_key
    assert len(info.key_package_ref) == 32
    if suite == 2:
        # RFC 9420 §5.1.1 / HPKE: uncompressed SEC1 points for P-256 keys.
        for key in (init_key, encryption_key, signature_key):
            assert len(key) == 65 and key[0] == 0x04
    else:
        assert len(init_key) == len(encryption_key) == len(signature_key) == 32


def test_tsmls_default_p256_signature_key_is_compressed(ts: TsMls) -> None:
    """ts-mls's own keygen writes compressed P-256 signature keys (against RFC 9420 §5.1.1);
    the driver works around it unless asked not to."""
    info = ts.create_key_package(fresh("compressed"), 2, compressed_signature_key=True)
    assert len(info.signature_key) == 33 and info.signature_key[0] in (0x02, 0x03)


@pytest.mark.parametrize("suite", SUITES)
def test_two_members_lifecycle(ts: TsMls, suite: int) -> None:
    p = make_pair(ts, suite)
    assert_in_sync(ts, p.alice, p.bob)

    # Application messages both ways.
    for sender, receiver, sender_leaf in ((p.alice, p.bob, 0), (p.bob, p.alice, 1)):
        for i in range(3):
            text = f"hello {i} from {sender}".encode()
            ct = ts.encrypt(sender, text, authenticated_data=b"aad")
            assert header(ct) == (1, WF_PRIVATE)
            got = ts.process_message(receiver, ct)
            assert (got.kind, got.application_data, got.sender_leaf) == (
                "application",
                text,
                sender_leaf,
            )
            assert got.epoch == 1 and not got.removed

    # Bob updates; Alice follows.
    upd = ts.self_update(p.bob)
    assert upd.welcome is None and upd.epoch == 2
    got = ts.process_message(p.alice, upd.commit)
    assert (got.kind, got.epoch, got.sender_leaf) == ("commit", 2, 1)
    assert_in_sync(ts, p.alice, p.bob)

    # Alice removes Bob.
    rem = ts.remove_member(p.alice, 1)
    assert rem.epoch == 3
    got = ts.process_message(p.bob, rem.commit)
    assert got.kind == "commit" and got.removed and got.sender_leaf == 0
    assert ts.epoch(p.alice) == 3
    summary = ts.group_summary(p.alice)
    assert [m.leaf_index for m in summary.members] == [0]
    assert summary.cipher_suite == suite


@pytest.mark.parametrize("suite", SUITES)
def test_three_members_added_in_one_commit(ts: TsMls, suite: int) -> None:
    alice, bob, carol = fresh("alice"), fresh("bob"), fresh("carol")
    kps = [ts.create_key_package(m, suite).key_package for m in (bob, carol)]
    ts.create_group(alice, group_id=b"three", suite=suite)
    added = ts.add_members(alice, kps, ratchet_tree_extension=True)
    assert added.welcome is not None
    # The GroupInfo carries the tree, so no ratchet_tree out of band.
    assert ts.join_from_welcome(bob, added.welcome).leaf_index == 1
    assert ts.join_from_welcome(carol, added.welcome).leaf_index == 2
    assert_in_sync(ts, alice, bob, carol)

    ct = ts.encrypt(carol, b"to everyone")
    for receiver in (alice, bob):
        got = ts.process_message(receiver, ct)
        assert (got.application_data, got.sender_leaf) == (b"to everyone", 2)

    upd = ts.self_update(bob)
    for receiver in (alice, carol):
        assert ts.process_message(receiver, upd.commit).epoch == 2
    assert_in_sync(ts, alice, bob, carol)

    rem = ts.remove_member(carol, 0)
    assert ts.process_message(bob, rem.commit).epoch == 3
    assert ts.process_message(alice, rem.commit).removed
    assert_in_sync(ts, bob, carol)
    summary = ts.group_summary(bob)
    assert [m.identity for m in summary.members] == [bob.encode(), carol.encode()]


@pytest.mark.parametrize("suite", SUITES)
def test_public_message_commits(ts: TsMls, suite: int) -> None:
    p = make_pair(ts, suite, wire_format="public")
    upd = ts.self_update(p.alice, wire_format="public")
    assert header(upd.commit) == (1, WF_PUBLIC)
    got = ts.process_message(p.bob, upd.commit)
    assert (got.kind, got.epoch, got.sender_leaf) == ("commit", 2, 0)
    assert_in_sync(ts, p.alice, p.bob)


def test_welcome_without_tree_needs_one(ts: TsMls) -> None:
    """ts-mls leaves the ratchet tree out of the Welcome by default (RFC 9420 §12.4.3.3)."""
    alice, bob = fresh("alice"), fresh("bob")
    kp = ts.create_key_package(bob, 1).key_package
    ts.create_group(alice, group_id=b"g", suite=1)
    added = ts.add_members(alice, [kp])
    assert added.welcome is not None
    with pytest.raises(TsMlsError, match="RatchetTree"):
        ts.join_from_welcome(bob, added.welcome)


def test_pending_commit_merge_and_clear(ts: TsMls) -> None:
    p = make_pair(ts, 1)
    dropped = ts.self_update(p.alice, pending=True)
    assert ts.epoch(p.alice) == 1 and ts.group_summary(p.alice).pending_commit
    with pytest.raises(TsMlsError, match="pending commit"):
        ts.self_update(p.alice)
    assert ts.clear_pending_commit(p.alice) == 1
    # Bob's commit wins the epoch instead; Alice, still at epoch 1, follows it.
    won = ts.self_update(p.bob)
    assert ts.process_message(p.alice, won.commit).epoch == 2
    with pytest.raises(TsMlsError):
        ts.process_message(p.bob, dropped.commit)  # an epoch-1 commit is stale at epoch 2

    ts.self_update(p.alice, pending=True)
    # A foreign commit merged while an own commit is pending voids the pending one.
    won = ts.self_update(p.bob)
    assert ts.process_message(p.alice, won.commit).epoch == 3
    assert not ts.group_summary(p.alice).pending_commit

    kept = ts.self_update(p.alice, pending=True)
    assert ts.merge_pending_commit(p.alice) == 4
    assert ts.process_message(p.bob, kept.commit).epoch == 4
    assert_in_sync(ts, p.alice, p.bob)


def test_group_info_has_external_pub(ts: TsMls) -> None:
    p = make_pair(ts, 1)
    gi = ts.group_info(p.alice)
    assert header(gi) == (1, WF_GROUP_INFO)
    gi_tree = ts.group_info(p.alice, ratchet_tree_extension=True)
    assert len(gi_tree) > len(gi)


def test_errors_carry_the_driver_message(ts: TsMls) -> None:
    with pytest.raises(TsMlsError, match="unknown member"):
        ts.epoch(fresh("nobody"))
    p = make_pair(ts, 1)
    with pytest.raises(TsMlsError, match="hex"):
        ts.call("process_message", {"member": p.bob, "message": "zz"})
    with pytest.raises(TsMlsError, match=r"CodecError|cannot decode"):
        ts.process_message(p.bob, b"\x00\x01\x00\x02\xff")
    with pytest.raises(TsMlsError, match="unknown method"):
        ts.call("no_such_method")
    # The driver is still usable after errors.
    assert ts.epoch(p.bob) == 1


def test_tampered_message_is_rejected(ts: TsMls) -> None:
    p = make_pair(ts, 1)
    ct = bytearray(ts.encrypt(p.alice, b"secret"))
    ct[-1] ^= 1
    with pytest.raises(TsMlsError):
        ts.process_message(p.bob, bytes(ct))


def test_dead_driver_raises(tsmls_installed: None) -> None:
    with TsMls(timeout=10.0) as own:
        own.call("shutdown")
        with pytest.raises(TsMlsError, match=r"exited|cannot write|closed"):
            own.epoch("x")


def test_timeout_kills_the_driver(tsmls_installed: None) -> None:
    with TsMls(timeout=10.0) as own:
        with pytest.raises(TsMlsTimeout, match="no answer within"):
            own.bench(64, 1, runs=3, timeout=0.05)
        with pytest.raises(TsMlsError, match="closed"):
            own.ping()


def test_bench_small(ts: TsMls) -> None:
    r = ts.bench(4, 1, runs=1, messages=2)
    assert r["n"] == 4
    for step in ("add_commit", "join", "self_update", "process_commit", "encrypt", "decrypt"):
        assert r["ms"][step] > 0


# ------------------------------------------------------------------------------------------------
# every MLSMessage ts-mls emits, read by Doorless's decoder


@dataclass(frozen=True)
class Emitted:
    suite: int
    messages: dict[str, bytes]  # kind -> MLSMessage bytes
    ratchet_tree: bytes
    key_package_ref: bytes
    group_info_signer_key: bytes


def _emit(ts: TsMls, suite: int) -> Emitted:
    alice, bob, carol = fresh("alice"), fresh("bob"), fresh("carol")
    kp_bob = ts.create_key_package(bob, suite)
    kp_carol = ts.create_key_package(carol, suite, grease=False)
    alice_kp = ts.create_key_package(alice, suite)  # also fixes Alice's signature key
    ts.create_group(alice, group_id=b"emitted-" + alice.encode(), suite=suite)
    add: CommitResult = ts.add_members(
        alice, [kp_bob.key_package], wire_format="public", ratchet_tree_extension=True
    )
    assert add.welcome is not None
    ts.join_from_welcome(bob, add.welcome)
    add2 = ts.add_members(bob, [kp_carol.key_package], authenticated_data=b"ad")
    assert add2.welcome is not None
    ts.process_message(alice, add2.commit)
    ts.join_from_welcome(carol, add2.welcome, ratchet_tree=ts.ratchet_tree(bob))
    upd_private = ts.self_update(carol)
    ts.process_message(alice, upd_private.commit)
    ts.process_message(bob, upd_private.commit)
    upd_public = ts.self_update(bob, wire_format="public")
    ts.process_message(alice, upd_public.commit)
    ts.process_message(carol, upd_public.commit)
    rem = ts.remove_member(alice, 2, wire_format="public")
    messages = {
        "key_package": kp_bob.key_package,
        "key_package_no_grease": kp_carol.key_package,
        "add_commit_public": add.commit,
        "welcome_with_tree": add.welcome,
        "add_commit_private": add2.commit,
        "welcome": add2.welcome,
        "update_commit_private": upd_private.commit,
        "update_commit_public": upd_public.commit,
        "remove_commit_public": rem.commit,
        "application": ts.encrypt(alice, b"x" * 1024, authenticated_data=b"franking"),
        "group_info": ts.group_info(alice),
        "group_info_with_tree": ts.group_info(alice, ratchet_tree_extension=True),
    }
    return Emitted(
        suite, messages, ts.ratchet_tree(alice), kp_bob.key_package_ref, alice_kp.signature_key
    )


MESSAGE_KINDS = [
    "key_package",
    "key_package_no_grease",
    "add_commit_public",
    "welcome_with_tree",
    "add_commit_private",
    "welcome",
    "update_commit_private",
    "update_commit_public",
    "remove_commit_public",
    "application",
    "group_info",
    "group_info_with_tree",
]


class EmittedCache:
    """Builds the messages of one suite on first use (one ts-mls group per suite)."""

    def __init__(self, ts: TsMls) -> None:
        self._ts = ts
        self._by_suite: dict[int, Emitted] = {}

    def __getitem__(self, suite: int) -> Emitted:
        if suite not in self._by_suite:
            self._by_suite[suite] = _emit(self._ts, suite)
        return self._by_suite[suite]


@pytest.fixture(scope="module")
def emitted(ts: TsMls) -> EmittedCache:
    return EmittedCache(ts)


@pytest.mark.parametrize("kind", MESSAGE_KINDS)
@pytest.mark.parametrize("suite", SUITES)
def test_doorless_decodes_tsmls_message(emitted: EmittedCache, suite: int, kind: str) -> None:
    framing = importlib.import_module("doorless.mls.framing")
    from doorless.codec import decode, encode

    data = emitted[suite].messages[kind]
    message = decode(framing.MLSMessage, data)
    assert encode(message) == data
    assert int(message.wire_format) == header(data)[1]


@pytest.mark.parametrize("suite", SUITES)
def test_doorless_decodes_tsmls_ratchet_tree(emitted: EmittedCache, suite: int) -> None:
    nodes = importlib.import_module("doorless.mls.nodes")
    data = emitted[suite].ratchet_tree
    assert nodes.encode_ratchet_tree(nodes.decode_ratchet_tree(data)) == data


@pytest.mark.parametrize("suite", SUITES)
def test_doorless_verifies_tsmls_key_package(emitted: EmittedCache, suite: int) -> None:
    framing = importlib.import_module("doorless.mls.framing")
    key_package = importlib.import_module("doorless.mls.key_package")
    from doorless.codec import decode, encode
    from doorless.crypto import cipher_suite

    cs = cipher_suite(suite)
    kp = decode(framing.MLSMessage, emitted[suite].messages["key_package"]).body
    kp.verify(cs)
    assert key_package.make_key_package_ref(cs, encode(kp)) == emitted[suite].key_package_ref


@pytest.mark.parametrize("suite", SUITES)
def test_doorless_verifies_tsmls_group_info(emitted: EmittedCache, suite: int) -> None:
    framing = importlib.import_module("doorless.mls.framing")
    from doorless.codec import decode
    from doorless.crypto import cipher_suite

    gi = decode(framing.MLSMessage, emitted[suite].messages["group_info"]).body
    assert gi.signer == 0
    gi.verify(cipher_suite(suite), emitted[suite].group_info_signer_key)
