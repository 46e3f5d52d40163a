"""Answers: retrieval latency, the system's time-to-first-token overhead, its own answer
ceiling, and the local model's speed, all in one run.

What it measures
    * ``retrieval``  -- ``timings.retrieval_ms`` of answers to varied questions (the assistant
      asking the documents and mail search APIs at once, fusing, filtering, packing) with
      10,000 document chunks and 10,000 email chunks in the user's tenant; baseline: the same
      two searches sent at once from this process (``GET /documents/search`` and
      ``GET /mail/search``, the slower of the pair).
    * ``first token`` -- ``POST /queries`` streamed through the gateway to the assistant with the
      local model (llama.cpp + SmolLM2-135M-Instruct, as ``make run``), time to the first
      ``delta``; baseline: the same model asked directly with the same prompt (rebuilt from the
      ``sources`` event with the assistant's own prompt code), time to its first token; the two
      in alternating order, and an unrelated prompt before each call clears llama.cpp's prompt
      cache. Each question's
      difference is the system's overhead (target: within 150 ms at p50), split into the
      assistant's retrieval and what the gateway, HTTP and SSE add beyond the assistant's own
      ``first_token_ms``.
    * ``ceiling``    -- answers per second at concurrency 8 through a second gateway to an
      assistant whose model is the instant stand-in (``tests/openai_stub.py`` as a process):
      the system's own ceiling; baseline: the searches alone (both APIs) at concurrency 8.
    * ``model``      -- the local model's tokens per second on this machine (128-token answers).

How the data is made
    As in ``bench/search.py``: a few hundred generated sentences embedded once with the real
    model, chunks mixing 3-8 of them with vectors mixed the same way, loaded with
    ``store.upsert`` into the user's tenant (documents over ``--docs`` queued uploads; emails
    over ``--emails`` rows written straight into ``mail.emails`` with the admin DSN).

Run from the repository root: ``.venv/bin/python bench/answers.py [--help]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg
import httpx
import numpy as np
from _stack import Stack, describe_machine, percentile, stack
from cryptography.fernet import Fernet
from gateway import service
from httpx_sse import aconnect_sse
from search import Corpus, distinct_sentences, load, upload_documents

from services.assistant.prompts import answer_messages
from shared.embeddings import EmbeddingSettings, create_embedder
from shared.passages import Passage
from shared.registry import health_path
from shared.vectors import EMAIL_CHUNKS, VectorChunk, create_vector_store
from tests.support import Process, free_port, python, wait_healthy

QUESTIONS = [f"What did {who} say about the {noun}?" for who, noun in (
    ("the gardener", "compost"), ("the astronomer", "comet"), ("the chef", "sourdough"),
    ("the historian", "treaty"), ("the engineer", "database"), ("my neighbour", "hedge"),
    ("the night assistant", "telescope"), ("the archivist", "manuscript"), ("the maintainer", "release"),
    ("the pastry cook", "oven"), ("a volunteer", "greenhouse"), ("the survey team", "nebula"),
)]  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--chunks", type=int, default=10_000, help="document chunks and email chunks, each (10000)"
    )
    parser.add_argument("--docs", type=int, default=40, help="documents the chunks spread over (40)")
    parser.add_argument("--emails", type=int, default=400, help="emails the email chunks spread over (400)")
    parser.add_argument("--sentences", type=int, default=300, help="distinct sentences embedded (300)")
    parser.add_argument("--retrievals", type=int, default=60, help="answers timed for retrieval (60)")
    parser.add_argument(
        "--first-tokens", type=int, default=12, help="streamed answers with the local model (12)"
    )
    parser.add_argument("--duration", type=float, default=15.0, help="seconds of the concurrency-8 runs (15)")
    parser.add_argument("--seed", type=int, default=7)
    return parser.parse_args(argv)


def summary(values: list[float]) -> str:
    ordered = sorted(values)
    return f"p50 {percentile(ordered, 50):7.1f} ms  p95 {percentile(ordered, 95):7.1f} ms  (n={len(values)})"


async def seed_mail(admin_url: str, user: uuid.UUID, count: int) -> list[tuple[str, str, str, datetime]]:
    """``count`` email rows for the user (one account), straight into the mail schema."""
    conn = await asyncpg.connect(admin_url)
    try:
        account = uuid.uuid4()
        await conn.execute(
            "INSERT INTO mail.email_accounts (id, owner_id, address, access_token, token_expires_at) "
            "VALUES ($1, $2, 'bench@example.com', 'unused', now() + interval '1 hour')",
            account,
            user,
        )
        rows = []
        base = datetime(2026, 1, 1, tzinfo=UTC)
        for i in range(count):
            rows.append(
                (
                    uuid.uuid4(),
                    user,
                    account,
                    f"g{i}",
                    f"t{i}",
                    f"Notes {i}",
                    "sender@example.com",
                    base + timedelta(hours=i),
                )
            )
        await conn.executemany(
            "INSERT INTO mail.emails (id, owner_id, account_id, gmail_id, thread_id, subject, "
            "sender_address, sent_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            rows,
        )
        return [(str(r[0]), str(account), r[5], r[7]) for r in rows]
    finally:
        await conn.close()


def email_chunks(corpus: Corpus, emails: list, count: int) -> list[VectorChunk]:
    """The document corpus's chunks, relabelled as email chunks spread over ``emails``."""
    chunks = []
    for i, chunk in enumerate(corpus.chunks(0, count)):
        email_id, account_id, subject, sent_at = emails[i % len(emails)]
        text = str(chunk.properties["text"])
        properties = {
            "email_id": email_id, "account_id": account_id, "chunk_index": i // len(emails),
            "subject": subject, "sender": "sender@example.com", "sent_at": sent_at.isoformat(),
            "email_type": "personal", "attachment_id": None, "page": None,
            "start": 0, "end": len(text), "text": text,
        }  # fmt: skip
        chunks.append(VectorChunk(uuid.uuid5(uuid.UUID(email_id), f"chunk-{i}"), chunk.vector, properties))
    return chunks


async def retrieval(gateway: str, headers: dict, count: int) -> tuple[list[float], list[float]]:
    """(assistant retrieval_ms per answer, the two raw searches at once per question)."""
    assistant, raw = [], []
    async with httpx.AsyncClient(base_url=gateway, headers=headers, timeout=120) as client:
        for i in range(count):
            question = QUESTIONS[i % len(QUESTIONS)]
            answer = (await client.post("/queries", json={"question": question})).json()
            assistant.append(answer["timings"]["retrieval_ms"])
            began = time.perf_counter()
            await asyncio.gather(
                client.get("/documents/search", params={"q": question, "k": 12}),
                client.get("/mail/search", params={"q": question, "k": 12}),
            )
            raw.append((time.perf_counter() - began) * 1000)
    return assistant, raw


PASSAGE_FIELDS = (
    "kind", "document_id", "email_id", "attachment_id", "account_id", "title", "subject", "sender", "sent_at",
    "page", "text", "score",
)  # fmt: skip


def passages_of(sources: list[dict]) -> list[Passage]:
    """The passages a ``sources`` event names, to rebuild the assistant's prompt."""
    return [
        Passage(chunk_id=s.get("chunk_id") or uuid.uuid4(), **{k: s.get(k) for k in PASSAGE_FIELDS})
        for s in sources
    ]


@dataclass
class FirstToken:
    """One question, asked both ways, in ms."""

    system: float  # first delta through gateway + assistant, from the client's request
    direct: float  # first token of the same prompt asked of the model directly
    assistant: float  # the assistant's own first_token_ms (from its start of work)
    retrieval: float  # the assistant's retrieval_ms
    sources: float  # when the client had the sources event (the model is asked right after)


@dataclass
class Asked:
    """One streamed answer through gateway + assistant, in ms from the client's request."""

    first: float | None  # first delta
    sources_at: float  # the sources event (the model is asked right after)
    sources: list[dict]
    done: dict


# llama.cpp keeps the last prompt's KV cache: an unrelated prompt before each measured call,
# so neither side gets the other's prompt for free.
FLUSH = {"model": "x", "max_tokens": 1, "messages": [{"role": "user", "content": "Say hi."}]}


async def ask_system(
    client: httpx.AsyncClient, gateway: str, llm: str, headers: dict, question: str
) -> Asked:
    await client.post(f"{llm}/v1/chat/completions", json=FLUSH)
    began, asked = time.perf_counter(), Asked(None, 0.0, [], {})
    async with aconnect_sse(
        client, "POST", f"{gateway}/queries", json={"question": question},
        headers={**headers, "Accept": "text/event-stream"},
    ) as source:  # fmt: skip
        async for event in source.aiter_sse():
            if event.event == "sources":
                asked.sources = json.loads(event.data)["sources"]
                asked.sources_at = (time.perf_counter() - began) * 1000
            elif event.event == "delta" and asked.first is None:
                asked.first = (time.perf_counter() - began) * 1000
            elif event.event == "done":
                asked.done = json.loads(event.data)
    return asked


async def ask_direct(client: httpx.AsyncClient, llm: str, messages: list) -> float | None:
    await client.post(f"{llm}/v1/chat/completions", json=FLUSH)
    body = {
        "model": "SmolLM2-135M-Instruct", "messages": messages,
        "max_tokens": 400, "temperature": 0.2, "stream": True,
    }  # fmt: skip
    began, direct = time.perf_counter(), None
    async with aconnect_sse(client, "POST", f"{llm}/v1/chat/completions", json=body) as source:
        async for event in source.aiter_sse():
            if event.data.strip() == "[DONE]":
                break
            delta = json.loads(event.data)["choices"][0].get("delta", {})
            if delta.get("content") and direct is None:
                direct = (time.perf_counter() - began) * 1000
    return direct


async def first_tokens(gateway: str, llm: str, headers: dict, count: int) -> list[FirstToken]:
    """Each question through the gateway and its exact prompt straight to the model, the two in
    alternating order (so neither side always goes first). A question's prompt is learned from
    one unmeasured answer first; retrieval is deterministic, and a measured answer whose prompt
    would differ from the learned one is left out."""
    results = []
    prompts: dict[str, list] = {}
    async with httpx.AsyncClient(timeout=300) as client:
        for i in range(count):
            question = QUESTIONS[i % len(QUESTIONS)]
            if question not in prompts:
                learned = await ask_system(client, gateway, llm, headers, question)
                prompts[question] = answer_messages(question, passages_of(learned.sources), [])
            messages = prompts[question]
            if i % 2 == 0:
                asked = await ask_system(client, gateway, llm, headers, question)
                direct = await ask_direct(client, llm, messages)
            else:
                direct = await ask_direct(client, llm, messages)
                asked = await ask_system(client, gateway, llm, headers, question)
            same_prompt = answer_messages(question, passages_of(asked.sources), []) == messages
            if asked.first is None or direct is None or not same_prompt:
                continue
            timings = asked.done.get("timings") or {}
            assistant = timings.get("first_token_ms") or 0.0
            retrieval = timings.get("retrieval_ms") or 0.0
            results.append(FirstToken(asked.first, direct, assistant, retrieval, asked.sources_at))
    return results


async def concurrency(duration: float, make_request) -> tuple[float, int]:
    """Completed requests per second with 8 clients in a closed loop; (rate, errors)."""
    done, errors = 0, 0
    deadline = time.monotonic() + duration

    async def client_loop(i: int) -> None:
        nonlocal done, errors
        n = i
        while time.monotonic() < deadline:
            ok = await make_request(QUESTIONS[n % len(QUESTIONS)])
            n += 8
            done += ok
            errors += not ok

    began = time.monotonic()
    await asyncio.gather(*(client_loop(i) for i in range(8)))
    return done / (time.monotonic() - began), errors


async def model_speed(llm: str) -> float:
    body = {
        "model": "SmolLM2-135M-Instruct", "max_tokens": 128, "temperature": 0.2, "stream": True,
        "messages": [{"role": "user", "content": "Write a long story about a lighthouse keeper."}],
    }  # fmt: skip
    rates = []
    async with httpx.AsyncClient(timeout=300) as client:
        for _ in range(3):
            tokens, first = 0, None
            async with aconnect_sse(client, "POST", f"{llm}/v1/chat/completions", json=body) as source:
                async for event in source.aiter_sse():
                    if event.data.strip() == "[DONE]":
                        break
                    if json.loads(event.data)["choices"][0].get("delta", {}).get("content"):
                        tokens += 1
                        first = first or time.perf_counter()
            if first and tokens > 1:
                rates.append((tokens - 1) / (time.perf_counter() - first))
    return statistics.median(rates)


def run(options: argparse.Namespace) -> int:
    stub_port = free_port()
    with stack(
        with_worker=False,
        services=("auth", "gateway", "documents", "mail", "assistant"),
        extra_env={
            "PAI_LLM_BACKEND": "local",
            "PAI_MAX_CONCURRENT_ANSWERS": "1000",
            "PAI_ACCESS_TOKEN_TTL_SECONDS": "7200",  # one sign-in outlasts a long run
            "PAI_MAIL_TOKEN_KEYS": Fernet.generate_key().decode(),  # the mail API needs one to start
        },
    ) as env:  # fmt: skip
        llm = Process(
            python("-m", "services.llm", "serve", "--port", env.urls["llm"].rsplit(":", 1)[1]),
            env.env,
            env.workdir / "llm.log",
        ).start()
        stub = Process(
            python("tests/openai_stub.py", str(stub_port)), env.env, env.workdir / "stub.log"
        ).start()
        try:
            wait_healthy(env.urls["llm"] + health_path("llm"), llm, timeout=120)
            return asyncio.run(measure(env, options, stub_port))
        finally:
            stub.stop()
            llm.stop()


async def measure(env: Stack, options: argparse.Namespace, stub_port: int) -> int:
    """Seed the tenant, then every measurement; prints the report."""
    user = uuid.UUID(env.user_id())
    print(f"seeding {options.chunks} document chunks and {options.chunks} email chunks...", flush=True)
    embedder = create_embedder(EmbeddingSettings(embedding_backend="local"))
    sentences = distinct_sentences(options.sentences, options.seed)
    vectors = np.asarray(await embedder.embed(sentences), dtype=np.float32)
    store = create_vector_store(
        data_dir=env.data_dir, model=embedder.model_name, dimension=embedder.dimension
    )
    documents = upload_documents(env, options.docs, options.seed)
    corpus = Corpus(sentences, vectors, documents, np.random.default_rng(options.seed))
    await load(store, user, corpus, 0, options.chunks, 5000)
    emails = await seed_mail(env.env["PAI_DATABASE_URL"], user, options.emails)
    mail_corpus = Corpus(sentences, vectors, documents, np.random.default_rng(options.seed + 1))
    for start in range(0, options.chunks, 5000):
        batch = email_chunks(mail_corpus, emails, min(5000, options.chunks - start))
        await store.upsert(user, EMAIL_CHUNKS, batch)
    await store.optimize()
    await store.close()

    headers = env.headers()
    print("retrieval (local model answering)...", flush=True)
    assistant_ms, raw_ms = await retrieval(env.gateway, headers, options.retrievals)
    print("first token...", flush=True)
    firsts = await first_tokens(env.gateway, env.urls["llm"], headers, options.first_tokens)
    print("model speed...", flush=True)
    tokens_per_second = await model_speed(env.urls["llm"])

    assistant_port, gateway_port = free_port(), free_port()
    stub_env = {
        **env.env,
        "PAI_LLM_BACKEND": "openai",
        "PAI_LLM_BASE_URL": f"http://127.0.0.1:{stub_port}/v1",
        "PAI_LLM_MODEL": "instant",
        "PAI_ASSISTANT_URL": f"http://127.0.0.1:{assistant_port}",
    }
    with (
        service("assistant", assistant_port, stub_env, env.workdir),
        service("gateway", gateway_port, stub_env, env.workdir),
    ):
        base_url = f"http://127.0.0.1:{gateway_port}"
        async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=120) as client:

            async def answer(question: str) -> bool:
                return (await client.post("/queries", json={"question": question})).status_code == 201

            async def searches(question: str) -> bool:
                pair = await asyncio.gather(
                    client.get("/documents/search", params={"q": question, "k": 12}),
                    client.get("/mail/search", params={"q": question, "k": 12}),
                )
                return all(r.status_code == 200 for r in pair)

            print("concurrency 8...", flush=True)
            await answer(QUESTIONS[0])
            answers_rate, answer_errors = await concurrency(options.duration, answer)
            search_rate, search_errors = await concurrency(options.duration, searches)

    print()
    print(f"retrieval, {options.chunks} document + {options.chunks} email chunks:")
    print(f"  assistant retrieval       {summary(assistant_ms)}")
    print(f"  both searches at once     {summary(raw_ms)}")
    ratio = percentile(sorted(assistant_ms), 50) / max(percentile(sorted(raw_ms), 50), 1e-9)
    print(f"  ratio (p50)               {ratio:.2f}x the raw searches")
    print("time to first token, SmolLM2-135M-Instruct (llama.cpp, local):")
    print(f"  through gateway+assistant {summary([f.system for f in firsts])}")
    print(f"  model asked directly      {summary([f.direct for f in firsts])}")
    # Each question's own difference: prompts differ in length, so pairing removes that spread.
    overhead = [f.system - f.direct for f in firsts]
    print(f"  system overhead, paired   {summary(overhead)} (target p50 <= 150 ms)")
    if len(overhead) > 1:  # how far the model's own spread leaves the figure uncertain
        half = 1.96 * statistics.stdev(overhead) / len(overhead) ** 0.5
        print(f"    mean, 95% interval      {statistics.mean(overhead):7.1f} ms +- {half:.1f} ms")
    print(f"    of which retrieval      {summary([f.retrieval for f in firsts])}")
    print(f"    before the model        {summary([f.sources for f in firsts])}")
    print(f"    the model, as asked     {summary([f.system - f.sources - f.direct for f in firsts])}")
    print(f"    gateway, HTTP and SSE   {summary([f.system - f.assistant for f in firsts])}")
    print("ceiling at concurrency 8 (instant stand-in model):")
    print(f"  answers                   {answers_rate:7.1f} /s  ({answer_errors} errors)")
    print(f"  both searches alone       {search_rate:7.1f} /s  ({search_errors} errors)")
    print(f"  ratio                     {answers_rate / max(search_rate, 1e-9):.2f}x the searches alone")
    print(f"local model speed           {tokens_per_second:.1f} tokens/s (128-token answers, median of 3)")
    return 0


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    describe_machine("answers benchmark")
    return run(options)


if __name__ == "__main__":
    sys.exit(main())
