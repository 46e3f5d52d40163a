"""The cross-service job contract: queue names, job names and idempotent job ids.

Services never import each other; they agree on these names instead. Queue names come from
the service registry.
"""

import uuid

from arq.connections import ArqRedis

from shared.registry import QUEUES

PURGE_USER_JOB = "purge_user"
PURGE_FINISHED_JOB = "purge_finished"


def purge_job_id(service: str, user_id: uuid.UUID | str) -> str:
    return f"{PURGE_USER_JOB}:{service}:{user_id}"


async def enqueue_purge(arq: ArqRedis, service: str, user_id: uuid.UUID) -> None:
    """Enqueue ``purge_user`` on the service's queue; a second enqueue of the same id is a no-op."""
    await arq.enqueue_job(
        PURGE_USER_JOB,
        str(user_id),
        _job_id=purge_job_id(service, user_id),
        _queue_name=QUEUES[service],
    )


async def report_purge_finished(arq: ArqRedis, service: str, user_id: str) -> None:
    """Tell the auth service (through its queue) that ``service`` holds nothing of the user."""
    await arq.enqueue_job(
        PURGE_FINISHED_JOB,
        service,
        user_id,
        _job_id=f"{PURGE_FINISHED_JOB}:{service}:{user_id}",
        _queue_name=QUEUES["auth"],
    )
