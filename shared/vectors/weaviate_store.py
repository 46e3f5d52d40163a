"""The server back end: Weaviate collections with multi-tenancy, one tenant (``user_id.hex``) per user.

Collections ``DocumentChunk`` and ``EmailChunk`` hold the chunks with one self-provided, cosine
named vector (``default``). The embedding identity lives in a third multi-tenant collection,
``EmbeddingIdentity``: per tenant, one object per chunk collection (a deterministic uuid) with the
model name and dimension. Being a tenant of its own, it disappears with the rest of the user's data
when the tenant is dropped, and every process reads the same record from the server.

Hybrid search runs the vector and BM25 queries side by side and fuses them with the same
reciprocal-rank fusion as the LanceDB back end, so both back ends rank alike.
"""

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import weaviate
from weaviate.classes.config import Configure, DataType, Property, Tokenization, VectorDistances
from weaviate.classes.data import DataObject
from weaviate.classes.init import Auth
from weaviate.classes.query import Filter, MetadataQuery
from weaviate.classes.tenants import Tenant
from weaviate.collections import CollectionAsync
from weaviate.exceptions import WeaviateBaseError

from shared.vectors.base import (
    KEYS,
    TEXT,
    EmbeddingIdentity,
    EmbeddingModelMismatch,
    SearchHit,
    VectorChunk,
    Where,
    check_chunks,
    check_k,
    check_where,
    full_properties,
    hybrid_candidates,
    rrf_fuse,
    schema_of,
)

IDENTITY_COLLECTION = "EmbeddingIdentity"
VECTOR_NAME = "default"
DEFAULT_GRPC_PORT = 50051
# Objects per gRPC batch request.
INSERT_BATCH = 200
_IDENTITY_NAMESPACE = uuid.UUID("5b0f6a7e-3d1c-4f3e-9a51-2f9c8e4d7b10")


def tenant_name(user_id: uuid.UUID) -> str:
    return user_id.hex


def identity_uuid(collection: str) -> uuid.UUID:
    return uuid.uuid5(_IDENTITY_NAMESPACE, collection)


def weaviate_filter(where: dict[str, str | int]) -> Any:
    """AND of equalities (None when there are none); names are checked against the schema first."""
    if not where:
        return None
    return Filter.all_of([Filter.by_property(name).equal(value) for name, value in where.items()])


def _chunk_properties(collection: str) -> list[Property]:
    """``text`` is word-tokenized for BM25; other text properties are whole-value keys for filters."""
    properties = []
    for name, kind in schema_of(collection).items():
        if kind == "int":
            properties.append(Property(name=name, data_type=DataType.INT))
        else:
            tokenization = Tokenization.WORD if name == TEXT else Tokenization.FIELD
            properties.append(Property(name=name, data_type=DataType.TEXT, tokenization=tokenization))
    return properties


def _identity_properties() -> list[Property]:
    return [
        Property(name="collection", data_type=DataType.TEXT, tokenization=Tokenization.FIELD),
        Property(name="model", data_type=DataType.TEXT, tokenization=Tokenization.FIELD),
        Property(name="dimension", data_type=DataType.INT),
    ]


def collection_settings(name: str) -> dict[str, Any]:
    """Keyword arguments of ``collections.create`` for one of this store's collections."""
    return {
        "properties": _identity_properties() if name == IDENTITY_COLLECTION else _chunk_properties(name),
        "multi_tenancy_config": Configure.multi_tenancy(
            enabled=True, auto_tenant_creation=True, auto_tenant_activation=True
        ),
        "vector_config": Configure.Vectors.self_provided(
            name=VECTOR_NAME,
            vector_index_config=Configure.VectorIndex.hnsw(distance_metric=VectorDistances.COSINE),
        ),
    }


class WeaviateVectorStore:
    """:class:`~shared.vectors.base.VectorStore` on a Weaviate server (connects on first use)."""

    def __init__(
        self,
        url: str,
        *,
        model: str,
        dimension: int,
        api_key: str | None = None,
        grpc_port: int = DEFAULT_GRPC_PORT,
    ) -> None:
        if dimension < 1:
            raise ValueError(f"dimension must be positive, got {dimension}")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"WEAVIATE_URL must look like http://host:8080, got {url!r}")
        secure = parts.scheme == "https"
        self.model = model
        self.dimension = dimension
        self._identity = EmbeddingIdentity(model, dimension)
        self._client = weaviate.use_async_with_custom(
            http_host=parts.hostname,
            http_port=parts.port or (443 if secure else 80),
            http_secure=secure,
            grpc_host=parts.hostname,
            grpc_port=grpc_port,
            grpc_secure=secure,
            auth_credentials=Auth.api_key(api_key) if api_key else None,
        )
        self._ready = False
        self._ready_lock = asyncio.Lock()

    # -- plumbing -------------------------------------------------------------------------------

    async def _connect(self) -> None:
        """Connect and create the collections (once per store; racing processes are fine)."""
        if self._ready:
            return
        async with self._ready_lock:
            if self._ready:
                return
            if not self._client.is_connected():
                await self._client.connect()
            for name in (*KEYS, IDENTITY_COLLECTION):
                await self._create_collection(name)
            self._ready = True

    async def _create_collection(self, name: str) -> None:
        if await self._client.collections.exists(name):
            return
        try:
            await self._client.collections.create(name, **collection_settings(name))
        except WeaviateBaseError:
            if not await self._client.collections.exists(name):  # else another process created it
                raise

    async def _tenant(self, collection: str, user_id: uuid.UUID) -> CollectionAsync:
        await self._connect()
        return self._client.collections.use(collection).with_tenant(tenant_name(user_id))

    async def _tenant_missing(self, collection: str, user_id: uuid.UUID) -> bool:
        """Whether a failed read failed only because the tenant does not exist (then it means empty)."""
        try:
            return not await self._client.collections.use(collection).tenants.exists(tenant_name(user_id))
        except WeaviateBaseError:
            return False

    async def _recorded_identity(self, user_id: uuid.UUID, collection: str) -> EmbeddingIdentity | None:
        identities = await self._tenant(IDENTITY_COLLECTION, user_id)
        try:
            found = await identities.query.fetch_object_by_id(identity_uuid(collection))
        except WeaviateBaseError:
            if await self._tenant_missing(IDENTITY_COLLECTION, user_id):
                return None
            raise
        if found is None:
            return None
        return EmbeddingIdentity(str(found.properties["model"]), int(found.properties["dimension"]))

    async def _claim_identity(self, user_id: uuid.UUID, collection: str) -> None:
        """Record this store's identity for the tenant's collection, or check it matches the record."""
        recorded = await self._recorded_identity(user_id, collection)
        if recorded is None:
            identities = await self._tenant(IDENTITY_COLLECTION, user_id)
            try:
                await identities.data.insert(
                    properties={"collection": collection, "model": self.model, "dimension": self.dimension},
                    uuid=identity_uuid(collection),
                )
                return
            except WeaviateBaseError:
                # Inserting an existing uuid fails: another writer recorded first, so compare with it.
                recorded = await self._recorded_identity(user_id, collection)
                if recorded is None:
                    raise
        if recorded != self._identity:
            raise EmbeddingModelMismatch(user_id, collection, recorded, self._identity)

    # -- the contract ---------------------------------------------------------------------------

    async def ensure_tenant(self, user_id: uuid.UUID) -> None:
        """Create the user's tenant in every collection (auto-creation covers batch inserts only)."""
        await self._connect()
        name = tenant_name(user_id)
        for collection in (*KEYS, IDENTITY_COLLECTION):
            tenants = self._client.collections.use(collection).tenants
            if await tenants.exists(name):
                continue
            try:
                await tenants.create([Tenant(name=name)])
            except WeaviateBaseError:
                if not await tenants.exists(name):
                    raise

    async def upsert(self, user_id: uuid.UUID, collection: str, chunks: Sequence[VectorChunk]) -> None:
        check_chunks(collection, chunks, self.dimension)
        if not chunks:
            return
        await self.ensure_tenant(user_id)
        await self._claim_identity(user_id, collection)
        target = await self._tenant(collection, user_id)
        for start in range(0, len(chunks), INSERT_BATCH):
            objects = [
                DataObject(
                    # Absent means null; a batch insert replaces the whole object of an existing uuid.
                    properties={k: v for k, v in chunk.properties.items() if v is not None},
                    uuid=chunk.id,
                    vector={VECTOR_NAME: [float(x) for x in chunk.vector]},
                )
                for chunk in chunks[start : start + INSERT_BATCH]
            ]
            result = await target.data.insert_many(objects)
            if result.has_errors:
                first = next(iter(result.errors.values()))
                raise RuntimeError(
                    f"Weaviate rejected {len(result.errors)} of {len(objects)} {collection} chunks: "
                    f"{first.message}"
                )

    async def delete(self, user_id: uuid.UUID, collection: str, where: Where) -> None:
        filters = weaviate_filter(check_where(collection, where, required=True))
        target = await self._tenant(collection, user_id)
        while True:  # one call deletes at most QUERY_MAXIMUM_RESULTS objects
            try:
                result = await target.data.delete_many(where=filters)
            except WeaviateBaseError:
                if await self._tenant_missing(collection, user_id):
                    return
                raise
            if result.failed:
                raise RuntimeError(f"Weaviate failed to delete {result.failed} {collection} chunks")
            if result.matches == 0 or result.successful == 0:
                return

    async def search(
        self,
        user_id: uuid.UUID,
        collection: str,
        vector: Sequence[float],
        k: int,
        where: Where | None = None,
        query_text: str | None = None,
    ) -> list[SearchHit]:
        check_k(k)
        filters = weaviate_filter(check_where(collection, where))
        if len(vector) != self.dimension:
            raise ValueError(f"query vector has {len(vector)} dimensions, the store expects {self.dimension}")
        target = await self._tenant(collection, user_id)
        hybrid = bool(query_text and query_text.strip())
        limit = hybrid_candidates(k) if hybrid else k
        returned = list(schema_of(collection))
        legs = [
            target.query.near_vector(
                near_vector=[float(x) for x in vector],
                target_vector=VECTOR_NAME,
                limit=limit,
                filters=filters,
                return_metadata=MetadataQuery(distance=True),
                return_properties=returned,
            )
        ]
        if hybrid:
            legs.append(
                target.query.bm25(
                    query=query_text,
                    query_properties=[TEXT],
                    limit=limit,
                    filters=filters,
                    return_metadata=MetadataQuery(score=True),
                    return_properties=returned,
                )
            )
        # The identity check runs alongside the queries; their results are dropped on a mismatch.
        identity, *results = await asyncio.gather(
            self._recorded_identity(user_id, collection), *legs, return_exceptions=True
        )
        if isinstance(identity, BaseException):
            raise identity
        if identity is None:
            return []  # nothing was ever stored for this tenant and collection
        if identity != self._identity:
            raise EmbeddingModelMismatch(user_id, collection, identity, self._identity)
        for result in results:
            if isinstance(result, BaseException):
                if isinstance(result, WeaviateBaseError) and await self._tenant_missing(collection, user_id):
                    return []
                raise result
        vector_objects = results[0].objects
        similarity = {str(obj.uuid): 1.0 - float(obj.metadata.distance or 0.0) for obj in vector_objects}
        if not hybrid:
            return [
                SearchHit(
                    obj.uuid,
                    similarity[str(obj.uuid)],
                    self._props(collection, obj),
                    similarity[str(obj.uuid)],
                )
                for obj in vector_objects
            ]
        text_objects = results[1].objects
        by_id = {str(obj.uuid): obj for obj in (*text_objects, *vector_objects)}
        fused = rrf_fuse([str(o.uuid) for o in vector_objects], [str(o.uuid) for o in text_objects], k)
        return [
            SearchHit(uuid.UUID(id_), score, self._props(collection, by_id[id_]), similarity.get(id_))
            for id_, score in fused
        ]

    @staticmethod
    def _props(collection: str, obj: Any) -> dict[str, Any]:
        return full_properties(collection, obj.properties)

    async def count(self, user_id: uuid.UUID, collection: str, where: Where | None = None) -> int:
        filters = weaviate_filter(check_where(collection, where))
        target = await self._tenant(collection, user_id)
        try:
            result = await target.aggregate.over_all(total_count=True, filters=filters)
        except WeaviateBaseError:
            if await self._tenant_missing(collection, user_id):
                return 0
            raise
        return result.total_count or 0

    async def drop_tenant(self, user_id: uuid.UUID) -> None:
        await self._connect()
        name = tenant_name(user_id)
        for collection in (*KEYS, IDENTITY_COLLECTION):
            tenants = self._client.collections.use(collection).tenants
            if await tenants.exists(name):
                await tenants.remove([name])

    async def optimize(self) -> None:
        """Nothing to do: Weaviate compacts its own segments."""

    async def close(self) -> None:
        await self._client.close()
        self._ready = False
