"""The assistant service's FastAPI factory: ``uvicorn --factory services.assistant.app:create_app``."""

from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.assistant.answering import Answerer
from services.assistant.api import conversations, queries
from services.assistant.limits import AnswerSlots
from services.assistant.llm import create_chat_model
from services.assistant.retrieval import SourceClient
from services.assistant.settings import AssistantSettings, get_settings
from shared.app import build_app, database_and_redis_checks, service_resources
from shared.logging import configure_logging


def create_app(settings: AssistantSettings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging("assistant", settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        async with service_resources(app, settings, settings.service_database_url):
            sources = SourceClient(settings.documents_url, settings.mail_url, settings.source_timeout_seconds)
            model = create_chat_model(settings)
            slots = AnswerSlots(
                app.state.redis, settings.max_concurrent_answers, settings.answer_slot_seconds
            )
            app.state.sources = sources
            app.state.answerer = Answerer(settings, app.state.session_factory, sources, model, slots)
            try:
                yield
            finally:
                await sources.aclose()
                if model is not None:
                    await model.aclose()

    app = build_app("assistant", lifespan=lifespan, readiness_checks=database_and_redis_checks)
    app.include_router(queries)
    app.include_router(conversations)
    return app
