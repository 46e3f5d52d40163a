"""The vector-store contract every back end meets, and the checks they all share.

Each user is a tenant: their chunks never share a table (LanceDB) or shard (Weaviate) with anyone
else's, so a search cannot leak across users and forgetting a user is dropping one tenant.
A tenant also remembers which embedding model made its vectors, because vectors of two models are
not comparable (even at equal dimension): searching them with the wrong model returns confident
garbage, so the store refuses instead.
"""

import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal, Protocol, runtime_checkable

DOCUMENT_CHUNKS = "DocumentChunk"
EMAIL_CHUNKS = "EmailChunk"

PropertyType = Literal["text", "int"]
PropertyValue = str | int | None
Where = Mapping[str, str | int]

# The one property searched by keywords (BM25); every other text property is an exact-match key.
TEXT = "text"

SCHEMAS: Mapping[str, Mapping[str, PropertyType]] = MappingProxyType(
    {
        DOCUMENT_CHUNKS: MappingProxyType(
            {
                "document_id": "text",
                "chunk_index": "int",
                "page": "int",  # None for formats without pages
                "start": "int",
                "end": "int",
                "category": "text",
                "title": "text",
                TEXT: "text",
            }
        ),
        EMAIL_CHUNKS: MappingProxyType(
            {
                "email_id": "text",
                "account_id": "text",
                "chunk_index": "int",
                "subject": "text",
                "sender": "text",
                "sent_at": "text",  # ISO 8601
                "email_type": "text",
                "attachment_id": "text",  # None for the body
                "page": "int",  # an attachment's page (PDF); None otherwise
                "start": "int",  # the passage's offsets in the body (quotes cut) or attachment text
                "end": "int",
                TEXT: "text",
            }
        ),
    }
)
# What a collection's chunks are mostly deleted and filtered by; back ends index it.
KEYS: Mapping[str, str] = MappingProxyType({DOCUMENT_CHUNKS: "document_id", EMAIL_CHUNKS: "email_id"})

# Reciprocal-rank fusion constant (the usual 60: damps the head of each ranking).
RRF_K = 60


@dataclass(frozen=True)
class VectorChunk:
    """One chunk to store: its vector and its properties (``text`` included)."""

    id: uuid.UUID
    vector: Sequence[float]
    properties: Mapping[str, PropertyValue]


@dataclass(frozen=True)
class SearchHit:
    """A search result; a higher score is better (cosine similarity, or RRF score when hybrid).

    ``similarity``: the cosine similarity of the chunk's vector to the query's when the back end
    knows it (a hybrid hit found by keywords alone, or a back end that reports only fused
    scores, has None). RRF scores rank but say nothing about relevance; this does.
    """

    id: uuid.UUID
    score: float
    properties: dict[str, Any]
    similarity: float | None = None


@dataclass(frozen=True)
class EmbeddingIdentity:
    """Which model made a tenant's vectors."""

    model: str
    dimension: int


class EmbeddingModelMismatch(Exception):
    """The tenant's vectors were made by another model than the store's: re-index before using them."""

    def __init__(
        self, user_id: uuid.UUID, collection: str, recorded: EmbeddingIdentity, configured: EmbeddingIdentity
    ) -> None:
        self.user_id = user_id
        self.collection = collection
        self.recorded = recorded
        self.configured = configured
        super().__init__(
            f"{collection} vectors of user {user_id} were made by model {recorded.model!r} "
            f"(dimension {recorded.dimension}), but this store is configured for model "
            f"{configured.model!r} (dimension {configured.dimension}); re-index that user's data "
            f"(drop the tenant and embed again) before searching or adding to it"
        )


@runtime_checkable
class VectorStore(Protocol):
    """Per-user chunk vectors with vector and hybrid (BM25 + vector) search.

    Built with the embedding identity (``model``, ``dimension``) of the vectors it is given; the
    first upsert into a tenant's collection records it, and later upserts and searches with another
    identity raise :class:`EmbeddingModelMismatch`. Searching or counting a tenant or collection
    that does not exist yet returns nothing rather than failing.
    """

    model: str
    dimension: int

    async def ensure_tenant(self, user_id: uuid.UUID) -> None:
        """Make the tenant ready for writes (idempotent)."""

    async def upsert(self, user_id: uuid.UUID, collection: str, chunks: Sequence[VectorChunk]) -> None:
        """Insert or overwrite chunks by id; vectors of the wrong length raise ValueError."""

    async def delete(self, user_id: uuid.UUID, collection: str, where: Where) -> None:
        """Delete the chunks matching every ``where`` equality; an empty ``where`` raises ValueError."""

    async def search(
        self,
        user_id: uuid.UUID,
        collection: str,
        vector: Sequence[float],
        k: int,
        where: Where | None = None,
        query_text: str | None = None,
    ) -> list[SearchHit]:
        """The ``k`` best chunks: hybrid (RRF of vector and BM25) with ``query_text``, else vector."""
        ...

    async def count(self, user_id: uuid.UUID, collection: str, where: Where | None = None) -> int:
        """How many chunks match ``where`` (all when None)."""
        ...

    async def drop_tenant(self, user_id: uuid.UUID) -> None:
        """Remove everything of the user, in every collection (idempotent)."""

    async def optimize(self) -> None:
        """Compact and clean up storage; safe to run while others read and write."""

    async def close(self) -> None:
        """Release connections; the store is unusable afterwards."""


def schema_of(collection: str) -> Mapping[str, PropertyType]:
    try:
        return SCHEMAS[collection]
    except KeyError:
        raise ValueError(f"unknown collection {collection!r}; known: {', '.join(SCHEMAS)}") from None


def _check_value(collection: str, name: str, kind: PropertyType, value: object, *, nullable: bool) -> None:
    if value is None and nullable:
        return
    # bool is an int to Python, but never a meaningful chunk property.
    ok = isinstance(value, str) if kind == "text" else isinstance(value, int) and not isinstance(value, bool)
    if not ok:
        raise ValueError(f"{collection}.{name} must be {kind}, got {type(value).__name__}: {value!r}")


def check_where(collection: str, where: Where | None, *, required: bool = False) -> dict[str, str | int]:
    """Validate equality filters against the collection's schema; back ends only ever see known names."""
    schema = schema_of(collection)
    if not where:
        if required:
            raise ValueError("refusing to delete without a filter: drop the tenant to delete everything")
        return {}
    for name, value in where.items():
        if name not in schema:
            raise ValueError(f"{collection} has no property {name!r} to filter on")
        _check_value(collection, name, schema[name], value, nullable=False)
    return dict(where)


def check_chunks(collection: str, chunks: Sequence[VectorChunk], dimension: int) -> None:
    """Reject a batch before anything is written: wrong vector length, bad values, unknown names."""
    schema = schema_of(collection)
    seen: set[uuid.UUID] = set()
    for chunk in chunks:
        if chunk.id in seen:
            raise ValueError(f"chunk id {chunk.id} appears twice in one upsert")
        seen.add(chunk.id)
        if len(chunk.vector) != dimension:
            raise ValueError(
                f"chunk {chunk.id}: vector has {len(chunk.vector)} dimensions, the store expects {dimension}"
            )
        if not all(math.isfinite(x) for x in chunk.vector):
            raise ValueError(f"chunk {chunk.id}: vector contains NaN or infinity")
        unknown = set(chunk.properties) - set(schema)
        if unknown:
            raise ValueError(f"chunk {chunk.id}: {collection} has no properties {sorted(unknown)}")
        if not isinstance(chunk.properties.get(TEXT), str):
            raise ValueError(f"chunk {chunk.id}: property {TEXT!r} (a string) is required")
        for name, value in chunk.properties.items():
            _check_value(collection, name, schema[name], value, nullable=True)


def full_properties(collection: str, properties: Mapping[str, Any]) -> dict[str, Any]:
    """Every schema property, in schema order, missing ones as None (both back ends return the same)."""
    return {name: properties.get(name) for name in schema_of(collection)}


def hybrid_candidates(k: int) -> int:
    """How many hits each leg of a hybrid search fetches before fusion."""
    return max(2 * k, 20)


def rrf_fuse(vector_ranking: Sequence[str], text_ranking: Sequence[str], k: int) -> list[tuple[str, float]]:
    """Reciprocal-rank fusion of two rankings (ids, best first): the ``k`` best ids with their scores.

    An id scores ``1 / (RRF_K + rank)`` in each ranking it appears in. Equal scores go to the better
    keyword rank: RRF alone ties the two rankings' first hits, and an exact term match (a name, an
    invoice number) should beat a merely similar vector.
    """
    scores: dict[str, float] = {}
    text_rank: dict[str, int] = {}
    vector_rank: dict[str, int] = {}
    for rank, id_ in enumerate(vector_ranking, start=1):
        vector_rank.setdefault(id_, rank)
    for rank, id_ in enumerate(text_ranking, start=1):
        text_rank.setdefault(id_, rank)
    for ranks in (vector_rank, text_rank):
        for id_, rank in ranks.items():
            scores[id_] = scores.get(id_, 0.0) + 1.0 / (RRF_K + rank)
    never = math.inf
    order = sorted(scores, key=lambda i: (-scores[i], text_rank.get(i, never), vector_rank.get(i, never)))
    return [(id_, scores[id_]) for id_ in order[:k]]


def check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
