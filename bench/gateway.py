"""Gateway overhead: the same authenticated request, straight to the auth service and through the gateway.

What it measures
    ``GET /auth/me`` with a valid access token, at a fixed number of concurrent keep-alive
    connections, for a fixed time after a discarded warm-up. It runs twice in the same run:

    * ``direct``  -- to the auth service itself (the baseline: JWT check, Redis revocation
      lookup, one Postgres query, JSON response);
    * ``gateway`` -- the same request through the gateway, which also verifies the JWT, looks
      up the revocation marker, applies the Redis rate limit and streams the request to that
      same auth service and the response back.

    The difference between the two is what the gateway costs. Both runs share one machine, one
    database and one auth process, so the baseline is measured under the conditions of the run
    and never compared with a number taken elsewhere.

Why it is built this way
    * Real processes, started as ``make run`` starts them, on a throw-away database, key and
      Redis db number; everything is removed at the end, on error or Ctrl-C too.
    * Logging at WARNING: one JSON line per request would otherwise be a large part of the cost.
    * The rate limit is set out of reach: the benchmark measures its Redis round trips, not 429s.
    * The load generator runs in ``--processes`` separate processes, each an asyncio loop
      driving its share of the connections; every connection sends its next request when the
      previous answer is in (closed loop). Each connection is a minimal keep-alive HTTP/1.1
      client parsing with httptools: measured here, httpx.AsyncClient costs about 1.7 ms of CPU
      per request, so on a 2-core machine it takes half a core from the servers it measures;
      the minimal client takes a few percent. ``--generator httpx`` runs httpx instead, and
      ``--generator wrk`` runs wrk when it is installed (it is not needed, and CI has none).
    * CPU use is reported per process for the measured window: on a small machine the
      generator, the services, Postgres and Redis share the cores, and a throughput ratio only
      makes sense next to who was using them.
    * Every response must be 200; more than 1 % of failures makes the run fail (exit 1).

Settings: ``PAI_BENCH_POSTGRES`` (server DSN without a database, default the local
``postgres`` user) and ``PAI_BENCH_REDIS_URL`` (a Redis db of its own, flushed before and after;
default db 8, the test suite uses 9).

Run from the repository root: ``make bench`` or ``.venv/bin/python bench/gateway.py --help``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import platform
import queue
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/gateway.py` puts bench/, not the root, on the path
    sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
import httptools  # noqa: E402
import httpx  # noqa: E402
import psutil  # noqa: E402
import redis  # noqa: E402

from shared.migrate import MigrateSettings, migrate  # noqa: E402
from tests.support import Process, python, wait_healthy  # noqa: E402

POSTGRES_SERVER = os.environ.get("PAI_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
REDIS_URL = os.environ.get("PAI_BENCH_REDIS_URL", "redis://127.0.0.1:6379/8")
PATH = "/auth/me"
MAX_ERROR_RATE = 0.01
SAMPLE_BODY_CHARS = 200
IDLE_WARNING_PERCENT = 15.0


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Options:
    duration: float
    warmup: float
    concurrency: int
    processes: int
    generator: str
    keep_logs: bool


def parse_args(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="bench/gateway.py", description="Gateway overhead on GET /auth/me, against the auth service."
    )
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per target (10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="discarded seconds before that (2)")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent connections in all (16)")
    parser.add_argument("--processes", type=int, default=2, help="load-generator processes (2)")
    parser.add_argument(
        "--generator",
        choices=("raw", "httpx", "wrk"),
        default="raw",
        help="raw (default): asyncio + httptools in --processes processes; httpx: the same with "
        "httpx.AsyncClient (heavier); wrk: needs wrk on PATH",
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the services' logs and print where")
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.warmup < 0:
        parser.error("--duration must be > 0 and --warmup >= 0")
    if args.processes < 1 or args.concurrency < args.processes:
        parser.error("need --processes >= 1 and --concurrency >= --processes")
    if args.generator == "wrk" and shutil.which("wrk") is None:
        parser.error("--generator wrk: wrk is not on PATH")
    return Options(
        args.duration, args.warmup, args.concurrency, args.processes, args.generator, args.keep_logs
    )


# --------------------------------------------------------------------------- results


@dataclass
class RunResult:
    target: str
    requests: int  # completed inside the measured window
    seconds: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    outcomes: Counter[str]  # every request, warm-up included: "200", "401", "ReadTimeout", ...
    samples: dict[str, str] = field(default_factory=dict)  # a body per failing outcome
    cpu: dict[str, float] = field(default_factory=dict)  # % of one core during the window

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    @property
    def total(self) -> int:
        return sum(self.outcomes.values())

    @property
    def errors(self) -> int:
        return self.total - self.outcomes["200"]


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (0 when empty)."""
    if not ordered:
        return 0.0
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


# --------------------------------------------------------------------------- python generator


Fetch = Callable[[], Awaitable[tuple[int, bytes]]]


class RawConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection sending one fixed request; responses parsed by httptools.

    A few microseconds of Python per request, where a general client (httpx) spends about a
    millisecond: on a 2-core machine that difference is CPU taken from the servers measured.
    """

    def __init__(self, url: str, token: str) -> None:
        parsed = httpx.URL(url)
        self._host, self._port = parsed.host, parsed.port or 80
        self._request = (
            f"GET {parsed.raw_path.decode()} HTTP/1.1\r\nHost: {parsed.netloc.decode()}\r\n"
            f"Authorization: Bearer {token}\r\nAccept: */*\r\n\r\n"
        ).encode()
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._body = bytearray()
        self._done: asyncio.Future[tuple[int, bytes]] | None = None

    async def fetch(self) -> tuple[int, bytes]:
        loop = asyncio.get_running_loop()
        if self._transport is None or self._transport.is_closing():
            await loop.create_connection(lambda: self, self._host, self._port)
        assert self._transport is not None
        self._body = bytearray()
        self._done = loop.create_future()
        self._transport.write(self._request)
        return await self._done

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's is not an asyncio.Transport
        self._parser = httptools.HttpResponseParser(self)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._fail(exc or ConnectionResetError("server closed the connection"))

    def _fail(self, exc: Exception) -> None:
        if self._transport is not None:
            self._transport.close()
        if self._done is not None and not self._done.done():
            self._done.set_exception(exc)

    # httptools callbacks
    def on_body(self, body: bytes) -> None:
        self._body += body

    def on_message_complete(self) -> None:
        if self._done is not None and not self._done.done():
            self._done.set_result((self._parser.get_status_code(), bytes(self._body)))


async def _fetchers(
    client: str, url: str, token: str, connections: int, stack: contextlib.AsyncExitStack
) -> list[Fetch]:
    if client == "raw":
        return [RawConnection(url, token).fetch for _ in range(connections)]
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    headers = {"Authorization": f"Bearer {token}"}
    http = await stack.enter_async_context(httpx.AsyncClient(headers=headers, limits=limits, timeout=30.0))

    async def fetch() -> tuple[int, bytes]:
        response = await http.get(url)
        return response.status_code, response.content

    return [fetch] * connections


async def _load(
    client: str, url: str, token: str, connections: int, warmup: float, duration: float, barrier: Barrier
) -> dict[str, Any]:
    """One generator process: ``connections`` loops, each sending the next request on its answer."""
    latencies: list[float] = []
    outcomes: Counter[str] = Counter()
    samples: dict[str, str] = {}
    async with contextlib.AsyncExitStack() as stack:
        fetchers = await _fetchers(client, url, token, connections, stack)
        await asyncio.to_thread(barrier.wait, 60)  # every process starts the clock together
        window_start = time.monotonic() + warmup
        window_end = window_start + duration

        async def connection(fetch: Fetch) -> None:
            while (started := time.monotonic()) < window_end:
                try:
                    status, body = await fetch()
                    outcome = str(status)
                    if status != 200:
                        samples.setdefault(outcome, body[:SAMPLE_BODY_CHARS].decode(errors="replace"))
                except (OSError, httpx.HTTPError, httptools.HttpParserError) as exc:
                    outcome = type(exc).__name__
                    samples.setdefault(outcome, str(exc)[:SAMPLE_BODY_CHARS])
                finished = time.monotonic()
                outcomes[outcome] += 1
                if started >= window_start and finished <= window_end:
                    latencies.append(finished - started)

        await asyncio.gather(*(connection(fetch) for fetch in fetchers))
    return {"latencies": latencies, "outcomes": dict(outcomes), "samples": samples}


def _generator_process(
    client: str,
    url: str,
    token: str,
    connections: int,
    warmup: float,
    duration: float,
    barrier: Barrier,
    results: Any,
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it ends us
    with contextlib.suppress(ImportError):
        import uvloop  # what uvicorn uses too; plain asyncio when missing

        uvloop.install()
    results.put(asyncio.run(_load(client, url, token, connections, warmup, duration, barrier)))


class CpuMeter:
    """CPU seconds of named processes and of the whole machine between ``start`` and ``stop``."""

    def __init__(self, processes: dict[str, list[psutil.Process]]) -> None:
        self._processes = processes
        self._before: dict[str, float] = {}
        self._machine_before: Any = None
        self._wall = 0.0

    @staticmethod
    def _seconds(processes: list[psutil.Process]) -> float:
        total = 0.0
        for process in processes:
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                total += times.user + times.system
        return total

    def start(self) -> None:
        self._before = {name: self._seconds(ps) for name, ps in self._processes.items()}
        self._machine_before = psutil.cpu_times()
        self._wall = time.monotonic()

    def stop(self, extra: dict[str, float] | None = None) -> dict[str, float]:
        """% of one core per name, plus ``other`` (Postgres, Redis, the kernel...) and ``machine``."""
        wall = time.monotonic() - self._wall
        used = {name: self._seconds(ps) - self._before[name] for name, ps in self._processes.items()}
        used.update(extra or {})
        machine = psutil.cpu_times()
        busy = sum(machine) - machine.idle - getattr(machine, "iowait", 0.0)
        busy -= sum(self._machine_before) - self._machine_before.idle
        busy += getattr(self._machine_before, "iowait", 0.0)
        cpu = {name: 100 * seconds / wall for name, seconds in used.items()}
        cpu["other"] = max(0.0, 100 * busy / wall - sum(cpu.values()))
        cpu["machine"] = 100 * busy / wall / (psutil.cpu_count() or 1)  # % of all cores
        return cpu


def _result(results: Any, workers: list[Any], timeout: float = 60.0) -> dict[str, Any]:
    """The next worker's result; fails fast when a worker died instead of answering."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(queue.Empty):
            return results.get(timeout=0.5)
        crashed = [w.exitcode for w in workers if w.exitcode not in (None, 0)]
        if crashed:
            raise RuntimeError(f"a load-generator process failed (exit codes {crashed}); see its traceback")
    raise RuntimeError(f"no result from the load generators after {timeout:g} s")


def run_python(target: str, url: str, token: str, options: Options, servers: dict[str, Process]) -> RunResult:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(options.processes + 1)
    results = context.Queue()
    share, extra = divmod(options.concurrency, options.processes)
    workers = [
        context.Process(
            target=_generator_process,
            args=(
                options.generator,
                url,
                token,
                share + (i < extra),
                options.warmup,
                options.duration,
                barrier,
                results,
            ),
            daemon=True,
        )
        for i in range(options.processes)
    ]
    try:
        for worker in workers:
            worker.start()
        barrier.wait(60)
        meter = CpuMeter(
            {
                "generator": [psutil.Process(w.pid) for w in workers if w.pid is not None],
                **{name: [psutil.Process(p.pid)] for name, p in servers.items()},
            }
        )
        time.sleep(options.warmup)
        meter.start()
        time.sleep(options.duration)
        cpu = meter.stop()
        parts = [_result(results, workers) for _ in workers]  # before join: the queue must drain
        for worker in workers:
            worker.join(timeout=10)
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.terminate()
                worker.join()
    latencies = sorted(latency * 1000 for part in parts for latency in part["latencies"])
    outcomes: Counter[str] = Counter()
    samples: dict[str, str] = {}
    for part in parts:
        outcomes.update(part["outcomes"])
        for outcome, body in part["samples"].items():
            samples.setdefault(outcome, body)
    return RunResult(
        target,
        len(latencies),
        options.duration,
        percentile(latencies, 50),
        percentile(latencies, 95),
        percentile(latencies, 99),
        outcomes,
        samples,
        cpu,
    )


# --------------------------------------------------------------------------- wrk generator

WRK_SCRIPT = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "status": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"timeout": %d, "p50": %d, "p95": %d, "p99": %d}\\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99)))
end
"""


def _wrk(url: str, token: str, options: Options, seconds: float, script: Path) -> dict[str, int]:
    command = [
        "wrk",
        f"--threads={options.processes}",
        f"--connections={options.concurrency}",
        f"--duration={max(1, round(seconds))}s",
        "--timeout=30s",
        f"--header=Authorization: Bearer {token}",
        f"--script={script}",
        url,
    ]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(next(line for line in reversed(output.splitlines()) if line.startswith("{")))


def run_wrk(target: str, url: str, token: str, options: Options, servers: dict[str, Process]) -> RunResult:
    """wrk counts only status >= 400 and socket errors as errors; it keeps no response bodies."""
    with tempfile.TemporaryDirectory(prefix="pai-bench-wrk-") as tmp:
        script = Path(tmp) / "report.lua"
        script.write_text(WRK_SCRIPT)
        if options.warmup > 0:
            _wrk(url, token, options, options.warmup, script)
        meter = CpuMeter({name: [psutil.Process(p.pid)] for name, p in servers.items()})
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        meter.start()
        report = _wrk(url, token, options, options.duration, script)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        wrk_seconds = (after.ru_utime - children.ru_utime) + (after.ru_stime - children.ru_stime)
        cpu = meter.stop({"generator": wrk_seconds})
    failures = {name: report[name] for name in ("status", "connect", "read", "write", "timeout")}
    outcomes = Counter({"200": report["requests"] - sum(failures.values())})
    outcomes.update({f"wrk {name} errors": count for name, count in failures.items() if count})
    return RunResult(
        target,
        report["requests"],
        report["duration_us"] / 1e6,
        report["p50"] / 1000,
        report["p95"] / 1000,
        report["p99"] / 1000,
        outcomes,
        cpu=cpu,
    )


# --------------------------------------------------------------------------- the stack


@contextlib.contextmanager
def temporary_database() -> Iterator[str]:
    name = f"pai_bench_{uuid.uuid4().hex[:12]}"
    url = f"{POSTGRES_SERVER}/{name}"
    try:
        migrate(MigrateSettings(database_url=url), create_database=True)
        yield url
    finally:

        async def drop() -> None:
            conn = await asyncpg.connect(f"{POSTGRES_SERVER}/postgres")
            try:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await conn.close()

        asyncio.run(drop())


@contextlib.contextmanager
def flushed_redis(url: str) -> Iterator[str]:
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
        yield url
    finally:
        client.flushdb()
        client.close()


@contextlib.contextmanager
def service(name: str, port: int, env: dict[str, str], logs: Path) -> Iterator[Process]:
    args = python("-m", f"services.{name}", "serve", "--host", "127.0.0.1", "--port", str(port))
    process = Process(args, env, logs / f"{name}.log").start()
    try:
        wait_healthy(f"http://127.0.0.1:{port}/healthz", process)
        yield process
    finally:
        process.stop()


def log_in(auth_url: str) -> str:
    """Register a fresh user on the auth service and return an access token."""
    username = f"bench_{uuid.uuid4().hex[:10]}"
    password = f"bench-{uuid.uuid4().hex}"
    with httpx.Client(base_url=auth_url, timeout=30.0) as client:
        response = client.post(
            "/auth/register",
            json={"email": f"{username}@example.com", "username": username, "password": password},
        )
        if response.status_code != 201:
            raise RuntimeError(f"register: {response.status_code} {response.text}")
        response = client.post("/auth/token", data={"username": username, "password": password})
        if response.status_code != 200:
            raise RuntimeError(f"login: {response.status_code} {response.text}")
        return response.json()["access_token"]


def check_once(url: str, token: str) -> None:
    response = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=30.0)
    if response.status_code != 200:
        raise RuntimeError(f"GET {url}: {response.status_code} {response.text[:500]}")


# --------------------------------------------------------------------------- report


def print_report(results: list[RunResult]) -> None:
    print()
    print(
        f"{'target':<8} {'requests':>9} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'errors':>7}"
    )
    for r in results:
        print(
            f"{r.target:<8} {r.requests:>9} {r.rate:>8.1f} {r.p50_ms:>8.2f} {r.p95_ms:>8.2f} "
            f"{r.p99_ms:>8.2f} {r.errors:>7}"
        )
    print("(errors: non-200 answers and failed requests, warm-up included)")
    by_target = {r.target: r for r in results}
    direct, gateway = by_target["direct"], by_target["gateway"]
    print()
    print(f"gateway/direct throughput: {100 * gateway.rate / direct.rate:.1f} %")
    print(
        f"added latency (gateway - direct): p50 {gateway.p50_ms - direct.p50_ms:+.2f} ms, "
        f"p95 {gateway.p95_ms - direct.p95_ms:+.2f} ms"
    )
    print()
    cores = psutil.cpu_count() or 1
    names = ["generator", "auth", "gateway", "other"]
    print(
        f"CPU in the measured window (% of one core; 'other' = Postgres, Redis, kernel, ...; {cores} cores):"
    )
    print(f"{'target':<8} " + " ".join(f"{name:>9}" for name in names) + f" {'machine':>9}")
    for r in results:
        cells = " ".join(f"{r.cpu.get(name, 0.0):>9.0f}" for name in names)
        print(f"{r.target:<8} {cells} {r.cpu['machine']:>8.0f}%")
    for r in results:
        failed = {outcome: n for outcome, n in r.outcomes.items() if outcome != "200"}
        if failed:
            print(f"\n{r.target}: {r.errors} of {r.total} requests failed: {failed}")
            for outcome, body in r.samples.items():
                print(f"  {outcome}: {body}")


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up on `kill` as on Ctrl-C
    run = run_wrk if options.generator == "wrk" else run_python
    print(
        f"gateway benchmark: GET {PATH} with a bearer token; {os.cpu_count()} cores "
        f"({platform.machine()}, Python {platform.python_version()})"
    )
    per_process = options.concurrency / options.processes
    generator = (
        f"wrk ({options.processes} threads)"
        if options.generator == "wrk"
        else f"{options.generator} ({options.processes} processes x {per_process:g} connections)"
    )
    print(
        f"settings: concurrency {options.concurrency}, warm-up {options.warmup:g} s, "
        f"duration {options.duration:g} s per target, generator {generator}, log level WARNING, "
        f"redis {REDIS_URL}"
    )
    busy = psutil.cpu_percent(interval=1.0)
    if busy > IDLE_WARNING_PERCENT:
        print(
            f"warning: the machine was already {busy:.0f}% busy before the benchmark; numbers will be noisy"
        )
    # Imported here: bench/_stack.py builds on this module's helpers (database, Redis, log-in).
    from _stack import stack as bench_stack

    try:
        with bench_stack(
            with_worker=False, keep_logs=options.keep_logs, services=("auth", "gateway")
        ) as running:
            results = []
            for target in ("direct", "gateway"):
                url = running.urls["auth" if target == "direct" else "gateway"] + PATH
                check_once(url, running.token)
                print(f"running {target}: {url} ...", flush=True)
                results.append(run(target, url, running.token, options, running.processes))
    except KeyboardInterrupt:
        print("\ninterrupted; cleaned up", file=sys.stderr)
        return 130
    print_report(results)
    failed = [r for r in results if r.errors > MAX_ERROR_RATE * max(1, r.total)]
    if failed:
        print(f"\nFAILED: more than {MAX_ERROR_RATE:.0%} errors in {', '.join(r.target for r in failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
