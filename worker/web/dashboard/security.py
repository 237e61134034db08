"""Who may see and do what on the dashboard.

- **Session**: Starlette's ``SessionMiddleware``, a cookie signed with ``SENDCLOUD_WEB_SECRET``
  (itsdangerous), ``HttpOnly``, ``SameSite=Lax``, ``Secure`` when ``SENDCLOUD_WEB_TLS=1``. It
  holds the user's name and a CSRF token; the role is read from Redis on every request, so a
  removed or demoted user loses access at once.
- **CSRF**: every POST carries the session's token in a hidden ``csrf_token`` field, compared
  in constant time; a POST without it changes nothing (403).
- **Login rate limits**: failed logins are counted per user name and per client address in
  Redis, in windows timed by Redis's own clock (``PEXPIRE``); past the limit a login is refused
  (429) without checking the password, until the window ends.
- **Headers**: a Content-Security-Policy that allows only the dashboard's own scripts and
  styles (no inline script, no CDN), no framing, no referrer, no caching of pages.
- **Masking**: with ``SENDCLOUD_WEB_MASK_PHONES=1`` phone numbers are shown as ``138****0001``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import redis
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from producers.contract import KEY_PREFIX
from worker.web.dashboard.users import User, get_user

SESSION_COOKIE = "sendcloud_dashboard"
SESSION_MAX_AGE = 8 * 3600
CSRF_FIELD = "csrf_token"

LOGIN_WINDOW_MS = 15 * 60 * 1000
LOGIN_LIMIT_PER_USER = 5
LOGIN_LIMIT_PER_ADDRESS = 20
_FAILURES_PREFIX = f"{KEY_PREFIX}web:login_failures:"

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
       "form-action 'self'")

# KEYS: the user's and the address's failure counters. ARGV: their limits.
# Reply: milliseconds until a login may be tried again (0: now).
_CHECK_LUA = """
local wait = 0
for i = 1, 2 do
    local n = tonumber(redis.call('GET', KEYS[i]) or '0')
    if n >= tonumber(ARGV[i]) then
        local ttl = redis.call('PTTL', KEYS[i])
        if ttl > wait then wait = ttl end
    end
end
return wait
"""

# KEYS: the counters. ARGV: window ms. The window starts at the first failure (Redis's clock).
_FAIL_LUA = """
for i = 1, 2 do
    if redis.call('INCR', KEYS[i]) == 1 then redis.call('PEXPIRE', KEYS[i], ARGV[1]) end
end
return 1
"""


def _digest(text: str) -> str:
    """Counter keys name the user and address by digest: Redis holds no list of who tried."""
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class LoginLimiter:
    client: redis.Redis

    def _keys(self, name: str, address: str) -> list[str]:
        return [f"{_FAILURES_PREFIX}user:{_digest(name.lower())}",
                f"{_FAILURES_PREFIX}addr:{_digest(address)}"]

    def retry_after(self, name: str, address: str) -> float:
        """Seconds until this name from this address may try again; 0 if it may now."""
        wait = self.client.eval(_CHECK_LUA, 2, *self._keys(name, address),
                                LOGIN_LIMIT_PER_USER, LOGIN_LIMIT_PER_ADDRESS)
        return int(wait) / 1000

    def failed(self, name: str, address: str) -> None:
        self.client.eval(_FAIL_LUA, 2, *self._keys(name, address), LOGIN_WINDOW_MS)

    def succeeded(self, name: str, address: str) -> None:
        """A right password clears the name's count (not the address's: one address may be
        guessing many names)."""
        self.client.delete(self._keys(name, address)[0])


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


def csrf_ok(request: Request, submitted: object) -> bool:
    expected = request.session.get("csrf")
    return (isinstance(expected, str) and isinstance(submitted, str)
            and hmac.compare_digest(expected.encode(), submitted.encode()))


def log_in(request: Request, user: User) -> None:
    request.session.clear()  # a new session id and token: none carried over from before
    request.session["user"] = user.name
    csrf_token(request)


def current_user(request: Request, client: redis.Redis) -> User | None:
    name = request.session.get("user")
    if not isinstance(name, str):
        return None
    user = get_user(client, name)
    if user is None:
        request.session.clear()
    return user


_PHONE = re.compile(r"(?<!\d)(1[3-9]\d)(\d{4})(\d{4})(?!\d)")


def mask_phones(text: str) -> str:
    """``13800000001`` → ``138****0001`` wherever a mainland mobile number appears."""
    return _PHONE.sub(lambda m: f"{m.group(1)}****{m.group(3)}", text)


def masker(enabled: bool) -> Callable[[Any], Any]:
    """What the templates and JSON pass every phone-bearing value through."""
    def mask(value: Any) -> Any:
        if not enabled or value is None:
            return value
        if isinstance(value, str):
            return mask_phones(value)
        if isinstance(value, dict):
            return {k: mask(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [mask(v) for v in value]
        return value

    return mask


class SecurityHeaders:
    """Adds the CSP and its companions to every dashboard response."""

    HEADERS = (
        (b"content-security-policy", CSP.encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
    )

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += self.HEADERS
                if not scope["path"].startswith(f"{scope.get('root_path', '')}/static"):
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


Endpoint = Callable[[Request], Awaitable[Response]]
