"""Service functions called the way a job, a CLI or an importer calls them: inside
``transaction()``, against a real Postgres (as the service's own role, under row-level
security) and Redis, without starting any HTTP process."""

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from arq.connections import ArqRedis
from sqlalchemy import select

from services.auth.models import AuditEntry, User
from services.auth.schemas import AdminUserCreate, AdminUserUpdate
from services.auth.service import AdminService
from services.documents.models import Document
from services.documents.service import DocumentsService
from services.documents.settings import DocumentsSettings
from shared.auth import RevocationList
from shared.config import service_database_url
from shared.db import create_engine, session_factory, transaction
from shared.errors import NotFound
from shared.redis import create_arq_pool, create_redis
from shared.registry import QUEUES
from tests.conftest import ADMIN_PASSWORD, fresh_database


@pytest.fixture(scope="module")
def service_db() -> Iterator[str]:
    with fresh_database() as url:
        yield url


@pytest.fixture
async def arq(redis_url: str) -> AsyncIterator[ArqRedis]:
    pool = await create_arq_pool(redis_url)
    yield pool
    await pool.aclose()


def sessions_as(database_url: str, role: str):
    engine = create_engine(service_database_url(database_url, role, None), pool_size=2)
    return engine, session_factory(engine)


def multipart(fields: dict[str, str], filename: str, content: bytes) -> tuple[str, list[bytes]]:
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: text/plain\r\n\r\n".encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return f"multipart/form-data; boundary={boundary}", parts


async def chunks(parts: list[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_transaction_commits_rolls_back_and_runs_effects_only_after_commit(service_db):
    engine, sessions = sessions_as(service_db, "pai_documents")
    owner, effects = uuid.uuid4(), []
    try:

        def row(title: str) -> Document:
            return Document(
                owner_id=owner, title=title, filename="a.txt", mime_type="text/plain", size=1, sha256=title
            )

        async def effect() -> None:  # sees the committed row from another transaction
            async with transaction(sessions, owner) as tx:
                effects.append(
                    await tx.session.scalar(select(Document.title).where(Document.sha256 == "kept"))
                )

        async with transaction(sessions, owner) as tx:
            tx.session.add(row("kept"))
            tx.after_commit(effect)
        assert effects == ["kept"]

        with pytest.raises(RuntimeError):
            async with transaction(sessions, owner) as tx:
                tx.session.add(row("lost"))
                tx.after_commit(effect)
                await tx.session.flush()
                raise RuntimeError("refused")
        assert effects == ["kept"]  # no effect for a rolled-back transaction
        async with transaction(sessions, owner) as tx:
            titles = set((await tx.session.scalars(select(Document.title))).all())
        assert titles == {"kept"}
        async with transaction(sessions, uuid.uuid4()) as tx:  # row-level security: another user
            assert (await tx.session.scalars(select(Document.title))).all() == []
    finally:
        await engine.dispose()


async def test_documents_upload_from_a_plain_stream_enqueues_after_commit(service_db, arq, tmp_path: Path):
    engine, sessions = sessions_as(service_db, "pai_documents")
    settings = DocumentsSettings(database_url=service_db, data_dir=tmp_path)
    service = DocumentsService(settings, arq, store=None, embedder=None)  # type: ignore[arg-type]
    owner = uuid.uuid4()
    content_type, parts = multipart({"title": "Notes"}, "notes.txt", b"herons at the mill")
    try:
        async with transaction(sessions, owner) as tx:
            document = await service.upload(tx, chunks(parts), content_type=content_type)
            assert await arq.exists(f"arq:job:{document.id}") == 0  # not before the commit
        job = await arq.exists(f"arq:job:{document.id}")
        assert job == 1 and await arq.zscore(QUEUES["documents"], str(document.id)) is not None
        assert (await arq.get(f"arq:job:{document.id}")) is not None
        assert service.content_path(document).read_bytes() == b"herons at the mill"
        async with transaction(sessions, owner) as tx:
            stored = await service.get(tx, document.id)
            assert (stored.title, stored.status, stored.owner_id) == ("Notes", "queued", owner)
            await service.delete(tx, document.id)
        async with transaction(sessions, owner) as tx:
            with pytest.raises(NotFound):
                await service.get(tx, document.id)
        async with transaction(sessions, uuid.uuid4()) as tx:
            with pytest.raises(NotFound):  # another user's id is simply not found
                await service.get(tx, document.id)
    finally:
        await engine.dispose()


async def test_admin_cli_path_is_audited_like_the_admin_api(service_db, redis_url, arq):
    engine, sessions = sessions_as(service_db, "pai_auth")
    redis = create_redis(redis_url)
    service = AdminService(RevocationList(redis, 900), arq, sessions)
    name = f"boot_{uuid.uuid4().hex[:8]}"
    try:
        async with transaction(sessions) as tx:
            created = await service.create_or_promote_admin(tx, name, f"{name}@example.com", ADMIN_PASSWORD)
        async with transaction(sessions) as tx:
            user = await tx.session.scalar(select(User).where(User.username == name))
            assert user is not None and user.is_admin and created.startswith("created admin")
            user.is_admin = False
        async with transaction(sessions) as tx:
            promoted = await service.create_or_promote_admin(tx, name, f"{name}@example.com", ADMIN_PASSWORD)
        assert promoted.startswith("promoted admin")
        async with transaction(sessions) as tx:
            entries = (
                await tx.session.scalars(
                    select(AuditEntry)
                    .where(AuditEntry.target_user_id == user.id)
                    .order_by(AuditEntry.created_at)
                )
            ).all()
        assert [(e.action, e.actor_id) for e in entries] == [("user.create", None), ("user.update", None)]
        assert entries[1].details == {"is_admin": True, "is_active": True}
    finally:
        await redis.aclose()
        await engine.dispose()


async def test_a_deactivation_marks_tokens_revoked_only_once_it_has_committed(service_db, redis_url, arq):
    """The revocation marker is an after-commit effect: a deactivation that rolls back leaves
    the user's tokens alone; one that commits revokes them."""
    engine, sessions = sessions_as(service_db, "pai_auth")
    redis = create_redis(redis_url)
    revocations = RevocationList(redis, 900)
    service = AdminService(revocations, arq, sessions)
    name = f"target_{uuid.uuid4().hex[:8]}"
    data = AdminUserCreate(username=name, email=f"{name}@example.com", password=ADMIN_PASSWORD)
    try:
        async with transaction(sessions) as tx:
            user = await service.admin_create_user(tx, None, data)
        issued_before = time.time() - 1

        with pytest.raises(RuntimeError):
            async with transaction(sessions) as tx:
                await service.admin_update_user(tx, None, user.id, AdminUserUpdate(is_active=False))
                raise RuntimeError("the commit never happens")
        assert not await revocations.is_revoked(user.id, issued_before)
        async with transaction(sessions) as tx:
            assert (await service.get_user(tx, user.id)).is_active

        async with transaction(sessions) as tx:
            await service.admin_update_user(tx, None, user.id, AdminUserUpdate(is_active=False))
            assert not await revocations.is_revoked(user.id, issued_before)  # not before the commit
        assert await revocations.is_revoked(user.id, issued_before)
    finally:
        await redis.aclose()
        await engine.dispose()
