"""The mail service's FastAPI factory: ``uvicorn --factory services.mail.app:create_app``."""

from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.mail.api import router
from services.mail.settings import MailSettings, get_settings
from shared.app import build_app, database_and_redis_checks, service_resources
from shared.logging import configure_logging


def create_app(settings: MailSettings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging("mail", settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        async with service_resources(app, settings, settings.service_database_url):
            yield

    app = build_app("mail", lifespan=lifespan, readiness_checks=database_and_redis_checks)
    app.include_router(router)
    return app
