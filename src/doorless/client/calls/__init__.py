"""Calls (issue #13): media (`doorless.client.calls.media`) and the call engine."""
