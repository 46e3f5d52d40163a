"""Browser sessions: the refresh token in an HttpOnly cookie, never readable by JavaScript.

A browser signs in with ``X-Refresh-Cookie: 1``: the refresh token then comes back as cookies
(``HttpOnly``, ``SameSite=Strict``, ``Secure`` unless the public URL is plain-http loopback),
one for each path that reads it (``/auth/refresh``, ``/auth/logout``), and not in the body.
Those two accept the cookie when their body names no token, and only from the public origin
(the ``Origin`` header: a cross-site page cannot spend the cookie). API clients are unchanged.
"""

from urllib.parse import urlsplit

from fastapi import Request, Response

from shared.errors import Forbidden, Unauthenticated

COOKIE = "pai_refresh"
COOKIE_PATHS = ("/auth/refresh", "/auth/logout")
COOKIE_MODE_HEADER = "x-refresh-cookie"
LOOPBACK = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})


def wants_cookie(request: Request) -> bool:
    return request.headers.get(COOKIE_MODE_HEADER) == "1"


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, "loopback" if host in LOOPBACK else host, port


def secure_cookies(public_url: str) -> bool:
    """Secure everywhere but plain-http loopback (``make run`` on this machine)."""
    scheme, host, _ = _origin(public_url)
    return not (scheme == "http" and host == "loopback")


def check_origin(request: Request, public_url: str) -> None:
    """Refuse a cookie refresh that does not come from the app's own origin (localhost and
    127.0.0.1 count as one, so ``make run`` works by either name)."""
    origin = request.headers.get("origin")
    if origin is None or _origin(origin) != _origin(public_url):
        raise Forbidden("This request must come from the app's own address", code="origin_refused")


def cookie_token(request: Request) -> str:
    token = request.cookies.get(COOKIE)
    if not token:
        raise Unauthenticated("No session to refresh: sign in", code="invalid_refresh_token")
    return token


def set_cookie(response: Response, token: str, max_age_seconds: int, public_url: str) -> None:
    for path in COOKIE_PATHS:
        response.set_cookie(
            COOKIE,
            token,
            max_age=max_age_seconds,
            path=path,
            httponly=True,
            secure=secure_cookies(public_url),
            samesite="strict",
        )


def clear_cookie(response: Response, public_url: str) -> None:
    for path in COOKIE_PATHS:
        response.delete_cookie(
            COOKIE, path=path, httponly=True, secure=secure_cookies(public_url), samesite="strict"
        )
