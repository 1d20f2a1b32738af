"""Calls: MLS-keyed SFrame media through the server's relay (docs/calls.md).

Modules: `keys` (SFrame keys per MLS epoch, privacy code), `counters` (the sender's counter
persisted before use), `signalling` (ring/accept/... inside the conversation), `stats`
(per-participant statistics), `engine` (one running call), `manager` (``client.calls``),
`media` (codecs, media frames, jitter buffer, sources and sinks).
"""
