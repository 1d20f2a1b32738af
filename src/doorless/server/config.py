"""Server settings: one frozen object built by the CLI (or a test) and handed to `create_app`."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from doorless.errors import ConfigurationError

KIB = 1024
MIB = 1024 * KIB

# Bursts, in seconds of the sustained rate: a bucket holds this many seconds' worth of requests.
RATE_BURST = 10
ANON_RATE_BURST = 15


class Registration(StrEnum):
    open = "open"  # anyone may create an account
    invite = "invite"  # account creation needs a code from ``doorless server invite``


@dataclass(frozen=True, slots=True)
class ServerConfig:
    data_dir: Path
    registration: Registration = Registration.open

    # Size limits (bytes). A JSON body carries base64 (4/3 of the binary size).
    max_message_size: int = 1 * MIB  # one MLSMessage (and separately its Welcome)
    max_recipients: int = 10_000
    max_json_body: int = 4 * MIB
    max_attachment_size: int = 100 * MIB
    max_key_package_size: int = 64 * KIB
    max_key_packages_per_upload: int = 100
    max_key_packages_stored: int = 1_000  # per device, last-resort excluded
    key_package_low_watermark: int = 10  # below this the device is told to top up

    # Lifetimes (seconds).
    challenge_ttl: int = 60
    token_ttl: int = 3600
    link_ttl: int = 600
    invite_ttl: int = 7 * 24 * 3600
    attachment_ttl: int = 30 * 24 * 3600
    idempotency_ttl: int = 7 * 24 * 3600
    sweep_interval: float = 60.0

    # Token buckets: per device once authenticated, per client address before. A rate of 0
    # turns that limit off. (`doorless server --rate-limit N / --anon-rate-limit N` set the
    # rate and a burst of `RATE_BURST` / `ANON_RATE_BURST` seconds' worth.)
    rate_per_second: float = 20.0
    rate_burst: int = 200
    anon_rate_per_second: float = 2.0
    anon_rate_burst: int = 30

    fetch_page_limit: int = 500
    ws_idle_timeout: float = 30.0  # a pushing socket re-checks its token this often

    # Key transparency: verifier keys (c2sp signed-note vkeys) of the witnesses whose
    # cosignatures the log keeps and serves (`doorless.server.kt_service`).
    kt_witnesses: tuple[str, ...] = ()

    # Message franking (`doorless.server.franking`): the HMAC key that stamps messages is
    # replaced this often; a retired key verifies reports this long, then it is deleted.
    franking_rotation: int = 7 * 24 * 3600
    franking_retention: int = 30 * 24 * 3600

    # The media relay (doorless.server.relay): its QUIC listener's UDP port (None: only the
    # WebSocket fallback; 0: any free port) and address. Its certificate is in ``relay/``.
    relay_port: int | None = None
    relay_host: str = "127.0.0.1"
    relay_public_host: str | None = None  # what clients dial (None: the API's host name)

    def __post_init__(self) -> None:
        sizes = (
            self.max_message_size,
            self.max_recipients,
            self.max_json_body,
            self.max_attachment_size,
            self.max_key_package_size,
            self.max_key_packages_per_upload,
            self.max_key_packages_stored,
            self.challenge_ttl,
            self.token_ttl,
            self.link_ttl,
            self.invite_ttl,
            self.attachment_ttl,
            self.idempotency_ttl,
            self.rate_burst,
            self.anon_rate_burst,
            self.fetch_page_limit,
        )
        if any(v <= 0 for v in sizes):
            raise ConfigurationError("limits and lifetimes must be positive")
        if self.relay_port is not None and not 0 <= self.relay_port <= 65535:
            raise ConfigurationError("the relay port must be 0..65535")
        if self.rate_per_second < 0 or self.anon_rate_per_second < 0:
            raise ConfigurationError("rates must be positive (or 0: no limit)")

    @property
    def database_path(self) -> Path:
        return self.data_dir / "doorless.sqlite3"

    @property
    def attachments_dir(self) -> Path:
        return self.data_dir / "attachments"

    @property
    def relay_dir(self) -> Path:
        return self.data_dir / "relay"
