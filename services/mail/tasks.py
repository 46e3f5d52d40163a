"""ARQ jobs of the mail service (queue ``pai:mail``): account syncs, embedding of stored mail,
purge, and the cron that schedules periodic syncs and recovers work Redis lost.

Settings are read when the worker starts (:func:`worker_settings`), never at import.
"""

import uuid
from typing import TypedDict

from arq import cron, func
from arq.connections import ArqRedis
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.mail.google import Google
from services.mail.indexing import Indexer
from services.mail.queue import INDEX_JOB, SYNC_JOB, enqueue_index, enqueue_sync
from services.mail.service import purge_user as purge_mail
from services.mail.settings import MailSettings, get_settings
from services.mail.sync import Syncer, queue_run, recoverable_work
from services.mail.tokens import AccountTokens
from shared.db import create_engine, session_factory, transaction
from shared.embeddings import Embedder, create_embedder
from shared.logging import configure_logging
from shared.redis import arq_settings, create_redis
from shared.registry import QUEUES
from shared.tasks import PURGE_USER_JOB, report_purge_finished
from shared.text.isolation import IsolatedExtractor
from shared.vectors import VectorStore, open_vector_store


class WorkerContext(TypedDict):
    """What ``startup`` puts in ARQ's job context (``redis`` is ARQ's own)."""

    redis: ArqRedis
    settings: MailSettings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    plain_redis: Redis
    embedder: Embedder
    store: VectorStore
    syncer: Syncer
    extractor: IsolatedExtractor
    indexer: Indexer


async def sync_account(ctx: WorkerContext, run_id: str, owner_id: str) -> str:
    return await ctx["syncer"].run(uuid.UUID(run_id), uuid.UUID(owner_id))


async def index_account(ctx: WorkerContext, account_id: str, owner_id: str) -> int:
    return await ctx["indexer"].index_account(uuid.UUID(account_id), uuid.UUID(owner_id))


async def purge_user(ctx: WorkerContext, user_id: str) -> int:
    attachments_dir = ctx["settings"].attachments_dir
    removed = await purge_mail(ctx["sessions"], ctx["store"], uuid.UUID(user_id), attachments_dir)
    await report_purge_finished(ctx["redis"], "mail", user_id)
    return removed


async def schedule_and_recover(ctx: WorkerContext) -> dict[str, int]:
    """Postgres is the source of truth: start due periodic syncs, re-enqueue stale runs and
    mail not yet embedded (a lost job, a killed worker)."""
    settings = ctx["settings"]
    async with transaction(ctx["sessions"]) as tx:
        work = await recoverable_work(tx, interval_seconds=settings.sync_interval_minutes * 60)
    for account_id, owner_id in work.due:
        async with transaction(ctx["sessions"], owner_id) as tx:
            run, created = await queue_run(tx.session, owner_id, account_id)
        if created:
            await enqueue_sync(ctx["redis"], run.id, owner_id)
    for run_id, owner_id in work.stale:
        await enqueue_sync(ctx["redis"], run_id, owner_id)
    for account_id, owner_id in work.unindexed:
        await enqueue_index(ctx["redis"], account_id, owner_id)
    return {"due": len(work.due), "stale": len(work.stale), "unindexed": len(work.unindexed)}


async def startup(ctx: WorkerContext) -> None:
    settings = ctx["settings"] = get_settings()
    configure_logging("mail-worker", settings.log_level)
    ctx["engine"] = create_engine(settings.service_database_url, pool_size=4)
    ctx["sessions"] = session_factory(ctx["engine"])
    ctx["plain_redis"] = create_redis(settings.redis_url)
    ctx["embedder"] = create_embedder(settings)
    ctx["store"] = open_vector_store(settings, ctx["embedder"])
    google = Google(settings)
    tokens = AccountTokens(ctx["sessions"], ctx["plain_redis"], settings.token_cipher(), google)

    async def on_stored(account_id: uuid.UUID, owner_id: uuid.UUID) -> None:
        await enqueue_index(ctx["redis"], account_id, owner_id)

    ctx["syncer"] = Syncer(settings, ctx["sessions"], google, tokens, ctx["store"], on_stored)
    ctx["extractor"] = IsolatedExtractor(settings.extraction_limits, settings.isolation_limits)
    ctx["indexer"] = Indexer(settings, ctx["sessions"], ctx["store"], ctx["embedder"], ctx["extractor"])


async def shutdown(ctx: WorkerContext) -> None:
    ctx["extractor"].close()
    await ctx["store"].close()
    await ctx["embedder"].aclose()
    await ctx["plain_redis"].aclose()
    await ctx["engine"].dispose()


def worker_settings() -> dict:
    """ARQ's worker settings, read from the environment when the worker starts."""
    settings = get_settings()
    return {
        "functions": [
            func(sync_account, name=SYNC_JOB, keep_result=0, timeout=settings.sync_timeout_seconds),
            func(index_account, name=INDEX_JOB, keep_result=0, timeout=settings.sync_timeout_seconds),
            func(purge_user, name=PURGE_USER_JOB),
        ],
        "cron_jobs": [
            cron(
                schedule_and_recover,
                second=set(range(0, 60, min(60, settings.recover_interval_seconds))),
                run_at_startup=True,
            )
        ],
        "health_check_interval": 60,  # `python -m services.mail worker --check` reads its key
        "queue_name": QUEUES["mail"],
        "redis_settings": arq_settings(settings.redis_url),
        "job_timeout": settings.sync_timeout_seconds,
        "max_jobs": 4,
        "on_startup": startup,
        "on_shutdown": shutdown,
    }
