"""The one shape of a search hit, whichever service found it, and the one hybrid search.

Documents search, mail search and the assistant's retrieval all speak :class:`Passage`: what
kind of source it is, the ids to open it, how to show it (title, or subject/sender/date), where
its text stands (page, exact ``start``/``end`` offsets into the source's extracted text), the
text and its score. :func:`hybrid_search` is the search both services run in a user's tenant.
"""

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Literal

import structlog
from pydantic import BaseModel, Field

from shared.embeddings import Embedder, EmbeddingError
from shared.errors import Conflict, Unavailable
from shared.vectors import EmbeddingModelMismatch, SearchHit, VectorStore

log = structlog.get_logger(__name__)

PassageKind = Literal["document", "email", "attachment"]


class Passage(BaseModel):
    """A passage of one of the user's sources. ``text == source_text[start:end]`` where the
    source text is a document's extracted text, an email's own body (quoted replies cut) or an
    attachment's extracted text; ``page`` is the page that text stands on (PDFs only)."""

    kind: PassageKind
    chunk_id: uuid.UUID
    document_id: uuid.UUID | None = None
    email_id: uuid.UUID | None = None
    attachment_id: uuid.UUID | None = None
    account_id: uuid.UUID | None = None
    title: str | None = Field(None, description="document title or attachment file name")
    subject: str | None = None
    sender: str | None = None
    sent_at: datetime | None = None
    page: int | None = None
    start: int | None = Field(None, description="offset of the text in its source's extracted text")
    end: int | None = None
    text: str
    score: float = Field(description="rank score (fused keyword + vector ranks); compare within one list")
    similarity: float | None = Field(
        None, description="cosine similarity of the passage to the query, when the search knows it"
    )


class PassageList(BaseModel):
    results: list[Passage]


def narrowing(key: str, ids: Sequence[uuid.UUID], dated: bool) -> tuple[dict[str, str], bool]:
    """How a search narrowed to some sources (``ids`` of property ``key``) and maybe a time range
    runs: one id is an equality filter of the store; several ids, or a time range (a column of
    Postgres, not of the chunks), are checked in Postgres afterwards. Returns the store filter and
    whether that check narrows the hits (the caller then asks the store for more candidates)."""
    where = {key: str(ids[0])} if len(ids) == 1 else {}
    return where, len(ids) > 1 or dated


async def hybrid_search(
    store: VectorStore,
    embedder: Embedder,
    owner_id: uuid.UUID,
    collection: str,
    query: str,
    k: int,
    where: Mapping[str, str | int] | None = None,
) -> list[SearchHit]:
    """BM25 + vector search in the owner's tenant, fused by the store; the query is embedded
    once. Vectors made by another model are refused (409), not searched."""
    try:
        vector = await embedder.embed_query(query)
    except EmbeddingError as exc:
        log.warning("query_embedding_failed", error=str(exc)[:300])
        raise Unavailable(
            "The embedding model is not available; try again shortly", code="embeddings_unavailable"
        ) from None
    try:
        return await store.search(owner_id, collection, vector, k, where=where or None, query_text=query)
    except EmbeddingModelMismatch as exc:
        raise Conflict(str(exc), code="reindex_required") from None


def chunk_text(hit: SearchHit) -> str:
    """The passage's own text: the stored text may carry a context prefix (an email's subject
    and sender) in front of the ``end - start`` characters of the source."""
    text = str(hit.properties.get("text", ""))
    start, end = hit.properties.get("start"), hit.properties.get("end")
    if isinstance(start, int) and isinstance(end, int) and 0 <= end - start <= len(text):
        return text[len(text) - (end - start) :]
    return text
