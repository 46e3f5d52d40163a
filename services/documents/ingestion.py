"""The worker's side: extract → classify → chunk → embed → upsert, and the clean-ups.

Every step is safe to repeat: chunk ids are uuid5(document id, chunk index), a re-run first
removes the document's old chunks, and a document deleted meanwhile leaves no vectors behind.
"""

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import structlog
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.documents.models import Document, Status
from services.documents.settings import DocumentsSettings
from services.documents.storage import document_dir, original_path, remove_tree, text_path, write_text
from shared.db import transaction
from shared.embeddings import Embedder
from shared.models import utcnow
from shared.text.chunking import Category, TextChunk, chunk, classify
from shared.text.extraction import Extracted, ExtractionError
from shared.text.isolation import IsolatedExtractor
from shared.vectors import DOCUMENT_CHUNKS, VectorChunk, VectorStore

log = structlog.get_logger(__name__)


def chunk_id(document_id: uuid.UUID, index: int) -> uuid.UUID:
    return uuid.uuid5(document_id, f"chunk-{index}")


@dataclass
class Ingestor:
    settings: DocumentsSettings
    sessions: async_sessionmaker[AsyncSession]
    store: VectorStore
    embedder: Embedder
    extractor: IsolatedExtractor

    async def ingest(self, document_id: uuid.UUID, owner_id: uuid.UUID) -> str:
        async with transaction(self.sessions, owner_id) as tx:
            session = tx.session
            document = await session.get(Document, document_id)
            if document is None or document.deleted_at is not None:
                return "gone"
            if document.attempts >= self.settings.ingest_max_attempts:
                # Killed or timed out every time: stop retrying a document that cannot finish.
                document.status, document.progress = Status.FAILED, 0.0
                document.error = f"Ingestion did not finish after {document.attempts} attempts"
                document.updated_at = utcnow()
                return "failed"
            document.status, document.progress, document.error = Status.PROCESSING, 0.0, None
            document.attempts += 1
            document.updated_at = utcnow()
            mime_type, title, kept_category = document.mime_type, document.title, document.category

        path = original_path(self.settings.uploads_dir, owner_id, document_id)
        try:
            extracted = await self.extractor.extract(path, mime_type)
        except ExtractionError as exc:
            await self._fail(document_id, owner_id, str(exc))
            return "failed"
        except OSError:
            await self._fail(document_id, owner_id, "The stored file is missing or unreadable")
            return "failed"
        category, chunks = await self.split(extracted, kept_category)
        await write_text(text_path(self.settings.uploads_dir, owner_id, document_id), extracted.text)
        if not chunks:
            await self._fail(document_id, owner_id, "The document contains no text")
            return "failed"
        if len(chunks) > self.settings.max_chunks_per_document:
            limit = self.settings.max_chunks_per_document
            await self._fail(
                document_id, owner_id, f"The document gives {len(chunks):,} passages; at most {limit:,}"
            )
            return "failed"

        await self.store.delete(owner_id, DOCUMENT_CHUNKS, {"document_id": str(document_id)})
        batch = self.settings.embedding_batch_size
        for start in range(0, len(chunks), batch):
            part = chunks[start : start + batch]
            await self._embed_and_store(document_id, owner_id, title, category, part)
            await self._progress(document_id, owner_id, (start + len(part)) / len(chunks))

        async with transaction(self.sessions, owner_id) as tx:
            session = tx.session
            document = await session.get(Document, document_id)
            if document is None or document.deleted_at is not None:
                # Deleted while we worked: do not leave its vectors behind.
                await self.store.delete(owner_id, DOCUMENT_CHUNKS, {"document_id": str(document_id)})
                return "gone"
            document.status, document.progress = Status.READY, 1.0
            document.category, document.chunk_count = category, len(chunks)
            document.page_count = extracted.page_count
            document.updated_at = utcnow()
        log.info("document_ready", document_id=str(document_id), chunks=len(chunks), category=category)
        return "ready"

    async def split(
        self, extracted: Extracted, kept_category: Category | None
    ) -> tuple[Category, list[TextChunk]]:
        """Classify and chunk in a thread (CPU work: about 1.4 s for 5 MB of text, measured
        once): under ``make run`` this worker shares its event loop with the documents API,
        which keeps answering while a large document is split. A category already set
        (imported) stays."""

        def classify_and_chunk() -> tuple[Category, list[TextChunk]]:
            category = kept_category or classify(extracted)
            return category, chunk(extracted, category, self.settings.chunk_sizes)

        return await asyncio.to_thread(classify_and_chunk)

    async def _embed_and_store(
        self,
        document_id: uuid.UUID,
        owner_id: uuid.UUID,
        title: str,
        category: str,
        chunks: Sequence[TextChunk],
    ) -> None:
        vectors = await self.embedder.embed([c.text for c in chunks])
        await self.store.upsert(
            owner_id,
            DOCUMENT_CHUNKS,
            [
                VectorChunk(
                    id=chunk_id(document_id, c.index),
                    vector=vector,
                    properties={
                        "document_id": str(document_id),
                        "chunk_index": c.index,
                        "page": c.page,
                        "start": c.start,
                        "end": c.end,
                        "category": category,
                        "title": title,
                        "text": c.text,
                    },
                )
                for c, vector in zip(chunks, vectors, strict=True)
            ],
        )

    async def _progress(self, document_id: uuid.UUID, owner_id: uuid.UUID, progress: float) -> None:
        async with transaction(self.sessions, owner_id) as tx:
            session = tx.session
            document = await session.get(Document, document_id)
            if document is not None:
                document.progress = round(min(progress, 0.99), 4)
                document.updated_at = utcnow()

    async def _fail(self, document_id: uuid.UUID, owner_id: uuid.UUID, reason: str) -> None:
        async with transaction(self.sessions, owner_id) as tx:
            session = tx.session
            document = await session.get(Document, document_id)
            if document is not None:
                document.status, document.error, document.progress = Status.FAILED, reason, 0.0
                document.updated_at = utcnow()
        log.info("document_failed", document_id=str(document_id), reason=reason)

    async def remove(self, document_id: uuid.UUID, owner_id: uuid.UUID) -> None:
        """Vectors first, then the file, then the row: a retry after a crash finishes the job."""
        await self.store.delete(owner_id, DOCUMENT_CHUNKS, {"document_id": str(document_id)})
        remove_tree(document_dir(self.settings.uploads_dir, owner_id, document_id))
        async with transaction(self.sessions, owner_id) as tx:
            session = tx.session
            await session.execute(delete(Document).where(Document.id == document_id))

    async def purge_user(self, owner_id: uuid.UUID) -> int:
        """Everything of a deleted user: the whole vector tenant, every file, every row."""
        await self.store.drop_tenant(owner_id)
        remove_tree(self.settings.uploads_dir / str(owner_id))
        async with transaction(self.sessions, owner_id) as tx:
            session = tx.session
            ids = (await session.scalars(select(Document.id))).all()
            await session.execute(delete(Document))
        return len(ids)
