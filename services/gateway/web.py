"""The browser app, served at ``/`` on the API's own origin (no CORS), and the API docs.

``make run`` builds ``web/`` into ``web/dist`` (``PAI_WEB_DIST_DIR``); the gateway serves its
files, and ``index.html`` for any other GET path that no API route took when a browser asks for
a page (``Accept: text/html``; an API client still gets the JSON 404). The app routes on the
client, on paths that are not API prefixes: ``/ask``, ``/files``, ``/inbox``, ``/history``,
``/account``, ``/manage``). Everything loads from this origin: the app's Content-Security-Policy
allows scripts, styles and connections from ``'self'`` only (no inline scripts), and ``/docs``
uses the Swagger UI copied into the build from the pinned ``swagger-ui-dist`` package, not a CDN.

The build writes Brotli and gzip copies beside each text file (``web/scripts/compress.mjs``);
the smallest one the browser accepts is sent as is, so nothing is compressed per request.
"""

import mimetypes
from pathlib import Path

from fastapi import APIRouter, Request
from starlette.responses import FileResponse, HTMLResponse, Response

from shared.errors import NotFound, Unavailable

APP_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "font-src 'self'; connect-src 'self'; frame-src 'self' blob:; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# Swagger UI sets inline style attributes and shows inline SVG images.
DOCS_CSP = APP_CSP.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'")
APP_HEADERS = {
    "Content-Security-Policy": APP_CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}
# Hashed file names (assets/) never change; index.html must be fetched fresh after a deploy.
IMMUTABLE = "public, max-age=31536000, immutable"
NO_CACHE = "no-cache"
# The build's precompressed copies, smallest first: (Content-Encoding, file suffix).
PRECOMPRESSED = (("br", ".br"), ("gzip", ".gz"))

DOCS_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Personal AI assistant API</title>
<link rel="stylesheet" href="/api-docs/swagger-ui.css">
<link rel="icon" href="/api-docs/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/api-docs/swagger-ui-bundle.js"></script>
<script src="/api-docs/init.js"></script>
</body>
</html>
"""


def _not_built(dist: Path) -> Unavailable:
    return Unavailable(
        f"The web app is not built ({dist} is missing): `make run` builds it (Node.js 20 and npm)",
        code="web_app_not_built",
    )


def _file(dist: Path, path: str) -> Path | None:
    """The file of ``dist`` that ``path`` names, never one outside it."""
    if not path:
        return None
    candidate = (dist / path).resolve()
    if candidate.is_relative_to(dist.resolve()) and candidate.is_file():
        return candidate
    return None


def accepted_encodings(header: str) -> set[str]:
    """The content codings an ``Accept-Encoding`` header allows (``q=0`` refuses one)."""
    accepted = set()
    for part in header.lower().split(","):
        coding, *params = (piece.strip() for piece in part.split(";"))
        weight = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        if coding and weight > 0:
            accepted.add(coding)
    return accepted


def _send(file: Path, request: Request, headers: dict[str, str]) -> FileResponse:
    """``file`` as the smallest precompressed copy the client accepts, or as it is."""
    media_type = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
    variants = [(coding, file.with_name(file.name + suffix)) for coding, suffix in PRECOMPRESSED]
    variants = [(coding, path) for coding, path in variants if path.is_file()]
    if not variants:
        return FileResponse(file, media_type=media_type, headers=headers)
    headers = {**headers, "Vary": "Accept-Encoding"}
    accepted = accepted_encodings(request.headers.get("accept-encoding", ""))
    for coding, path in variants:
        if coding in accepted or "*" in accepted:
            return FileResponse(path, media_type=media_type, headers={**headers, "Content-Encoding": coding})
    return FileResponse(file, media_type=media_type, headers=headers)


def _wants_page(request: Request) -> bool:
    """A browser navigating (it asks for HTML), not an API client on a path that does not exist."""
    return "text/html" in request.headers.get("accept", "")


def web_router(dist: Path) -> APIRouter:
    """Added after every API route: it only sees the paths none of them took."""
    router = APIRouter(include_in_schema=False)

    @router.get("/docs")
    async def docs() -> HTMLResponse:
        if not (dist / "api-docs" / "swagger-ui-bundle.js").is_file():
            raise _not_built(dist)
        return HTMLResponse(DOCS_PAGE, headers={**APP_HEADERS, "Content-Security-Policy": DOCS_CSP})

    @router.api_route("/{path:path}", methods=["GET", "HEAD"])
    async def app(path: str, request: Request) -> Response:
        index = dist / "index.html"
        if not index.is_file():
            raise _not_built(dist)
        found = _file(dist, path)
        if found is not None:
            cache = IMMUTABLE if path.startswith("assets/") else NO_CACHE
            return _send(found, request, {**APP_HEADERS, "Cache-Control": cache})
        if path and not _wants_page(request):  # an API client's unknown path: the usual 404
            raise NotFound(f"No route {request.url.path}")
        if "." in path.rsplit("/", 1)[-1]:  # a missing file (an old asset), not an app page
            raise NotFound(f"No file {request.url.path}")
        return _send(index, request, {**APP_HEADERS, "Cache-Control": NO_CACHE})

    return router
