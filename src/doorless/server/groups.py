"""The validating delivery service (RFC 9420 §14, RFC 9750 strongly consistent delivery).

For every *registered* group the server keeps its public MLS state
(`doorless.mls.public_group.PublicGroup`: tree, GroupContext, transcript hashes; no secret),
the latest GroupInfo and the set of member devices (``Storage.group_state``,
``Storage.group_access``: epoch and membership in one read, without the state, for every
message). With them:

* **Registration** (``POST /v1/groups``, `register`): the creator sends the GroupInfo and
  ratchet tree of the new group. They must pass the checks a joiner runs (§12.4.3.1: signature,
  tree hash, parent hashes, leaves), and the GroupInfo must be signed by the leaf of the
  authenticated device (its credential identity is ``credential_identity(user, device)`` and
  its signature key is the device's key). Only an id the server never saw can be registered.
* **Who may post.** Only a device whose key is the signature key of a leaf of the group may
  send to it (application messages and commits included): one indexed lookup per message.
  So an external commit (§12.4.3.2), whose new leaf must be the sender's, is a member device
  rejoining; new members are added by Welcome.
* **Handshakes are PublicMessages.** A commit is accepted for an epoch only if `PublicGroup.
  process_commit` accepts it for the stored state of that epoch: the signature by the
  committer's leaf (which must be the sending device's), every proposal and proposal-list
  rule, the UpdatePath's leaf and parent hashes, the new tree. It must come with the
  committer's GroupInfo of the new epoch, whose GroupContext and confirmation tag equal the
  ones the server computed and whose signature is the committer's. The new state, GroupInfo
  and member set are written in the delivery transaction, behind the epoch gate. Standalone
  proposals and PrivateMessage handshakes are refused (the server could not judge them).
* **Latest GroupInfo** (``GET /v1/groups/{id}/info``, `group_info`): for members only, with the
  ratchet tree, so a member whose state is lost or behind can rejoin by external commit.

What it cannot check: the membership tag and the confirmation tag (they need epoch secrets).
A *current* member can still post a signed, structurally valid commit with a wrong
confirmation tag; honest members reject it and the group's state on the server has moved on.
See ``docs/threat-model.md`` ("Validated groups").

Groups the server has no state for (created before this check existed) keep the old
epoch-only rules: nothing is validated for them, and they cannot be registered afterwards.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass

from doorless.codec import decode, encode
from doorless.errors import CryptoError, DecodeError, DoorlessError
from doorless.mls.credential import BasicCredential
from doorless.mls.framing import (
    ContentType,
    MLSMessage,
    PublicMessage,
    Routing,
    SenderMember,
    SenderNewMemberCommit,
    WireFormat,
)
from doorless.mls.leaf_node import LeafNode
from doorless.mls.proposals import Commit
from doorless.mls.public_group import PublicGroup
from doorless.mls.welcome import GroupInfo
from doorless.secret import constant_time_equal
from doorless.server.context import ServerContext
from doorless.server.refusals import (
    InvalidHandshake,
    MalformedMessage,
    MessageTooLarge,
    NotGroupMember,
    Sender,
    UnknownGroup,
)
from doorless.server.storage.base import GroupExists, GroupState, GroupUpdate, SendContext
from doorless.wire import protocol
from doorless.wire.kt import credential_identity


def leaf_device(leaf: LeafNode) -> str:
    """The device a leaf belongs to: the id of its signature key (a Doorless device's MLS
    signature key is its device key, `doorless.wire.protocol.device_id_of`)."""
    return protocol.device_id_of(leaf.signature_key)


def member_devices(group: PublicGroup) -> set[str]:
    return {protocol.device_id_of(m.signature_key) for m in group.members()}


def _is_device_leaf(leaf: LeafNode, sender: Sender) -> bool:
    cred = leaf.credential
    return (
        leaf_device(leaf) == sender.device_id
        and isinstance(cred, BasicCredential)
        and cred.identity == credential_identity(sender.username, sender.device_id)
    )


def _check_size(ctx: ServerContext, data: bytes, what: str) -> None:
    if not data:
        raise MalformedMessage(f"{what} is empty")
    if len(data) > ctx.config.max_message_size:
        raise MessageTooLarge(f"{what} is larger than {ctx.config.max_message_size} bytes")


def _group_info(data: bytes, what: str) -> GroupInfo:
    try:
        body = decode(MLSMessage, data).body
    except DoorlessError:
        raise MalformedMessage(f"{what} is not an encoded MLSMessage") from None
    if not isinstance(body, GroupInfo):
        raise MalformedMessage(f"{what} is not an MLSMessage with wire format mls_group_info")
    return body


# --- registration ----------------------------------------------------------------------------


async def register(
    ctx: ServerContext, sender: Sender, group_info: bytes, ratchet_tree: bytes
) -> GroupState:
    """Start validating a new group from its creator's GroupInfo and ratchet tree."""
    _check_size(ctx, group_info, "group_info")
    _check_size(ctx, ratchet_tree, "ratchet_tree")
    gi = _group_info(group_info, "group_info")
    try:
        # Lifetimes of existing leaves are not a rule (as for a joiner, `client.inbox`).
        group = PublicGroup.from_group_info(gi, ratchet_tree=ratchet_tree)
    except (DoorlessError, ValueError) as exc:
        raise InvalidHandshake(f"the group does not verify: {exc}") from None
    signer = group.tree.leaf_node(gi.signer)
    assert signer is not None  # from_group_info checked it
    if not _is_device_leaf(signer, sender):
        raise InvalidHandshake("the GroupInfo is not signed by this device's leaf")
    state = GroupState(group.group_id, group.epoch, group.to_bytes(), group_info)
    try:
        await ctx.storage.register_group(state, sorted(member_devices(group)))
    except GroupExists:
        # A repeat of this registration (the client did not get the answer) is answered again.
        if await ctx.storage.group_state(group.group_id) != state:
            raise
    return state


async def latest_group_info(ctx: ServerContext, sender: Sender, group_id: bytes) -> GroupState:
    """The stored state of a registered group, for one of its member devices."""
    state = await ctx.storage.group_state(group_id)
    if state is None:
        raise UnknownGroup("the server keeps no state for this group")
    if not await ctx.storage.is_group_member(group_id, sender.device_id):
        raise NotGroupMember("this device is not a member of the group")
    return state


# --- one group message -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Checked:
    """The verdict on a message to a group: ``update`` is the state a commit leads to (None for
    other messages and for groups the server keeps no state of)."""

    update: GroupUpdate | None


async def check(
    ctx: ServerContext,
    sender: Sender,
    routing: Routing,
    data: bytes,
    group_info: bytes | None,
    seen: SendContext | None = None,
) -> Checked:
    """Judge a message to a group (see the module docstring); raises a `DeliveryRefused` or
    ``EpochConflict`` and changes nothing when it breaks a rule. ``seen``: the access already
    read for this send (`Storage.send_context`), if it was read for this group."""
    assert routing.group_id is not None and routing.epoch is not None
    # One read for every message (application messages included): epoch and membership,
    # without the group's state, so that an application message costs the same at any group
    # size. The state is loaded for a commit of the current epoch only.
    if seen is not None and seen.group_id == routing.group_id:
        access = seen.access
    else:
        access = await ctx.storage.group_access(routing.group_id, sender.device_id)
    if access is None:
        return Checked(None)  # a group from before validation: epoch rules only
    # Every message, an external commit too: Doorless adds new members by Welcome, so an
    # external commit is a member device rejoining (its leaf is in the member set until it
    # is removed).
    if not access.member:
        raise NotGroupMember("this device is not a member of the group")
    if routing.content_type == ContentType.application:
        return Checked(None)
    if routing.wire_format != WireFormat.mls_public_message:
        raise InvalidHandshake("handshake messages to this group must be PublicMessages")
    if routing.content_type != ContentType.commit:
        raise InvalidHandshake("standalone proposals are not accepted: commit them by value")
    body = decode(MLSMessage, data).body  # peek_routing decoded it already
    assert isinstance(body, PublicMessage)
    stored = await ctx.storage.group_state(routing.group_id)
    if stored is None or routing.epoch != stored.epoch:
        # Not for the current epoch: the storage answers a retry of an accepted commit as a
        # duplicate and refuses anything else (``epoch_conflict``; a commit to a registered
        # group is never accepted without a validated update).
        return Checked(None)
    return Checked(await _commit(ctx, sender, stored, body, group_info))


async def _commit(
    ctx: ServerContext,
    sender: Sender,
    stored: GroupState,
    body: PublicMessage,
    group_info: bytes | None,
) -> GroupUpdate:
    if group_info is not None:
        _check_size(ctx, group_info, "group_info")
    # O(N) in the group's size (decode, tree hash, encode): off the event loop.
    return await asyncio.to_thread(judge_commit, stored, body, group_info, sender)


class StateCache:
    """Decoded `PublicGroup` states by the SHA-256 of their stored bytes (a bounded LRU, per
    process): decoding a stored state and recomputing its tree hash are O(N) and most of the
    cost of validating a commit, and the next commit of a group usually comes to the process
    that stored its state. Keyed by content, so a state written by another process is simply
    a miss; `PublicGroup` is immutable, so sharing one is safe."""

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._states: OrderedDict[bytes, PublicGroup] = OrderedDict()
        self._lock = threading.Lock()  # judge_commit runs on worker threads

    def load(self, data: bytes) -> PublicGroup:
        key = hashlib.sha256(data).digest()
        with self._lock:
            group = self._states.get(key)
            if group is not None:
                self._states.move_to_end(key)
                return group
        group = PublicGroup.from_bytes(data)
        self.remember(data, group)
        return group

    def remember(self, data: bytes, group: PublicGroup) -> None:
        key = hashlib.sha256(data).digest()
        with self._lock:
            self._states[key] = group
            self._states.move_to_end(key)
            while len(self._states) > self._size:
                self._states.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._states.clear()


STATES = StateCache()


def judge_commit(
    stored: GroupState, body: PublicMessage, group_info: bytes | None, sender: Sender
) -> GroupUpdate:
    """The state a commit by ``sender`` leads the stored group to, or `InvalidHandshake`
    (pure: what `check` runs for a commit for the stored epoch; `bench/validate_bench.py`)."""
    content = body.content
    old = STATES.load(stored.state)
    who = content.sender
    if isinstance(who, SenderMember):
        leaf = old.tree.leaf_node(who.leaf_index)
        if leaf is None or not _is_device_leaf(leaf, sender):
            raise InvalidHandshake("the commit's sender is not this device's leaf")
    elif isinstance(who, SenderNewMemberCommit):
        commit = content.content
        path = commit.path if isinstance(commit, Commit) else None
        if path is None or not _is_device_leaf(path.leaf_node, sender):
            raise InvalidHandshake("an external commit must add this device's leaf")
    else:
        raise InvalidHandshake("commits come from members or new members only")
    try:
        # Leaf lifetimes are the members' to judge with their own clocks (`now=None`): a
        # skewed client clock must not make the server refuse what the members accept.
        new = old.process_commit(body, now=None)
    except (DoorlessError, ValueError) as exc:
        raise InvalidHandshake(f"invalid commit: {exc}") from None
    if group_info is None:
        raise InvalidHandshake("a commit must come with the GroupInfo of the new epoch")
    gi = _group_info(group_info, "group_info")
    signer = new.tree.leaf_node(gi.signer)
    if signer is None or not _is_device_leaf(signer, sender):
        raise InvalidHandshake("the GroupInfo is not signed by the committer")
    if encode(gi.group_context) != encode(new.group_context):
        raise InvalidHandshake("the GroupInfo does not match the state after the commit")
    # Both are public here, but a MAC is compared in constant time wherever it is compared.
    if not constant_time_equal(gi.confirmation_tag, new.confirmation_tag):
        raise InvalidHandshake("the GroupInfo's confirmation tag is not the commit's")
    try:
        gi.verify(new.suite, signer.signature_key)
    except (CryptoError, DecodeError):
        raise InvalidHandshake("the GroupInfo signature is invalid") from None
    before, after = member_devices(old), member_devices(new)
    state = new.to_bytes()
    STATES.remember(state, new)
    return GroupUpdate(
        GroupState(new.group_id, new.epoch, state, group_info),
        added=tuple(sorted(after - before)),
        removed=tuple(sorted(before - after)),
    )


__all__ = [
    "Checked",
    "check",
    "judge_commit",
    "latest_group_info",
    "leaf_device",
    "member_devices",
    "register",
]
