"""The wire contract shared by the server and the client, which never import each other.

* `protocol`: identifiers, the labels and contents of everything a device key signs.
* `kt`: the key-transparency endpoints' request and response types.
* `payload`: the plaintext format inside an MLS application message.
* `messages`: a queued message as both ends see it.
* `calls`: the media relay's messages (join, frame envelope) and call ids.
* `errors`: the one enum of stable error codes (server, client, CLI, daemon).

No I/O and no web framework here (docs/architecture.md).
"""
