"""Who may use the setup pages: the browser that opened the console's link.

`compound serve` in setup mode prints `/?token=...` with a random token. The
first request carrying it trades the token for a cookie naming one browser
session; from then on only requests with that cookie get the setup pages, and
the token is spent (a copy of the console log, a proxy's log, the browser's
history are worth nothing). Restarting the service makes a new token.

The cookie is HttpOnly (no script reads it) and SameSite=Lax, so the browser
still sends it when GitHub redirects it back to `/setup` (a top-level GET
from another site) but not on a stranger's cross-site form post.
"""

from __future__ import annotations

import hmac
import secrets

from aiohttp import web

COOKIE = "compound_setup"


class SetupGate:
    def __init__(self, token: str | None = None) -> None:
        self.token = token or secrets.token_urlsafe(32)
        self._spent = False
        self._browser: str | None = None

    def browser(self, request: web.Request) -> str | None:
        """The admitted browser's session id if `request` comes from it."""
        offered = request.cookies.get(COOKIE, "")
        if self._browser is not None and offered and hmac.compare_digest(offered, self._browser):
            return self._browser
        return None

    def admit(self, request: web.Request) -> str | None:
        """Trade the query's `token` for a new browser session id, once."""
        offered = request.query.get("token", "")
        if self._spent or not offered or not hmac.compare_digest(offered, self.token):
            return None
        self._spent = True
        self._browser = secrets.token_urlsafe(32)
        return self._browser

    @staticmethod
    def set_cookie(response: web.StreamResponse, session: str, *, secure: bool) -> None:
        # No Max-Age: the session ends with the browser, or at the next restart.
        response.set_cookie(COOKIE, session, path="/", httponly=True, samesite="Lax", secure=secure)
