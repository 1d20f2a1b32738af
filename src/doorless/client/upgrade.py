"""Upgrading an existing conversation to the post-quantum hybrid suite.

An MLS group keeps its cipher suite for life, so an upgrade makes a new group in the hybrid
suite (`doorless.client.suites`) with the same members (every device of every member, this
user's other devices included), the same kind, name and disappearing timer; then it sends an
upgrade notice (`doorless.wire.upgrade`, payload kind 6) in the old conversation, so that every
member's client links the two. The old conversation keeps its history (still readable, still
usable) and is shown as ``upgraded_to`` the new one, which is shown as ``upgraded_from`` it.
This is simpler than an MLS ReInit (RFC 9420 §11.2), which would need every member to
rejoin in lock-step, and leaves nobody's history behind.

Every member device must have a hybrid KeyPackage: otherwise `CannotUpgrade` names the users
who cannot and nothing is created, sent or stored (I4).
"""

from __future__ import annotations

import logging
import os

from doorless.client import devices, membership, outbox
from doorless.client.conversations import conversation_info
from doorless.client.core import (
    Claimed,
    Session,
    UserUnavailable,
    conversation_gid,
    store_upgrade,
)
from doorless.client.events import Conversation
from doorless.client.safety import disappearing_seconds, with_disappearing
from doorless.client.store import Transaction
from doorless.codec import encode
from doorless.errors import ConfigurationError
from doorless.wire.payload import Payload, PayloadKind
from doorless.wire.upgrade import UpgradeNotice

log = logging.getLogger(__name__)


class CannotUpgrade(UserUnavailable):
    """A member has a device without a post-quantum KeyPackage; ``users`` names them."""

    def __init__(self, users: tuple[str, ...]) -> None:
        self.users = users
        super().__init__(
            "cannot upgrade to post-quantum: a device of "
            + ", ".join(users)
            + " has no post-quantum KeyPackage (an older Doorless, or post-quantum turned off)"
        )


async def upgrade_conversation(s: Session, conversation_id: str) -> Conversation:
    """Upgrade a conversation to the hybrid suite; the new conversation (see the module)."""
    gid = conversation_gid(conversation_id)
    links = await s.load_upgrades()
    conv = await s.require_active(gid)
    if gid in links:
        raise ConfigurationError(f"this conversation was already upgraded to {links[gid].hex()}")
    if s.pq_suite is None:
        raise ConfigurationError("post-quantum suites are turned off in this profile")
    if conv.mls.suite.is_post_quantum:
        raise ConfigurationError("this conversation already uses a post-quantum suite")
    pq = s.pq_suite
    users = sorted({d.user for d in s.view(conv).devices} | {s.me.user})
    claimed: Claimed = {}
    unable: list[str] = []
    for user in users:
        got = await devices.claim_every_device(s, [user], pq)
        if got is None:
            unable.append(user)
        else:
            claimed.update(got)
    if unable:
        raise CannotUpgrade(tuple(unable))
    extensions = with_disappearing(
        (conversation_info(conv.mls).extension(),), disappearing_seconds(conv.mls)
    )
    new = await membership.create_with(s, pq, claimed, extensions)
    new_gid = bytes.fromhex(new.id)
    notice = UpgradeNotice(new_gid, int(pq.id))
    payload = Payload(os.urandom(16), s.now_ms(), PayloadKind.upgrade, encode(notice))

    def link(tx: Transaction, _: int | None) -> None:
        store_upgrade(tx, gid, new_gid)
        # A control message: kept to be encrypted again if the epoch moves before it is sent.
        tx.put_pending_payload(payload.message_id.hex(), encode(payload))

    # Through the outbox: sent in order with this device's messages, and again after a crash.
    await outbox.send_payload(s, gid, payload, shown=None, extra=link)
    s.upgrades = None  # read again with the new link
    log.info("conversation upgraded to the post-quantum suite")
    return await membership.conversation(s, new.id)


__all__ = ["CannotUpgrade", "upgrade_conversation"]
