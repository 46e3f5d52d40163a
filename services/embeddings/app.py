"""The embeddings process's FastAPI factory: ``uvicorn --factory services.embeddings.app:create_app``.

It owns no data, so (like the gateway) it has no models, tasks or migrations. It is internal:
it binds loopback under ``make run`` and is not routed by the gateway.
"""

import asyncio
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.embeddings.api import router
from services.embeddings.service import Batcher, EmbeddingsService
from services.embeddings.settings import EmbeddingsSettings, get_settings
from shared.app import build_app
from shared.embeddings import LocalEmbedder, local_identity
from shared.logging import configure_logging
from shared.memory import release_free_memory


def create_app(settings: EmbeddingsSettings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging("embeddings", settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        model = await asyncio.to_thread(LocalEmbedder, settings)  # seconds: off the event loop
        idle_seconds = settings.embeddings_idle_release_seconds
        batcher = Batcher(
            model.encode_batch,
            settings.embeddings_max_batch,
            settings.embeddings_batch_wait_ms / 1000,
            on_idle=release_free_memory if idle_seconds > 0 else None,
            idle_seconds=idle_seconds,
        )
        batcher.start()
        app.state.embeddings = EmbeddingsService(
            model=local_identity(settings.embedding_model),
            dimension=model.dimension,
            precision=model.precision,
            batcher=batcher,
            max_inputs=settings.embeddings_max_inputs,
            max_chars=settings.embeddings_max_chars,
        )
        try:
            yield
        finally:
            await batcher.stop()

    async def model_check() -> dict:
        service: EmbeddingsService = app.state.embeddings
        if not service.batcher.running:
            raise RuntimeError("the batcher is not running")
        return {"model": service.model, "precision": service.precision}

    app = build_app("embeddings", lifespan=lifespan, readiness_checks=lambda _app: {"model": model_check})
    app.include_router(router)
    return app
