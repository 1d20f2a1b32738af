"""Doorless: end-to-end encrypted messaging with no back door."""

__version__ = "0.1.0"
