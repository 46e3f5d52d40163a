"""Gateway routes: one catch-all per service prefix, plus the combined API docs."""

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.responses import HTMLResponse, JSONResponse, StreamingResponse

from services.gateway.schemas import ROUTES
from services.gateway.service import authenticate, client_ip
from shared.auth import Principal

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"]


async def gate(request: Request) -> Principal | None:
    """Token first, then the rate limit: nothing reaches a service before both pass."""
    state = request.app.state
    principal = await authenticate(request, state.verifier)
    key = f"user:{principal.user_id}" if principal else f"ip:{client_ip(request)}"
    await state.rate_limiter.check(key)
    return principal


Gate = Annotated[Principal | None, Depends(gate)]


def _forwarder(service: str):
    async def forward(request: Request, _: Gate) -> StreamingResponse:
        state = request.app.state
        return await state.proxy.forward(request, state.upstreams[service])

    return forward


def proxy_router() -> APIRouter:
    router = APIRouter()
    for prefix, service in ROUTES.items():
        for path in (f"/{prefix}", f"/{prefix}/{{path:path}}"):
            router.add_api_route(path, _forwarder(service), methods=METHODS, include_in_schema=False)
    return router


docs_router = APIRouter(include_in_schema=False)


@docs_router.get("/openapi.json")
async def openapi(request: Request) -> JSONResponse:
    return JSONResponse(await request.app.state.openapi.document())


@docs_router.get("/docs")
async def docs() -> HTMLResponse:
    return get_swagger_ui_html(openapi_url="/openapi.json", title="Personal AI assistant API")
