"""Enqueuing the mail worker's jobs. Job ids make enqueues idempotent: while a run's (or an
account's indexing) job is queued or running, enqueuing it again is a no-op. Postgres stays
the source of truth: the worker's cron re-enqueues what Redis lost."""

import uuid

from arq.connections import ArqRedis

from shared.registry import QUEUES

SYNC_JOB = "sync_account"
INDEX_JOB = "index_account"


async def enqueue_sync(arq: ArqRedis, run_id: uuid.UUID, owner_id: uuid.UUID) -> None:
    await arq.enqueue_job(
        SYNC_JOB, str(run_id), str(owner_id), _job_id=f"{SYNC_JOB}:{run_id}", _queue_name=QUEUES["mail"]
    )


async def enqueue_index(arq: ArqRedis, account_id: uuid.UUID, owner_id: uuid.UUID) -> None:
    await arq.enqueue_job(
        INDEX_JOB,
        str(account_id),
        str(owner_id),
        _job_id=f"{INDEX_JOB}:{account_id}",
        _queue_name=QUEUES["mail"],
    )
