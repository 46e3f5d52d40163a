"""ARQ jobs of the auth service (queue ``pai:auth``): the purge outbox."""

import uuid
from typing import TypedDict

from arq import cron
from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.auth.service import enqueue_pending_purges, mark_purge_finished
from services.auth.settings import get_settings
from shared.db import create_engine, session_factory, transaction
from shared.logging import configure_logging
from shared.redis import arq_settings
from shared.registry import QUEUES


class WorkerContext(TypedDict):
    """What ``startup`` puts in ARQ's job context (``redis`` is ARQ's own)."""

    redis: ArqRedis
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]


async def purge_finished(ctx: WorkerContext, service: str, user_id: str) -> None:
    """Another service reports it holds nothing more of a deleted user."""
    async with transaction(ctx["sessions"]) as tx:
        await mark_purge_finished(tx, uuid.UUID(user_id), service)


async def requeue_purges(ctx: WorkerContext) -> int:
    """Recover purges that Redis lost: the outbox in Postgres is the source of truth."""
    async with transaction(ctx["sessions"]) as tx:
        return await enqueue_pending_purges(tx, ctx["redis"])


async def startup(ctx: WorkerContext) -> None:
    settings = get_settings()
    configure_logging("auth-worker", settings.log_level)
    ctx["engine"] = create_engine(settings.service_database_url, pool_size=2)
    ctx["sessions"] = session_factory(ctx["engine"])


async def shutdown(ctx: WorkerContext) -> None:
    await ctx["engine"].dispose()


def worker_settings() -> dict:
    """ARQ's worker settings, read from the environment when the worker starts (not at import)."""
    return {
        "functions": [purge_finished],
        "cron_jobs": [
            cron(
                requeue_purges,
                second=set(range(0, 60, get_settings().recover_interval_seconds)),
                run_at_startup=True,
            )
        ],
        "health_check_interval": 60,  # `python -m services.auth worker --check` reads its key
        "queue_name": QUEUES["auth"],
        "redis_settings": arq_settings(get_settings().redis_url),
        "on_startup": startup,
        "on_shutdown": shutdown,
    }
