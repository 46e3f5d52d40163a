"""Legacy import throughput against pgloader, on the same legacy SQLite file and machine.

Builds a legacy database in the legacy schema with ``--emails`` emails (default 1,000,000) in
``--users`` mailboxes, with documents and queries per user, then:

1. pgloader (Debian package ``pgloader``) loads the SQLite file into a scratch PostgreSQL
   database: the baseline, a plain table-to-table copy.
2. ``infra/import_legacy.py`` (what ``make import-legacy`` runs) imports it into a migrated scratch
   database: every service with its own role under row-level security, files copied, tokens
   re-encrypted, verification included (counts and checksums read back from PostgreSQL).

Prints rows/s per table, p50/p95 of the bulk batches (write + read-back), the whole time and
the ratio ours/pgloader (target <= 1.0). Embedding is excluded from that ratio: the mail worker
then embeds for ``--embed-seconds`` and its rate is reported on its own.

Why not the legacy report's exact proportions (7 users : 218 queries : 158 emails)? Each user
costs three bcrypt verifications at the legacy cost 12 (the default-password check, ~0.25 s
each), so 44,000 users would be hours of hashing; real mailboxes hold thousands of emails.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
import bcrypt  # noqa: E402
from _stack import REDIS_URL, describe_machine, percentile  # noqa: E402
from gateway import POSTGRES_SERVER, flushed_redis, temporary_database  # noqa: E402

from services.mail.crypto import generate_key  # noqa: E402
from tests.legacy_db import create, insert, legacy_encrypt, legacy_fernet  # noqa: E402
from tests.support import Process, python  # noqa: E402

SECRET_KEY = "bench-legacy-secret"  # noqa: S105 (a made-up legacy key for made-up tokens)
WORDS = [
    "invoice",
    "shipment",
    "ledger",
    "harbour",
    "quartz",
    "meeting",
    "contract",
    "budget",
    "travel",
    "report",
    "payment",
    "schedule",
    "review",
    "project",
    "client",
    "delivery",
    "warehouse",
    "estimate",
    "approval",
    "renewal",
    "policy",
    "account",
    "summary",
]


def build(directory: Path, emails: int, users: int, documents: int, queries: int) -> Path:
    """The legacy database (and uploads) with deterministic content."""
    rng = random.Random(7)
    path = directory / "personal_ai_agent.db"
    db = create(path)
    db.execute("PRAGMA journal_mode = OFF")
    db.execute("PRAGMA synchronous = OFF")
    with ThreadPoolExecutor(os.cpu_count() or 2) as pool:  # the legacy cost: 12 rounds
        hashes = list(
            pool.map(lambda i: bcrypt.hashpw(f"pw-{i}".encode(), bcrypt.gensalt(12)).decode(), range(users))
        )
    insert(
        db,
        "users",
        (
            {
                "id": uid,
                "email": f"user{uid}@legacy.example",
                "username": f"user{uid}",
                "hashed_password": hashes[uid - 1],
                "is_active": 1,
                "is_admin": int(uid == 1),
                "created_at": f"2023-01-{1 + uid % 28:02d} 08:00:00",
            }
            for uid in range(1, users + 1)
        ),
    )
    uploads = directory / "uploads"
    rows = []
    for doc_id in range(1, users * documents + 1):
        owner = 1 + (doc_id - 1) // documents
        name = f"user_{owner}_{uuid.UUID(int=doc_id)}.txt"
        (uploads / str(owner)).mkdir(parents=True, exist_ok=True)
        (uploads / str(owner) / name).write_text(" ".join(rng.choices(WORDS, k=400)) + f" doc {doc_id}\n")
        rows.append(
            {
                "id": doc_id,
                "title": f"Document {doc_id}",
                "file_path": f"/srv/legacy/backend/data/uploads/{owner}/{name}",
                "file_type": "txt",
                "document_type": "generic",
                "file_size": 3000,
                "created_at": "2023-05-01 10:00:00.5",
                "owner_id": owner,
            }
        )
    insert(db, "documents", rows)
    insert(
        db,
        "queries",
        (
            {
                "id": qid,
                "question": f"What did the {WORDS[qid % len(WORDS)]} say in week {qid % 52}?",
                "answer": f"It said {' '.join(WORDS[(qid + k) % len(WORDS)] for k in range(30))}.",
                "created_at": f"2024-02-{1 + qid % 28:02d} 12:00:{qid % 60:02d}",
                "user_id": 1 + qid % users,
            }
            for qid in range(1, users * queries + 1)
        ),
    )
    fernet = legacy_fernet(SECRET_KEY)
    insert(
        db,
        "email_accounts",
        (
            {
                "id": uid,
                "user_id": uid,
                "email_address": f"user{uid}@gmail.test",
                "provider": "gmail",
                "access_token": legacy_encrypt(fernet, f"ya29.{uid}"),
                "refresh_token": legacy_encrypt(fernet, f"1//{uid}"),
                "token_expires_at": "2024-01-01 00:00:00",
                "is_active": 1,
                "sync_enabled": 1,
                "created_at": "2023-01-01 00:00:00",
            }
            for uid in range(1, users + 1)
        ),
    )
    bodies = [" ".join(rng.choices(WORDS, k=60)) for _ in range(997)]
    insert(
        db,
        "emails",
        (
            {
                "id": eid,
                "email_account_id": 1 + eid % users,
                "user_id": 1 + eid % users,
                "message_id": f"{0x18C0000000000000 + eid:x}",
                "thread_id": f"{0x18C0000000000000 + eid - eid % 3:x}",
                "subject": f"{WORDS[eid % len(WORDS)]} {eid}",
                "sender_email": "ada@example.com",
                "sender_name": "Ada",
                "recipient_emails": '["bob@example.com"]' if eid % 2 else "bob@example.com",
                "cc_emails": "[]",
                "bcc_emails": "[]",
                "body_text": f"{bodies[eid % 997]} ref {eid}",
                "body_html": None,
                "email_type": "business",
                "is_read": eid % 2,
                "is_important": 0,
                "has_attachments": 0,
                "gmail_labels": '["INBOX"]',
                "sent_at": f"2024-03-{1 + eid % 28:02d} 09:{eid % 60:02d}:07" + (".25" if eid % 2 else ""),
                "created_at": f"2024-03-{1 + eid % 28:02d} 09:{eid % 60:02d}:08",
            }
            for eid in range(1, emails + 1)
        ),
    )
    db.commit()
    db.close()
    return path


def run_pgloader(legacy: Path) -> float:
    """Seconds pgloader takes to load the SQLite file into an empty scratch database."""
    if shutil.which("pgloader") is None:
        raise SystemExit("pgloader is not installed: apt-get install pgloader")
    name = f"pgloader_{uuid.uuid4().hex[:10]}"
    url = f"{POSTGRES_SERVER}/{name}"
    subprocess.run(
        ["psql", "-q", f"{POSTGRES_SERVER}/postgres", "-c", f'CREATE DATABASE "{name}"'], check=True
    )
    try:
        started = time.perf_counter()
        # SBCL's default 1 GB heap runs out on a million emails; smaller prefetch batches as well.
        command = [
            "pgloader",
            "--dynamic-space-size",
            "4096",
            "--with",
            "prefetch rows = 25000",
            str(legacy),
            url,
        ]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        elapsed = time.perf_counter() - started
        if result.returncode != 0:
            raise SystemExit(f"pgloader failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
        return elapsed
    finally:
        subprocess.run(
            [
                "psql",
                "-q",
                f"{POSTGRES_SERVER}/postgres",
                "-c",
                f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
            ],
            check=False,
        )


def run_ours(legacy: Path, uploads: Path, env: dict[str, str], report: Path) -> float:
    started = time.perf_counter()
    result = subprocess.run(
        [
            sys.executable,
            "infra/import_legacy.py",
            "--db",
            str(legacy),
            "--uploads",
            str(uploads),
            "--report",
            str(report),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"the import failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}")
    return elapsed


async def count_indexed(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval("SELECT count(*) FROM mail.emails WHERE indexed_at IS NOT NULL")
    finally:
        await conn.close()


def measure_embedding(env: dict[str, str], seconds: float, logs: Path) -> tuple[int, float]:
    """Emails the mail worker embeds (local model, in process) in ``seconds`` after it starts."""
    import asyncio

    worker_env = {**env, "PAI_EMBEDDING_BACKEND": "local", "HF_HUB_OFFLINE": "1"}
    process = Process(python("-m", "services.mail", "worker"), worker_env, logs / "mail-worker.log").start()
    try:
        deadline = time.monotonic() + 120
        while asyncio.run(count_indexed(env["PAI_DATABASE_URL"])) == 0:  # model loaded, first batch in
            if time.monotonic() > deadline:
                raise SystemExit(f"the mail worker embedded nothing; see {logs / 'mail-worker.log'}")
            time.sleep(1)
        start_count, started = asyncio.run(count_indexed(env["PAI_DATABASE_URL"])), time.perf_counter()
        time.sleep(seconds)
        done = asyncio.run(count_indexed(env["PAI_DATABASE_URL"])) - start_count
        return done, time.perf_counter() - started
    finally:
        process.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emails", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--documents-per-user", type=int, default=10)
    parser.add_argument("--queries-per-user", type=int, default=1000)
    parser.add_argument("--embed-seconds", type=float, default=60.0)
    args = parser.parse_args()
    describe_machine("Legacy import vs pgloader")

    with tempfile.TemporaryDirectory(prefix="pai-legacy-bench-") as tmp:
        directory = Path(tmp)
        started = time.perf_counter()
        legacy = build(directory, args.emails, args.users, args.documents_per_user, args.queries_per_user)
        size_mb = legacy.stat().st_size / 2**20
        print(
            f"legacy database: {size_mb:.0f} MB, built in {time.perf_counter() - started:.0f} s", flush=True
        )

        baseline = run_pgloader(legacy)
        print(f"pgloader: {baseline:.1f} s", flush=True)

        with temporary_database() as url, flushed_redis(REDIS_URL) as redis_url:
            env = {k: v for k, v in os.environ.items() if not k.startswith(("PAI_", "LEGACY_"))}
            env.update(
                PAI_DATABASE_URL=url,
                PAI_REDIS_URL=redis_url,
                PAI_DATA_DIR=str(directory / "data"),
                PAI_MAIL_TOKEN_KEYS=generate_key(),
                LEGACY_SECRET_KEY=SECRET_KEY,
            )
            report_path = directory / "report.json"
            ours = run_ours(legacy, directory / "uploads", env, report_path)
            report = json.loads(report_path.read_text())
            print_results(report, ours, baseline)
            if args.embed_seconds > 0:
                done, elapsed = measure_embedding(env, args.embed_seconds, directory)
                rate = done / elapsed if elapsed else 0.0
                hours = report["verified_rows"] and args.emails / rate / 3600 if rate else float("inf")
                print(
                    f"embedding (excluded above): {done} emails in {elapsed:.0f} s = {rate:.0f} emails/s "
                    f"on this machine; all {args.emails:,} would take about {hours:.1f} h in the mail worker"
                )


def print_results(report: dict, ours: float, baseline: float) -> None:
    print(f"{'table':<20}{'rows':>10}{'seconds':>9}{'rows/s':>10}{'batch p50 ms':>14}{'batch p95 ms':>14}")
    for table in report["tables"]:
        batches = sorted(table["batch_ms"])
        rate = table["source"] / table["seconds"] if table["seconds"] else 0.0
        p50 = f"{percentile(batches, 50):.0f}" if batches else "-"
        p95 = f"{percentile(batches, 95):.0f}" if batches else "-"
        print(
            f"{table['table']:<20}{table['source']:>10}{table['seconds']:>9.1f}{rate:>10.0f}{p50:>14}{p95:>14}"
        )
    rows = sum(table["source"] for table in report["tables"])
    verdict = "verified, 0 lost" if report["ok"] else f"NOT verified: {report['lost']} lost"
    print(
        f"ours: {ours:.1f} s for {rows:,} rows = {rows / ours:,.0f} rows/s ({verdict}, verification included)"
    )
    print(f"pgloader: {baseline:.1f} s = {rows / baseline:,.0f} rows/s")
    print(f"ratio ours/pgloader: {ours / baseline:.2f} (target <= 1.0)")


if __name__ == "__main__":
    main()
