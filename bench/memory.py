"""Memory of the whole ``make run`` stack, and what one model copy costs search.

What it measures
    The stack exactly as ``make run`` starts it (``infra/supervise.py`` over the Procfile) on a
    throw-away database, Redis db and data dir, twice in one run:

    * ``server`` -- the default: documents and mail (each API with its worker inside, as
      ``make run`` starts them) ask the embeddings process, which holds the one copy of the model;
    * ``in-process`` -- the baseline, ``PAI_EMBEDDING_BACKEND=local``: those two processes load
      torch and the model themselves, as before the embeddings process existed (the Procfile
      still starts it; idle, it is left out of this run's figures).

    For each: every process's resident memory (RSS) and proportional share (PSS: shared pages
    split between the processes that map them, so the PSS column adds up honestly) after
    start-up, after ingesting a small corpus (upload -> ready), right after searches, and once
    the stack has been idle for 3 s (the embeddings process returns its passes' buffers to the
    OS after 1 s idle, ``PAI_EMBEDDINGS_IDLE_RELEASE_SECONDS``); the total;
    and ``GET /documents/search`` latency through the gateway (p50/p95 over ``--searches``
    sequential requests after a warm-up). Targets: the ``server`` stack at most 1.3 GB resident
    after a search (judged right after the searches, not idle); its search p95 at most 5 ms
    above the in-process one.

Settings: ``PAI_BENCH_POSTGRES`` and ``PAI_BENCH_REDIS_URL`` as for ``bench/gateway.py``.
Run from the repository root: ``.venv/bin/python bench/memory.py --help``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

# bench/ (``_stack``, ``gateway``) and the root (``services``, ``shared``), run as a script or with -m.
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import psutil
from _stack import REDIS_URL, Prose, describe_machine, percentile
from gateway import flushed_redis, log_in, temporary_database

from services.auth.tokens import generate_private_key_file
from services.mail.crypto import generate_key
from shared.registry import health_path
from tests.support import ROOT, Process, free_port, python, wait_healthy

SERVICES = ("gateway", "auth", "documents", "mail", "embeddings", "assistant", "llm")
STAGES = ("start-up", "ingestion", "search", "idle")
IDLE_SECONDS = 3  # after the searches: the embeddings process gives its pass buffers back after 1 s
QUERIES = [f"{topic} {word}" for topic in Prose.topics for word in ("costs", "plans", "history", "notes")]


@dataclass
class Measure:
    backend: str
    rss: dict[str, dict[str, int]] = field(default_factory=dict)  # stage -> process -> bytes
    pss: dict[str, dict[str, int]] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    chunks: int = 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/memory.py", description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=6, help="documents ingested (6)")
    parser.add_argument("--searches", type=int, default=200, help="timed searches per backend (200)")
    parser.add_argument("--seed", type=int, default=7, help="corpus seed (7)")
    return parser.parse_args(argv)


@contextlib.contextmanager
def make_run_stack(backend: str) -> Iterator[tuple[Process, dict[str, str]]]:
    """Everything ``make run`` starts, supervised, with the embedding backend given."""
    workdir = Path(tempfile.mkdtemp(prefix="pai-memory-"))
    with temporary_database() as database_url, flushed_redis(REDIS_URL) as redis_url:
        key_file = workdir / "jwt_ed25519.pem"
        generate_private_key_file(key_file)
        ports = {name: free_port() for name in SERVICES}
        urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        env = {k: v for k, v in os.environ.items() if not k.startswith("PAI_")}
        env.update(
            PYTHONUNBUFFERED="1",
            HF_HUB_OFFLINE="1",
            PAI_LOG_LEVEL="WARNING",
            PAI_DATABASE_URL=database_url,
            PAI_REDIS_URL=redis_url,
            PAI_JWT_PRIVATE_KEY_FILE=str(key_file),
            PAI_DATA_DIR=str(workdir / "data"),
            PAI_MAIL_TOKEN_KEYS=generate_key(),
            PAI_RATE_LIMIT="100000000/minute",
            PAI_JWKS_URL=f"{urls['auth']}/auth/.well-known/jwks.json",
            PAI_EMBEDDING_BACKEND=backend,
            **{f"PAI_{name.upper()}_PORT": str(port) for name, port in ports.items()},
            **{f"PAI_{name.upper()}_URL": url for name, url in urls.items() if name != "gateway"},
        )
        process = Process(python("infra/supervise.py", "Procfile"), env, workdir / "stack.log").start()
        try:
            for name, url in urls.items():
                wait_healthy(url + health_path(name), process, timeout=120)
            time.sleep(5)  # workers finish their start-up (in-process: loading the model)
            yield process, urls
        finally:
            process.stop()


def processes(stack: Process) -> dict[str, psutil.Process]:
    """The stack's processes by ``<service> <serve|worker>``, and what those started: the
    extraction child that parses untrusted files, multiprocessing's resource tracker
    (``<service> <what>``)."""
    found: dict[str, psutil.Process] = {}
    owners: dict[int, str] = {}
    others = []
    for child in psutil.Process(stack.pid).children(recursive=True):
        command = " ".join(child.cmdline())
        match = re.search(r"-m services\.(\w+) (serve|worker)", command)
        if match:
            found[f"{match[1]} {match[2]}"] = child
            owners[child.pid] = match[1]
        elif "-m llama_cpp.server" in command:  # services.llm replaced itself with the server
            found["llm serve"] = child
        else:
            others.append((child, command))
    for child, command in others:
        owner = next((owners[p.pid] for p in child.parents() if p.pid in owners), None)
        if owner is not None:
            what = "tracker" if "resource_tracker" in command else "child"
            found[f"{owner} {what} {child.pid}"] = child
    return found


def snapshot(stack: Process, measure: Measure, stage: str) -> None:
    rss, pss = {}, {}
    for name, process in sorted(processes(stack).items()):
        if measure.backend == "local" and name == "embeddings serve":
            continue  # idle when every process has its own model: the old stack had no such process
        info = process.memory_full_info()
        rss[name], pss[name] = info.rss, getattr(info, "pss", info.rss)
    measure.rss[stage], measure.pss[stage] = rss, pss


def ingest(client: httpx.Client, docs: int, seed: int) -> int:
    prose = Prose(seed)
    ids = []
    for i in range(docs):
        topic = Prose.topics[i % len(Prose.topics)]
        body = "\n\n".join(prose.paragraph(topic) for _ in range(12)).encode()
        response = client.post("/documents", files={"file": (f"doc-{i}.txt", body, "text/plain")})
        response.raise_for_status()
        ids.append(response.json()["id"])
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        items = client.get("/documents", params={"limit": 200}).json()["items"]
        if all(item["status"] in ("ready", "failed") for item in items) and len(items) == docs:
            failed = [item for item in items if item["status"] == "failed"]
            if failed:
                raise RuntimeError(f"ingestion failed: {failed[0]['error']}")
            return sum(item["chunk_count"] for item in items)
        time.sleep(0.5)
    raise RuntimeError("ingestion did not finish in 600 s")


def search(client: httpx.Client, count: int) -> list[float]:
    for query in QUERIES[:10]:  # warm-up
        client.get("/documents/search", params={"q": query}).raise_for_status()
    latencies = []
    for i in range(count):
        started = time.perf_counter()
        response = client.get("/documents/search", params={"q": QUERIES[i % len(QUERIES)], "k": 10})
        latencies.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
    return sorted(latencies)


def run(backend: str, options: argparse.Namespace) -> Measure:
    measure = Measure(backend)
    print(f"running {backend}: make run's stack, {options.docs} documents, {options.searches} searches ...")
    with make_run_stack(backend) as (stack, urls):
        snapshot(stack, measure, "start-up")
        token = log_in(urls["auth"])
        with httpx.Client(
            base_url=urls["gateway"], headers={"Authorization": f"Bearer {token}"}, timeout=60
        ) as client:
            measure.chunks = ingest(client, options.docs, options.seed)
            snapshot(stack, measure, "ingestion")
            measure.latencies_ms = search(client, options.searches)
            snapshot(stack, measure, "search")
            time.sleep(IDLE_SECONDS)
            snapshot(stack, measure, "idle")
    return measure


def mb(value: int) -> str:
    return f"{value / 2**20:8.0f}"


ANSWERING = ("assistant serve", "llm serve")  # added by #10, after the memory target was set


def without_answering(measure: Measure, stage: str) -> int:
    return sum(rss for name, rss in measure.rss[stage].items() if name not in ANSWERING)


def verdict(rss: int) -> str:
    return "meets" if rss <= 1.3e9 else "MISSES"


def report(measures: list[Measure]) -> None:
    for measure in measures:
        print(f"\n{measure.backend}: resident memory per process, MiB (RSS / PSS), {measure.chunks} chunks")
        names = sorted({name for stage in STAGES for name in measure.rss[stage]})
        print(f"{'process':<26}" + "".join(f"{stage:>20}" for stage in STAGES))
        for name in names:
            cells = "".join(
                f"{mb(measure.rss[stage].get(name, 0))} /{mb(measure.pss[stage].get(name, 0))}  "
                for stage in STAGES
            )
            print(f"{name:<26}{cells}")
        totals = "".join(
            f"{mb(sum(measure.rss[s].values()))} /{mb(sum(measure.pss[s].values()))}  " for s in STAGES
        )
        print(f"{'total':<26}{totals}")
    print("\nsearch through the gateway (GET /documents/search, k=10, sequential):")
    print(f"{'backend':<12} {'req/s':>7} {'p50 ms':>8} {'p95 ms':>8}")
    for measure in measures:
        lat = measure.latencies_ms
        rate = len(lat) / (sum(lat) / 1000)
        print(f"{measure.backend:<12} {rate:>7.1f} {percentile(lat, 50):>8.2f} {percentile(lat, 95):>8.2f}")
    server, local = measures
    total, baseline = sum(server.rss["search"].values()), sum(local.rss["search"].values())
    print(
        f"\nserver stack after a search: {total / 1e9:.2f} GB RSS ({verdict(total)} the <= 1.3 GB target), "
        f"{total / baseline:.2f}x the in-process stack's {baseline / 1e9:.2f} GB"
    )
    rest = without_answering(server, "search")
    print(
        f"of which the assistant and the language model (llama.cpp): {(total - rest) / 1e9:.2f} GB; "
        f"the rest of the stack (the target's, set before they existed): {rest / 1e9:.2f} GB "
        f"({verdict(rest)} the <= 1.3 GB target)"
    )
    idle = sum(server.rss["idle"].values())
    print(
        f"server stack idle {IDLE_SECONDS} s after the searches: {idle / 1e9:.2f} GB RSS; "
        f"without the assistant and the language model: {without_answering(server, 'idle') / 1e9:.2f} GB"
    )
    delta = percentile(server.latencies_ms, 95) - percentile(local.latencies_ms, 95)
    print(
        f"search p95, server - in-process: {delta:+.2f} ms "
        f"({'meets' if delta <= 5 else 'MISSES'} the <= +5 ms target)"
    )


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    describe_machine("memory benchmark: make run's whole stack, one model copy vs one per process")
    os.chdir(ROOT)
    try:
        measures = [run("server", options), run("local", options)]
    except KeyboardInterrupt:
        print("\ninterrupted; cleaned up", file=sys.stderr)
        return 130
    measures[1].backend = "in-process"
    report(measures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
