"""ARQ jobs of the mail service (queue ``pai:mail``): account syncs, embedding of stored mail,
purge, and the cron that schedules periodic syncs and recovers work Redis lost."""

import uuid

from arq import cron, func
from sqlalchemy import text

from services.mail.google import Google
from services.mail.indexing import Indexer
from services.mail.queue import INDEX_JOB, SYNC_JOB, enqueue_index, enqueue_sync
from services.mail.service import purge_user as purge_mail
from services.mail.settings import get_settings
from services.mail.sync import Syncer, queue_run
from services.mail.tokens import AccountTokens
from shared.db import create_engine, session_factory, user_session
from shared.embeddings import create_embedder
from shared.logging import configure_logging
from shared.redis import arq_settings, create_redis
from shared.tasks import PURGE_USER_JOB, QUEUES, report_purge_finished
from shared.vectors import open_vector_store

settings = get_settings()


async def sync_account(ctx: dict, run_id: str, owner_id: str) -> str:
    return await ctx["syncer"].run(uuid.UUID(run_id), uuid.UUID(owner_id))


async def index_account(ctx: dict, account_id: str, owner_id: str) -> int:
    return await ctx["indexer"].index_account(uuid.UUID(account_id), uuid.UUID(owner_id))


async def purge_user(ctx: dict, user_id: str) -> int:
    removed = await purge_mail(ctx["sessions"], ctx["store"], uuid.UUID(user_id), settings.attachments_dir)
    await report_purge_finished(ctx["redis"], "mail", user_id)
    return removed


async def schedule_and_recover(ctx: dict) -> dict[str, int]:
    """Postgres is the source of truth: start due periodic syncs, re-enqueue stale runs and
    mail not yet embedded (a lost job, a killed worker)."""
    async with ctx["sessions"]() as session:
        due = (
            await session.execute(
                text("SELECT account_id, owner_id FROM mail.accounts_due_for_sync(:interval)"),
                {"interval": settings.sync_interval_minutes * 60},
            )
        ).all()
        stale = (
            await session.execute(
                text("SELECT run_id, owner_id FROM mail.syncs_needing_work(:stale)"),
                {"stale": settings.sync_stale_seconds},
            )
        ).all()
        unindexed = (
            await session.execute(text("SELECT account_id, owner_id FROM mail.accounts_needing_index()"))
        ).all()
    for row in due:
        async with user_session(ctx["sessions"], row.owner_id) as session:
            run, created = await queue_run(session, row.owner_id, row.account_id)
            await session.commit()
        if created:
            await enqueue_sync(ctx["redis"], run.id, row.owner_id)
    for row in stale:
        await enqueue_sync(ctx["redis"], row.run_id, row.owner_id)
    for row in unindexed:
        await enqueue_index(ctx["redis"], row.account_id, row.owner_id)
    return {"due": len(due), "stale": len(stale), "unindexed": len(unindexed)}


async def startup(ctx: dict) -> None:
    configure_logging("mail-worker", settings.log_level)
    ctx["engine"] = create_engine(settings.service_database_url, pool_size=4)
    ctx["sessions"] = session_factory(ctx["engine"])
    ctx["plain_redis"] = create_redis(settings.redis_url)
    embedder = create_embedder(settings)
    ctx["store"] = open_vector_store(settings, embedder)
    google = Google(settings)
    tokens = AccountTokens(ctx["sessions"], ctx["plain_redis"], settings.token_cipher(), google)

    async def on_stored(account_id: uuid.UUID, owner_id: uuid.UUID) -> None:
        await enqueue_index(ctx["redis"], account_id, owner_id)

    ctx["syncer"] = Syncer(settings, ctx["sessions"], google, tokens, ctx["store"], on_stored)
    ctx["indexer"] = Indexer(settings, ctx["sessions"], ctx["store"], embedder)


async def shutdown(ctx: dict) -> None:
    await ctx["store"].close()
    await ctx["plain_redis"].aclose()
    await ctx["engine"].dispose()


class WorkerSettings:
    functions = [
        func(sync_account, name=SYNC_JOB, keep_result=0, timeout=settings.sync_timeout_seconds),
        func(index_account, name=INDEX_JOB, keep_result=0, timeout=settings.sync_timeout_seconds),
        func(purge_user, name=PURGE_USER_JOB),
    ]
    cron_jobs = [
        cron(
            schedule_and_recover,
            second=set(range(0, 60, min(60, settings.recover_interval_seconds))),
            run_at_startup=True,
        )
    ]
    health_check_interval = 60  # `arq --check` (compose healthcheck) reads this key
    queue_name = QUEUES["mail"]
    redis_settings = arq_settings(settings.redis_url)
    job_timeout = settings.sync_timeout_seconds
    max_jobs = 4
    on_startup = startup
    on_shutdown = shutdown
