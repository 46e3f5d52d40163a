"""What every service's app factory shares: errors, request context, metrics, health routes,
and the process-wide resources (database engine, Redis, token verifier)."""

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse

from shared.auth import JwksKeys, KeySource, RevocationList, TokenVerifier
from shared.config import CommonSettings
from shared.errors import install_error_handlers
from shared.health import Check, postgres_check, readiness, redis_check
from shared.middleware import RequestContextMiddleware, metrics_endpoint
from shared.openapi import install_openapi
from shared.redis import create_redis


def build_app(
    service: str,
    *,
    lifespan: Callable,
    readiness_checks: Callable[[FastAPI], Mapping[str, Check]],
    **fastapi_kwargs,
) -> FastAPI:
    """A FastAPI app with the cross-cutting parts wired; the service adds its routers."""
    # No trailing-slash redirects: behind the gateway their Location would name this service's
    # internal address; /documents/ is simply not a route.
    app = FastAPI(title=f"pai {service}", lifespan=lifespan, redirect_slashes=False, **fastapi_kwargs)
    install_error_handlers(app)
    install_openapi(app)
    app.add_middleware(RequestContextMiddleware, service=service)

    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok", "service": service})

    async def readyz(request: Request) -> JSONResponse:
        return await readiness(readiness_checks(request.app))

    app.add_api_route("/healthz", healthz, methods=["GET"], include_in_schema=False)
    app.add_api_route("/readyz", readyz, methods=["GET"], include_in_schema=False)
    app.add_route("/metrics", metrics_endpoint, methods=["GET"], include_in_schema=False)
    return app


@asynccontextmanager
async def service_resources(
    app: FastAPI, settings: CommonSettings, database_url: str, keys: KeySource | None = None
) -> AsyncIterator[None]:
    """Open the engine (as the service's own role), Redis and the token verifier on
    ``app.state`` for the app's lifetime. Keys default to the auth service's JWKS."""
    from shared.db import create_engine, session_factory  # SQLAlchemy: not for the gateway's sake

    engine = create_engine(database_url)
    redis = create_redis(settings.redis_url)
    http = httpx.AsyncClient()
    revocations = RevocationList(redis, settings.access_token_ttl_seconds)
    keys = keys or JwksKeys(settings.jwks_url, http, settings.jwks_min_refresh_seconds)
    app.state.engine = engine
    app.state.session_factory = session_factory(engine)
    app.state.redis = redis
    app.state.revocations = revocations
    app.state.verifier = TokenVerifier(keys, revocations, settings.jwt_issuer, settings.jwt_audience)
    try:
        yield
    finally:
        await http.aclose()
        await redis.aclose()
        await engine.dispose()


def database_and_redis_checks(app: FastAPI) -> dict[str, Check]:
    return {"postgres": postgres_check(app.state.engine), "redis": redis_check(app.state.redis)}
