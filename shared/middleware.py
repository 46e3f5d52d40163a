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
                message["headers"] = headers
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
