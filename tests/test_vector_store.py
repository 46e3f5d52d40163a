"""The vector-store contract, run against every back end: LanceDB always, Weaviate when WEAVIATE_URL is set.

Vectors are small and seeded (no embedding model), so every expected hit is known exactly.
"""

import asyncio
import os
import sys
import uuid
import zlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import numpy as np
import pytest

from shared.vectors import (
    DOCUMENT_CHUNKS,
    EMAIL_CHUNKS,
    SCHEMAS,
    EmbeddingModelMismatch,
    SearchHit,
    VectorChunk,
    VectorStore,
    create_vector_store,
)
from shared.vectors.base import rrf_fuse
from shared.vectors.lancedb_store import FTS_REINDEX_ROWS, LanceDBVectorStore, sql_literal, sql_where

WEAVIATE_URL = os.environ.get("WEAVIATE_URL")
WEAVIATE_API_KEY = os.environ.get("WEAVIATE_API_KEY")
MODEL = "test-embedder-a"
DIM = 16
ROOT = Path(__file__).resolve().parent.parent


def vec(seed: int, dim: int = DIM) -> list[float]:
    return np.random.default_rng(seed).standard_normal(dim).tolist()


def chunk_id(document_id: str, index: int) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"test-chunk:{document_id}:{index}")


def doc_chunk(
    document_id: str, index: int, text: str | None = None, *, seed: int | None = None, dim: int = DIM
) -> VectorChunk:
    return VectorChunk(
        id=chunk_id(document_id, index),
        vector=vec(seed if seed is not None else zlib.crc32(f"{document_id}:{index}".encode()), dim),
        properties={
            "document_id": document_id,
            "chunk_index": index,
            "page": index + 1 if index % 2 else None,
            "start": index * 100,
            "end": index * 100 + 99,
            "category": "generic",
            "title": f"Title of {document_id}",
            "text": text if text is not None else f"Chunk {index} of {document_id} about ordinary things.",
        },
    )


def ids(hits: list[SearchHit]) -> list[uuid.UUID]:
    return [hit.id for hit in hits]


@pytest.fixture(params=["lancedb", "weaviate"])
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "weaviate" and not WEAVIATE_URL:
        pytest.skip("WEAVIATE_URL is not set: no Weaviate server to test against")
    return request.param


@pytest.fixture
async def make_store(backend: str, tmp_path: Path) -> AsyncIterator[Callable[..., VectorStore]]:
    """Stores over the same data (a second one stands for another process); all closed at the end."""
    stores: list[VectorStore] = []

    def make(model: str = MODEL, dimension: int = DIM) -> VectorStore:
        store = create_vector_store(
            data_dir=tmp_path,
            model=model,
            dimension=dimension,
            weaviate_url=WEAVIATE_URL if backend == "weaviate" else None,
            weaviate_api_key=WEAVIATE_API_KEY,
        )
        stores.append(store)
        return store

    yield make
    for store in stores:
        await store.close()


@pytest.fixture
async def store(make_store: Callable[..., VectorStore]) -> VectorStore:
    return make_store()


@pytest.fixture
async def new_user(store: VectorStore) -> AsyncIterator[Callable[[], uuid.UUID]]:
    """Fresh tenants, dropped afterwards (a Weaviate server outlives the test)."""
    made: list[uuid.UUID] = []

    def new() -> uuid.UUID:
        made.append(uuid.uuid4())
        return made[-1]

    yield new
    for user_id in made:
        await store.drop_tenant(user_id)


async def test_store_satisfies_the_protocol(store: VectorStore) -> None:
    assert isinstance(store, VectorStore)
    assert (store.model, store.dimension) == (MODEL, DIM)


async def test_upsert_then_count_and_search(store: VectorStore, new_user) -> None:
    user = new_user()
    await store.ensure_tenant(user)
    await store.ensure_tenant(user)  # idempotent
    chunks = [doc_chunk("doc-a", i) for i in range(5)]
    await store.upsert(user, DOCUMENT_CHUNKS, chunks)

    assert await store.count(user, DOCUMENT_CHUNKS) == 5
    hits = await store.search(user, DOCUMENT_CHUNKS, chunks[2].vector, k=3)
    assert len(hits) == 3
    assert hits[0].id == chunks[2].id
    assert hits[0].score == pytest.approx(1.0, abs=1e-4)  # cosine similarity of a vector with itself
    assert hits[0].score >= hits[1].score >= hits[2].score
    assert hits[0].properties == dict(chunks[2].properties)  # every property round-trips, None included
    assert hits[0].properties["page"] is None


async def test_search_and_count_of_unknown_tenant_are_empty(store: VectorStore, new_user) -> None:
    user = new_user()
    assert await store.count(user, DOCUMENT_CHUNKS) == 0
    assert await store.count(user, EMAIL_CHUNKS, {"email_id": "x"}) == 0
    assert await store.search(user, DOCUMENT_CHUNKS, vec(1), k=5) == []
    assert await store.search(user, DOCUMENT_CHUNKS, vec(1), k=5, query_text="anything") == []
    await store.delete(user, DOCUMENT_CHUNKS, {"document_id": "nothing"})  # no error either


async def test_upsert_same_ids_overwrites(store: VectorStore, new_user) -> None:
    user = new_user()
    await store.upsert(
        user, DOCUMENT_CHUNKS, [doc_chunk("doc-a", i, f"old wording {i} oldword") for i in range(4)]
    )
    await store.upsert(
        user, DOCUMENT_CHUNKS, [doc_chunk("doc-a", i, f"new wording {i} freshword") for i in range(4)]
    )

    assert await store.count(user, DOCUMENT_CHUNKS) == 4
    target = doc_chunk("doc-a", 2)
    hits = await store.search(user, DOCUMENT_CHUNKS, target.vector, k=4)
    assert hits[0].id == target.id
    assert hits[0].properties["text"] == "new wording 2 freshword"
    # The full-text side sees the new text at once and the old text nowhere.
    hybrid = await store.search(user, DOCUMENT_CHUNKS, vec(999), k=4, query_text="freshword")
    assert {hit.id for hit in hybrid} == {chunk_id("doc-a", i) for i in range(4)}
    assert all("oldword" not in hit.properties["text"] for hit in hybrid)


async def test_delete_by_where_removes_exactly_those(store: VectorStore, new_user) -> None:
    user = new_user()
    await store.upsert(user, DOCUMENT_CHUNKS, [doc_chunk("doc-a", i) for i in range(3)])
    await store.upsert(user, DOCUMENT_CHUNKS, [doc_chunk("doc-b", i) for i in range(4)])
    assert await store.count(user, DOCUMENT_CHUNKS) == 7
    assert await store.count(user, DOCUMENT_CHUNKS, {"document_id": "doc-a"}) == 3

    await store.delete(user, DOCUMENT_CHUNKS, {"document_id": "doc-b", "chunk_index": 1})
    assert await store.count(user, DOCUMENT_CHUNKS) == 6
    await store.delete(user, DOCUMENT_CHUNKS, {"document_id": "doc-a"})
    assert await store.count(user, DOCUMENT_CHUNKS) == 3
    assert await store.count(user, DOCUMENT_CHUNKS, {"document_id": "doc-a"}) == 0
    hits = await store.search(user, DOCUMENT_CHUNKS, vec(5), k=10, query_text="ordinary things")
    assert sorted(ids(hits)) == sorted(chunk_id("doc-b", i) for i in (0, 2, 3))

    with pytest.raises(ValueError, match="without a filter"):
        await store.delete(user, DOCUMENT_CHUNKS, {})
    with pytest.raises(ValueError, match="no property"):
        await store.delete(user, DOCUMENT_CHUNKS, {"not_a_property": "x"})
    with pytest.raises(ValueError, match="must be int"):
        await store.delete(user, DOCUMENT_CHUNKS, {"chunk_index": "1"})
    assert await store.count(user, DOCUMENT_CHUNKS) == 3


async def test_tenants_are_isolated(store: VectorStore, new_user) -> None:
    alice, bob = new_user(), new_user()
    await store.upsert(
        alice, DOCUMENT_CHUNKS, [doc_chunk("alice-doc", i, "shared secret text", seed=i) for i in range(3)]
    )
    await store.upsert(
        bob, DOCUMENT_CHUNKS, [doc_chunk("bob-doc", i, "shared secret text", seed=i) for i in range(2)]
    )

    assert await store.count(alice, DOCUMENT_CHUNKS) == 3
    assert await store.count(bob, DOCUMENT_CHUNKS) == 2
    for user, doc, n in ((alice, "alice-doc", 3), (bob, "bob-doc", 2)):
        for query_text in (None, "shared secret text"):
            hits = await store.search(user, DOCUMENT_CHUNKS, vec(0), k=10, query_text=query_text)
            assert sorted(ids(hits)) == sorted(chunk_id(doc, i) for i in range(n))
    # A filter naming the other tenant's document finds nothing, it does not cross over.
    assert await store.search(bob, DOCUMENT_CHUNKS, vec(0), k=10, where={"document_id": "alice-doc"}) == []
    # Collections are separate too.
    assert await store.count(alice, EMAIL_CHUNKS) == 0


async def test_hybrid_ranks_exact_keyword_match_first(store: VectorStore, new_user) -> None:
    user = new_user()
    rng = np.random.default_rng(7)
    words = ["budget", "meeting", "invoice", "travel", "report", "contract", "schedule", "review"]
    chunks = [doc_chunk("filler", i, " ".join(rng.choice(words, size=12)), seed=1000 + i) for i in range(200)]
    query_vector = vec(424242)
    # The needle's vector points away from the query: only its words can bring it up.
    rare = VectorChunk(
        chunk_id("needle", 0),
        [-x for x in query_vector],
        {
            **doc_chunk("needle", 0).properties,
            "text": "The courier delivered the zanzibarquartz sample on Tuesday.",
        },
    )
    await store.upsert(user, DOCUMENT_CHUNKS, [*chunks[:120], rare, *chunks[120:]])

    vector_only = await store.search(user, DOCUMENT_CHUNKS, query_vector, k=100)
    assert rare.id not in ids(vector_only)
    hits = await store.search(user, DOCUMENT_CHUNKS, query_vector, k=5, query_text="zanzibarquartz")
    assert hits[0].id == rare.id
    assert "zanzibarquartz" in hits[0].properties["text"]
    # The rest are the best vector hits, in order (no other chunk has the word).
    assert ids(hits[1:]) == ids(vector_only[:4])
    assert hits[0].score >= hits[1].score > hits[2].score > hits[4].score > 0
    # Query syntax characters are only text.
    weird = await store.search(
        user, DOCUMENT_CHUNKS, query_vector, k=3, query_text='"budget" AND (x OR y*) -z: ~'
    )
    assert len(weird) == 3


async def test_where_filters_in_search(store: VectorStore, new_user) -> None:
    user = new_user()
    await store.upsert(user, DOCUMENT_CHUNKS, [doc_chunk("doc-a", i) for i in range(4)])
    await store.upsert(user, DOCUMENT_CHUNKS, [doc_chunk("o'brien's doc", i) for i in range(3)])

    for query_text in (None, "ordinary things"):
        hits = await store.search(
            user, DOCUMENT_CHUNKS, vec(3), k=10, where={"document_id": "o'brien's doc"}, query_text=query_text
        )
        assert sorted(ids(hits)) == sorted(chunk_id("o'brien's doc", i) for i in range(3))
        hits = await store.search(
            user,
            DOCUMENT_CHUNKS,
            vec(3),
            k=10,
            where={"document_id": "doc-a", "chunk_index": 2},
            query_text=query_text,
        )
        assert ids(hits) == [chunk_id("doc-a", 2)]
    injection = {"document_id": "x' OR '1'='1"}
    assert await store.search(user, DOCUMENT_CHUNKS, vec(3), k=10, where=injection) == []
    assert await store.count(user, DOCUMENT_CHUNKS, injection) == 0
    assert await store.count(user, DOCUMENT_CHUNKS, {"document_id": "o'brien's doc"}) == 3
    with pytest.raises(ValueError, match="no property"):
        await store.search(user, DOCUMENT_CHUNKS, vec(3), k=10, where={"owner": "x"})


async def test_email_chunks(store: VectorStore, new_user) -> None:
    user = new_user()
    chunks = [
        VectorChunk(
            id=uuid.uuid5(uuid.NAMESPACE_URL, f"mail:{i}"),
            vector=vec(50 + i),
            properties={
                "email_id": f"mail-{i // 2}",
                "account_id": "acct-1",
                "chunk_index": i % 2,
                "subject": "Quarterly numbers",
                "sender": "Ann <ann@example.com>",
                "sent_at": "2025-03-01T10:00:00+00:00",
                "email_type": "attachment" if i % 2 else "body",
                "attachment_id": f"att-{i}" if i % 2 else None,
                "page": 2 if i % 2 else None,
                "start": 10 * i,
                "end": 10 * i + 12,
                "text": f"email part {i}",
            },
        )
        for i in range(6)
    ]
    await store.upsert(user, EMAIL_CHUNKS, chunks)
    assert await store.count(user, EMAIL_CHUNKS) == 6
    assert await store.count(user, EMAIL_CHUNKS, {"email_id": "mail-1"}) == 2
    assert await store.count(user, DOCUMENT_CHUNKS) == 0
    hits = await store.search(user, EMAIL_CHUNKS, vec(53), k=1, where={"email_type": "attachment"})
    assert ids(hits) == [chunks[3].id]
    assert hits[0].properties == dict(chunks[3].properties)
    await store.delete(user, EMAIL_CHUNKS, {"email_id": "mail-1"})
    assert await store.count(user, EMAIL_CHUNKS) == 4


async def test_drop_tenant_leaves_nothing(store: VectorStore, new_user) -> None:
    user, other = new_user(), new_user()
    await store.upsert(user, DOCUMENT_CHUNKS, [doc_chunk("doc-a", i) for i in range(3)])
    await store.upsert(
        user, EMAIL_CHUNKS, [VectorChunk(uuid.uuid4(), vec(9), {"email_id": "m", "text": "hi"})]
    )
    await store.upsert(other, DOCUMENT_CHUNKS, [doc_chunk("doc-o", 0)])

    await store.drop_tenant(user)
    for collection in (DOCUMENT_CHUNKS, EMAIL_CHUNKS):
        assert await store.count(user, collection) == 0
        assert await store.search(user, collection, vec(9), k=5) == []
        assert await store.search(user, collection, vec(9), k=5, query_text="hi") == []
    await store.drop_tenant(user)  # idempotent
    assert await store.count(other, DOCUMENT_CHUNKS) == 1
    # The tenant can be filled again afterwards.
    await store.upsert(user, DOCUMENT_CHUNKS, [doc_chunk("doc-a", 0)])
    assert await store.count(user, DOCUMENT_CHUNKS) == 1


async def test_model_mismatch_is_refused(make_store, new_user) -> None:
    store = make_store()
    user = new_user()
    await store.upsert(user, DOCUMENT_CHUNKS, [doc_chunk("doc-a", i) for i in range(3)])

    other_model = make_store(model="test-embedder-b")
    with pytest.raises(EmbeddingModelMismatch) as caught:
        await other_model.search(user, DOCUMENT_CHUNKS, vec(1), k=3)
    message = str(caught.value)
    assert "test-embedder-a" in message and "test-embedder-b" in message and "re-index" in message
    with pytest.raises(EmbeddingModelMismatch):
        await other_model.search(user, DOCUMENT_CHUNKS, vec(1), k=3, query_text="ordinary")
    with pytest.raises(EmbeddingModelMismatch):
        await other_model.upsert(user, DOCUMENT_CHUNKS, [doc_chunk("doc-b", 0)])

    other_dimension = make_store(dimension=8)
    with pytest.raises(EmbeddingModelMismatch, match="dimension 16"):
        await other_dimension.search(user, DOCUMENT_CHUNKS, vec(1, 8), k=3)
    with pytest.raises(EmbeddingModelMismatch):
        await other_dimension.upsert(user, DOCUMENT_CHUNKS, [doc_chunk("doc-b", 0, dim=8)])
    assert await store.count(user, DOCUMENT_CHUNKS) == 3  # nothing was written by the refused upserts

    # Only the refused tenant and collection: others are free for the new model.
    assert await other_model.search(user, EMAIL_CHUNKS, vec(1), k=3) == []
    # Re-indexing: drop the tenant, embed again with the new model; now the old model is refused.
    await other_model.drop_tenant(user)
    await other_model.upsert(user, DOCUMENT_CHUNKS, [doc_chunk("doc-a", 0)])
    assert ids(await other_model.search(user, DOCUMENT_CHUNKS, doc_chunk("doc-a", 0).vector, k=1)) == [
        chunk_id("doc-a", 0)
    ]
    with pytest.raises(EmbeddingModelMismatch):
        await store.search(user, DOCUMENT_CHUNKS, vec(1), k=3)


async def test_wrong_vector_length_is_refused(store: VectorStore, new_user) -> None:
    user = new_user()
    with pytest.raises(ValueError, match="15 dimensions"):
        await store.upsert(user, DOCUMENT_CHUNKS, [doc_chunk("doc-a", 0), doc_chunk("doc-a", 1, dim=15)])
    assert await store.count(user, DOCUMENT_CHUNKS) == 0  # the whole batch was refused
    await store.upsert(user, DOCUMENT_CHUNKS, [doc_chunk("doc-a", 0)])
    with pytest.raises(ValueError, match="17 dimensions"):
        await store.search(user, DOCUMENT_CHUNKS, vec(1, 17), k=3)
    with pytest.raises(ValueError, match="NaN"):
        await store.upsert(
            user, DOCUMENT_CHUNKS, [VectorChunk(uuid.uuid4(), [float("nan")] * DIM, {"text": "x"})]
        )
    with pytest.raises(ValueError, match="no properties"):
        await store.upsert(
            user, DOCUMENT_CHUNKS, [VectorChunk(uuid.uuid4(), vec(1), {"text": "x", "owner": "y"})]
        )
    with pytest.raises(ValueError, match="'text'"):
        await store.upsert(user, DOCUMENT_CHUNKS, [VectorChunk(uuid.uuid4(), vec(1), {"document_id": "d"})])
    with pytest.raises(ValueError, match="unknown collection"):
        await store.search(user, "Nope", vec(1), k=3)
    assert await store.count(user, DOCUMENT_CHUNKS) == 1


async def test_second_instance_sees_writes_without_restart(make_store, new_user) -> None:
    writer, reader = make_store(), make_store()
    user = new_user()
    assert await reader.search(user, DOCUMENT_CHUNKS, vec(1), k=3) == []  # opened before anything exists

    await writer.upsert(user, DOCUMENT_CHUNKS, [doc_chunk("doc-a", i) for i in range(3)])
    assert await reader.count(user, DOCUMENT_CHUNKS) == 3
    await writer.upsert(user, DOCUMENT_CHUNKS, [doc_chunk("doc-a", 3, "late arrival glockenspiel")])
    hits = await reader.search(user, DOCUMENT_CHUNKS, vec(77), k=1, query_text="glockenspiel")
    assert ids(hits) == [chunk_id("doc-a", 3)]
    await writer.delete(user, DOCUMENT_CHUNKS, {"document_id": "doc-a", "chunk_index": 0})
    assert await reader.count(user, DOCUMENT_CHUNKS) == 3
    await writer.optimize()
    assert await reader.count(user, DOCUMENT_CHUNKS) == 3
    await writer.drop_tenant(user)
    assert await reader.count(user, DOCUMENT_CHUNKS) == 0
    assert await reader.search(user, DOCUMENT_CHUNKS, vec(1), k=3, query_text="glockenspiel") == []


async def test_optimize_keeps_everything_searchable(store: VectorStore, new_user) -> None:
    user = new_user()
    await store.upsert(user, DOCUMENT_CHUNKS, [doc_chunk("doc-a", i) for i in range(10)])
    await store.delete(user, DOCUMENT_CHUNKS, {"document_id": "doc-a", "chunk_index": 4})
    await store.optimize()
    await store.upsert(user, DOCUMENT_CHUNKS, [doc_chunk("doc-a", 10, "after optimize xylophone")])
    assert await store.count(user, DOCUMENT_CHUNKS) == 10
    hits = await store.search(user, DOCUMENT_CHUNKS, vec(1), k=2, query_text="xylophone")
    assert hits[0].id == chunk_id("doc-a", 10)


# -- LanceDB only: what the contract cannot see -------------------------------------------------


async def test_lancedb_folds_new_rows_into_the_full_text_index(tmp_path: Path) -> None:
    store = LanceDBVectorStore(tmp_path, model=MODEL, dimension=DIM)
    user = uuid.uuid4()
    try:
        await store.upsert(user, DOCUMENT_CHUNKS, [doc_chunk("doc-a", i) for i in range(10)])
        assert (await store.tenant_stats(user, DOCUMENT_CHUNKS))["fts_unindexed_rows"] == 10
        await store.upsert(user, DOCUMENT_CHUNKS, [doc_chunk("doc-b", i) for i in range(FTS_REINDEX_ROWS)])
        stats = await store.tenant_stats(user, DOCUMENT_CHUNKS)
        assert stats["rows"] == FTS_REINDEX_ROWS + 10 and stats["fts_unindexed_rows"] == 0
        hits = await store.search(user, DOCUMENT_CHUNKS, vec(1), k=3, query_text="Chunk 7 of doc-a")
        assert hits[0].id == chunk_id("doc-a", 7)
    finally:
        await store.close()


async def test_lancedb_optimize_indexes_large_tables_and_stays_exact_enough(tmp_path: Path) -> None:
    store = LanceDBVectorStore(tmp_path, model=MODEL, dimension=DIM, vector_index_min_rows=600)
    user = uuid.uuid4()
    try:
        chunks = [doc_chunk(f"doc-{i // 10}", i % 10, seed=i) for i in range(599)]
        await store.upsert(user, DOCUMENT_CHUNKS, chunks)
        await store.optimize()
        assert (await store.tenant_stats(user, DOCUMENT_CHUNKS))["vector_unindexed_rows"] is None  # too small
        await store.upsert(user, DOCUMENT_CHUNKS, [doc_chunk("doc-last", 0, seed=599)])
        await store.optimize()
        assert (await store.tenant_stats(user, DOCUMENT_CHUNKS))["vector_unindexed_rows"] == 0

        late = [doc_chunk("late", i, f"late chunk {i}", seed=10_000 + i) for i in range(5)]
        await store.upsert(user, DOCUMENT_CHUNKS, late)
        assert (await store.tenant_stats(user, DOCUMENT_CHUNKS))["vector_unindexed_rows"] == 5
        for chunk in [*chunks[::37], *late]:  # indexed rows and rows the index has not absorbed yet
            hits = await store.search(user, DOCUMENT_CHUNKS, chunk.vector, k=3)
            assert hits[0].id == chunk.id and hits[0].score == pytest.approx(1.0, abs=1e-4)
        hits = await store.search(user, DOCUMENT_CHUNKS, late[2].vector, k=5, where={"document_id": "doc-7"})
        assert {hit.properties["document_id"] for hit in hits} == {"doc-7"} and len(hits) == 5
        await store.optimize()
        assert (await store.tenant_stats(user, DOCUMENT_CHUNKS))["vector_unindexed_rows"] == 0
        assert ids(await store.search(user, DOCUMENT_CHUNKS, late[4].vector, k=1)) == [late[4].id]
    finally:
        await store.close()


async def test_lancedb_creation_race_still_reports_mismatch(tmp_path: Path, monkeypatch) -> None:
    first = LanceDBVectorStore(tmp_path, model=MODEL, dimension=DIM)
    late = LanceDBVectorStore(tmp_path, model="test-embedder-b", dimension=8)
    user = uuid.uuid4()
    real_open = late._open
    calls = 0

    async def open_losing_the_race(*args):
        nonlocal calls
        calls += 1
        if calls == 1:  # not there when looked for, created by "another process" right after
            await first.upsert(user, DOCUMENT_CHUNKS, [doc_chunk("doc-a", 0)])
            return None
        return await real_open(*args)

    monkeypatch.setattr(late, "_open", open_losing_the_race)
    try:
        with pytest.raises(EmbeddingModelMismatch):
            await late.upsert(user, DOCUMENT_CHUNKS, [doc_chunk("doc-b", 0, dim=8)])
        assert await first.count(user, DOCUMENT_CHUNKS) == 1
    finally:
        await first.close()
        await late.close()


WRITER = """
import asyncio, sys, uuid
from pathlib import Path
from tests.test_vector_store import doc_chunk, MODEL, DIM
from shared.vectors import DOCUMENT_CHUNKS
from shared.vectors.lancedb_store import LanceDBVectorStore

async def main():
    store = LanceDBVectorStore(Path(sys.argv[1]), model=MODEL, dimension=DIM)
    user = uuid.UUID(sys.argv[2])
    if sys.argv[3] == "drop":
        await store.drop_tenant(user)
    else:
        chunks = [doc_chunk("from-worker", i, "written by worker") for i in range(5)]
        await store.upsert(user, DOCUMENT_CHUNKS, chunks)
    await store.close()

asyncio.run(main())
"""


async def test_lancedb_reader_sees_another_process_writes(tmp_path: Path) -> None:
    reader = LanceDBVectorStore(tmp_path, model=MODEL, dimension=DIM)
    user = uuid.uuid4()

    async def worker(action: str) -> None:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", WRITER, str(tmp_path), str(user), action, cwd=ROOT
        )
        assert await asyncio.wait_for(process.wait(), timeout=120) == 0

    try:
        assert await reader.count(user, DOCUMENT_CHUNKS) == 0
        await worker("upsert")
        assert await reader.count(user, DOCUMENT_CHUNKS) == 5
        hits = await reader.search(user, DOCUMENT_CHUNKS, vec(3), k=2, query_text="worker")
        assert len(hits) == 2 and all(hit.properties["document_id"] == "from-worker" for hit in hits)
        await worker("drop")
        assert await reader.count(user, DOCUMENT_CHUNKS) == 0
        assert await reader.search(user, DOCUMENT_CHUNKS, vec(3), k=2) == []
    finally:
        await reader.close()


def test_sql_filters_quote_values() -> None:
    assert sql_literal("o'brien") == "'o''brien'"
    assert sql_literal(42) == "42"
    assert (
        sql_where({"document_id": "a' OR '1'='1", "end": 3})
        == "`document_id` = 'a'' OR ''1''=''1' AND `end` = 3"
    )
    with pytest.raises(ValueError):
        sql_literal(True)


def test_rrf_prefers_keyword_match_on_ties() -> None:
    # "t" is first by keywords only, "v" first by vector only: equal RRF scores, keywords win.
    fused = rrf_fuse(["v", "a", "b"], ["t", "a"], k=3)
    assert [id_ for id_, _ in fused] == ["a", "t", "v"]  # "a" is in both rankings
    assert fused[1][1] == pytest.approx(fused[2][1])


def test_factory_picks_backend(tmp_path: Path) -> None:
    from shared.vectors.weaviate_store import WeaviateVectorStore

    lance = create_vector_store(data_dir=tmp_path, model=MODEL, dimension=DIM)
    assert isinstance(lance, LanceDBVectorStore) and lance.path == tmp_path / "vectors"
    weav = create_vector_store(
        data_dir=tmp_path, model=MODEL, dimension=DIM, weaviate_url="http://127.0.0.1:1", weaviate_api_key="k"
    )
    assert isinstance(weav, WeaviateVectorStore) and isinstance(
        weav, VectorStore
    )  # constructs, no connection
    with pytest.raises(ValueError, match="WEAVIATE_URL"):
        create_vector_store(data_dir=tmp_path, model=MODEL, dimension=DIM, weaviate_url="localhost")


def test_weaviate_configuration_is_valid_for_the_client() -> None:
    """What can be checked without a server: collection configs and filters validate in the client."""
    from weaviate.collections.classes.config import _CollectionConfigCreate
    from weaviate.collections.classes.filters import _FilterAnd

    from shared.vectors.weaviate_store import IDENTITY_COLLECTION, collection_settings, weaviate_filter

    configs = {
        name: _CollectionConfigCreate(name=name, **collection_settings(name))._to_dict()
        for name in (DOCUMENT_CHUNKS, EMAIL_CHUNKS, IDENTITY_COLLECTION)
    }
    for config in configs.values():
        assert config["multiTenancyConfig"] == {
            "enabled": True,
            "autoTenantCreation": True,
            "autoTenantActivation": True,
        }
        assert config["vectorConfig"]["default"]["vectorizer"] == {"none": {}}
        assert config["vectorConfig"]["default"]["vectorIndexConfig"]["distance"] == "cosine"
    props = {p["name"]: p for p in configs[DOCUMENT_CHUNKS]["properties"]}
    assert list(props) == list(SCHEMAS[DOCUMENT_CHUNKS])
    assert props["text"]["tokenization"] == "word" and props["document_id"]["tokenization"] == "field"
    assert props["page"]["dataType"] == ["int"]
    assert weaviate_filter({}) is None
    assert isinstance(weaviate_filter({"document_id": "a", "chunk_index": 1}), _FilterAnd)
