"""Errors of the key-transparency core.

`InvalidProof` sits under `doorless.errors.CryptoError`: a Merkle inclusion or consistency
proof, a prefix-tree proof or a binary ladder that does not lead to the expected root is a
failed cryptographic check on remote input, like a bad MAC. Structural rule violations of a
`DeviceList` chain are `doorless.errors.ValidationError` with a ``rule`` naming the rule.
"""

from __future__ import annotations

from doorless.errors import CryptoError


class InvalidProof(CryptoError):
    """A transparency proof (RFC 9162 log, KT prefix tree, binary ladder) does not verify."""


__all__ = ["InvalidProof"]
