"""The mail service's FastAPI factory: ``uvicorn --factory services.mail.app:create_app``."""

from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.mail.api import router
from services.mail.google import Google
from services.mail.service import MailService
from services.mail.settings import MailSettings, get_settings
from services.mail.tokens import AccountTokens
from shared.app import build_app, database_and_redis_checks, service_resources
from shared.embeddings import create_embedder
from shared.logging import configure_logging
from shared.redis import create_arq_pool
from shared.vectors import open_vector_store


def create_app(settings: MailSettings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging("mail", settings.log_level)
    cipher = settings.token_cipher()  # fails at start-up, not at the first connect

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        async with service_resources(app, settings, settings.service_database_url):
            embedder = create_embedder(settings)  # one model per process, loaded here
            store = open_vector_store(settings, embedder)
            arq = await create_arq_pool(settings.redis_url)
            google = Google(settings)
            tokens = AccountTokens(app.state.session_factory, app.state.redis, cipher, google)
            app.state.mail = MailService(
                settings, app.state.session_factory, arq, store, embedder, google, cipher, tokens
            )
            try:
                yield
            finally:
                await arq.aclose()
                await store.close()

    app = build_app("mail", lifespan=lifespan, readiness_checks=database_and_redis_checks)
    app.include_router(router)
    return app
