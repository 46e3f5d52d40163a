"""The legacy import, end to end: a legacy SQLite database built in the legacy schema (with its
traps) imported through ``make import-legacy`` into the running stack, then checked through the
gateway; dry runs, a wrong SECRET_KEY and the PostgreSQL copy into databases of their own."""

import asyncio
import json
import subprocess
import sys
import time
import uuid

import asyncpg
import pytest

from services.mail.crypto import generate_key
from shared.legacy import legacy_uuid
from tests.conftest import ADMIN_SERVER, fresh_database, login
from tests.files import pdf
from tests.legacy_db import LONG_QUESTION, MAILBOX, build_scenario, copy_to_postgres
from tests.mail_support import emails, sync_now, wait_indexed
from tests.support import ROOT

SECRET_KEY = "legacy-app-secret-key-2024"
TABLES = ("users", "documents", "queries", "email_accounts", "emails", "email_attachments")


def run_import(env: dict[str, str], *args: str, make: bool = False) -> subprocess.CompletedProcess:
    if make:
        db, uploads, *flags = args
        command = ["make", "-s", "import-legacy", f"LEGACY_DB={db}", f"LEGACY_UPLOADS={uploads}"]
        command.append(f"LEGACY_FLAGS={' '.join(flags)}")
    else:
        command = [sys.executable, "infra/import_legacy.py", *args]
    return subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False
    )


def table(report: dict, name: str) -> dict:
    return next(t for t in report["tables"] if t["table"] == name)


@pytest.fixture(scope="module")
def imported(stack, gmail_server, tmp_path_factory):
    """The scenario imported once into the stack, as an operator would."""
    directory = tmp_path_factory.mktemp("legacy")
    scenario = build_scenario(directory, SECRET_KEY, gmail=gmail_server, pdf=pdf)
    report_path = directory / "report.json"
    env = {**stack.env, "LEGACY_SECRET_KEY": SECRET_KEY}
    result = run_import(
        env, str(scenario.path), str(scenario.uploads), "--report", str(report_path), make=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return scenario, result, json.loads(report_path.read_text())


async def test_every_row_is_counted_and_checksummed(imported, db):
    scenario, result, report = imported
    assert report["ok"] and report["lost"] == 0 and report["differing_checksums"] == 0
    expected = {  # table: (source, arrived, skipped)
        "users": (8, 7, 1),
        "documents": (10, 10, 0),
        "queries": (219, 217, 2),
        "email_accounts": (1, 1, 0),
        "emails": (160, 159, 1),
        "email_attachments": (2, 2, 0),
        "oauth_sessions": (2, 0, 2),
    }
    for name, (source, arrived, skipped) in expected.items():
        got = table(report, name)
        assert (got["source"], got["arrived"], len(got["skipped"]), got["lost"]) == (
            source,
            arrived,
            skipped,
            0,
        ), got
        assert got["source"] == scenario.counts[name]
    assert f"verified: {sum(a for _, a, _ in expected.values())} rows, 0 lost" in result.stdout

    reasons = {(p["table"], p["legacy_id"]): p["reason"] for t in report["tables"] for p in t["skipped"]}
    assert "clashes with legacy user 2" in reasons[("users", 8)]
    assert "orphan" in reasons[("queries", 100)] and "orphan" in reasons[("queries", 219)]
    assert "duplicate Gmail message id" in reasons[("emails", 159)]
    notes = {(p["table"], p["legacy_id"]): p["reason"] for t in report["tables"] for p in t["notes"]}
    assert notes[("documents", 9)] == notes[("documents", 10)] == "file missing in the legacy uploads"
    assert "kept unlinked" in notes[("queries", 101)] and "kept unlinked" in notes[("queries", 103)]
    assert "unreadable timestamp" in notes[("emails", 160)]
    alice = report["users"]["2"]
    assert alice["username"] == "alice"
    assert alice["tables"]["emails"] == {"source": 160, "arrived": 159, "skipped": 1}
    assert report["users"]["99"]["tables"]["queries"] == {"source": 1, "arrived": 0, "skipped": 1}
    names = {c["name"] for c in report["checksums"]}
    assert names == {"document file bytes", "email bodies", "questions and answers"}
    assert all(c["target"] == c["source"] for c in report["checksums"])
    assert report["review"]["default passwords (sign-in refused until an admin sets a new password)"] == [
        "1: admin",
        "5: dave",
    ]
    assert report["review"]["admins (rights kept as they were: review them)"] == ["1: admin", "6: erin"]

    # Values as they were, in the right shapes.
    user = await db.fetchrow("SELECT * FROM auth.users WHERE id = $1", legacy_uuid("users", 2))
    assert user["email"] == "alice.smith@example.com" and user["username"] == "alice"
    assert user["created_at"].isoformat() == "2024-03-03T09:02:07.123456+00:00"
    assert (await db.fetchrow("SELECT is_active FROM auth.users WHERE username = 'bob'"))[
        "is_active"
    ] is False
    bare = await db.fetchrow("SELECT * FROM mail.emails WHERE id = $1", legacy_uuid("emails", 3))
    assert json.loads(bare["to_addresses"]) == [{"name": "", "email": MAILBOX}]
    assert json.loads(bare["cc_addresses"]) == [{"name": "", "email": "carol@example.com"}]
    assert bare["sent_at"].isoformat() == "2024-03-04T09:03:07+00:00"
    assert json.loads(bare["labels"]) == ["INBOX"] and bare["is_read"] is True
    listed = await db.fetchrow("SELECT * FROM mail.emails WHERE id = $1", legacy_uuid("emails", 4))
    assert [a["email"] for a in json.loads(listed["to_addresses"])] == [MAILBOX, "bob@example.com"]
    assert listed["body_html"].startswith("<p>Crate 5004") and listed["sent_at"].microsecond == 123456
    long = await db.fetchrow("SELECT * FROM assistant.queries WHERE id = $1", legacy_uuid("queries", 102))
    assert long["question"] == LONG_QUESTION and len(long["question"]) >= 5000
    linked = await db.fetchrow(
        "SELECT document_id FROM assistant.queries WHERE id = $1", legacy_uuid("queries", 5)
    )
    assert linked["document_id"] is not None
    unlinked = await db.fetchrow(
        "SELECT document_id FROM assistant.queries WHERE id = $1", legacy_uuid("queries", 101)
    )
    assert unlinked["document_id"] is None


async def test_old_passwords_sign_in_and_are_rehashed(imported, gateway, db, new_admin):
    scenario, _, _ = imported
    tokens = await login(gateway, "alice", scenario.passwords["alice"])
    me = (await gateway.get("/auth/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})).json()
    assert me["id"] == str(legacy_uuid("users", 2)) and me["email"] == "alice.smith@example.com"
    stored = await db.fetchval("SELECT password_hash FROM auth.users WHERE username = 'alice'")
    assert stored.startswith("$argon2id$")
    await login(gateway, "ALICE.SMITH@example.com", scenario.passwords["alice"])  # the email, any case

    refused = await gateway.post(
        "/auth/token", data={"username": "bob", "password": scenario.passwords["bob"]}
    )
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "account_disabled"
    wrong = await gateway.post("/auth/token", data={"username": "dave", "password": "not-it"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_credentials"
    default = await gateway.post("/auth/token", data={"username": "dave", "password": "password"})
    assert default.status_code == 403, default.text
    assert default.json()["error"]["code"] == "password_reset_required"
    assert "administrator must set a new password" in default.json()["error"]["message"]

    admin = await new_admin()
    dave_id = str(legacy_uuid("users", 5))
    listed = await gateway.get(f"/admin/users/{dave_id}", headers=admin.headers)
    assert listed.json()["password_reset_required"] is True
    reset = await gateway.patch(
        f"/admin/users/{dave_id}", headers=admin.headers, json={"password": "a brand new passphrase 77"}
    )
    assert reset.status_code == 200, reset.text
    assert reset.json()["password_reset_required"] is False
    await login(gateway, "dave", "a brand new passphrase 77")
    audit = await db.fetchval(
        "SELECT details::text FROM auth.audit_log WHERE target_user_id = $1 ORDER BY created_at DESC LIMIT 1",
        uuid.UUID(dave_id),
    )
    assert "password_set" in audit and "brand new" not in audit


async def wait_documents(gateway, headers, expected: int, timeout: float = 120) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        items = (await gateway.get("/documents", headers=headers, params={"limit": 50})).json()["items"]
        if len(items) == expected and all(d["status"] in ("ready", "failed") for d in items):
            return items
        assert time.monotonic() < deadline, items
        await asyncio.sleep(0.3)


async def test_documents_become_searchable_with_their_category(imported, gateway):
    scenario, _, _ = imported
    tokens = await login(gateway, "alice", scenario.passwords["alice"])
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    documents = {d["id"]: d for d in await wait_documents(gateway, headers, 3)}
    first = documents[str(legacy_uuid("documents", 1))]
    assert (
        first["status"] == "ready"
        and first["category"] == "financial"
        and first["title"] == "Legacy document 1"
    )
    assert first["created_at"].startswith("2024-03-02T09:01:07")
    for doc_id in (1, 2, 3):
        found = await gateway.get(
            "/documents/search", headers=headers, params={"q": scenario.document_sentences[doc_id]}
        )
        best = found.json()["results"][0]
        assert best["document_id"] == str(legacy_uuid("documents", doc_id)), found.json()
        assert f"quartz harbour code {7000 + doc_id}" in best["text"]
    content = await gateway.get(f"/documents/{legacy_uuid('documents', 1)}/content", headers=headers)
    assert content.text == scenario.document_sentences[1] + "\n"

    tokens = await login(gateway, "frank", scenario.passwords["frank"])
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    for document in await wait_documents(gateway, headers, 2):
        assert document["status"] == "failed" and document["error"] == "file missing in the legacy uploads"
        assert document["sha256"] is None


async def test_imported_mail_is_searchable_and_a_sync_adds_no_duplicates(imported, gateway, gmail, db):
    scenario, _, _ = imported
    tokens = await login(gateway, "alice", scenario.passwords["alice"])
    alice = type("Caller", (), {"headers": {"Authorization": f"Bearer {tokens['access_token']}"}})()
    account_id = str(legacy_uuid("email_accounts", 1))
    await wait_indexed(db, account_id, timeout=120)
    found = await gateway.get("/mail/search", headers=alice.headers, params={"q": "ledger note kestrel-42"})
    assert found.status_code == 200
    assert found.json()["results"][0]["email_id"] == str(legacy_uuid("emails", 42))

    from tests.gmail_stub import mime_plain

    gmail.add_message(MAILBOX, mime_plain("After the move", "The first mail since the import.\n"))
    run = await sync_now(gateway, alice, account_id)
    assert run["state"] == "succeeded", run
    # With no history id imported, the first sync (the scheduler's or this one) was a full one.
    modes = await db.fetch(
        "SELECT mode FROM mail.sync_runs WHERE account_id = $1 AND state = 'succeeded' ORDER BY created_at",
        uuid.UUID(account_id),
    )
    assert modes[0]["mode"] == "full", modes
    stored = await emails(gateway, alice, account_id=account_id)
    assert stored["total"] == 160  # 159 imported + 1 new: the 158 Gmail already had are not doubled
    assert await db.fetchval(
        "SELECT count(*) = count(DISTINCT gmail_id) FROM mail.emails WHERE account_id = $1",
        uuid.UUID(account_id),
    )
    subjects = {item["subject"] for item in stored["items"]}
    assert "After the move" in subjects


async def test_attachments_and_query_history_arrive(imported, gateway):
    scenario, _, _ = imported
    tokens = await login(gateway, "alice", scenario.passwords["alice"])
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    email_id = legacy_uuid("emails", 1)
    kept = await gateway.get(
        f"/mail/emails/{email_id}/attachments/{legacy_uuid('email_attachments', 1)}", headers=headers
    )
    assert kept.status_code == 200 and kept.content == b"Crate manifest: forty barrels of pitch.\n"
    never = await gateway.get(
        f"/mail/emails/{email_id}/attachments/{legacy_uuid('email_attachments', 2)}", headers=headers
    )
    assert never.status_code == 404 and "never downloaded" in never.json()["error"]["message"]

    history = (await gateway.get("/queries", headers=headers, params={"limit": 100})).json()
    assert history["total"] == 34
    by_id = {item["id"]: item for item in history["items"]}
    query = by_id[str(legacy_uuid("queries", 35))]  # alice's, about her third document
    assert query["question"].startswith("Legacy question 35:")
    assert query["answer"].startswith("Legacy answer 35:")
    assert query["status"] == "complete" and query["warnings"] == ["imported_from_legacy"]
    assert query["document_id"] == str(legacy_uuid("documents", 3)) and query["sources"] == []
    assert by_id[str(legacy_uuid("queries", 102))]["question"] == LONG_QUESTION
    conversations = (await gateway.get("/conversations", headers=headers, params={"limit": 100})).json()
    assert conversations["total"] == 34  # one per legacy question


async def test_a_second_run_changes_nothing(imported, stack, db):
    scenario, _, first = imported
    before = {
        name: await _snapshot(db, name) for name in ("auth.users", "assistant.queries", "mail.email_accounts")
    }
    counts = {
        t: await db.fetchval(f"SELECT count(*) FROM {t}") for t in ("documents.documents", "mail.emails")
    }
    env = {**stack.env, "LEGACY_SECRET_KEY": SECRET_KEY}
    report_path = scenario.path.with_name("second.json")
    result = run_import(
        env, str(scenario.path), str(scenario.uploads), "--report", str(report_path), make=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "verified: 396 rows, 0 lost" in result.stdout
    second = json.loads(report_path.read_text())
    for name in TABLES:  # nothing new; everything found where the first run put it
        assert table(second, name)["imported"] == 0
        assert (
            table(second, name)["present"] == table(second, name)["arrived"] == table(first, name)["arrived"]
        )
    for name, snapshot in before.items():
        assert await _snapshot(db, name) == snapshot, name
    for name, count in counts.items():
        assert await db.fetchval(f"SELECT count(*) FROM {name}") == count


async def _snapshot(db, table: str) -> str:
    return await db.fetchval(f"SELECT md5(string_agg(t::text, '|' ORDER BY t.id)) FROM {table} t")


# ---- into databases of their own (no stack) -------------------------------------------------


@pytest.fixture
def isolated_env(base_env, tmp_path):
    """The import's environment against a fresh database (its own Redis db and data folder)."""
    with fresh_database() as url:
        yield {
            **base_env,
            "PAI_DATABASE_URL": url,
            "PAI_REDIS_URL": base_env["PAI_REDIS_URL"].rsplit("/", 1)[0] + "/10",
            "PAI_DATA_DIR": str(tmp_path / "data"),
            "PAI_MAIL_TOKEN_KEYS": generate_key(),
        }


async def _rows(url: str) -> dict[str, int]:
    conn = await asyncpg.connect(url)
    try:
        names = {"users": "auth.users", "documents": "documents.documents", "queries": "assistant.queries"}
        names |= {t: f"mail.{t}" for t in ("email_accounts", "emails", "email_attachments")}
        return {t: await conn.fetchval(f"SELECT count(*) FROM {name}") for t, name in names.items()}
    finally:
        await conn.close()


async def test_dry_run_reports_and_writes_nothing(isolated_env, tmp_path):
    scenario = build_scenario(tmp_path, SECRET_KEY, pdf=pdf)
    report_path = tmp_path / "dry.json"
    args = [
        "--db",
        str(scenario.path),
        "--uploads",
        str(scenario.uploads),
        "--dry-run",
        "--report",
        str(report_path),
    ]
    key_file = tmp_path / "secret_key"  # as docker compose hands it over
    key_file.write_text(SECRET_KEY + "\n")
    result = run_import({**isolated_env, "LEGACY_SECRET_KEY_FILE": str(key_file)}, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "dry run: nothing written" in result.stdout
    report = json.loads(report_path.read_text())
    assert (
        report["dry_run"]
        and table(report, "emails")["imported"] == 159
        and table(report, "users")["imported"] == 7
    )
    assert len(table(report, "users")["skipped"]) == 1
    assert table(report, "email_accounts")["notes"] == []  # the key from the file opened the tokens
    assert all(c["target"] is None for c in report["checksums"])
    assert set((await _rows(isolated_env["PAI_DATABASE_URL"])).values()) == {0}
    assert not any(path.is_file() for path in (tmp_path / "data").rglob("*"))


async def test_a_wrong_secret_key_leaves_the_account_needing_reauth(isolated_env, tmp_path):
    scenario = build_scenario(tmp_path, SECRET_KEY, pdf=pdf)
    args = [
        "--db",
        str(scenario.path),
        "--uploads",
        str(scenario.uploads),
        "--report",
        str(tmp_path / "r.json"),
    ]
    result = run_import({**isolated_env, "LEGACY_SECRET_KEY": "not-the-legacy-key"}, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    notes = [p["reason"] for p in table(report, "email_accounts")["notes"]]
    assert notes and "needs_reauth" in notes[0]
    conn = await asyncpg.connect(isolated_env["PAI_DATABASE_URL"])
    try:
        status = await conn.fetchval("SELECT status FROM mail.email_accounts")
        assert status == "needs_reauth"
        assert await conn.fetchval("SELECT count(*) FROM mail.emails") == 159  # the mail still arrives
    finally:
        await conn.close()


async def test_the_postgresql_copy_imports_the_same(isolated_env, tmp_path):
    scenario = build_scenario(tmp_path, SECRET_KEY, pdf=pdf)
    name = f"legacy_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(f"{ADMIN_SERVER}/postgres")
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        legacy_url = f"{ADMIN_SERVER}/{name}"
        await copy_to_postgres(scenario.path, legacy_url)
        env = {**isolated_env, "LEGACY_SECRET_KEY": SECRET_KEY}
        from_pg = run_import(
            env, "--db", legacy_url, "--uploads", str(scenario.uploads), "--report", str(tmp_path / "pg.json")
        )
        assert from_pg.returncode == 0, from_pg.stdout + from_pg.stderr
        assert "verified: 396 rows, 0 lost" in from_pg.stdout
        # The SQLite file, run against the same target, finds exactly what the copy brought.
        from_sqlite = run_import(
            env,
            "--db",
            str(scenario.path),
            "--uploads",
            str(scenario.uploads),
            "--report",
            str(tmp_path / "s.json"),
        )
        assert from_sqlite.returncode == 0, from_sqlite.stdout + from_sqlite.stderr
        pg, sq = (json.loads((tmp_path / f).read_text()) for f in ("pg.json", "s.json"))
        for name_ in TABLES:
            assert table(pg, name_)["arrived"] == table(sq, name_)["arrived"] == table(sq, name_)["present"]
            assert table(sq, name_)["imported"] == 0
        assert pg["checksums"] == sq["checksums"]
        assert await _rows(isolated_env["PAI_DATABASE_URL"]) == {
            "users": 7,
            "documents": 10,
            "queries": 217,
            "email_accounts": 1,
            "emails": 159,
            "email_attachments": 2,
        }
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
