"""ARQ jobs of the documents service (queue ``pai:documents``): ingestion, deletion, purge,
and the crons that recover lost jobs from Postgres and compact the vector store.

Settings are read when the worker starts (:func:`worker_settings`), never at import.
"""

import uuid
from typing import TypedDict

from arq import cron, func
from arq.connections import ArqRedis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.documents.ingestion import Ingestor
from services.documents.queue import DELETE_JOB, INGEST_JOB, enqueue_delete, enqueue_ingest
from services.documents.settings import DocumentsSettings, get_settings
from shared.db import create_engine, session_factory, transaction
from shared.embeddings import Embedder, create_embedder
from shared.logging import configure_logging
from shared.redis import arq_settings
from shared.registry import QUEUES
from shared.tasks import PURGE_USER_JOB, report_purge_finished
from shared.text.isolation import IsolatedExtractor
from shared.vectors import VectorStore, open_vector_store


class WorkerContext(TypedDict):
    """What ``startup`` puts in ARQ's job context (``redis`` is ARQ's own)."""

    redis: ArqRedis
    settings: DocumentsSettings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    embedder: Embedder
    store: VectorStore
    extractor: IsolatedExtractor
    ingestor: Ingestor


async def ingest_document(ctx: WorkerContext, document_id: str, owner_id: str) -> str:
    return await ctx["ingestor"].ingest(uuid.UUID(document_id), uuid.UUID(owner_id))


async def delete_document(ctx: WorkerContext, document_id: str, owner_id: str) -> None:
    await ctx["ingestor"].remove(uuid.UUID(document_id), uuid.UUID(owner_id))


async def purge_user(ctx: WorkerContext, user_id: str) -> int:
    removed = await ctx["ingestor"].purge_user(uuid.UUID(user_id))
    await report_purge_finished(ctx["redis"], "documents", user_id)
    return removed


async def recover_stale_documents(ctx: WorkerContext) -> int:
    """Enqueue every unfinished document again: Postgres is the source of truth, and ARQ ignores
    a job id it still knows, so only the jobs Redis lost (flushed, evicted) come back."""
    async with transaction(ctx["sessions"]) as tx:
        rows = (
            await tx.session.execute(
                text("SELECT id, owner_id, deleted FROM documents.documents_needing_work(0)")
            )
        ).all()
    for row in rows:
        enqueue = enqueue_delete if row.deleted else enqueue_ingest
        await enqueue(ctx["redis"], row.id, row.owner_id)
    return len(rows)


async def optimize_vectors(ctx: WorkerContext) -> None:
    await ctx["store"].optimize()


async def startup(ctx: WorkerContext) -> None:
    settings = ctx["settings"] = get_settings()
    configure_logging("documents-worker", settings.log_level)
    ctx["engine"] = create_engine(settings.service_database_url, pool_size=4)
    ctx["sessions"] = session_factory(ctx["engine"])
    ctx["embedder"] = create_embedder(settings)
    ctx["store"] = open_vector_store(settings, ctx["embedder"])
    ctx["extractor"] = IsolatedExtractor(settings.extraction_limits, settings.isolation_limits)
    ctx["ingestor"] = Ingestor(settings, ctx["sessions"], ctx["store"], ctx["embedder"], ctx["extractor"])


async def shutdown(ctx: WorkerContext) -> None:
    ctx["extractor"].close()
    await ctx["store"].close()
    await ctx["embedder"].aclose()
    await ctx["engine"].dispose()


def worker_settings() -> dict:
    """ARQ's worker settings, read from the environment when the worker starts."""
    settings = get_settings()
    return {
        "functions": [
            func(ingest_document, name=INGEST_JOB, keep_result=0, timeout=settings.ingest_timeout_seconds),
            func(delete_document, name=DELETE_JOB, keep_result=0),
            func(purge_user, name=PURGE_USER_JOB),
        ],
        "cron_jobs": [
            cron(
                recover_stale_documents,
                second=set(range(0, 60, min(60, settings.recover_interval_seconds))),
                run_at_startup=True,
            ),
            cron(optimize_vectors, minute=set(range(0, 60, max(1, settings.vector_optimize_minutes)))),
        ],
        "health_check_interval": 60,  # `python -m services.documents worker --check` reads its key
        "queue_name": QUEUES["documents"],
        "redis_settings": arq_settings(settings.redis_url),
        "job_timeout": settings.ingest_timeout_seconds,
        "max_jobs": 4,
        "on_startup": startup,
        "on_shutdown": shutdown,
    }
