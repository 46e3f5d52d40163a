"""The embedded back end: LanceDB tables on local disk, one per user and collection.

Several processes share the directory (the API reads while a worker writes). LanceDB commits every
write as a new table version; this store opens the table on every call (about 0.1 ms) on a
connection with ``read_consistency_interval=0``, so each read sees the latest committed version,
and a table dropped or re-created by another process is simply found (or not) on the next call.

The embedding identity lives in the table's Arrow schema metadata, written atomically with the
table itself by the first upsert, so every process reads the same record without a sidecar file.

Search is exact (a linear scan: 11-19 ms at 10k chunks of 384 dimensions, by machine) until a
table reaches ``vector_index_min_rows``; :meth:`LanceDBVectorStore.optimize` then gives it an
IVF-HNSW-SQ index (8 ms at 10k, about 3 ms at 100k, results re-ranked exactly), and rows added
later are scanned until the next optimize folds them in.
"""

import asyncio
import uuid
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import lancedb
import numpy as np
import pyarrow as pa
import structlog
from lancedb.index import FTS, BTree, HnswSq
from lancedb.table import AsyncTable

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

log = structlog.get_logger(__name__)

_MODEL_KEY = b"pai.embedding_model"
_DIMENSION_KEY = b"pai.embedding_dimension"
_FTS_INDEX = f"{TEXT}_idx"
# Rows the full-text index has not absorbed are searched by a linear scan (about 2.5 ms per 1000
# rows); once an upsert leaves this many behind, it folds them into the index right away.
FTS_REINDEX_ROWS = 1000
# Old table versions are deleted after this long; readers only ever hold a version for one query.
KEEP_OLD_VERSIONS = timedelta(hours=1)
_VECTOR_INDEX = "vector_idx"
# A linear scan costs 1-2 ms per 1000 rows (384 dimensions), the index a few ms at any size:
# past this, optimize() builds it (about 2 s per 5k rows, 10 s per 30k, on 2 cores). At 10k rows
# it halves a search (19 -> 8 ms measured), which every answer pays twice (documents and mail).
VECTOR_INDEX_MIN_ROWS = 5_000
# With the approximate index, fetch this many times k by index and re-rank them by exact distance.
REFINE_FACTOR = 4


def table_name(collection: str, user_id: uuid.UUID) -> str:
    return f"{collection}__{user_id.hex}"


def sql_literal(value: str | int) -> str:
    """A SQL literal for a filter value: ints as digits, strings quoted with ``'`` doubled."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"filter values are str or int, got {type(value).__name__}")
    if isinstance(value, int):
        return str(value)
    return "'" + value.replace("'", "''") + "'"


def sql_where(where: dict[str, str | int]) -> str | None:
    """AND of equalities; names are checked against the schema before they get here."""
    if not where:
        return None
    return " AND ".join(f"`{name}` = {sql_literal(value)}" for name, value in where.items())


class LanceDBVectorStore:
    """LanceDB :class:`~shared.vectors.base.VectorStore`: a table ``<collection>__<user hex>`` each."""

    def __init__(
        self, path: Path, *, model: str, dimension: int, vector_index_min_rows: int = VECTOR_INDEX_MIN_ROWS
    ) -> None:
        if dimension < 1:
            raise ValueError(f"dimension must be positive, got {dimension}")
        self.path = Path(path)
        self.model = model
        self.dimension = dimension
        self.vector_index_min_rows = vector_index_min_rows
        self._identity = EmbeddingIdentity(model, dimension)
        self._db: lancedb.AsyncConnection | None = None
        self._connect_lock = asyncio.Lock()
        self._table_locks: dict[str, asyncio.Lock] = {}
        self._indexed: set[str] = set()  # tables this process has seen with all their indexes

    # -- plumbing -------------------------------------------------------------------------------

    async def _connection(self) -> lancedb.AsyncConnection:
        if self._db is None:
            async with self._connect_lock:
                if self._db is None:
                    self.path.mkdir(parents=True, exist_ok=True)
                    self._db = await lancedb.connect_async(self.path, read_consistency_interval=timedelta(0))
        return self._db

    def _arrow_schema(self, collection: str) -> pa.Schema:
        fields = [
            pa.field("id", pa.string(), nullable=False),
            pa.field("vector", pa.list_(pa.float32(), self.dimension), nullable=False),
        ]
        for name, kind in schema_of(collection).items():
            fields.append(pa.field(name, pa.string() if kind == "text" else pa.int64()))
        metadata = {_MODEL_KEY: self.model.encode(), _DIMENSION_KEY: str(self.dimension).encode()}
        return pa.schema(fields, metadata=metadata)

    async def _open(self, user_id: uuid.UUID, collection: str) -> AsyncTable | None:
        """The tenant's table at its latest version, or None if it was never written."""
        schema_of(collection)
        db = await self._connection()
        try:
            return await db.open_table(table_name(collection, user_id))
        except ValueError as exc:
            if "was not found" in str(exc):
                return None
            raise

    async def _check_identity(self, user_id: uuid.UUID, collection: str, table: AsyncTable) -> None:
        schema = await table.schema()
        metadata = schema.metadata or {}
        vector_type = schema.field("vector").type
        recorded = EmbeddingIdentity(
            metadata.get(_MODEL_KEY, b"").decode() or "<unrecorded>",
            vector_type.list_size if isinstance(vector_type, pa.FixedSizeListType) else -1,
        )
        if recorded != self._identity:
            raise EmbeddingModelMismatch(user_id, collection, recorded, self._identity)

    async def _writable(self, user_id: uuid.UUID, collection: str) -> AsyncTable:
        """The tenant's table, created with this store's identity and indexes if it does not exist."""
        name = table_name(collection, user_id)
        table = await self._open(user_id, collection)
        if table is not None and name in self._indexed:
            await self._check_identity(user_id, collection, table)
            return table
        async with self._table_locks.setdefault(name, asyncio.Lock()):
            if table is None:
                table = await self._create(user_id, collection)
            await self._check_identity(user_id, collection, table)
            await self._ensure_indexes(table, collection)
            self._indexed.add(name)
        return table

    async def _create(self, user_id: uuid.UUID, collection: str) -> AsyncTable:
        db = await self._connection()
        try:
            return await db.create_table(
                table_name(collection, user_id), schema=self._arrow_schema(collection), exist_ok=True
            )
        except ValueError:
            # Another process created it first with another schema: the identity check will say so.
            table = await self._open(user_id, collection)
            if table is None:
                raise
            return table

    async def _ensure_indexes(self, table: AsyncTable, collection: str) -> None:
        """A BTREE on the collection's key (filters, deletes) and the native full-text index on text."""
        wanted = {f"{KEYS[collection]}_idx": (KEYS[collection], BTree()), _FTS_INDEX: (TEXT, FTS())}
        present = {index.name for index in await table.list_indices()}
        for index_name, (column, config) in wanted.items():
            if index_name in present:
                continue
            try:
                await table.create_index(column, config=config, name=index_name, replace=False)
            except Exception:
                # Lost a race with another process creating the same index: fine if it is there now.
                if index_name not in {index.name for index in await table.list_indices()}:
                    raise

    def _to_arrow(self, collection: str, chunks: Sequence[VectorChunk]) -> pa.Table:
        schema = self._arrow_schema(collection)
        flat = np.asarray([chunk.vector for chunk in chunks], dtype=np.float32).reshape(-1)
        columns: dict[str, Any] = {
            "id": pa.array([str(chunk.id) for chunk in chunks], pa.string()),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), self.dimension),
        }
        for name in schema_of(collection):
            columns[name] = pa.array(
                [chunk.properties.get(name) for chunk in chunks], schema.field(name).type
            )
        return pa.table(columns, schema=schema)

    # -- the contract ---------------------------------------------------------------------------

    async def ensure_tenant(self, user_id: uuid.UUID) -> None:
        """Nothing to prepare: the first upsert creates the table, recording the model it came from."""
        await self._connection()

    async def upsert(self, user_id: uuid.UUID, collection: str, chunks: Sequence[VectorChunk]) -> None:
        check_chunks(collection, chunks, self.dimension)
        if not chunks:
            return
        table = await self._writable(user_id, collection)
        await (
            table.merge_insert("id")
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .execute(self._to_arrow(collection, chunks))
        )
        try:
            stats = await table.index_stats(_FTS_INDEX)
            if stats is not None and stats.num_unindexed_rows >= FTS_REINDEX_ROWS:
                await self._optimize_table(table)
        except Exception:  # the rows are committed and searchable; folding them in can wait
            log.exception("vector_table_reindex_failed", table=table.name)

    async def delete(self, user_id: uuid.UUID, collection: str, where: Where) -> None:
        predicate = sql_where(check_where(collection, where, required=True))
        table = await self._open(user_id, collection)
        if table is not None and predicate is not None:
            await table.delete(predicate)

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
        predicate = sql_where(check_where(collection, where))
        if len(vector) != self.dimension:
            raise ValueError(f"query vector has {len(vector)} dimensions, the store expects {self.dimension}")
        table = await self._open(user_id, collection)
        if table is None:
            return []
        await self._check_identity(user_id, collection, table)
        columns = ["id", *schema_of(collection)]
        query_vector = np.asarray(vector, dtype=np.float32)
        hybrid = bool(query_text and query_text.strip())
        vector_query = (
            table.query()
            .nearest_to(query_vector)
            .distance_type("cosine")
            .refine_factor(REFINE_FACTOR)  # only used once the table has its approximate index
            .limit(hybrid_candidates(k) if hybrid else k)
            .select([*columns, "_distance"])
        )
        if predicate is not None:
            vector_query = vector_query.where(predicate)
        if not hybrid:
            rows = (await vector_query.to_arrow()).to_pylist()
            return [
                self._hit(collection, row, 1.0 - row["_distance"], 1.0 - row["_distance"]) for row in rows
            ]

        text_query = (
            table.query()
            .nearest_to_text(query_text or "", columns=[TEXT])
            .limit(hybrid_candidates(k))
            .select([*columns, "_score"])
        )
        if predicate is not None:
            text_query = text_query.where(predicate)
        vector_rows, text_rows = await asyncio.gather(vector_query.to_arrow(), text_query.to_arrow())
        rows_by_id = {row["id"]: row for row in text_rows.to_pylist()}
        rows_by_id.update({row["id"]: row for row in vector_rows.to_pylist()})
        fused = rrf_fuse(vector_rows["id"].to_pylist(), text_rows["id"].to_pylist(), k)
        similarity = {
            row["id"]: 1.0 - row["_distance"] for row in vector_rows.select(["id", "_distance"]).to_pylist()
        }
        return [self._hit(collection, rows_by_id[id_], score, similarity.get(id_)) for id_, score in fused]

    @staticmethod
    def _hit(collection: str, row: dict[str, Any], score: float, similarity: float | None) -> SearchHit:
        properties = full_properties(collection, row)
        return SearchHit(uuid.UUID(row["id"]), float(score), properties, similarity)

    async def count(self, user_id: uuid.UUID, collection: str, where: Where | None = None) -> int:
        predicate = sql_where(check_where(collection, where))
        table = await self._open(user_id, collection)
        if table is None:
            return 0
        return await table.count_rows(predicate)

    async def drop_tenant(self, user_id: uuid.UUID) -> None:
        db = await self._connection()
        for collection in KEYS:
            name = table_name(collection, user_id)
            await db.drop_table(name, ignore_missing=True)
            self._indexed.discard(name)

    async def optimize(self) -> None:
        """Compact every table, fold new rows into its indexes, index large ones, delete old versions."""
        db = await self._connection()
        page_token: str | None = None
        while True:
            page = await db.list_tables(page_token=page_token)
            for name in page.tables:
                try:
                    table = await db.open_table(name)
                    await self._ensure_vector_index(table)
                    await self._optimize_table(table)
                except Exception:  # one broken or vanished table must not stop the others
                    log.exception("vector_table_optimize_failed", table=name)
            page_token = page.page_token
            if not page_token:
                break

    async def _optimize_table(self, table: AsyncTable) -> None:
        await table.optimize(cleanup_older_than=KEEP_OLD_VERSIONS)

    async def _ensure_vector_index(self, table: AsyncTable) -> None:
        """Give a table past ``vector_index_min_rows`` its approximate vector index (once)."""
        if any(index.name == _VECTOR_INDEX for index in await table.list_indices()):
            return
        if await table.count_rows() < self.vector_index_min_rows:
            return
        config = HnswSq(distance_type="cosine")
        await table.create_index("vector", config=config, name=_VECTOR_INDEX, replace=False)

    async def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    # -- for benchmarks and maintenance ---------------------------------------------------------

    async def tenant_stats(self, user_id: uuid.UUID, collection: str) -> dict[str, int | None]:
        """Rows, table version, and rows each index has not absorbed yet (None: no such index)."""
        table = await self._open(user_id, collection)
        if table is None:
            return {"rows": 0, "version": 0, "fts_unindexed_rows": None, "vector_unindexed_rows": None}
        fts = await table.index_stats(_FTS_INDEX)
        vector = await table.index_stats(_VECTOR_INDEX)
        return {
            "rows": await table.count_rows(),
            "version": await table.version(),
            "fts_unindexed_rows": fts.num_unindexed_rows if fts is not None else None,
            "vector_unindexed_rows": vector.num_unindexed_rows if vector is not None else None,
        }
