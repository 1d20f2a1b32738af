"""Key transparency core ("KT-lite", design notes §1.3): pure, no I/O, no clock, no randomness.

Modules:

* `merkle`: the RFC 9162 log (hashing, inclusion and consistency proofs, `MerkleLog`).
* `log_entry`: the log leaf ``LogEntry{timestamp, prefix_tree}`` of the KEYTRANS draft.
* `commitment`: KEYTRANS commitments (HMAC-SHA256 under the fixed key Kc) and search keys
  (a public hash in place of the VRF; the module docstring explains the choice).
* `prefix_tree`: the KEYTRANS prefix tree (persistent), `PrefixProof`, verification.
* `ladder`: binary ladders, greatest-version and fixed-version search responses.
* `combined`: the combined tree (log of prefix-tree roots), witness replay of audit batches.
* `checkpoint`: C2SP signed notes, checkpoints and witness cosignatures (Ed25519).
* `device_list`: the signed, hash-chained ``DeviceList`` value stored under ``u:<user_id>``.

Errors: `InvalidProof` (a `doorless.errors.CryptoError`) for any proof that does not verify.
"""

from doorless.kt.errors import InvalidProof

__all__ = ["InvalidProof"]
