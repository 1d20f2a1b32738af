"""Who may talk to the local app: this user's browser, opened through the printed URL.

The app listens on 127.0.0.1 only, but that alone does not keep other programs and web pages
out: any local process can connect, and any web page the user visits can make the browser send
requests to 127.0.0.1 (cross-site requests) or resolve its own host name to 127.0.0.1 (DNS
rebinding). So every request must pass three checks:

- **Host**: exactly ``127.0.0.1:PORT`` or ``localhost:PORT``. A rebinding page's requests carry
  its own host name and are refused.
- **Origin** (when the browser sends one, and always on a WebSocket): the app's own origin.
  A cross-site page can send requests but not with our Origin.
- **Session cookie**: the random secret in the URL printed at start (``/open?key=...``) is
  exchanged once for an ``HttpOnly; SameSite=Strict`` cookie holding a second random token;
  every other request needs that cookie. Another local user or program does not know it;
  a cross-site request does not carry it (SameSite=Strict).

Both tokens are compared in constant time and never logged.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from typing import Final

from doorless.secret import Secret

# Cookies are per host, not per port: two apps (two profiles) open in one browser would
# overwrite each other's cookie under one name, so the name carries the port.
COOKIE_PREFIX: Final = "doorless_app_"

# No inline script or style, nothing from elsewhere: peer text that slipped into the page as
# markup still could not run. `blob:` for images and media the page makes from downloaded
# attachments; `connect-src 'self'` covers the page's own WebSocket (CSP Level 3 §6.7.2.5).
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "media-src 'self' blob: mediastream:; connect-src 'self'; font-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)

SECURITY_HEADERS: Final = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "permissions-policy": "camera=(self), microphone=(self), geolocation=()",
    "cache-control": "no-store",
}


class AppToken(Secret):
    """The opening key of the URL, or the session cookie's value."""

    __slots__ = ()


def _new_token() -> AppToken:
    return AppToken(secrets.token_urlsafe(32).encode("ascii"))


@dataclass
class Guard:
    """The checks of one running app (its port, its two tokens)."""

    port: int
    open_key: AppToken = field(default_factory=_new_token)
    session: AppToken = field(default_factory=_new_token)

    @property
    def hosts(self) -> frozenset[str]:
        return frozenset({f"127.0.0.1:{self.port}", f"localhost:{self.port}"})

    @property
    def origins(self) -> frozenset[str]:
        return frozenset(f"http://{host}" for host in self.hosts)

    def opening_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/open?key={self.open_key.value.decode('ascii')}"

    def host_ok(self, host: str | None) -> bool:
        return host is not None and host.lower() in self.hosts

    def origin_ok(self, origin: str | None, *, required: bool) -> bool:
        if origin is None:
            return not required
        return origin.lower() in self.origins

    def key_ok(self, given: str | None) -> bool:
        return given is not None and self.open_key == AppToken(given.encode("utf-8", "replace"))

    def cookie_ok(self, cookie_header: str | None) -> bool:
        if not cookie_header:
            return False
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(cookie_header)
        except CookieError:
            return False
        morsel = jar.get(self.cookie_name)
        return morsel is not None and self.session == AppToken(morsel.value.encode("utf-8"))

    @property
    def cookie_name(self) -> str:
        return f"{COOKIE_PREFIX}{self.port}"

    def session_cookie(self) -> str:
        """The ``Set-Cookie`` value handed out for a correct opening key."""
        value = self.session.value.decode("ascii")
        return f"{self.cookie_name}={value}; HttpOnly; SameSite=Strict; Path=/"


__all__ = [
    "CONTENT_SECURITY_POLICY",
    "COOKIE_PREFIX",
    "SECURITY_HEADERS",
    "AppToken",
    "Guard",
]
