"""How a client connects and behaves (`ClientOptions`), and the cipher suites it can use."""

from __future__ import annotations

import dataclasses
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from doorless.client.keys import DEFAULT_ARGON2, Argon2Params, KeySource
from doorless.client.kt import KtConfig
from doorless.crypto import CipherSuiteId
from doorless.errors import ConfigurationError

# Cipher suites whose signature scheme is Ed25519, the device key's (suite 1 is the default).
ED25519_SUITES = frozenset(
    {
        CipherSuiteId.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519,
        CipherSuiteId.MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519,
    }
)


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """How a client connects and behaves. The defaults suit an interactive application.

    ``push``: receive over the WebSocket (else poll every ``poll_interval`` seconds).
    ``retry_interval``: how often the background task retries pending sends.
    ``key_package_target``: how many one-time KeyPackages to keep on the server.
    ``http_transport``: replaces the network (tests: ``httpx.ASGITransport``).
    ``argon2``: Argon2id cost of a new profile's passphrase key.
    ``post_quantum``: publish hybrid-suite KeyPackages and prefer that suite (the default).
    ``read_receipts`` / ``typing_notices``: send them (each can be switched off).
    """

    push: bool = True
    poll_interval: float = 2.0
    retry_interval: float = 5.0
    key_package_target: int = 20
    cipher_suite: int = CipherSuiteId.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
    ssl_context: ssl.SSLContext | None = None
    http_transport: httpx.AsyncBaseTransport | None = None
    timeout: float = 30.0
    retries: int = 2
    backoff: float = 0.2
    argon2: Argon2Params = DEFAULT_ARGON2
    lock_timeout: float = 0.0
    clock: Callable[[], float] = time.time
    # Key transparency (doorless.client.kt): the witnesses whose cosignatures every log head
    # needs (quorum 0 is allowed, with a loud warning), and how often the background task
    # re-checks this account's own device list.
    kt: KtConfig = dataclasses.field(default_factory=KtConfig)
    kt_monitor_interval: float = 3600.0
    # Post-quantum by default: also publish KeyPackages for the hybrid X-Wing suite
    # (MLS_128_MLKEM768X25519_AES128GCM_SHA256_Ed25519) and create conversations in it when
    # every member device can. False behaves as a client from before the PQ suites.
    post_quantum: bool = True
    # Rich messages: whether this user sends "read up to" receipts and typing notices.
    read_receipts: bool = True
    typing_notices: bool = True

    def __post_init__(self) -> None:
        if self.cipher_suite not in ED25519_SUITES:
            raise ConfigurationError("the cipher suite must sign with Ed25519 (suite 1 or 3)")
        if self.key_package_target < 1:
            raise ConfigurationError("key_package_target must be positive")


PassphraseArg = str | KeySource | None


__all__ = ["ED25519_SUITES", "ClientOptions", "PassphraseArg"]
