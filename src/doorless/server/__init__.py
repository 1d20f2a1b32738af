"""The Doorless server: a thin router of MLS ciphertext (see docs/protocol-http.md).

``create_app`` (FastAPI) is imported lazily so that `doorless.server.protocol`, which the
client shares, does not pull in the web framework.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from doorless.server.app import create_app
    from doorless.server.config import Registration, ServerConfig

__all__ = ["Registration", "ServerConfig", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from doorless.server.app import create_app

        return create_app
    if name in ("ServerConfig", "Registration"):
        from doorless.server import config

        return getattr(config, name)
    raise AttributeError(name)
