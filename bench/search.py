"""Search latency: ``GET /documents/search`` through the gateway, at 10k and at 100k chunks,
against the same searches run directly on the vector store.

What it measures
    * ``api``    -- ``GET /documents/search?q=...&k=10`` through the gateway, one keep-alive
      connection, one request at a time (closed loop), cycling through a fixed set of varied
      queries for ``--duration`` seconds after a discarded ``--warmup``: the gateway checks the
      token and the rate limit, the documents API embeds the query, runs the hybrid (vector +
      BM25) search on the user's LanceDB table, and looks the hits' documents up in Postgres.
    * ``direct`` -- the baseline, in this process: ``embed_query`` + ``store.search`` (the same
      hybrid search, same k) on the same table, same queries, same model.

    Both at ``--small`` chunks (10k: exact vector scan) and at ``--chunks`` (100k), each after
    ``store.optimize()`` (timed; at 100k it builds the approximate vector index). Also the time
    to load the rows through ``store.upsert``. Target: api p95 <= 50 ms at 100k.

How the data is made
    Embedding 100k real chunks would take about an hour on 2 cores, so: a few hundred distinct
    generated sentences are embedded once with the real model, and every chunk is 3-8 of them,
    its vector a normalised random mixture of theirs plus a little noise -- vectors distributed
    like real embeddings, and consistent with the chunk's text for the keyword leg. The search
    API keeps only hits whose document exists (not deleted) in Postgres for the user, so
    ``--docs`` tiny files are uploaded through the gateway first (no worker runs: they stay
    queued) and the chunks are spread over their ids.

Processes, clean-up and settings as in ``bench/gateway.py`` (``PAI_BENCH_POSTGRES``,
``PAI_BENCH_REDIS_URL``). Run from the repository root: ``.venv/bin/python bench/search.py --help``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

# bench/ (``_stack``, ``gateway``) and the root (``services``, ``shared``), run as a script or with -m.
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httptools
import httpx
import numpy as np
import psutil
from _stack import (
    REDIS_URL,
    Prose,
    Stack,
    VaryingConnection,
    describe_machine,
    percentile,
    stack,
    warn_if_contended,
)
from gateway import CpuMeter

from shared.embeddings import Embedder, EmbeddingSettings, create_embedder
from shared.vectors import DOCUMENT_CHUNKS, VectorChunk, VectorStore, create_vector_store

TARGET_P95_MS = 50.0
MAX_ERROR_RATE = 0.01
K = 10
NOISE = 0.25  # norm of the noise added to each chunk's mixture, before normalising (vectors have norm 1)

QUERIES = (
    "how do I keep the compost healthy over the winter",
    "frost damage on the apple tree",
    "cleaning the telescope lens before an eclipse",
    "when is the next meteor shower visible",
    "sourdough loaf recipe from my grandmother",
    "what spice blend goes into the marinade",
    "the treaty signed at the river port",
    "manuscripts kept in the county record office",
    "database migration broke the release",
    "memory leak in the scheduler",
    "anchor dragging in a squall",
    "which chart shows the tide near the marina",
    "vaccine dosage for a patient after a fracture",
    "blood test results from the rural clinic",
    "choir rehearsal tempo and harmony",
    "the conductor and the young composer",
    "mortgage interest rate forecast",
    "quarterly report and balance sheet audit",
    "avalanche risk on the north face",
    "ice axe and crampons for the glacier",
    "glacier",
    "invoice",
    "greenhouse seedling",
    "cache",
    "why did the skipper replace the mainsail",
    "notes on the monastery archive",
    "the gardener kept a rose bed at the nursery",
    "server deployment on the staging cluster",
    "an old fisherman at the lighthouse",
    "pension and savings account advice",
)


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Options:
    small: int
    chunks: int
    docs: int
    sentences: int
    load_batch: int
    duration: float
    warmup: float
    seed: int
    keep_logs: bool


def parse_args(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="bench/search.py",
        description="GET /documents/search latency through the gateway at two table sizes, vs direct.",
    )
    parser.add_argument("--small", type=int, default=10_000, help="chunks in the first round (10000)")
    parser.add_argument("--chunks", type=int, default=100_000, help="chunks in the second round (100000)")
    parser.add_argument("--docs", type=int, default=100, help="documents the chunks belong to (100)")
    parser.add_argument("--sentences", type=int, default=400, help="distinct embedded sentences (400)")
    parser.add_argument("--load-batch", type=int, default=10_000, help="chunks per store.upsert (10000)")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per run (10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="discarded seconds before that (2)")
    parser.add_argument("--seed", type=int, default=2024, help="data seed (2024)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the services' logs and print where")
    args = parser.parse_args(argv)
    if not 0 < args.small <= args.chunks:
        parser.error("need 0 < --small <= --chunks")
    if args.docs < 1 or args.sentences < 8 or args.load_batch < 1:
        parser.error("need --docs >= 1, --sentences >= 8 and --load-batch >= 1")
    if args.duration <= 0 or args.warmup < 0:
        parser.error("--duration must be > 0 and --warmup >= 0")
    return Options(
        args.small,
        args.chunks,
        args.docs,
        args.sentences,
        args.load_batch,
        args.duration,
        args.warmup,
        args.seed,
        args.keep_logs,
    )


# --------------------------------------------------------------------------- data


@dataclass
class Corpus:
    """Sentences with their real embeddings, and the documents the chunks are spread over."""

    sentences: list[str]
    vectors: np.ndarray  # (sentences, dimension), unit rows
    documents: list[tuple[str, str]]  # (id, title), from the documents API
    rng: np.random.Generator
    offsets: dict[str, int] = field(default_factory=dict)  # next chunk's start, per document

    def chunks(self, first: int, last: int) -> list[VectorChunk]:
        """Chunks ``first``..``last - 1``: chunk i belongs to document ``i % docs``."""
        n = last - first
        counts = self.rng.integers(3, 9, size=n)  # 3-8 sentences each
        picks = self.rng.integers(0, len(self.sentences), size=(n, 8))
        weights = self.rng.dirichlet(np.ones(8), size=n)
        weights[np.arange(8)[None, :] >= counts[:, None]] = 0.0
        mixed = np.einsum("nk,nkd->nd", weights, self.vectors[picks])
        noise = self.rng.standard_normal(mixed.shape)
        mixed += noise * (NOISE / np.sqrt(mixed.shape[1]))
        mixed /= np.linalg.norm(mixed, axis=1, keepdims=True)
        result = []
        for row, i in enumerate(range(first, last)):
            document_id, title = self.documents[i % len(self.documents)]
            index = i // len(self.documents)
            text = " ".join(self.sentences[s] for s in picks[row, : counts[row]])
            start = self.offsets.get(document_id, 0)
            self.offsets[document_id] = start + len(text) + 1
            properties = {
                "document_id": document_id,
                "chunk_index": index,
                "page": None,
                "start": start,
                "end": start + len(text),
                "category": "generic",
                "title": title,
                "text": text,
            }
            chunk_id = uuid.uuid5(uuid.UUID(document_id), f"chunk-{index}")  # as the worker names them
            result.append(VectorChunk(chunk_id, mixed[row].tolist(), properties))
        return result


def distinct_sentences(count: int, seed: int) -> list[str]:
    prose = Prose(seed)
    seen: dict[str, None] = {}
    while len(seen) < count:
        seen.setdefault(prose.sentence(Prose.topics[len(seen) % len(Prose.topics)]))
    return list(seen)


def upload_documents(env: Stack, count: int, seed: int) -> list[tuple[str, str]]:
    """``count`` tiny text files through the gateway; their ids make search hits survive the filter."""
    prose = Prose(seed + 1)
    documents = []
    with httpx.Client(base_url=env.gateway, headers=env.headers(), timeout=30.0) as client:
        for i in range(count):
            topic = Prose.topics[i % len(Prose.topics)]
            title = f"{topic.title()} notes {i + 1}"
            body = f"{title}\n\n{prose.paragraph(topic)}\n".encode()
            response = client.post(
                "/documents", files={"file": (f"note-{i + 1}.txt", body, "text/plain")}, data={"title": title}
            )
            if response.status_code != 202:
                raise RuntimeError(f"upload {i + 1}: {response.status_code} {response.text[:500]}")
            documents.append((response.json()["id"], title))
    return documents


async def load(
    store: VectorStore, user: uuid.UUID, corpus: Corpus, first: int, last: int, batch: int
) -> float:
    """Upsert chunks ``first``..``last - 1`` in batches; seconds spent in ``store.upsert`` only."""
    seconds = 0.0
    for start in range(first, last, batch):
        chunks = corpus.chunks(start, min(start + batch, last))
        began = time.perf_counter()
        await store.upsert(user, DOCUMENT_CHUNKS, chunks)
        seconds += time.perf_counter() - began
    return seconds


async def tenant_stats(store: VectorStore, user: uuid.UUID) -> str:
    """Rows, and the rows each index has not absorbed (LanceDB only; None: no such index)."""
    stats = getattr(store, "tenant_stats", None)
    if stats is None:
        return f"rows {await store.count(user, DOCUMENT_CHUNKS)}"
    values = await stats(user, DOCUMENT_CHUNKS)
    return ", ".join(f"{name.replace('_', ' ')} {value}" for name, value in values.items())


# --------------------------------------------------------------------------- measuring


@dataclass
class Answer:
    outcome: str  # "200", another status, or an exception's name
    has_results: bool
    sample: str = ""  # the start of a failure's body
    parts: dict[str, float] = field(default_factory=dict)


@dataclass
class Run:
    target: str
    size: int
    latencies_ms: list[float]
    seconds: float
    outcomes: Counter[str]
    empty: int  # 200s with no results: the filter dropped every hit (should be 0)
    cpu: dict[str, float]
    samples: dict[str, str] = field(default_factory=dict)
    parts: dict[str, list[float]] = field(default_factory=dict)  # ms per step (direct only), sorted

    def p(self, q: float) -> float:
        return percentile(self.latencies_ms, q)

    @property
    def rate(self) -> float:
        return len(self.latencies_ms) / self.seconds

    @property
    def errors(self) -> int:
        return sum(self.outcomes.values()) - self.outcomes["200"]


async def measure(
    target: str,
    size: int,
    options: Options,
    meter: CpuMeter,
    one: Callable[[str], Awaitable[Answer]],
) -> Run:
    """Closed loop, one request at a time, cycling the queries; latencies inside the window only."""
    latencies: list[float] = []
    outcomes: Counter[str] = Counter()
    samples: dict[str, str] = {}
    parts: dict[str, list[float]] = {}
    empty = 0
    window_start = time.monotonic() + options.warmup
    window_end = window_start + options.duration
    i = 0
    measuring = False
    while (started := time.monotonic()) < window_end:
        if not measuring and started >= window_start:
            meter.start()
            measuring = True
        query = QUERIES[i % len(QUERIES)]
        i += 1
        try:
            answer = await one(query)
        except (OSError, httptools.HttpParserError) as exc:
            answer = Answer(type(exc).__name__, False, str(exc)[:200])
        finished = time.monotonic()
        outcomes[answer.outcome] += 1
        if answer.outcome != "200":
            samples.setdefault(answer.outcome, answer.sample)
        elif not answer.has_results:
            empty += 1
        if started >= window_start and finished <= window_end:
            latencies.append(1000 * (finished - started))
            for name, ms in answer.parts.items():
                parts.setdefault(name, []).append(ms)
    cpu = meter.stop()
    parts = {name: sorted(values) for name, values in parts.items()}
    return Run(target, size, sorted(latencies), options.duration, outcomes, empty, cpu, samples, parts)


async def measure_api(env: Stack, size: int, options: Options) -> Run:
    connection = VaryingConnection(env.gateway, env.token)
    meter = CpuMeter(
        {
            **{name: [psutil.Process(p.pid)] for name, p in env.processes.items()},
            "bench": [psutil.Process()],
        }
    )

    async def one(query: str) -> Answer:
        status, body = await connection.get(f"/documents/search?q={quote(query)}&k={K}")
        if status != 200:
            return Answer(str(status), False, body[:200].decode(errors="replace"))
        return Answer("200", bool(json.loads(body)["results"]))

    return await measure("api", size, options, meter, one)


async def measure_direct(
    env: Stack, store: VectorStore, embedder: Embedder, user: uuid.UUID, size: int, options: Options
) -> Run:
    meter = CpuMeter(
        {
            **{name: [psutil.Process(p.pid)] for name, p in env.processes.items()},
            "bench": [psutil.Process()],
        }
    )

    async def one(query: str) -> Answer:
        began = time.perf_counter()
        vector = await embedder.embed_query(query)
        embedded = time.perf_counter()
        hits = await store.search(user, DOCUMENT_CHUNKS, vector, K, query_text=query)
        parts = {
            "embed_query": 1000 * (embedded - began),
            "store.search": 1000 * (time.perf_counter() - embedded),
        }
        return Answer("200", bool(hits), parts=parts)

    return await measure("direct", size, options, meter, one)


# --------------------------------------------------------------------------- report


def print_report(runs: list[Run], loads: dict[int, float], optimizes: dict[int, float]) -> None:
    print()
    print(
        f"{'target':<7} {'chunks':>7} {'requests':>9} {'req/s':>7} {'p50 ms':>7} {'p95 ms':>7} "
        f"{'p99 ms':>7} {'errors':>6}"
    )
    for r in runs:
        print(
            f"{r.target:<7} {r.size:>7} {len(r.latencies_ms):>9} {r.rate:>7.1f} {r.p(50):>7.2f} "
            f"{r.p(95):>7.2f} {r.p(99):>7.2f} {r.errors:>6}"
        )
    print("(one connection, one request at a time; errors: non-200 answers, warm-up included)")
    print()
    by = {(r.target, r.size): r for r in runs}
    for size in sorted({r.size for r in runs}):
        api, direct = by[("api", size)], by[("direct", size)]
        print(
            f"{size:>7} chunks: api/direct p50 {api.p(50) / direct.p(50):.2f}x "
            f"({api.p(50) - direct.p(50):+.2f} ms), p95 {api.p(95) / direct.p(95):.2f}x "
            f"({api.p(95) - direct.p(95):+.2f} ms)"
        )
    largest = max(r.size for r in runs)
    api_p95 = by[("api", largest)].p(95)
    verdict = "meets" if api_p95 <= TARGET_P95_MS else "MISSES"
    print(f"api p95 at {largest} chunks: {api_p95:.2f} ms ({verdict} the <= {TARGET_P95_MS:g} ms target)")
    print()
    print("direct, step by step (ms):")
    for r in runs:
        if r.parts:
            steps = ", ".join(
                f"{name} p50 {percentile(ms, 50):.2f} / p95 {percentile(ms, 95):.2f}"
                for name, ms in r.parts.items()
            )
            print(f"{r.size:>7} chunks: {steps}")
    print()
    previous = 0
    for size in sorted(loads):
        print(
            f"load {previous}->{size} chunks (store.upsert): {loads[size]:.1f} s "
            f"({(size - previous) / loads[size]:.0f} chunks/s); optimize at {size}: {optimizes[size]:.2f} s"
        )
        previous = size
    total_optimize = sum(optimizes.values())
    print(f"time to load {largest} rows: {sum(loads.values()):.1f} s (+ {total_optimize:.1f} s optimize)")
    print()
    cores = psutil.cpu_count() or 1
    names = ["documents", "gateway", "auth", "bench", "other"]
    print(
        "CPU in the measured window (% of one core; 'other' = Postgres, Redis, kernel, ...; "
        f"{cores} cores = {100 * cores}):"
    )
    print(f"{'target':<7} {'chunks':>7} " + " ".join(f"{n:>9}" for n in names) + f" {'machine':>8}")
    for r in runs:
        cells = " ".join(f"{r.cpu.get(n, 0.0):>9.0f}" for n in names)
        print(f"{r.target:<7} {r.size:>7} {cells} {r.cpu['machine']:>7.0f}%")
    warn_if_contended({f"{r.target} at {r.size}": r.cpu for r in runs})
    for r in runs:
        if r.errors or r.empty:
            failed = {o: n for o, n in r.outcomes.items() if o != "200"}
            print(f"\n{r.target} at {r.size}: failures {failed}, empty result lists {r.empty}")
            for outcome, body in r.samples.items():
                print(f"  {outcome}: {body}")


async def run_all(env: Stack, embedder: Embedder, corpus_args: tuple, options: Options) -> int:
    sentences, vectors, documents = corpus_args
    corpus = Corpus(sentences, vectors, documents, np.random.default_rng(options.seed))
    user = uuid.UUID(env.user_id())
    store = create_vector_store(
        data_dir=env.data_dir, model=embedder.model_name, dimension=embedder.dimension
    )
    runs: list[Run] = []
    loads: dict[int, float] = {}
    optimizes: dict[int, float] = {}
    loaded = 0
    try:
        for size in dict.fromkeys((options.small, options.chunks)):
            print(f"loading {loaded}->{size} chunks ...", flush=True)
            loads[size] = await load(store, user, corpus, loaded, size, options.load_batch)
            loaded = size
            began = time.perf_counter()
            await store.optimize()
            optimizes[size] = time.perf_counter() - began
            stats = await tenant_stats(store, user)
            print(
                f"  loaded in {loads[size]:.1f} s, optimized in {optimizes[size]:.2f} s; {stats}", flush=True
            )
            print(f"running api and direct at {size} chunks ...", flush=True)
            runs.append(await measure_api(env, size, options))
            runs.append(await measure_direct(env, store, embedder, user, size, options))
    finally:
        await store.close()
    print_report(runs, loads, optimizes)
    failed = [r for r in runs if r.errors > MAX_ERROR_RATE * max(1, sum(r.outcomes.values())) or r.empty]
    if failed:
        print(f"\nFAILED: errors or empty results in {', '.join(f'{r.target}@{r.size}' for r in failed)}")
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up on `kill` as on Ctrl-C
    describe_machine("search benchmark: GET /documents/search through the gateway vs the store directly")
    print(
        f"settings: {options.small} then {options.chunks} chunks over {options.docs} documents, "
        f"k={K}, hybrid (vector + BM25), {len(QUERIES)} queries, warm-up {options.warmup:g} s, "
        f"duration {options.duration:g} s per run, 1 connection, log level WARNING, redis {REDIS_URL}",
        flush=True,
    )
    embedder = create_embedder(EmbeddingSettings())
    began = time.perf_counter()
    sentences = distinct_sentences(options.sentences, options.seed)
    vectors = np.asarray(asyncio.run(embedder.embed(sentences)), dtype=np.float32)
    print(
        f"model: {embedder.model_name} ({embedder.dimension} dimensions); embedded {len(sentences)} "
        f"sentences in {time.perf_counter() - began:.1f} s",
        flush=True,
    )
    try:
        with stack(with_worker=False, keep_logs=options.keep_logs) as env:
            documents = upload_documents(env, options.docs, options.seed)
            print(f"uploaded {len(documents)} documents (queued: no worker runs)", flush=True)
            return asyncio.run(run_all(env, embedder, (sentences, vectors, documents), options))
    except KeyboardInterrupt:
        print("\ninterrupted; cleaned up", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
