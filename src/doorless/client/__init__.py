"""The Doorless client library."""
