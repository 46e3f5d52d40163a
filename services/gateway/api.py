"""Gateway routes: one catch-all per service prefix, plus the combined OpenAPI document (the
browser app and the docs page are :mod:`services.gateway.web`)."""

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from services.gateway.edge import ReleaseAfter
from services.gateway.schemas import ROUTES
from services.gateway.service import authenticate, client_ip
from shared.auth import Principal
from shared.errors import Unauthenticated

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"]


async def gate(request: Request) -> tuple[Principal | None, str]:
    """Token, then the rate limit: nothing reaches a service before both pass (oversized or
    slow headers never got this far: see shared/http_protocol.py).
    Returns the principal (None on a public endpoint) and the client's key."""
    state = request.app.state
    try:
        principal = await authenticate(request, state.verifier)
    except Unauthenticated:
        await state.rate_limiter.check_refused(client_ip(request))
        raise
    client = f"user:{principal.user_id}" if principal else f"ip:{client_ip(request)}"
    await state.rate_limiter.check(client)
    return principal, client


def _forwarder(service: str, template: str):
    async def forward(request: Request) -> Response:
        request.state.route_template = template
        principal, client = await gate(request)
        state = request.app.state
        release = state.in_flight.take(client)  # given back when the answer is fully sent
        try:
            response = await state.proxy.forward(request, state.upstreams[service], public=principal is None)
        except BaseException:
            release()
            raise
        return ReleaseAfter(response, release)  # type: ignore[return-value]  # any ASGI app will do

    return forward


def proxy_router() -> APIRouter:
    """Plain Starlette routes: the body is streamed, never parsed, so FastAPI's request
    handling (dependency solving, body reading) would be pure overhead on the hot path."""
    router = APIRouter()
    for prefix, service in ROUTES.items():
        for path in (f"/{prefix}", f"/{prefix}/{{path:path}}"):
            router.add_route(path, _forwarder(service, path), methods=METHODS, include_in_schema=False)
    return router


docs_router = APIRouter(include_in_schema=False)


@docs_router.get("/openapi.json")
async def openapi(request: Request) -> JSONResponse:
    return JSONResponse(await request.app.state.openapi.document())
