"""Errors of the local store (in the `doorless.errors` tree, under `LocalError`)."""

from __future__ import annotations

from doorless.errors import ConfigurationError, LocalError


class StoreError(LocalError):
    """The local store cannot be used (I/O error, disk full, newer schema, ...)."""


class WrongPassphrase(StoreError):
    """The passphrase or key does not open this profile's store."""


class ProfileLocked(StoreError):
    """Another process (or another handle in this one) has the profile open."""


class InvalidSearchQuery(ConfigurationError):
    """A search text is not a valid full-text query (a syntax error, empty, too long)."""


__all__ = ["InvalidSearchQuery", "ProfileLocked", "StoreError", "WrongPassphrase"]
