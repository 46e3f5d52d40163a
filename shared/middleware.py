"""Per-request plumbing for every service: request id, one JSON log line, Prometheus metrics.

Written as plain ASGI middleware (not BaseHTTPMiddleware) so streamed bodies pass
through untouched and the overhead stays at a few microseconds.
"""

import re
import time
import uuid

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER = "x-request-id"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

REQUESTS = Counter("http_requests_total", "HTTP requests handled", ["service", "method", "route", "status"])
LATENCY = Histogram(
    "http_request_duration_seconds",
    "Time to the end of the response",
    ["service", "method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)

log = structlog.get_logger("request")

# Baseline for every answer (added when the route did not set its own): no MIME sniffing, no
# framing, no referrer; JSON answers may load nothing at all.
BASELINE_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)
JSON_CSP = b"default-src 'none'; frame-ancestors 'none'"
# What users uploaded or received, served back on the API's origin: never run as a page of it
# (an uploaded HTML file would otherwise be stored XSS), never sniffed into another type.
USER_CONTENT_HEADERS = {
    "Content-Security-Policy": "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
}


def with_security_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    present = {name.lower() for name, _ in headers}
    added = [(name, value) for name, value in BASELINE_HEADERS if name not in present]
    content_type = next((value for name, value in headers if name.lower() == b"content-type"), b"")
    if content_type.startswith(b"application/json") and b"content-security-policy" not in present:
        added.append((b"content-security-policy", JSON_CSP))
    return headers + added


def route_template(scope: Scope) -> str:
    """The matched route's path template, so metric labels never contain ids. FastAPI records
    only its own APIRoutes in the scope; plain Starlette routes name theirs in
    ``request.state.route_template``."""
    route = scope.get("route")
    return getattr(route, "path", None) or scope["state"].get("route_template") or "unmatched"


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = self._request_id(scope)
        scope.setdefault("state", {})
        structlog.contextvars.bind_contextvars(request_id=request_id)
        start = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [h for h in message.get("headers", []) if h[0] != b"x-request-id"]
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = with_security_headers(headers)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - start
            route = route_template(scope)
            REQUESTS.labels(self.service, scope["method"], route, str(status)).inc()
            LATENCY.labels(self.service, scope["method"], route).observe(elapsed)
            log.info(
                "request",
                method=scope["method"],
                route=route,
                path=scope["path"],
                status=status,
                duration_ms=round(elapsed * 1000, 2),
                user_id=scope["state"].get("user_id"),
            )
            structlog.contextvars.unbind_contextvars("request_id")

    @staticmethod
    def _request_id(scope: Scope) -> str:
        """Keep a well-formed incoming id (so one id follows a request across services)."""
        headers = scope["headers"]
        for name, value in headers:
            if name == b"x-request-id":
                candidate = value.decode("latin-1")
                if _VALID_REQUEST_ID.match(candidate):
                    return candidate
                break
        request_id = uuid.uuid4().hex
        scope["headers"] = [h for h in headers if h[0] != b"x-request-id"] + [
            (b"x-request-id", request_id.encode())
        ]
        return request_id


async def metrics_endpoint(_: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
