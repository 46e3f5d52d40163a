"""Per-user vector store: one interface (:class:`VectorStore`), LanceDB and Weaviate back ends."""

from shared.vectors.base import (
    DOCUMENT_CHUNKS,
    EMAIL_CHUNKS,
    SCHEMAS,
    EmbeddingIdentity,
    EmbeddingModelMismatch,
    SearchHit,
    VectorChunk,
    VectorStore,
    Where,
)
from shared.vectors.factory import VectorSettings, create_vector_store, open_vector_store

__all__ = [
    "DOCUMENT_CHUNKS",
    "EMAIL_CHUNKS",
    "SCHEMAS",
    "EmbeddingIdentity",
    "EmbeddingModelMismatch",
    "SearchHit",
    "VectorChunk",
    "VectorSettings",
    "VectorStore",
    "Where",
    "create_vector_store",
    "open_vector_store",
]
