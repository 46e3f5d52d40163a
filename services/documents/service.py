"""Documents logic: upload, list, read, change, delete, re-index and search, always inside the
caller's transaction (row-level security in Postgres, the user's own tenant in the vector store).

Every method takes the :class:`~shared.db.Transaction` it works in, acting as its user; a route
gets it from the ``UserTx`` dependency, a job or an importer opens it with ``transaction()``.
Job enqueues run after the commit, so the worker never looks for a row that is not there yet.
"""

import uuid
from collections.abc import AsyncIterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import structlog
from arq.connections import ArqRedis
from redis.exceptions import RedisError
from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError

from services.documents.models import Category, Document, Status
from services.documents.queue import enqueue_delete, enqueue_ingest
from services.documents.schemas import DocumentUpdate
from services.documents.settings import DocumentsSettings
from services.documents.storage import (
    ReceivedUpload,
    copy_file,
    display_filename,
    document_dir,
    original_path,
    receive_upload,
    remove_tree,
    text_path,
)
from shared.db import Transaction, like_pattern, within
from shared.embeddings import Embedder
from shared.errors import Conflict, Invalid, NotFound, UnsupportedMediaType
from shared.models import utcnow
from shared.passages import Passage, chunk_text, hybrid_search, narrowing
from shared.text.extraction import detect_type
from shared.vectors import DOCUMENT_CHUNKS, VectorStore

MAX_DESCRIPTION = 4000
log = structlog.get_logger(__name__)


def _live(query):
    return query.where(Document.deleted_at.is_(None))


def _duplicate(existing: uuid.UUID | None = None) -> Conflict:
    where = f" as document {existing}" if existing else ""
    return Conflict(f"This file is already uploaded{where}", code="duplicate_document")


async def _keep(
    tx: Transaction, settings: DocumentsSettings, received: ReceivedUpload, document: Document
) -> None:
    """Move a received file into place and add its row, keeping one live copy of a file per
    user (a lost race on the unique index gives the same 409 as the check)."""
    existing = await tx.session.scalar(_live(select(Document.id)).where(Document.sha256 == received.sha256))
    if existing is not None:
        raise _duplicate(existing)
    received.path.rename(original_path(settings.uploads_dir, tx.owner_id, document.id))
    tx.session.add(document)
    try:
        await tx.session.flush()
    except IntegrityError:
        raise _duplicate() from None


async def enqueue_quietly(arq: ArqRedis, enqueue, document_id: uuid.UUID, owner_id: uuid.UUID) -> None:
    """The row is committed, so a Redis hiccup must not fail the request: the worker's
    recovery cron finds the document in Postgres and enqueues it again."""
    try:
        await enqueue(arq, document_id, owner_id)
    except (RedisError, OSError) as exc:
        log.warning("enqueue_failed", document_id=str(document_id), error=str(exc))


@dataclass
class DocumentFiles:
    """Documents made from files already on this machine (the legacy import), under the rules
    of an upload: the type comes from the content, one live copy of a file per user, and the
    ingestion is queued once the row is committed."""

    settings: DocumentsSettings
    arq: ArqRedis

    async def add(self, tx: Transaction, source: Path, document: Document) -> Document:
        """Copy ``source`` into the user's storage as ``document`` (its id, title, description,
        file name, category and creation time set by the caller). A file of a type we cannot
        read is kept, and the document marked failed with the reason."""
        owner_id, document_id = tx.owner_id, document.id
        directory = document_dir(self.settings.uploads_dir, owner_id, document_id)
        try:
            copied = await copy_file(source, directory / "upload.part")
            mime_type = detect_type(copied.head, document.filename)
            document.owner_id, document.size, document.sha256 = owner_id, copied.size, copied.sha256
            document.mime_type = mime_type or "application/octet-stream"
            if copied.size == 0 or mime_type is None:
                document.status = Status.FAILED
                document.error = "The file is empty" if copied.size == 0 else "The file type is not supported"
            await _keep(tx, self.settings, copied, document)
        except BaseException:
            remove_tree(directory)
            raise
        if document.status == Status.QUEUED:
            tx.after_commit(lambda: enqueue_quietly(self.arq, enqueue_ingest, document_id, owner_id))
        return document

    async def add_without_file(self, tx: Transaction, document: Document, error: str) -> Document:
        """Keep a document whose file is gone, as failed with ``error`` (nothing to ingest)."""
        document.owner_id, document.status, document.error, document.sha256 = (
            tx.owner_id,
            Status.FAILED,
            error,
            None,
        )
        tx.session.add(document)
        await tx.session.flush()
        return document


@dataclass
class DocumentsService:
    settings: DocumentsSettings
    arq: ArqRedis
    store: VectorStore
    embedder: Embedder

    async def upload(
        self,
        tx: Transaction,
        body: AsyncIterable[bytes],
        *,
        content_type: str,
        content_length: int | None = None,
    ) -> Document:
        """Store a ``multipart/form-data`` body (``file``, optional ``title``, ``description``)
        as a new document of the transaction's user and queue its ingestion."""
        owner_id = tx.owner_id
        document_id = uuid.uuid4()
        directory = document_dir(self.settings.uploads_dir, owner_id, document_id)
        try:
            received = await receive_upload(
                body, content_type, content_length, directory / "upload.part", self.settings.max_upload_bytes
            )
            if received.size == 0:
                raise Invalid("The file is empty", code="empty_file")
            mime_type = detect_type(received.head, received.filename)
            if mime_type is None:
                raise UnsupportedMediaType("Only PDF, DOCX, text, Markdown, HTML and .eml files are accepted")
            filename = display_filename(received.filename)
            title = (received.fields.get("title") or "").strip() or filename
            description = received.fields.get("description") or None
            if description is not None and len(description) > MAX_DESCRIPTION:
                raise Invalid(f"description: at most {MAX_DESCRIPTION} characters")
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
            await _keep(tx, self.settings, received, document)
        except BaseException:
            remove_tree(directory)  # nothing of a refused upload stays on disk
            raise
        tx.after_commit(lambda: self._enqueue(enqueue_ingest, document_id, owner_id))
        return document

    async def _enqueue(self, enqueue, document_id: uuid.UUID, owner_id: uuid.UUID) -> None:
        await enqueue_quietly(self.arq, enqueue, document_id, owner_id)

    async def list_page(
        self,
        tx: Transaction,
        *,
        limit: int,
        offset: int,
        q: str | None = None,
        category: Category | None = None,
        status: Status | None = None,
        ids: Sequence[uuid.UUID] | None = None,
    ) -> tuple[list[Document], int]:
        query = _live(select(Document))
        if ids is not None:
            query = query.where(Document.id.in_(ids))
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
        total = await tx.session.scalar(select(func.count()).select_from(query.subquery()))
        page = query.order_by(Document.created_at.desc(), Document.id).limit(limit).offset(offset)
        return list((await tx.session.scalars(page)).all()), int(total or 0)

    async def get(self, tx: Transaction, document_id: uuid.UUID) -> Document:
        document = await tx.session.scalar(_live(select(Document)).where(Document.id == document_id))
        if document is None:  # another user's id looks exactly like a missing one
            raise NotFound("Document not found")
        return document

    def content_path(self, document: Document) -> Path:
        return original_path(self.settings.uploads_dir, document.owner_id, document.id)

    def text_path(self, document: Document) -> Path:
        """The text ingestion extracted: what search passages quote and their offsets index.
        Written before the chunks are embedded, so a document that can be cited has it."""
        path = text_path(self.settings.uploads_dir, document.owner_id, document.id)
        if not path.is_file():
            raise NotFound(
                "The document's text is not extracted yet (reindexing the document extracts it)",
                code="text_not_extracted",
            )
        return path

    async def update(self, tx: Transaction, document_id: uuid.UUID, data: DocumentUpdate) -> Document:
        document = await self.get(tx, document_id)
        for name, value in data.model_dump(exclude_unset=True).items():
            if name == "title" and value is None:
                continue
            setattr(document, name, value)
        document.updated_at = utcnow()
        return document

    async def delete(self, tx: Transaction, document_id: uuid.UUID) -> None:
        """Hide at once; the worker removes vectors, file and row (and the cron retries it)."""
        document = await self.get(tx, document_id)
        document.deleted_at = document.updated_at = utcnow()
        owner_id = document.owner_id
        tx.after_commit(lambda: self._enqueue(enqueue_delete, document_id, owner_id))

    async def reindex(self, tx: Transaction, document_id: uuid.UUID) -> Document:
        document = await self.get(tx, document_id)
        document.status, document.progress, document.error = Status.QUEUED, 0.0, None
        document.attempts = 0
        document.updated_at = utcnow()
        owner_id = document.owner_id
        tx.after_commit(lambda: self._enqueue(enqueue_ingest, document_id, owner_id))
        return document

    async def search(
        self,
        tx: Transaction,
        q: str,
        *,
        k: int,
        document_ids: Sequence[uuid.UUID] = (),
        category: Category | None = None,
        after: datetime | None = None,
        before: datetime | None = None,
    ) -> list[Passage]:
        """The ``k`` best passages; ``document_ids``, ``after`` and ``before`` (upload time)
        narrow the documents searched. One document is a store filter; several, or a date
        range, are checked against Postgres on a larger candidate set."""
        where, narrowed = narrowing("document_id", document_ids, after is not None or before is not None)
        if category:
            where["category"] = category
        candidates = min(100, k * 4) if narrowed else k
        hits = await hybrid_search(
            self.store, self.embedder, tx.owner_id, DOCUMENT_CHUNKS, q, candidates, where
        )
        ids = {uuid.UUID(str(hit.properties["document_id"])) for hit in hits}
        if document_ids:
            ids &= set(document_ids)
        query = _live(select(Document.id, Document.title)).where(Document.id.in_(ids))
        query = within(query, Document.created_at, after, before)
        rows = await tx.session.execute(query) if ids else []
        titles = {row.id: row.title for row in rows}  # deleted or filtered-out documents drop out here
        return [
            Passage(
                kind="document",
                chunk_id=hit.id,
                document_id=doc_id,
                title=titles[doc_id],
                page=hit.properties.get("page"),
                start=hit.properties.get("start"),
                end=hit.properties.get("end"),
                text=chunk_text(hit),
                score=hit.score,
                similarity=hit.similarity,
            )
            for hit in hits
            if (doc_id := uuid.UUID(str(hit.properties["document_id"]))) in titles
        ][:k]
