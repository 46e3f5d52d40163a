"""The browser app and the API docs as the gateway serves them, and the browser's cookie
sessions (the refresh token in an HttpOnly cookie), checked over HTTP. In a real browser:
``tests/test_web_browser.py``."""

import gzip
import re

import httpx
import pytest
from starlette.requests import Request

from services.auth.cookies import check_origin, secure_cookies
from services.gateway.web import accepted_encodings
from shared.errors import Forbidden
from tests.conftest import login
from tests.support import ROOT

DIST = ROOT / "web" / "dist"


async def test_the_app_is_served_at_the_root_with_strict_headers(gateway):
    page = await gateway.get("/")
    assert page.status_code == 200 and '<div id="root">' in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert page.headers["x-content-type-options"] == "nosniff" and page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-cache"
    assert not re.search(r"""(src|href)="(https?:)?//""", page.text)  # nothing from another origin
    script = re.search(r'src="(/assets/[^"]+\.js)"', page.text).group(1)
    bundle = await gateway.get(script)
    assert bundle.status_code == 200 and "javascript" in bundle.headers["content-type"]
    assert "immutable" in bundle.headers["cache-control"]


async def raw_get(
    gateway: httpx.AsyncClient, path: str, accept_encoding: str
) -> tuple[httpx.Response, bytes]:
    """The bytes as sent, not decoded by the client."""
    async with gateway.stream("GET", path, headers={"Accept-Encoding": accept_encoding}) as response:
        return response, b"".join([chunk async for chunk in response.aiter_raw()])


async def test_the_app_is_sent_precompressed_as_the_browser_accepts(gateway):
    page = (await gateway.get("/")).text
    script = re.search(r'src="(/assets/[^"]+\.js)"', page).group(1)
    original = (DIST / script.lstrip("/")).read_bytes()

    brotli, body = await raw_get(gateway, script, "gzip, deflate, br")
    assert brotli.headers["content-encoding"] == "br" and brotli.headers["vary"] == "Accept-Encoding"
    assert body == (DIST / (script.lstrip("/") + ".br")).read_bytes() and len(body) < len(original) / 2
    assert "javascript" in brotli.headers["content-type"] and "immutable" in brotli.headers["cache-control"]

    gzipped, body = await raw_get(gateway, script, "gzip")
    assert gzipped.headers["content-encoding"] == "gzip" and gzip.decompress(body) == original

    for refusal in ("identity", "br;q=0, gzip;q=0", ""):
        plain, body = await raw_get(gateway, script, refusal)
        assert "content-encoding" not in plain.headers and body == original, refusal

    docs, body = await raw_get(gateway, "/api-docs/swagger-ui-bundle.js", "gzip")
    assert docs.headers["content-encoding"] == "gzip" and len(gzip.decompress(body)) > len(body) * 2
    small, body = await raw_get(gateway, "/", "gzip, br")  # index.html: too small to bother
    assert "content-encoding" not in small.headers and b'<div id="root">' in body


def test_accept_encoding_weights_are_honoured():
    assert accepted_encodings("gzip, deflate, br") == {"gzip", "deflate", "br"}
    assert accepted_encodings("br;q=0, gzip;q=0.5") == {"gzip"}
    assert accepted_encodings("GZIP ; q=1.0, *;q=0.1") == {"gzip", "*"}
    assert accepted_encodings("br;q=nonsense, ") == set()


async def test_app_paths_serve_the_app_and_api_paths_stay_the_api(gateway):
    page = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}  # a browser navigating
    for path in ("/ask", "/files/view", "/inbox", "/manage", "/history"):
        response = await gateway.get(path, headers=page)
        assert response.status_code == 200 and '<div id="root">' in response.text, path
    api = await gateway.get("/documents", headers=page)
    assert api.status_code == 401 and api.json()["error"]["code"]  # an API path stays the API
    unknown = await gateway.get("/ask")  # an API client (Accept: */*) on a path no route has
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
    gone = await gateway.get("/assets/no-such-file.js", headers=page)
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "not_found"
    escape = await gateway.get("/assets/..%2f..%2fpackage.json", headers=page)
    assert escape.status_code == 404
    posted = await gateway.post("/ask")
    assert posted.status_code in (404, 405)


async def test_api_docs_load_nothing_from_a_cdn(gateway):
    docs = await gateway.get("/docs")
    assert docs.status_code == 200
    assert "cdn" not in docs.text and not re.search(r"""(src|href)="(https?:)?//""", docs.text)
    assert "script-src 'self'" in docs.headers["content-security-policy"]
    for asset in re.findall(r'(?:src|href)="(/api-docs/[^"]+)"', docs.text):
        response = await gateway.get(asset)
        assert response.status_code == 200, asset
    init = await gateway.get("/api-docs/init.js")
    assert "/openapi.json" in init.text


def refresh_cookies(response: httpx.Response) -> list[str]:
    return [value for name, value in response.headers.multi_items() if name == "set-cookie"]


async def test_a_browser_sign_in_puts_the_refresh_token_in_an_httponly_cookie(gateway, new_account, stack):
    account = await new_account("cookie")
    signed_in = await gateway.post(
        "/auth/token",
        data={"username": account.username, "password": account.password},
        headers={"X-Refresh-Cookie": "1"},
    )
    assert signed_in.status_code == 200, signed_in.text
    assert "refresh_token" not in signed_in.json() and signed_in.json()["access_token"]
    cookies = refresh_cookies(signed_in)
    assert sorted(re.search(r"Path=([^;]+)", c).group(1) for c in cookies) == [
        "/auth/logout",
        "/auth/refresh",
    ]
    for cookie in cookies:
        assert cookie.startswith("pai_refresh=") and "HttpOnly" in cookie and "SameSite=strict" in cookie
        assert "Secure" not in cookie  # plain-http loopback (make run); any other address: Secure
    token = signed_in.cookies.get("pai_refresh", path="/auth/refresh")
    origin = {"Origin": stack.gateway}

    async def refresh(token: str | None, headers: dict) -> httpx.Response:
        cookies = {"pai_refresh": token} if token else {}
        async with httpx.AsyncClient(base_url=stack.gateway, cookies=cookies) as client:
            return await client.post("/auth/refresh", headers=headers)

    assert (await refresh(token, {})).json()["error"]["code"] == "origin_refused"  # no Origin
    assert (await refresh(token, {"Origin": "http://evil.example"})).status_code == 403
    assert (await refresh(None, origin)).status_code == 401
    refreshed = await refresh(token, {**origin, "X-Refresh-Cookie": "1"})
    assert refreshed.status_code == 200 and "refresh_token" not in refreshed.json()
    rotated = refreshed.cookies.get("pai_refresh", path="/auth/refresh")
    assert rotated != token
    me = await gateway.get(
        "/auth/me", headers={"Authorization": f"Bearer {refreshed.json()['access_token']}"}
    )
    assert me.json()["username"] == account.username

    async with httpx.AsyncClient(base_url=stack.gateway, cookies={"pai_refresh": rotated}) as client:
        out = await client.post("/auth/logout", headers=origin)
    assert out.status_code == 204
    assert all("Max-Age=0" in c or "expires=" in c.lower() for c in refresh_cookies(out))
    assert (await refresh(rotated, origin)).status_code == 401  # the session is over


async def test_api_clients_keep_json_refresh_tokens(gateway, new_account):
    account = await new_account("jsonclient")
    pair = await login(gateway, account.username, account.password)
    assert pair["refresh_token"] and not refresh_cookies(
        await gateway.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    )


def test_cookie_refreshes_come_only_from_the_public_origin_and_are_secure_off_loopback():
    def request(origin: str | None) -> Request:
        headers = [(b"origin", origin.encode())] if origin else []
        return Request({"type": "http", "method": "POST", "path": "/auth/refresh", "headers": headers})

    check_origin(request("http://localhost:8000"), "http://127.0.0.1:8000")  # one machine, two names
    check_origin(request("https://pai.example.com"), "https://pai.example.com/")
    for origin in (None, "http://localhost:3000", "https://pai.example.com", "http://evil.example"):
        with pytest.raises(Forbidden):
            check_origin(request(origin), "http://localhost:8000")
    assert not secure_cookies("http://localhost:8000") and not secure_cookies("http://127.0.0.1:8000")
    assert secure_cookies("https://pai.example.com") and secure_cookies("http://192.168.1.5:8000")
