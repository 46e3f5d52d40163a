"""ARQ jobs of the auth service (queue ``pai:auth``): the purge outbox."""

import uuid

from arq import cron

from services.auth.service import enqueue_pending_purges, mark_purge_finished
from services.auth.settings import get_settings
from shared.db import create_engine, session_factory
from shared.logging import configure_logging
from shared.redis import arq_settings
from shared.tasks import QUEUES


async def purge_finished(ctx: dict, service: str, user_id: str) -> None:
    """Another service reports it holds nothing more of a deleted user."""
    async with ctx["session_factory"]() as session:
        await mark_purge_finished(session, uuid.UUID(user_id), service)


async def requeue_purges(ctx: dict) -> int:
    """Recover purges that Redis lost: the outbox in Postgres is the source of truth."""
    async with ctx["session_factory"]() as session:
        return await enqueue_pending_purges(session, ctx["redis"])


async def startup(ctx: dict) -> None:
    settings = get_settings()
    configure_logging("auth-worker", settings.log_level)
    ctx["engine"] = create_engine(settings.service_database_url, pool_size=2)
    ctx["session_factory"] = session_factory(ctx["engine"])


async def shutdown(ctx: dict) -> None:
    await ctx["engine"].dispose()


class WorkerSettings:
    functions = [purge_finished]
    cron_jobs = [cron(requeue_purges, minute=set(range(0, 60, 5)), run_at_startup=True)]
    health_check_interval = 60  # `arq --check` (compose healthcheck) reads this key
    queue_name = QUEUES["auth"]
    redis_settings = arq_settings(get_settings().redis_url)
    on_startup = startup
    on_shutdown = shutdown
