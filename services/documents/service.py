"""Documents logic: upload, list, read, change, delete, re-index and search, always as the
calling user (row-level security in Postgres, the user's own tenant in the vector store)."""

import uuid
from dataclasses import dataclass

import structlog
from arq.connections import ArqRedis
from redis.exceptions import RedisError
from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import Request

from services.documents.models import Document, Status
from services.documents.queue import enqueue_delete, enqueue_ingest
from services.documents.schemas import DocumentUpdate
from services.documents.settings import DocumentsSettings
from services.documents.storage import (
    display_filename,
    document_dir,
    original_path,
    receive_upload,
    remove_tree,
)
from shared.db import like_pattern, user_session
from shared.embeddings import Embedder
from shared.errors import ApiError
from shared.models import utcnow
from shared.text.chunking import snippet
from shared.text.extraction import detect_type
from shared.vectors import DOCUMENT_CHUNKS, EmbeddingModelMismatch, VectorStore

NOT_FOUND = ApiError(404, "not_found", "Document not found")
MAX_DESCRIPTION = 4000
log = structlog.get_logger(__name__)


def _live(query):
    return query.where(Document.deleted_at.is_(None))


@dataclass
class DocumentsService:
    settings: DocumentsSettings
    sessions: async_sessionmaker[AsyncSession]
    arq: ArqRedis
    store: VectorStore
    embedder: Embedder

    def session(self, owner_id: uuid.UUID) -> AsyncSession:
        return user_session(self.sessions, owner_id)

    async def upload(self, request: Request, owner_id: uuid.UUID) -> Document:
        document_id = uuid.uuid4()
        directory = document_dir(self.settings.uploads_dir, owner_id, document_id)
        try:
            received = await receive_upload(
                request, directory / "upload.part", self.settings.max_upload_bytes
            )
            if received.size == 0:
                raise ApiError(422, "empty_file", "The file is empty")
            mime_type = detect_type(received.head, received.filename)
            if mime_type is None:
                raise ApiError(
                    415,
                    "unsupported_media_type",
                    "Only PDF, DOCX, text, Markdown, HTML and .eml files are accepted",
                )
            filename = display_filename(received.filename)
            title = (received.fields.get("title") or "").strip() or filename
            description = received.fields.get("description") or None
            if description is not None and len(description) > MAX_DESCRIPTION:
                raise ApiError(422, "validation_error", f"description: at most {MAX_DESCRIPTION} characters")
            async with self.session(owner_id) as session:
                existing = await session.scalar(
                    _live(select(Document.id)).where(Document.sha256 == received.sha256)
                )
                if existing is not None:
                    raise ApiError(
                        409,
                        "duplicate_document",
                        f"This file is already uploaded as document {existing}",
                    )
                received.path.rename(original_path(self.settings.uploads_dir, owner_id, document_id))
                document = Document(
                    id=document_id,
                    owner_id=owner_id,
                    title=title[:300],
                    description=description,
                    filename=filename,
                    mime_type=mime_type,
                    size=received.size,
                    sha256=received.sha256,
                )
                session.add(document)
                try:
                    await session.commit()
                except IntegrityError:
                    raise ApiError(409, "duplicate_document", "This file is already uploaded") from None
        except BaseException:
            remove_tree(directory)  # nothing of a refused upload stays on disk
            raise
        await self._enqueue(enqueue_ingest, document_id, owner_id)  # after the commit: the row exists
        return document

    async def _enqueue(self, enqueue, document_id: uuid.UUID, owner_id: uuid.UUID) -> None:
        """The row is committed, so a Redis hiccup must not fail the request: the worker's
        recovery cron finds the document in Postgres and enqueues it again."""
        try:
            await enqueue(self.arq, document_id, owner_id)
        except (RedisError, OSError) as exc:
            log.warning("enqueue_failed", document_id=str(document_id), error=str(exc))

    async def list_page(
        self,
        owner_id: uuid.UUID,
        *,
        limit: int,
        offset: int,
        q: str | None,
        category: str | None,
        status: str | None,
    ) -> tuple[list[Document], int]:
        query = _live(select(Document))
        if q:
            pattern = like_pattern(q)
            query = query.where(
                or_(
                    Document.title.ilike(pattern),
                    Document.filename.ilike(pattern),
                    Document.description.ilike(pattern),
                )
            )
        if category:
            query = query.where(Document.category == category)
        if status:
            query = query.where(Document.status == status)
        async with self.session(owner_id) as session:
            total = await session.scalar(select(func.count()).select_from(query.subquery()))
            page = query.order_by(Document.created_at.desc(), Document.id).limit(limit).offset(offset)
            return list((await session.scalars(page)).all()), int(total or 0)

    async def get(self, owner_id: uuid.UUID, document_id: uuid.UUID) -> Document:
        async with self.session(owner_id) as session:
            return await self._get(session, document_id)

    @staticmethod
    async def _get(session: AsyncSession, document_id: uuid.UUID) -> Document:
        document = await session.scalar(_live(select(Document)).where(Document.id == document_id))
        if document is None:  # another user's id looks exactly like a missing one
            raise NOT_FOUND
        return document

    def content_path(self, document: Document):
        return original_path(self.settings.uploads_dir, document.owner_id, document.id)

    async def update(self, owner_id: uuid.UUID, document_id: uuid.UUID, data: DocumentUpdate) -> Document:
        async with self.session(owner_id) as session:
            document = await self._get(session, document_id)
            for name, value in data.model_dump(exclude_unset=True).items():
                if name == "title" and value is None:
                    continue
                setattr(document, name, value)
            document.updated_at = utcnow()
            await session.commit()
            return document

    async def delete(self, owner_id: uuid.UUID, document_id: uuid.UUID) -> None:
        """Hide at once; the worker removes vectors, file and row (and the cron retries it)."""
        async with self.session(owner_id) as session:
            document = await self._get(session, document_id)
            document.deleted_at = document.updated_at = utcnow()
            await session.commit()
        await self._enqueue(enqueue_delete, document_id, owner_id)

    async def reindex(self, owner_id: uuid.UUID, document_id: uuid.UUID) -> Document:
        async with self.session(owner_id) as session:
            document = await self._get(session, document_id)
            document.status, document.progress, document.error = Status.QUEUED, 0.0, None
            document.attempts = 0
            document.updated_at = utcnow()
            await session.commit()
        await self._enqueue(enqueue_ingest, document_id, owner_id)
        return document

    async def search(
        self, owner_id: uuid.UUID, q: str, *, k: int, document_id: uuid.UUID | None, category: str | None
    ) -> list[dict]:
        where: dict[str, str] = {}
        if document_id is not None:
            where["document_id"] = str(document_id)
        if category:
            where["category"] = category
        vector = await self.embedder.embed_query(q)  # once per request
        try:
            hits = await self.store.search(
                owner_id, DOCUMENT_CHUNKS, vector, k, where=where or None, query_text=q
            )
        except EmbeddingModelMismatch as exc:
            raise ApiError(409, "reindex_required", str(exc)) from None
        ids = {uuid.UUID(str(hit.properties["document_id"])) for hit in hits}
        async with self.session(owner_id) as session:
            rows = (
                await session.execute(_live(select(Document.id, Document.title)).where(Document.id.in_(ids)))
                if ids
                else []
            )
            titles = {row.id: row.title for row in rows}
        return [
            {
                "document_id": doc_id,
                "title": titles[doc_id],
                "chunk_index": hit.properties["chunk_index"],
                "page": hit.properties.get("page"),
                "snippet": snippet(str(hit.properties.get("text", ""))),
                "score": hit.score,
            }
            for hit in hits
            if (doc_id := uuid.UUID(str(hit.properties["document_id"]))) in titles
        ]
