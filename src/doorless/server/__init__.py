"""The Doorless server: a validating router of MLS ciphertext (see docs/protocol-http.md)."""

from doorless.server.config import Registration, ServerConfig

__all__ = ["Registration", "ServerConfig"]
