"""The gateway's FastAPI factory: ``uvicorn --factory services.gateway.app:create_app``."""

from contextlib import asynccontextmanager

import aiohttp
import httpx
from fastapi import FastAPI

from services.gateway.api import docs_router, proxy_router
from services.gateway.edge import InFlight
from services.gateway.schemas import Upstream
from services.gateway.service import OpenApiMerger, Proxy, RateLimiter, upstream_readiness
from services.gateway.settings import GatewaySettings, get_settings
from services.gateway.web import web_router
from shared.app import build_app
from shared.auth import JwksKeys, RevocationList, TokenVerifier
from shared.cli import UPSTREAM_KEEPALIVE_SECONDS
from shared.health import redis_check
from shared.logging import configure_logging
from shared.redis import create_redis
from shared.registry import ROUTED


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging("gateway", settings.log_level)
    upstreams = {service.name: Upstream(service.name, service.url()) for service in ROUTED}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        client = httpx.AsyncClient(timeout=5.0)  # JWKS, readiness and docs; not the hot path
        # Raw bytes both ways: no decompression, no cookie jar, headers passed as they are.
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=settings.upstream_max_connections,
                limit_per_host=settings.upstream_max_connections_per_service,  # one share per service
                keepalive_timeout=UPSTREAM_KEEPALIVE_SECONDS,
            ),
            timeout=aiohttp.ClientTimeout(
                total=None,
                connect=settings.upstream_connect_timeout_seconds,
                sock_read=settings.upstream_timeout_seconds,
            ),
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
        )
        redis = create_redis(settings.redis_url)
        app.state.client = client
        app.state.redis = redis
        app.state.upstreams = upstreams
        app.state.proxy = Proxy(session, settings)
        app.state.settings = settings
        app.state.in_flight = InFlight(settings.max_in_flight_per_client)
        app.state.verifier = TokenVerifier(
            JwksKeys(settings.jwks_url, client, settings.jwks_min_refresh_seconds),
            RevocationList(redis, settings.access_token_ttl_seconds),
            settings.jwt_issuer,
            settings.jwt_audience,
        )
        app.state.rate_limiter = RateLimiter(
            settings.redis_url, settings.rate_limit, settings.refused_token_rate_limit
        )
        app.state.openapi = OpenApiMerger(client, list(upstreams.values()), settings.openapi_cache_seconds)
        try:
            yield
        finally:
            await session.close()
            await client.aclose()
            await redis.aclose()

    app = build_app(
        "gateway",
        lifespan=lifespan,
        readiness_checks=lambda app: {
            "redis": redis_check(app.state.redis),
            **{name: upstream_readiness(app.state.client, u) for name, u in upstreams.items()},
        },
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.include_router(docs_router)
    app.include_router(proxy_router())
    app.include_router(web_router(settings.web_dist_dir))  # last: only what no API route took
    return app
