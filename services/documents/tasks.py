"""ARQ jobs of the documents service (queue ``pai:documents``): ingestion, deletion, purge,
and the crons that recover lost jobs from Postgres and compact the vector store."""

import uuid

from arq import cron, func
from sqlalchemy import text

from services.documents.ingestion import Ingestor
from services.documents.queue import DELETE_JOB, INGEST_JOB, enqueue_delete, enqueue_ingest
from services.documents.settings import get_settings
from shared.db import create_engine, session_factory
from shared.embeddings import create_embedder
from shared.logging import configure_logging
from shared.redis import arq_settings
from shared.tasks import PURGE_USER_JOB, QUEUES, report_purge_finished
from shared.vectors import open_vector_store

settings = get_settings()


async def ingest_document(ctx: dict, document_id: str, owner_id: str) -> str:
    return await ctx["ingestor"].ingest(uuid.UUID(document_id), uuid.UUID(owner_id))


async def delete_document(ctx: dict, document_id: str, owner_id: str) -> None:
    await ctx["ingestor"].remove(uuid.UUID(document_id), uuid.UUID(owner_id))


async def purge_user(ctx: dict, user_id: str) -> int:
    removed = await ctx["ingestor"].purge_user(uuid.UUID(user_id))
    await report_purge_finished(ctx["redis"], "documents", user_id)
    return removed


async def recover_stale_documents(ctx: dict) -> int:
    """Re-enqueue work that Redis lost or a killed worker left: Postgres is the source of truth."""
    async with ctx["sessions"]() as session:
        rows = (
            await session.execute(
                text("SELECT id, owner_id, deleted FROM documents.documents_needing_work(:stale)"),
                {"stale": settings.ingest_stale_seconds},
            )
        ).all()
    for row in rows:
        enqueue = enqueue_delete if row.deleted else enqueue_ingest
        await enqueue(ctx["redis"], row.id, row.owner_id)
    return len(rows)


async def optimize_vectors(ctx: dict) -> None:
    await ctx["store"].optimize()


async def startup(ctx: dict) -> None:
    configure_logging("documents-worker", settings.log_level)
    ctx["engine"] = create_engine(settings.service_database_url, pool_size=4)
    ctx["sessions"] = session_factory(ctx["engine"])
    embedder = create_embedder(settings)
    ctx["store"] = open_vector_store(settings, embedder)
    ctx["ingestor"] = Ingestor(settings, ctx["sessions"], ctx["store"], embedder)


async def shutdown(ctx: dict) -> None:
    await ctx["store"].close()
    await ctx["engine"].dispose()


class WorkerSettings:
    functions = [
        func(ingest_document, name=INGEST_JOB, keep_result=0, timeout=settings.ingest_timeout_seconds),
        func(delete_document, name=DELETE_JOB, keep_result=0),
        func(purge_user, name=PURGE_USER_JOB),
    ]
    cron_jobs = [
        cron(
            recover_stale_documents,
            second=set(range(0, 60, min(60, settings.recover_interval_seconds))),
            run_at_startup=True,
        ),
        cron(optimize_vectors, minute=set(range(0, 60, max(1, settings.vector_optimize_minutes)))),
    ]
    health_check_interval = 60  # `arq --check` (compose healthcheck) reads this key
    queue_name = QUEUES["documents"]
    redis_settings = arq_settings(settings.redis_url)
    job_timeout = settings.ingest_timeout_seconds
    max_jobs = 4
    on_startup = startup
    on_shutdown = shutdown
