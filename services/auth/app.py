"""The auth service's FastAPI factory: ``uvicorn --factory services.auth.app:create_app``."""

from contextlib import asynccontextmanager

from fastapi import FastAPI
from limits import parse

from services.auth import passwords
from services.auth.api import admin_router, router
from services.auth.service import AdminService, AuthService, LoginThrottle
from services.auth.settings import AuthSettings, get_settings
from services.auth.tokens import AccessTokenIssuer, KeyRing
from shared.app import build_app, database_and_redis_checks, service_resources
from shared.auth import StaticKeys
from shared.logging import configure_logging
from shared.ratelimit import RedisRateLimit
from shared.redis import create_arq_pool


def create_app(settings: AuthSettings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging("auth", settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        passwords.limit_concurrency(settings.password_hash_concurrency, settings.password_hash_niceness)
        keyring = KeyRing.load(settings)
        app.state.keyring = keyring
        async with service_resources(
            app, settings, settings.service_database_url, StaticKeys(keyring.public_keys)
        ):
            arq = await create_arq_pool(settings.redis_url)
            app.state.auth_service = AuthService(
                settings=settings,
                issuer=AccessTokenIssuer(
                    keyring,
                    settings.jwt_issuer,
                    settings.jwt_audience,
                    settings.access_token_ttl_seconds,
                ),
                throttle=LoginThrottle(
                    settings.redis_url,
                    settings.login_max_failures,
                    settings.login_failure_window_seconds,
                    settings.login_ip_rate_limit,
                ),
                registrations=RedisRateLimit(settings.redis_url, parse(settings.register_ip_rate_limit)),
                revocations=app.state.revocations,
            )
            app.state.admin_service = AdminService(app.state.revocations, arq, app.state.session_factory)
            try:
                yield
            finally:
                await arq.aclose()

    app = build_app(
        "auth",
        lifespan=lifespan,
        readiness_checks=database_and_redis_checks,
    )
    app.include_router(router)
    app.include_router(admin_router)
    return app
