"""Ingestion survives what production throws at it: a worker killed mid-document, and Redis
losing every queued job. A private documents API + worker pair on its own Redis db, so killing
and flushing touches nothing else."""

import asyncio
import os
import signal
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest
import redis

from shared.embeddings import EmbeddingSettings, create_embedder
from shared.text.chunking import chunk, classify
from shared.text.extraction import TEXT, extract
from shared.vectors import DOCUMENT_CHUNKS, create_vector_store
from tests import files
from tests.conftest import fresh_database
from tests.support import Process, python

PRIVATE_REDIS = "redis://127.0.0.1:6379/10"


@pytest.fixture(scope="module")
def private_database():
    """Its own database too: the main stack's recovery cron must not adopt these documents."""
    with fresh_database() as url:
        yield url


@pytest.fixture(scope="module")
def private(start_service, stack, tmp_path_factory, private_database):
    redis.Redis.from_url(PRIVATE_REDIS).flushdb()
    data_dir = tmp_path_factory.mktemp("recovery-data")
    settings = {
        "database_url": private_database,
        "redis_url": PRIVATE_REDIS,
        "data_dir": str(data_dir),
        "recover_interval_seconds": "2",
        "ingest_timeout_seconds": "20",
        "embedding_batch_size": "8",
    }
    url, _ = start_service("documents", **settings)
    env = {**stack.env, **{f"PAI_{k.upper()}": v for k, v in settings.items()}}
    log = tmp_path_factory.mktemp("recovery-worker") / "worker.log"

    def worker() -> Process:
        return Process(python("-m", "services.documents", "worker"), env, log).start()

    return url, data_dir, worker


def long_text() -> bytes:
    paragraphs = [
        f"Chapter {i}. "
        + " ".join(f"Sentence {i}.{j} tells a slow story about rivers and mills." for j in range(20))
        for i in range(40)
    ]
    return "\n\n".join(paragraphs).encode()


def expected_chunks(content: bytes) -> int:
    """What the pipeline must end with, computed here with the same extractor and chunker."""
    with tempfile.NamedTemporaryFile(suffix=".txt") as handle:
        handle.write(content)
        handle.flush()
        extracted = extract(Path(handle.name), TEXT)
    return len(chunk(extracted, classify(extracted)))


async def document(client, account, document_id) -> dict:
    return (await client.get(f"/documents/{document_id}", headers=account.headers)).json()


async def wait_for_status(client, account, document_id, statuses, timeout=90.0) -> dict:
    deadline = time.monotonic() + timeout
    current = await document(client, account, document_id)
    while current["status"] not in statuses and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        current = await document(client, account, document_id)
    return current


async def test_documents_queued_when_redis_lost_them_are_recovered(private, new_account):
    url, _, worker = private
    account = await new_account()
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        response = await client.post(
            "/documents", headers=account.headers, files={"file": ("lost.txt", files.text_file())}
        )
        assert response.status_code == 202
        redis.Redis.from_url(PRIVATE_REDIS).flushdb()  # the job is gone; only Postgres knows
        await asyncio.sleep(1.5)
        process = worker()
        try:
            ready = await wait_for_status(client, account, response.json()["id"], {"ready", "failed"})
        finally:
            process.stop()
    assert ready["status"] == "ready", ready
    assert ready["chunk_count"] == expected_chunks(files.text_file())


async def test_a_queue_lost_mid_ingestion_resumes_within_one_recovery_interval(private, new_account):
    """Redis flushed while the worker is busy: the queued documents' jobs are gone. The cron
    (every 2 s here; the default stale threshold of old waited ten minutes) enqueues them again
    because Redis no longer knows their job ids, and the running worker finishes all of them."""
    url, _, worker = private
    account = await new_account()
    process = worker()
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            ids = []
            for i in range(5):
                content = long_text() + f"\n\nCopy {i} {uuid.uuid4()}".encode()
                response = await client.post(
                    "/documents", headers=account.headers, files={"file": (f"lost-{i}.txt", content)}
                )
                assert response.status_code == 202
                ids.append(response.json()["id"])
            first = await wait_for_status(client, account, ids[0], {"processing", "ready"})
            assert first["status"] in ("processing", "ready")
            redis.Redis.from_url(PRIVATE_REDIS).flushdb()  # mid-ingestion: the queue is gone
            finals = [await wait_for_status(client, account, i, {"ready", "failed"}) for i in ids]
    finally:
        process.stop()
    assert [d["status"] for d in finals] == ["ready"] * 5, finals


async def test_a_worker_killed_mid_ingestion_is_finished_by_the_next_one(private, new_account):
    url, data_dir, worker = private
    account = await new_account()
    content = long_text()
    process = worker()
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        response = await client.post(
            "/documents", headers=account.headers, files={"file": ("saga.txt", content)}
        )
        assert response.status_code == 202
        document_id = response.json()["id"]
        deadline = time.monotonic() + 60
        current = await document(client, account, document_id)
        while not (0 < current["progress"] < 1) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
            current = await document(client, account, document_id)
        assert current["status"] == "processing" and 0 < current["progress"] < 1, current
        os.killpg(process.pid, signal.SIGKILL)  # no goodbye: as if the machine died
        process.popen.wait()

        process = worker()
        try:
            ready = await wait_for_status(client, account, document_id, {"ready", "failed"}, timeout=120)
        finally:
            process.stop()
    assert ready["status"] == "ready", ready
    assert ready["chunk_count"] == expected_chunks(content)
    embedder = create_embedder(EmbeddingSettings())
    store = create_vector_store(
        data_dir=Path(data_dir), model=embedder.model_name, dimension=embedder.dimension
    )
    stored = await store.count(uuid.UUID(account.id), DOCUMENT_CHUNKS, {"document_id": document_id})
    assert stored == ready["chunk_count"]


async def test_a_document_that_never_finishes_is_failed_not_retried_forever(
    private, private_database, new_account
):
    url, _, worker = private
    account = await new_account()
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        response = await client.post(
            "/documents", headers=account.headers, files={"file": ("cursed.txt", b"Short but cursed.")}
        )
        assert response.status_code == 202
        document_id = response.json()["id"]
        # As if three workers had died on it already.
        conn = await asyncpg.connect(private_database)
        try:
            await conn.execute(
                "UPDATE documents.documents SET status = 'processing', attempts = 3,"
                " updated_at = now() - interval '1 hour' WHERE id = $1",
                uuid.UUID(document_id),
            )
        finally:
            await conn.close()
        redis.Redis.from_url(PRIVATE_REDIS).flushdb()
        process = worker()
        try:
            final = await wait_for_status(client, account, document_id, {"ready", "failed"})
        finally:
            process.stop()
    assert final["status"] == "failed"
    assert "did not finish after 3 attempts" in final["error"]
