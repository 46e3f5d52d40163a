"""The documents service's FastAPI factory: ``uvicorn --factory services.documents.app:create_app``."""

from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.documents.api import router
from services.documents.service import DocumentsService
from services.documents.settings import DocumentsSettings, get_settings
from shared.app import build_app, database_and_redis_checks, service_resources
from shared.embeddings import create_embedder
from shared.logging import configure_logging
from shared.redis import create_arq_pool
from shared.vectors import open_vector_store


def create_app(settings: DocumentsSettings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging("documents", settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        async with service_resources(app, settings, settings.service_database_url):
            embedder = create_embedder(settings)  # one model per process, loaded here, not per request
            store = open_vector_store(settings, embedder)
            arq = await create_arq_pool(settings.redis_url)
            app.state.documents = DocumentsService(settings, arq, store, embedder)
            try:
                yield
            finally:
                await arq.aclose()
                await store.close()

    app = build_app("documents", lifespan=lifespan, readiness_checks=database_and_redis_checks)
    app.include_router(router)
    return app
