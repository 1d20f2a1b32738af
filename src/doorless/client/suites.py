"""Which MLS cipher suite a new conversation uses: post-quantum by default.

Every device publishes KeyPackages for its classic suite and, unless ``post_quantum`` is off,
for the hybrid suite ``MLS_128_MLKEM768X25519_AES128GCM_SHA256_Ed25519`` (X-Wing KEM,
draft-ietf-mls-pq-ciphersuites), which signs with the same Ed25519 device key. A new
conversation uses the hybrid suite when every device of every member (this user's other
devices included) hands out a hybrid KeyPackage; otherwise (a client from before the PQ suites,
or one that turned them off) it falls back to the classic suite, so nobody is left out. A
conversation keeps its suite; members added later are claimed in it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from doorless.client import devices
from doorless.client.core import Claimed, Session
from doorless.crypto import CipherSuite

log = logging.getLogger(__name__)


async def claim_for_new_group(s: Session, users: Sequence[str]) -> tuple[CipherSuite, Claimed]:
    """The suite of a new conversation with ``users`` and this user's other devices, and one
    KeyPackage of that suite for each of those devices."""
    everyone = [*users, s.me.user]
    if s.pq_suite is not None:
        claimed = await devices.claim_every_device(s, everyone, s.pq_suite)
        if claimed is not None:
            return s.pq_suite, claimed
        log.info("a member device has no post-quantum KeyPackage: using the classic suite")
    claimed = await devices.claim_users(s, users)
    claimed.update(await devices.claim_users(s, [s.me.user]))  # our other devices
    return s.suite, claimed
