"""ARQ jobs of the assistant service (queue ``pai:assistant``): a deleted user's purge.

The auth service's purge outbox re-enqueues the job until this worker reports it finished,
so a purge lost by Redis still happens. Settings are read when the worker starts.
"""

import uuid
from typing import TypedDict

from arq import func
from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.assistant import service
from services.assistant.settings import get_settings
from shared.db import create_engine, session_factory, transaction
from shared.logging import configure_logging
from shared.redis import arq_settings
from shared.registry import QUEUES
from shared.tasks import PURGE_USER_JOB, report_purge_finished


class WorkerContext(TypedDict):
    """What ``startup`` puts in ARQ's job context (``redis`` is ARQ's own)."""

    redis: ArqRedis
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]


async def purge_user(ctx: WorkerContext, user_id: str) -> int:
    async with transaction(ctx["sessions"], uuid.UUID(user_id)) as tx:
        removed = await service.purge_user(tx)
    await report_purge_finished(ctx["redis"], "assistant", user_id)
    return removed


async def startup(ctx: WorkerContext) -> None:
    settings = get_settings()
    configure_logging("assistant-worker", settings.log_level)
    ctx["engine"] = create_engine(settings.service_database_url, pool_size=2)
    ctx["sessions"] = session_factory(ctx["engine"])


async def shutdown(ctx: WorkerContext) -> None:
    await ctx["engine"].dispose()


def worker_settings() -> dict:
    """ARQ's worker settings, read from the environment when the worker starts."""
    settings = get_settings()
    return {
        "functions": [func(purge_user, name=PURGE_USER_JOB)],
        "health_check_interval": 60,  # `python -m services.assistant worker --check` reads its key
        "queue_name": QUEUES["assistant"],
        "redis_settings": arq_settings(settings.redis_url),
        "on_startup": startup,
        "on_shutdown": shutdown,
    }
