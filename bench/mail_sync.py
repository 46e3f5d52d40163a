"""Gmail full sync: a mailbox connected through the gateway, synced by the mail worker from the
Gmail stand-in, without and with Gmail's per-user quota; then the embedding of what it stored.

What it measures
    * ``(a) no quota`` -- a fresh user connects a fresh Gmail address holding ``--messages``
      messages (5000) the way a browser does: ``POST /mail/accounts/gmail/connect``, the consent
      URL at "Google" (``tests/gmail_stub.py``, run in this process), its 302 to the gateway's
      ``/mail/oauth/callback``, which stores the account and queues the first, full, sync on the
      mail worker (``python -m services.mail worker``). The stand-in enforces no quota, and the
      worker's own pacing (``PAI_GMAIL_QUOTA_UNITS_PER_SECOND``, 240 by default) is lifted to
      ``--a-units-per-second`` (10^6: off) so that the sync pipeline itself is measured:
      listing, ``messages.get?format=raw``, parsing, storing in batches. Messages/s is over the
      run's own ``started_at`` -> ``finished_at`` (written by the worker; queueing not counted).
    * ``raw`` -- the baseline of (a): a separate process fetches the same messages from the
      stand-in with plain ``httpx`` at the sync's concurrency (10), ``format=raw`` with a
      token from ``stub.issue_tokens``, JSON decoded and nothing else. ``sync/raw`` is the share
      of the stand-in's throughput the whole sync reaches. It runs ``--raw-passes`` times (2),
      the fastest is the baseline, while no worker runs. Its per-request latencies are the
      per-message fetch latency reported (the sync's own are not observable from outside).
      The raw client is one Python process too: on a small machine it uses a whole core, so
      the raw figure is a lower bound of what the stand-in serves (its own CPU per message is
      printed with the CPU table).
    * ``(b) quota`` -- the same with another fresh user and address, the worker at its default
      pacing and the stand-in enforcing ``--quota`` units/s (250, Gmail's per-user limit; 429
      with Retry-After beyond it). The baseline is the quota ceiling: 250 units/s divided by
      the units the stand-in actually charged per message (messages.get 5, plus getProfile and
      one messages.list per 500), about 49 messages/s. Target: >= 90 % of it. The units/s
      achieved / 250 is printed too; over the same window it is the same ratio.
    * ``embedding`` -- after each sync the worker embeds the stored mail (``indexed_at`` set in
      ``mail.emails``). Reported separately: from the sync's ``finished_at`` to the last
      ``indexed_at`` of the account, and emails/s over that span; and, as its baseline, the
      model alone in this process on a sample of the same chunk texts (made with the mail
      service's own parsing and chunking), once the workers are gone. The worker's cron
      (``schedule_and_recover``, at second 0 of every minute) also queues the embedding of any
      account with mail not yet embedded, so embedding can start while a sync still runs, on
      the same cores. Each sync is therefore started 1 s after a minute tick: a sync shorter
      than ~59 s runs alone, a longer one has the embedding beside it from the next tick on.
      How many emails were embedded before the sync finished is printed (``--no-align``
      connects at once, wherever the minute is).
    * ``progress intervals`` -- the worker stores messages in batches of 50 and updates the
      run's ``processed`` and ``updated_at`` after each; the bench reads the row every 50 ms
      over an admin connection. p50/p95 of the seconds per 50-message batch are computed from
      the row's own timestamps. They are batch intervals, not per-message latencies.

Why it is built this way
    * Real processes (auth, gateway, mail API, mail worker) on a throw-away database, key,
      Redis db and data dir, all removed at the end (on error or Ctrl-C too), through
      ``bench/_stack.py``. Logging at WARNING, rate limit out of reach.
    * The mailbox is generated (seeded): mostly text/plain and multipart/alternative messages
      of a few paragraphs of English-like prose, some replies quoting their parent, some with a
      small text attachment, from a dozen senders, dated over a year. Each run uses its own app
      user and Gmail address holding the same messages, so (b) is a full sync too.
    * Each run has its own mail worker, started with that run's settings and stopped once its
      mail is embedded: the two runs and the raw passes never compete for the cores.
    * CPU use per process is reported for each sync window; the stand-in is the ``bench``
      process (it runs in a thread of it).

Settings: ``PAI_BENCH_POSTGRES`` and ``PAI_BENCH_REDIS_URL`` as for ``bench/gateway.py``.

Run from the repository root: ``make bench`` or ``.venv/bin/python bench/mail_sync.py --help``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import html
import multiprocessing
import queue
import random
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlsplit

# bench/ (``_stack``, ``gateway``) and the root (``services``, ``shared``, ``tests``).
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg
import httpx
import psutil
import redis
from _stack import REDIS_URL, Prose, Stack, describe_machine, percentile, stack, warn_if_contended
from gateway import CpuMeter, log_in

from services.mail.crypto import generate_key
from services.mail.indexing import email_chunks, header
from services.mail.settings import MailSettings
from shared.embeddings import EmbeddingSettings, create_embedder
from shared.tasks import QUEUES
from shared.text.chunking import ChunkSizes
from shared.text.chunking import chunk as split_chunks
from shared.text.extraction import extract
from shared.text.mail import attachment_bytes, parse_message
from tests.gmail_stub import GmailStub, mime_alternative, mime_plain, mime_with_attachment
from tests.support import Process, python

DEFAULT_MESSAGES = 5000
QUICK_MESSAGES = 300
SYNC_CONCURRENCY = 10  # PAI_SYNC_CONCURRENCY's default; the raw client uses the same
SYNC_BATCH = 50  # services/mail/sync.py BATCH: messages stored per transaction and progress update
UNPACED = 1_000_000.0
CRON_MARGIN = 1.0  # seconds after the worker's cron tick (second 0 of every minute) a sync starts
MODEL_SAMPLE = 640  # chunks, about 27 s on 2 cores
QUICK_MODEL_SAMPLE = 192
WORKER_READY_TIMEOUT = 120.0
PROGRESS_POLL = 0.05
EMBED_POLL = 0.25
FRONTEND_URL = "http://frontend.bench/settings/mail"
MAILBOX_OWNER = "Sam Owner <sam.owner@gmail.test>"


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Options:
    messages: int
    quota: float
    a_units_per_second: float
    raw_passes: int
    model_sample: int
    seed: int
    timeout: float
    embed_timeout: float
    align: bool
    keep_logs: bool


def parse_args(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="bench/mail_sync.py",
        description="Gmail full sync from the stand-in, without and with the 250 units/s quota.",
    )
    parser.add_argument(
        "--messages", type=int, default=None, help=f"messages in each mailbox ({DEFAULT_MESSAGES})"
    )
    parser.add_argument(
        "--quick", action="store_true", help=f"a small run: {QUICK_MESSAGES} messages, one raw pass"
    )
    parser.add_argument(
        "--quota", type=float, default=250.0, help="units/s the stand-in enforces in run (b) (250)"
    )
    parser.add_argument(
        "--a-units-per-second",
        type=float,
        default=UNPACED,
        help="the worker's PAI_GMAIL_QUOTA_UNITS_PER_SECOND in run (a) (10^6: pacing off; "
        "240 is the default the service runs with)",
    )
    parser.add_argument(
        "--raw-passes", type=int, default=None, help="raw fetches of (a)'s mailbox; the fastest counts (2)"
    )
    parser.add_argument(
        "--model-sample",
        type=int,
        default=None,
        help=f"chunks the model alone embeds for the embedding baseline ({MODEL_SAMPLE}; 0: skip)",
    )
    parser.add_argument("--seed", type=int, default=2024, help="mailbox seed (2024)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="give up on a sync after (1800 s)")
    parser.add_argument(
        "--embed-timeout", type=float, default=1800.0, help="give up waiting for embedding after (1800 s)"
    )
    parser.add_argument(
        "--no-align",
        action="store_true",
        help="connect at once, not 1 s after the worker cron's minute tick (it may then start "
        "embedding sooner, during the sync)",
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the services' logs and print where")
    args = parser.parse_args(argv)
    messages = args.messages or (QUICK_MESSAGES if args.quick else DEFAULT_MESSAGES)
    raw_passes = args.raw_passes or (1 if args.quick else 2)
    model_sample = (
        (QUICK_MODEL_SAMPLE if args.quick else MODEL_SAMPLE)
        if args.model_sample is None
        else args.model_sample
    )
    if messages < 1 or raw_passes < 1 or model_sample < 0:
        parser.error("--messages and --raw-passes must be >= 1, --model-sample >= 0")
    if args.quota <= 0 or args.a_units_per_second <= 0:
        parser.error("--quota and --a-units-per-second must be > 0")
    if args.timeout <= 0 or args.embed_timeout <= 0:
        parser.error("--timeout and --embed-timeout must be > 0")
    return Options(
        messages,
        args.quota,
        args.a_units_per_second,
        raw_passes,
        model_sample,
        args.seed,
        args.timeout,
        args.embed_timeout,
        not args.no_align,
        args.keep_logs,
    )


# --------------------------------------------------------------------------- mailbox

SENDERS = (
    ("Anna Berg", "anna.berg@example.com"),
    ("Tomás Ruiz", "tomas@ruiz-studio.example"),
    ("Priya Nair", "priya.nair@example.org"),
    ("Olek Nowak", "olek@nowak.example.pl"),
    ("Billing", "billing@utility.example.com"),
    ("Harbour Sailing Club", "club@harbour-sailing.example"),
    ("Dr. Lee's Surgery", "appointments@surgery.example.co.uk"),
    ("Mia Chen", "mia.chen@example.net"),
    ("The Allotment Society", "news@allotments.example.org"),
    ("Jonas Weber", "j.weber@example.de"),
    ("Release Bot", "releases@ci.example.dev"),
    ("Grace Okafor", "grace.okafor@example.com"),
)
SUBJECT_OPENERS = ("Re:", "Question about", "Notes on", "Update:", "About the", "Fwd:", "Plans for")


@dataclass(frozen=True)
class MailItem:
    raw: bytes
    kind: str  # plain, alternative, attachment
    reply: bool
    labels: tuple[str, ...]
    internal_date: int  # epoch ms


def _labels(rng: random.Random) -> tuple[str, ...]:
    if rng.random() < 0.08:
        return ("SENT",)
    labels = ["INBOX"]
    if rng.random() < 0.3:
        labels.append("UNREAD")
    if rng.random() < 0.1:
        labels.append("IMPORTANT")
    category = rng.random()
    if category < 0.1:
        labels.append("CATEGORY_PROMOTIONS")
    elif category < 0.25:
        labels.append("CATEGORY_UPDATES")
    return tuple(labels)


def _quoted(parent_text: str, sender: str, date: datetime) -> str:
    lines = parent_text.strip().splitlines()[:12]
    intro = f"On {date.strftime('%a, %d %b %Y at %H:%M')}, {sender} wrote:"
    return intro + "\n" + "\n".join(f"> {line}" if line else ">" for line in lines)


def build_mailbox(count: int, seed: int) -> list[MailItem]:
    """``count`` messages, oldest first: 55 % text/plain, 33 % multipart/alternative, 12 % with a
    small text attachment; a fifth of the plain ones replies quoting the message before it."""
    rng = random.Random(seed)
    prose = Prose(seed)
    start = datetime(2024, 1, 1, 8, 0, tzinfo=UTC)
    step = timedelta(days=365) / count
    items: list[MailItem] = []
    previous: tuple[str, str, str, datetime] | None = None  # message id, subject, text, date
    for i in range(count):
        topic = rng.choice(Prose.topics)
        name, address = rng.choice(SENDERS)
        sender = f"{name} <{address}>"
        date = start + step * i + timedelta(seconds=rng.randint(0, 600))
        paragraphs = [prose.paragraph(topic) for _ in range(rng.randint(2, 5))]
        text = f"Hi Sam,\n\n{chr(10).join(p + chr(10) for p in paragraphs)}\nBest,\n{name.split()[0]}\n"
        subject = f"{rng.choice(SUBJECT_OPENERS)} the {topic} {rng.choice(('plan', 'list', 'notes', 'week'))}"
        message_id = f"<bench-{seed}-{i}@mail.example.com>"
        roll = rng.random()
        reply = False
        common: dict[str, Any] = {
            "sender": sender,
            "to": MAILBOX_OWNER,
            "date": date,
            "message_id": message_id,
        }
        if roll < 0.55:
            kind = "plain"
            parent = None
            if previous is not None and rng.random() < 0.2:
                parent, subject = previous[0], f"Re: {previous[1].removeprefix('Re: ')}"
                text += "\n" + _quoted(previous[2], "Sam Owner <sam.owner@gmail.test>", previous[3]) + "\n"
                reply = True
            raw = mime_plain(subject, text, in_reply_to=parent, **common)
        elif roll < 0.88:
            kind = "alternative"
            markup = "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)
            body = f"<html><body><p>Hi Sam,</p>{markup}<p>Best,<br>{html.escape(name)}</p></body></html>\n"
            raw = mime_alternative(subject, text, body, **common)
        else:
            kind = "attachment"
            note = "\n\n".join(prose.paragraph(topic) for _ in range(rng.randint(1, 3))) + "\n"
            filename = f"{topic}-{rng.choice(('notes', 'minutes', 'summary'))}.txt"
            raw = mime_with_attachment(
                [(filename, note.encode(), "text/plain")],
                subject=subject,
                text=text,
                html=None if rng.random() < 0.5 else "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs),
                **common,
            )
        items.append(MailItem(raw, kind, reply, _labels(rng), int(date.timestamp() * 1000) + i))
        previous = (message_id, subject, text, date)
    return items


def fill_mailbox(stub: GmailStub, address: str, items: list[MailItem]) -> list[str]:
    return [
        stub.add_message(address, item.raw, label_ids=item.labels, internal_date=item.internal_date)
        for item in items
    ]


# --------------------------------------------------------------------------- the stack


def mail_env(stub: GmailStub, urls: dict[str, str], messages: int) -> dict[str, str]:
    """What the mail API, its worker and the gateway need on top of ``bench/_stack.py``'s env."""
    return {
        "PAI_MAIL_TOKEN_KEYS": generate_key(),
        **stub.service_env(),
        "PAI_OAUTH_REDIRECT_URI": f"{urls['gateway']}/mail/oauth/callback",
        "PAI_FRONTEND_URL": FRONTEND_URL,
        "PAI_SYNC_MAX_MESSAGES": str(max(5000, messages)),
        "PAI_SYNC_CONCURRENCY": str(SYNC_CONCURRENCY),
    }


@contextlib.contextmanager
def mail_worker(env: Stack, name: str, settings: dict[str, str]) -> Iterator[Process]:
    """``python -m services.mail worker`` with ``settings`` on top of the stack's env, returned
    once it polls its queue (model loaded: ARQ writes ``<queue>:health-check`` on its first poll)."""
    key = QUEUES["mail"] + ":health-check"
    client = redis.Redis.from_url(env.redis_url)
    client.delete(key)  # the previous run's worker left it behind
    args = python("-m", "services.mail", "worker")
    process = Process(args, {**env.env, **settings}, env.workdir / f"mail-worker-{name}.log").start()
    try:
        deadline = time.monotonic() + WORKER_READY_TIMEOUT
        while not client.exists(key):
            if process.popen is not None and process.popen.poll() is not None:
                raise RuntimeError(f"the mail worker exited early:\n{process.log_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the mail worker was not ready after {WORKER_READY_TIMEOUT:g} s")
            time.sleep(0.1)
        yield process
    finally:
        client.close()
        process.stop()


def admin_url(env: Stack) -> str:
    return env.env["PAI_DATABASE_URL"]


# --------------------------------------------------------------------------- one sync


@dataclass
class SyncResult:
    name: str
    address: str
    messages: int
    state: str = ""
    error: str | None = None
    processed: int = 0
    total: int | None = None
    connected: float = 0.0  # epoch seconds, when the callback answered
    started: float = 0.0  # the run's started_at
    listed: float = 0.0  # updated_at when the total was known (listing done)
    finished: float = 0.0  # the run's finished_at
    samples: list[tuple[int, float]] = field(default_factory=list)  # (processed, updated_at)
    calls: Counter[str] = field(default_factory=Counter)
    rate_limited: int = 0
    units: int = 0
    cpu: dict[str, float] = field(default_factory=dict)
    cpu_wall: float = 0.0  # seconds the sync's CPU window lasted (connect -> finish seen)
    stored: int = 0
    attachments: int = 0
    embedded_before_finish: int = 0
    first_indexed: float = 0.0
    last_indexed: float = 0.0
    embed_cpu: dict[str, float] = field(default_factory=dict)
    api: dict[str, Any] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return self.finished - self.started

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    @property
    def embed_seconds(self) -> float:
        return self.last_indexed - self.finished

    @property
    def batch_seconds(self) -> list[float]:
        """Seconds per 50-message batch between consecutive progress rows seen."""
        out = []
        for (p0, t0), (p1, t1) in zip(self.samples, self.samples[1:], strict=False):
            if p1 > p0:
                out.append((t1 - t0) * SYNC_BATCH / (p1 - p0))
        return sorted(out)


async def connect_gmail(env: Stack, stub: GmailStub, token: str, address: str) -> str:
    """connect -> the stand-in's consent screen -> its 302 to the gateway's callback -> the
    front end; returns the mail account's id."""
    stub.consent(address)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(timeout=60.0) as browser:
        response = await browser.post(f"{env.gateway}/mail/accounts/gmail/connect", headers=headers)
        if response.status_code != 200:
            raise RuntimeError(f"connect: {response.status_code} {response.text[:500]}")
        consent = await browser.get(response.json()["authorization_url"])
        if consent.status_code != 302:
            raise RuntimeError(f"consent: {consent.status_code} {consent.text[:500]}")
        callback = await browser.get(consent.headers["location"])
        if callback.status_code != 302 or not callback.headers["location"].startswith(FRONTEND_URL):
            raise RuntimeError(f"callback: {callback.status_code} {callback.text[:500]}")
    query = parse_qs(urlsplit(callback.headers["location"]).query)
    if query.get("mail_connected") != [address]:
        raise RuntimeError(f"callback landed on {callback.headers['location']}")
    return query["account_id"][0]


async def watch_sync(
    db: asyncpg.Connection, account_id: uuid.UUID, result: SyncResult, worker: Process, seconds: float
) -> None:
    """Reads the account's sync run every 50 ms until it has finished; keeps each new progress row."""
    deadline = time.monotonic() + seconds
    seen: tuple[int, float] | None = None
    while True:
        row = await db.fetchrow(
            "SELECT state, processed, total, error, started_at, finished_at, updated_at "
            "FROM mail.sync_runs WHERE account_id = $1 ORDER BY created_at DESC LIMIT 1",
            account_id,
        )
        if row is not None and row["started_at"] is not None:
            result.started = row["started_at"].timestamp()
            if row["total"] is not None:
                sample = (row["processed"], row["updated_at"].timestamp())
                if not result.samples:
                    result.listed = sample[1]
                if sample != seen and (not result.samples or sample[0] > result.samples[-1][0]):
                    result.samples.append(sample)
                seen = sample
            if row["state"] in ("succeeded", "failed"):
                result.state, result.error = row["state"], row["error"]
                result.processed, result.total = row["processed"], row["total"]
                result.finished = row["finished_at"].timestamp()
                return
        if worker.popen is not None and worker.popen.poll() is not None:
            raise RuntimeError("the mail worker died during the sync")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the sync did not finish in {seconds:g} s (last row: {dict(row or {})})")
        await asyncio.sleep(PROGRESS_POLL)


async def watch_embedding(
    db: asyncpg.Connection, account_id: uuid.UUID, result: SyncResult, worker: Process, seconds: float
) -> None:
    deadline = time.monotonic() + seconds
    finished = datetime.fromtimestamp(result.finished, UTC)
    while True:
        row = await db.fetchrow(
            "SELECT count(*) AS n, count(*) FILTER (WHERE indexed_at IS NULL) AS pending, "
            "count(*) FILTER (WHERE indexed_at <= $2) AS early, min(indexed_at) AS first, "
            "max(indexed_at) AS last FROM mail.emails WHERE account_id = $1",
            account_id,
            finished,
        )
        if row["n"] and not row["pending"]:
            result.stored, result.embedded_before_finish = row["n"], row["early"]
            result.first_indexed, result.last_indexed = row["first"].timestamp(), row["last"].timestamp()
            result.attachments = await db.fetchval(
                "SELECT count(*) FROM mail.email_attachments a JOIN mail.emails e ON e.id = a.email_id "
                "WHERE e.account_id = $1 AND a.stored",
                account_id,
            )
            return
        if worker.popen is not None and worker.popen.poll() is not None:
            raise RuntimeError("the mail worker died during the embedding")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{row['pending']} of {row['n']} emails not embedded after {seconds:g} s")
        await asyncio.sleep(EMBED_POLL)


def seconds_to_cron_gap() -> float:
    """How long until ``CRON_MARGIN`` seconds after the worker's next once-a-minute cron tick
    (``schedule_and_recover`` runs at second 0 of every minute, by the wall clock)."""
    into_minute = time.time() % 60
    return CRON_MARGIN - into_minute if into_minute < CRON_MARGIN else 60 - into_minute + CRON_MARGIN


def _counters(stub: GmailStub) -> tuple[Counter[str], int]:
    with stub.lock:
        return Counter(stub.counters.calls), stub.counters.rate_limited


async def _sync(env: Stack, stub: GmailStub, result: SyncResult, worker: Process, options: Options) -> None:
    token = log_in(env.urls["auth"])  # a fresh app user per run
    meter = CpuMeter(
        {
            **{name: [psutil.Process(p.pid)] for name, p in env.processes.items()},
            "worker": [psutil.Process(worker.pid)],
            "bench": [psutil.Process()],
        }
    )
    calls_before, limited_before = _counters(stub)
    db = await asyncpg.connect(admin_url(env))
    try:
        if options.align:
            await asyncio.sleep(seconds_to_cron_gap())
        meter.start()
        window = time.monotonic()
        account_id = await connect_gmail(env, stub, token, result.address)
        result.connected = time.time()
        await watch_sync(db, uuid.UUID(account_id), result, worker, options.timeout)
        result.cpu = meter.stop()
        result.cpu_wall = time.monotonic() - window
        calls_after, limited_after = _counters(stub)
        result.calls = calls_after - calls_before
        result.rate_limited = limited_after - limited_before
        with stub.lock:
            result.units = stub.counters.quota_units[result.address]
        async with httpx.AsyncClient(base_url=env.gateway, timeout=30.0) as client:
            response = await client.get(
                f"/mail/accounts/{account_id}/sync", headers={"Authorization": f"Bearer {token}"}
            )
            response.raise_for_status()
            result.api = response.json()
        if result.state != "succeeded":
            raise RuntimeError(f"sync {result.name} {result.state}: {result.error}")
        if result.processed != result.messages or result.total != result.messages:
            raise RuntimeError(
                f"sync {result.name}: processed {result.processed} of {result.total}, "
                f"expected {result.messages}"
            )
        print(
            f"  synced {result.messages} messages in {result.seconds:.1f} s; waiting for the embedding ...",
            flush=True,
        )
        meter.start()
        await watch_embedding(db, uuid.UUID(account_id), result, worker, options.embed_timeout)
        result.embed_cpu = meter.stop()
        if result.stored != result.messages:
            raise RuntimeError(
                f"sync {result.name}: {result.stored} emails stored, expected {result.messages}"
            )
    finally:
        await db.close()


def run_sync(
    env: Stack,
    stub: GmailStub,
    items: list[MailItem],
    name: str,
    quota: float | None,
    units_per_second: float | None,
    options: Options,
) -> SyncResult:
    address = f"bench-{name}-{uuid.uuid4().hex[:8]}@gmail.test"
    fill_mailbox(stub, address, items)
    settings = (
        {} if units_per_second is None else {"PAI_GMAIL_QUOTA_UNITS_PER_SECOND": f"{units_per_second:g}"}
    )
    result = SyncResult(name, address, len(items))
    with mail_worker(env, name, settings) as worker:
        with stub.lock:
            stub.quota_units_per_second = quota
        try:
            asyncio.run(_sync(env, stub, result, worker, options))
        finally:
            with stub.lock:
                stub.quota_units_per_second = None
    return result


# --------------------------------------------------------------------------- raw baseline


@dataclass
class RawResult:
    messages: int
    seconds: float
    latencies: list[float]  # seconds per request, ascending
    megabytes: float
    cpu: dict[str, float] = field(default_factory=dict)
    client_cpu_seconds: float = 0.0  # the raw client's own, over its fetches

    @property
    def rate(self) -> float:
        return self.messages / self.seconds


async def _raw_fetch(
    gmail_url: str, token: str, ids: list[str], concurrency: int, ready: Callable[[], None]
) -> dict[str, Any]:
    pending: asyncio.Queue[str] = asyncio.Queue()
    for gmail_id in ids:
        pending.put_nowait(gmail_id)
    latencies: list[float] = []
    received = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(headers=headers, limits=limits, timeout=60.0) as client:

        async def fetcher() -> None:
            nonlocal received
            while not pending.empty():
                gmail_id = pending.get_nowait()
                sent = time.perf_counter()
                url = f"{gmail_url}/users/me/messages/{gmail_id}"
                response = await client.get(url, params={"format": "raw"})
                if response.status_code != 200:
                    raise RuntimeError(f"raw fetch: {response.status_code} {response.text[:300]}")
                received += len(response.json()["raw"])
                latencies.append(time.perf_counter() - sent)

        await asyncio.to_thread(ready)  # imports done, client made: the parent starts the clock
        started = time.perf_counter()
        cpu = time.process_time()
        await asyncio.gather(*(fetcher() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu
    return {"seconds": seconds, "cpu": cpu, "latencies": latencies, "bytes": received}


def _raw_process(gmail_url: str, token: str, ids: list[str], concurrency: int, results: Any, go: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it ends us

    def ready() -> None:
        results.put("ready")
        go.wait(60)

    results.put(asyncio.run(_raw_fetch(gmail_url, token, ids, concurrency, ready)))


def run_raw(stub: GmailStub, address: str, concurrency: int) -> RawResult:
    """The same messages fetched by a separate process (not this one: the stand-in's thread would
    share its interpreter lock with the client), like the worker is one."""
    with stub.lock:
        ids = sorted(stub.mailboxes[address].messages, reverse=True)  # newest first, as listed
    token = stub.issue_tokens(address)["access_token"]
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    go = context.Event()
    child = context.Process(
        target=_raw_process, args=(stub.gmail_url, token, ids, concurrency, results, go), daemon=True
    )
    child.start()

    def answer() -> Any:
        while True:
            with contextlib.suppress(queue.Empty):
                return results.get(timeout=0.5)
            if child.exitcode not in (None, 0):
                raise RuntimeError(f"the raw client failed (exit code {child.exitcode}); see its traceback")

    try:
        if answer() != "ready":
            raise RuntimeError("the raw client did not say it was ready")
        meter = CpuMeter({"raw client": [psutil.Process(child.pid)], "bench": [psutil.Process()]})
        meter.start()
        go.set()
        out = answer()
        cpu = meter.stop()
        child.join(timeout=10)
    finally:
        if child.is_alive():
            child.terminate()
            child.join()
    return RawResult(
        len(ids), out["seconds"], sorted(out["latencies"]), out["bytes"] * 3 / 4 / 1e6, cpu, out["cpu"]
    )


# --------------------------------------------------------------------------- model baseline


@dataclass
class ModelResult:
    chunks: int  # what the worker embeds for one mailbox (bodies and text attachments)
    sample: int  # how many of them were embedded here
    seconds: float

    @property
    def rate(self) -> float:
        return self.sample / self.seconds


def mailbox_chunks(items: list[MailItem], scratch: Path) -> list[str]:
    """The texts the worker embeds for this mailbox, made with the mail service's own parsing and
    chunking (``services/mail/indexing.py``): a chunk list per body, then per stored attachment."""
    sizes = ChunkSizes(generic=MailSettings.model_construct().chunk_chars)
    texts: list[str] = []
    for item in items:
        parsed = parse_message(item.raw)
        sender = parsed.sender
        email = SimpleNamespace(
            body_text=parsed.body_text,
            snippet="",
            subject=parsed.subject,
            sender_name=sender.name if sender else None,
            sender_address=sender.email if sender else None,
        )
        texts += [header(email) + piece.text for piece in email_chunks(email, sizes)]  # type: ignore[arg-type]
        for info in parsed.attachments:
            path = scratch / "attachment"
            path.write_bytes(attachment_bytes(item.raw, info.part_index))
            prefix = f"{header(email)}Attachment: {info.filename}\n\n"  # type: ignore[arg-type]
            texts += [
                prefix + piece.text for piece in split_chunks(extract(path, info.mime_type), "generic", sizes)
            ]
    return texts


def run_model(texts: list[str], sample: int) -> ModelResult:
    """The model alone, in this process, on the first ``sample`` chunks in the worker's batches."""
    embedder = create_embedder(EmbeddingSettings())
    part = texts[:sample]
    batch = EmbeddingSettings().embedding_batch_size  # the worker's (PAI_EMBEDDING_BATCH_SIZE unset)

    async def embed() -> float:
        await embedder.embed(part[:8])  # first-call set-up, not counted
        started = time.perf_counter()
        for start in range(0, len(part), batch):
            await embedder.embed(part[start : start + batch])
        return time.perf_counter() - started

    return ModelResult(len(texts), len(part), asyncio.run(embed()))


# --------------------------------------------------------------------------- report


def print_mailbox(items: list[MailItem], texts: list[str]) -> None:
    kinds = Counter(item.kind for item in items)
    size = sum(len(item.raw) for item in items)
    sizes = sorted(len(item.raw) for item in items)
    print(
        f"mailbox: {len(items)} messages, {size / 1e6:.2f} MB of RFC 822 "
        f"(median {percentile(sizes, 50) / 1000:.1f} KB, max {sizes[-1] / 1000:.1f} KB): "
        f"text/plain {kinds['plain']} ({sum(i.reply for i in items)} of them replies quoting their parent), "
        f"multipart/alternative {kinds['alternative']}, with a small text attachment {kinds['attachment']}; "
        f"{len(texts)} chunks to embed (mean {sum(map(len, texts)) / len(texts):.0f} characters)",
        flush=True,
    )


def _ms(seconds: float) -> str:
    return f"{1000 * seconds:.0f} ms"


def print_report(
    a: SyncResult, raws: list[RawResult], b: SyncResult, model: ModelResult | None, options: Options
) -> None:
    raw = max(raws, key=lambda r: r.rate)
    print()
    header = (
        f"{'run':<26} {'messages':>8} {'seconds':>8} {'msg/s':>7} {'get':>6} {'list':>5} "
        f"{'429s':>5} {'units':>7} {'units/msg':>9}"
    )
    print(header)
    for label, r in ((f"(a) no quota{_pacing(options)}", a), (f"(b) quota {options.quota:g} units/s", b)):
        print(
            f"{label:<26} {r.messages:>8} {r.seconds:>8.1f} {r.rate:>7.1f} {r.calls['messages.get']:>6} "
            f"{r.calls['messages.list']:>5} {r.rate_limited:>5} {r.units:>7} {r.units / r.messages:>9.2f}"
        )
    for i, r in enumerate(raws):
        print(f"{f'raw httpx #{i + 1}':<26} {r.messages:>8} {r.seconds:>8.1f} {r.rate:>7.1f}")
    print("(seconds: the run's started_at -> finished_at, as the worker wrote them; queueing excluded)")

    print()
    baseline = "the fastest raw pass" if len(raws) > 1 else "the raw pass"
    print(
        f"(a) sync/raw: {a.rate:.1f} / {raw.rate:.1f} msg/s = {100 * a.rate / raw.rate:.1f} % of {baseline} "
        f"(plain httpx, concurrency {SYNC_CONCURRENCY}, {raw.megabytes:.1f} MB, from the same stand-in)"
    )
    if len(raws) > 1:
        spread = max(r.seconds for r in raws) / min(r.seconds for r in raws) - 1
        print(f"    raw passes differ by {100 * spread:.1f} %")
    print(
        "    per-message fetch latency (raw client, messages.get format=raw): "
        f"p50 {_ms(percentile(raw.latencies, 50))}, p95 {_ms(percentile(raw.latencies, 95))}, "
        f"max {_ms(raw.latencies[-1])}"
    )
    per_message = b.units / b.messages
    ceiling = options.quota / per_message
    ratio = b.rate / ceiling
    units_rate = b.units / b.seconds
    verdict = "meets" if ratio >= 0.9 else "MISSES"
    print(
        f"(b) quota ceiling: {options.quota:g} units/s / {per_message:.2f} units per message = "
        f"{ceiling:.1f} msg/s; the sync did {b.rate:.1f} msg/s = {100 * ratio:.1f} % of it "
        f"({verdict} the >= 90 % target)"
    )
    print(
        f"    units/s achieved: {b.units} / {b.seconds:.1f} s = {units_rate:.1f} = "
        f"{100 * units_rate / options.quota:.1f} % of {options.quota:g}; {b.rate_limited} answers were 429"
    )
    burst = options.quota / b.units
    if burst > 0.02:
        print(
            f"    (the stand-in's bucket starts full: {options.quota:g} units, {100 * burst:.0f} % of this "
            "run's units, are free: short runs can pass 100 %)"
        )

    print()
    print("progress (the run row's processed/updated_at, read every 50 ms; one update per 50 messages):")
    for label, r in (("(a)", a), ("(b)", b)):
        batches = r.batch_seconds
        print(
            f"  {label} queued -> started {r.started - r.connected:+.2f} s, listing "
            f"{r.listed - r.started:.2f} s, seconds per 50-message batch over {len(batches)} intervals: "
            f"p50 {percentile(batches, 50):.2f}, p95 {percentile(batches, 95):.2f}, max "
            f"{(batches or [0.0])[-1]:.2f}; last batch -> finished "
            f"{r.finished - (r.samples[-1][1] if r.samples else r.finished):.2f} s"
        )
    print("  (intervals between progress rows, not per-message latencies; 'queued -> started' counts from")
    print("  the callback's answer as the bench saw it, clocks of one machine)")

    print()
    print("embedding (emails embedded by the worker after the sync; sync finished_at -> last indexed_at):")
    for label, r in (("(a)", a), ("(b)", b)):
        overlap = (
            f"; {r.embedded_before_finish} were embedded while the sync ran (the cron started it)"
            if r.embedded_before_finish
            else ""
        )
        versus = ""
        if model is not None:
            rate = model.chunks / r.embed_seconds
            versus = f", {rate:.1f} chunks/s = {100 * rate / model.rate:.1f} % of the model alone"
        print(
            f"  {label} {r.stored} emails (+{r.attachments} text attachments) in {r.embed_seconds:.1f} s = "
            f"{r.stored / r.embed_seconds:.1f} emails/s{versus}{overlap}"
        )
    if model is not None:
        print(
            f"  model alone (this process, after the runs): {model.sample} of the {model.chunks} chunks in "
            f"{model.seconds:.1f} s = {model.rate:.1f} chunks/s, so {model.chunks / model.rate:.0f} s "
            "for them all"
        )

    print()
    cores = psutil.cpu_count() or 1
    names = ["worker", "mail", "gateway", "auth", "bench", "other"]
    print(
        "CPU in each window (% of one core; bench = the stand-in and this script; 'other' = Postgres, "
        f"Redis, kernel, ...; {cores} cores = {100 * cores}):"
    )
    print(f"{'window':<14} " + " ".join(f"{name:>8}" for name in names) + f" {'machine':>8}")
    windows = {
        "(a) sync": a.cpu,
        "(a) embedding": a.embed_cpu,
        **{f"raw #{i + 1}": {**r.cpu, "worker": r.cpu.get("raw client", 0.0)} for i, r in enumerate(raws)},
        "(b) sync": b.cpu,
        "(b) embedding": b.embed_cpu,
    }
    for name, cpu in windows.items():
        print(
            f"{name:<14} " + " ".join(f"{cpu.get(n, 0.0):>8.0f}" for n in names) + f" {cpu['machine']:>7.0f}%"
        )
    print("(raw rows: the 'worker' column is the raw client process)")
    raw_cpu = min(r.client_cpu_seconds for r in raws) / raw.messages
    print(
        f"CPU per message: worker in (a) {10 * a.cpu['worker'] * a.cpu_wall / a.messages:.1f} ms, "
        f"raw client {1000 * raw_cpu:.1f} ms; the stand-in "
        f"{10 * a.cpu['bench'] * a.cpu_wall / a.messages:.1f} ms in (a), "
        f"{10 * raw.cpu['bench'] * raw.seconds / raw.messages:.1f} ms in the fastest raw pass"
    )
    warn_if_contended({k: v for k, v in windows.items() if "embedding" not in k})


def _pacing(options: Options) -> str:
    return ", unpaced" if options.a_units_per_second >= UNPACED else f", {options.a_units_per_second:g}/s"


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up on `kill` as on Ctrl-C
    describe_machine("mail sync benchmark: Gmail full sync through the gateway and the mail worker")
    pacing = "off" if options.a_units_per_second >= UNPACED else f"{options.a_units_per_second:g} units/s"
    timing = "syncs start 1 s after the worker cron's minute tick" if options.align else "syncs start at once"
    print(
        f"settings: {options.messages} messages per run, sync concurrency {SYNC_CONCURRENCY}, (a) no quota "
        f"and worker pacing {pacing}, (b) quota {options.quota:g} units/s and the default pacing "
        f"(240 units/s), raw passes {options.raw_passes}, model sample {options.model_sample} chunks, "
        f"{timing}, "
        f"seed {options.seed}, log level WARNING, redis {REDIS_URL}",
        flush=True,
    )
    items = build_mailbox(options.messages, options.seed)
    with tempfile.TemporaryDirectory(prefix="pai-bench-mail-") as scratch:
        texts = mailbox_chunks(items, Path(scratch))
    print_mailbox(items, texts)
    try:
        with (
            GmailStub() as stub,
            stack(
                with_worker=False,
                keep_logs=options.keep_logs,
                services=("auth", "gateway", "mail"),
                extra_env=lambda urls: mail_env(stub, urls, options.messages),
            ) as env,
        ):
            print("running (a): full sync, no quota ...", flush=True)
            a = run_sync(env, stub, items, "a", None, options.a_units_per_second, options)
            raws = []
            for i in range(options.raw_passes):
                print(f"running raw #{i + 1}: the same messages with plain httpx ...", flush=True)
                raws.append(run_raw(stub, a.address, SYNC_CONCURRENCY))
            print(f"running (b): full sync, quota {options.quota:g} units/s ...", flush=True)
            b = run_sync(env, stub, items, "b", options.quota, None, options)
        model = None
        if options.model_sample:
            print(f"running model: {min(options.model_sample, len(texts))} of the chunks, embedded here ...")
            model = run_model(texts, options.model_sample)
    except KeyboardInterrupt:
        print("\ninterrupted; cleaned up", file=sys.stderr)
        return 130
    print_report(a, raws, b, model, options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
