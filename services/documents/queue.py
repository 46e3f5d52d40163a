"""Enqueuing the documents worker's jobs. Job ids make enqueues idempotent: while a document's
job is queued or running, enqueuing it again is a no-op."""

import uuid

from arq.connections import ArqRedis

from shared.registry import QUEUES

INGEST_JOB = "ingest_document"
DELETE_JOB = "delete_document"


def delete_job_id(document_id: uuid.UUID | str) -> str:
    return f"{DELETE_JOB}:{document_id}"


async def enqueue_ingest(arq: ArqRedis, document_id: uuid.UUID, owner_id: uuid.UUID) -> None:
    await arq.enqueue_job(
        INGEST_JOB, str(document_id), str(owner_id), _job_id=str(document_id), _queue_name=QUEUES["documents"]
    )


async def enqueue_delete(arq: ArqRedis, document_id: uuid.UUID, owner_id: uuid.UUID) -> None:
    await arq.enqueue_job(
        DELETE_JOB,
        str(document_id),
        str(owner_id),
        _job_id=delete_job_id(document_id),
        _queue_name=QUEUES["documents"],
    )
