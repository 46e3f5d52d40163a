"""Legacy Personal AI Agent databases, built in the legacy schema (the legacy app's SQLAlchemy
models as SQLite creates them; SQLite does not enforce the foreign keys), for the import's tests
and benchmark. :func:`copy_to_postgres` makes the PostgreSQL copy the legacy app's own
migration would have made (same tables, same columns, PostgreSQL types)."""

import base64
import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import bcrypt
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

# (table, [(column, SQLite type, PostgreSQL type)])
SCHEMA: dict[str, list[tuple[str, str, str]]] = {
    "users": [
        ("id", "INTEGER PRIMARY KEY", "INTEGER PRIMARY KEY"),
        ("email", "VARCHAR", "VARCHAR"),
        ("username", "VARCHAR", "VARCHAR"),
        ("hashed_password", "VARCHAR", "VARCHAR"),
        ("is_active", "BOOLEAN", "BOOLEAN"),
        ("is_admin", "BOOLEAN", "BOOLEAN"),
        ("created_at", "DATETIME", "TIMESTAMP"),
    ],
    "documents": [
        ("id", "INTEGER PRIMARY KEY", "INTEGER PRIMARY KEY"),
        ("title", "VARCHAR", "VARCHAR"),
        ("description", "TEXT", "TEXT"),
        ("file_path", "VARCHAR", "VARCHAR"),
        ("file_type", "VARCHAR", "VARCHAR"),
        ("document_type", "VARCHAR", "VARCHAR"),
        ("file_size", "INTEGER", "INTEGER"),
        ("created_at", "DATETIME", "TIMESTAMP"),
        ("vector_namespace", "VARCHAR", "VARCHAR"),
        ("owner_id", "INTEGER REFERENCES users(id)", "INTEGER"),
    ],
    "queries": [
        ("id", "INTEGER PRIMARY KEY", "INTEGER PRIMARY KEY"),
        ("question", "TEXT", "TEXT"),
        ("answer", "TEXT", "TEXT"),
        ("created_at", "DATETIME", "TIMESTAMP"),
        ("user_id", "INTEGER REFERENCES users(id)", "INTEGER"),
        ("document_id", "INTEGER REFERENCES documents(id)", "INTEGER"),
    ],
    "email_accounts": [
        ("id", "INTEGER PRIMARY KEY", "INTEGER PRIMARY KEY"),
        ("user_id", "INTEGER REFERENCES users(id)", "INTEGER"),
        ("email_address", "VARCHAR", "VARCHAR"),
        ("provider", "VARCHAR", "VARCHAR"),
        ("access_token", "TEXT", "TEXT"),
        ("refresh_token", "TEXT", "TEXT"),
        ("token_expires_at", "DATETIME", "TIMESTAMP"),
        ("is_active", "BOOLEAN", "BOOLEAN"),
        ("sync_enabled", "BOOLEAN", "BOOLEAN"),
        ("last_sync_at", "DATETIME", "TIMESTAMP"),
        ("created_at", "DATETIME", "TIMESTAMP"),
    ],
    "emails": [
        ("id", "INTEGER PRIMARY KEY", "INTEGER PRIMARY KEY"),
        ("email_account_id", "INTEGER REFERENCES email_accounts(id)", "INTEGER"),
        ("user_id", "INTEGER REFERENCES users(id)", "INTEGER"),
        ("message_id", "VARCHAR", "VARCHAR"),
        ("thread_id", "VARCHAR", "VARCHAR"),
        ("subject", "VARCHAR", "VARCHAR"),
        ("sender_email", "VARCHAR", "VARCHAR"),
        ("sender_name", "VARCHAR", "VARCHAR"),
        ("recipient_emails", "TEXT", "TEXT"),
        ("cc_emails", "TEXT", "TEXT"),
        ("bcc_emails", "TEXT", "TEXT"),
        ("body_text", "TEXT", "TEXT"),
        ("body_html", "TEXT", "TEXT"),
        ("email_type", "VARCHAR", "VARCHAR"),
        ("is_read", "BOOLEAN", "BOOLEAN"),
        ("is_important", "BOOLEAN", "BOOLEAN"),
        ("has_attachments", "BOOLEAN", "BOOLEAN"),
        ("gmail_labels", "TEXT", "TEXT"),
        ("sent_at", "DATETIME", "TIMESTAMP"),
        ("created_at", "DATETIME", "TIMESTAMP"),
        ("vector_namespace", "VARCHAR", "VARCHAR"),
    ],
    "email_attachments": [
        ("id", "INTEGER PRIMARY KEY", "INTEGER PRIMARY KEY"),
        ("email_id", "INTEGER REFERENCES emails(id)", "INTEGER"),
        ("user_id", "INTEGER REFERENCES users(id)", "INTEGER"),
        ("filename", "VARCHAR", "VARCHAR"),
        ("file_path", "VARCHAR", "VARCHAR"),
        ("file_size", "INTEGER", "INTEGER"),
        ("mime_type", "VARCHAR", "VARCHAR"),
        ("attachment_id", "VARCHAR", "VARCHAR"),
        ("is_downloaded", "BOOLEAN", "BOOLEAN"),
        ("created_at", "DATETIME", "TIMESTAMP"),
    ],
    "oauth_sessions": [
        ("id", "INTEGER PRIMARY KEY", "INTEGER PRIMARY KEY"),
        ("user_id", "INTEGER", "INTEGER"),
        ("state", "VARCHAR", "VARCHAR"),
        ("code_verifier", "VARCHAR", "VARCHAR"),
        ("expires_at", "DATETIME", "TIMESTAMP"),
        ("created_at", "DATETIME", "TIMESTAMP"),
    ],
}


def legacy_fernet(secret_key: str) -> Fernet:
    kdf = PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=b"email_token_salt_2024", iterations=100_000)
    return Fernet(base64.urlsafe_b64encode(kdf.derive(secret_key.encode())))


def legacy_encrypt(fernet: Fernet, token: str) -> str:
    """As the legacy app stored a token: the Fernet token, base64-encoded once more."""
    return base64.urlsafe_b64encode(fernet.encrypt(token.encode())).decode()


def create(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path)
    for table, columns in SCHEMA.items():
        db.execute(f"CREATE TABLE {table} ({', '.join(f'{name} {kind}' for name, kind, _ in columns)})")
    return db


def insert(db: sqlite3.Connection, table: str, rows: Iterable[dict[str, Any]]) -> None:
    names = [name for name, _, _ in SCHEMA[table]]
    db.executemany(
        f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)})",
        ([row.get(name) for name in names] for row in rows),
    )


async def copy_to_postgres(sqlite_path: Path, url: str, tables: Sequence[str] = tuple(SCHEMA)) -> None:
    """The SQLite database's tables into the (empty) PostgreSQL database at ``url``, with
    PostgreSQL types: booleans, naive timestamps, text."""
    source = sqlite3.connect(sqlite_path)
    conn = await asyncpg.connect(url)
    try:
        for table in tables:
            columns = SCHEMA[table]
            await conn.execute(
                f"CREATE TABLE {table} ({', '.join(f'{name} {pg}' for name, _, pg in columns)})"
            )
            names = [name for name, _, _ in columns]
            rows = source.execute(f"SELECT {', '.join(names)} FROM {table}").fetchall()
            converted = [
                tuple(_to_pg(value, pg) for value, (_, _, pg) in zip(row, columns, strict=True))
                for row in rows
            ]
            await conn.copy_records_to_table(table, records=converted, columns=names)
    finally:
        await conn.close()
        source.close()


def _to_pg(value: Any, pg_type: str) -> Any:
    if value is None:
        return None
    if pg_type == "BOOLEAN":
        return bool(value)
    if pg_type == "TIMESTAMP":  # a TIMESTAMP column cannot hold an unreadable one: NULL
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return value


# ---- the scenario the import tests use: the legacy report's tables, with its traps ----------


MAILBOX = "alice.legacy@gmail.test"
LONG_QUESTION = "Please summarise every clause about late payment fees. " * 100  # 5,500 characters


@dataclass
class Scenario:
    path: Path
    uploads: Path
    passwords: dict[str, str]  # username -> legacy password
    document_sentences: dict[int, str] = field(default_factory=dict)  # legacy doc id -> text in it
    email_subjects: dict[int, str] = field(default_factory=dict)
    message_ids: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)  # table -> rows in the source


def _when(day: int, micro: bool) -> str:
    return f"2024-03-{1 + day % 28:02d} 09:{day % 60:02d}:07" + (".123456" if micro else "")


def build_scenario(directory: Path, secret_key: str, gmail: Any = None, pdf: Any = None) -> Scenario:
    """``gmail``: the Gmail stand-in, to put the same messages (and tokens) in its mailbox."""
    uploads = directory / "uploads"
    path = directory / "personal_ai_agent.db"
    db = create(path)
    passwords = {
        "admin": "admin123",
        "alice": "alice-old-pass-1",
        "bob": "bob-secret-22",
        "carol": "carol-pw-333",
        "dave": "password",
        "erin": "erin-pw-4444",
        "frank": "frank-pw-55555",
    }
    emails = {
        "admin": "admin@legacy.example",
        "alice": "Alice.Smith@Example.COM",  # mixed case
        "bob": "bob@legacy.example",
        "carol": "carol@legacy.example",
        "dave": "dave@legacy.example",
        "erin": "erin@legacy.example",
        "frank": "frank@legacy.example",
    }
    users = []
    for uid, name in enumerate(passwords, 1):
        users.append(
            {
                "id": uid,
                "email": emails[name],
                "username": name,
                "hashed_password": bcrypt.hashpw(
                    passwords[name].encode(), bcrypt.gensalt(rounds=10)
                ).decode(),
                "is_active": 0 if name == "bob" else 1,
                "is_admin": 1 if name in ("admin", "erin") else 0,
                "created_at": _when(uid, uid % 2 == 0),
            }
        )
    # The clash: the same address as alice's, in other letters' case.
    users.append(
        {
            "id": 8,
            "email": "alice.smith@example.com",
            "username": "alice2",
            "hashed_password": users[1]["hashed_password"],
            "is_active": 1,
            "is_admin": 0,
            "created_at": _when(8, False),
        }
    )
    insert(db, "users", users)

    scenario = Scenario(path, uploads, passwords)
    documents = []
    layouts = [
        (2, "/srv/legacy/backend/data/uploads/{u}/{name}", "financial", "txt"),
        (2, "/srv/legacy/backend/data/uploads/{u}/{name}", "long_form", "pdf"),
        (2, "/home/old/app/static/uploads/{u}/{name}", None, "md"),  # older layout
        (4, "uploads/{u}/{name}", "generic", "txt"),  # relative
        (4, "/srv/legacy/backend/data/uploads/{u}/{name}", "generic", "txt"),
        (4, "/srv/legacy/backend/data/uploads/{u}/{name}", "generic", "txt"),
        (6, "/srv/legacy/backend/data/uploads/{u}/{name}", "long_form", "md"),
        (6, "/srv/legacy/backend/data/uploads/{u}/{name}", "generic", "txt"),
        (7, "/srv/legacy/backend/data/uploads/{u}/{name}", "generic", "missing"),  # file gone
        (7, "/srv/legacy/backend/data/uploads/../../../etc/{name}", "generic", "outside"),  # never read
    ]
    for doc_id, (owner, layout, category, kind) in enumerate(layouts, 1):
        name = f"user_{owner}_{doc_id:08x}-legacy.{'txt' if kind in ('missing', 'outside') else kind}"
        sentence = f"The legacy archive entry {doc_id} records the quartz harbour code {7000 + doc_id}."
        scenario.document_sentences[doc_id] = sentence
        if kind not in ("missing", "outside"):
            folder = uploads / str(owner)
            folder.mkdir(parents=True, exist_ok=True)
            content = pdf([sentence]) if kind == "pdf" else (sentence + "\n").encode()
            (folder / name).write_bytes(content)
        documents.append(
            {
                "id": doc_id,
                "title": f"Legacy document {doc_id}",
                "description": f"Uploaded to the legacy app ({kind})",
                "file_path": layout.format(u=owner, name=name),
                "file_type": kind,
                "document_type": category,
                "file_size": len(sentence) + 1,
                "created_at": _when(doc_id, doc_id % 3 == 0),
                "vector_namespace": f"user_{owner}_docs",
                "owner_id": owner,
            }
        )
    insert(db, "documents", documents)
    owned = {}
    for document in documents:
        owned.setdefault(document["owner_id"], []).append(document["id"])

    queries = []
    cycle = [2, 3, 4, 5, 6, 7, 1]
    for qid in range(1, 219):
        user = cycle[qid % len(cycle)]
        question = f"Legacy question {qid}: what did the archive say about topic {qid}?"
        document_id = owned[user][qid % len(owned[user])] if user in owned and qid % 5 == 0 else None
        if qid == 100:
            user = 99  # orphan: no such user
        if qid == 101:
            user, document_id = 2, 999  # a document that never existed
        if qid == 102:
            user, question = 2, LONG_QUESTION
        if qid == 103:
            user, document_id = 2, 4  # another user's document
        queries.append(
            {
                "id": qid,
                "question": question,
                "answer": None if qid % 17 == 0 else f"Legacy answer {qid}: the archive said {qid * 3}.",
                "created_at": _when(qid, qid % 2 == 1),
                "user_id": user,
                "document_id": document_id,
            }
        )
    queries.append(
        {
            "id": 219,
            "question": "Asked by the clashing user",
            "answer": "x",
            "created_at": _when(3, False),
            "user_id": 8,
        }
    )
    insert(db, "queries", queries)

    fernet = legacy_fernet(secret_key)
    tokens = (
        gmail.issue_tokens(MAILBOX)
        if gmail
        else {"access_token": "ya29.legacy", "refresh_token": "1//legacy"}
    )
    insert(
        db,
        "email_accounts",
        [
            {
                "id": 1,
                "user_id": 2,
                "email_address": MAILBOX,
                "provider": "gmail",
                "access_token": legacy_encrypt(fernet, tokens["access_token"]),
                "refresh_token": legacy_encrypt(fernet, tokens["refresh_token"]),
                "token_expires_at": "2024-01-01 00:00:00",  # long expired: the refresh token is used
                "is_active": 1,
                "sync_enabled": 1,
                "last_sync_at": "2024-06-01 12:00:00.5",
                "created_at": "2024-01-01 00:00:00",
            }
        ],
    )
    rows = []
    for eid in range(1, 159):
        subject = f"Legacy mail {eid}: shipment of crate {5000 + eid}"
        body = f"Crate {5000 + eid} left the depot with the ledger note kestrel-{eid}."
        scenario.email_subjects[eid] = subject
        if gmail is not None:
            from tests.gmail_stub import mime_plain

            message_id = gmail.add_message(
                MAILBOX, mime_plain(subject, body + "\n", to="alice.legacy@gmail.test")
            )
        else:
            message_id = f"{0x18C0000000000000 + eid:x}"
        scenario.message_ids.append(message_id)
        rows.append(
            {
                "id": eid,
                "email_account_id": 1,
                "user_id": 2,
                "message_id": message_id,
                "thread_id": message_id,
                "subject": subject,
                "sender_email": "ada@example.com",
                "sender_name": "Ada Lovelace",
                # Older rows kept a bare address; newer ones a JSON array.
                "recipient_emails": MAILBOX if eid % 2 else json.dumps([MAILBOX, "Bob <bob@example.com>"]),
                "cc_emails": json.dumps(["carol@example.com"]) if eid % 3 == 0 else None,
                "bcc_emails": "[]",
                "body_text": body,
                "body_html": f"<p>{body}</p>" if eid % 4 == 0 else None,
                "email_type": ["business", "personal", "transactional"][eid % 3],
                "is_read": eid % 2,
                "is_important": 1 if eid % 10 == 0 else 0,
                "has_attachments": 1 if eid == 1 else 0,
                "gmail_labels": json.dumps(["INBOX"] + (["UNREAD"] if eid % 2 == 0 else [])),
                "sent_at": _when(eid, eid % 2 == 0),
                "created_at": _when(eid, eid % 2 == 1),
                "vector_namespace": "user_2_emails",
            }
        )
    # Bad rows: a second copy of message 1 (duplicate Gmail id), and an unreadable sent_at.
    rows.append({**rows[0], "id": 159})
    rows.append(
        {**rows[1], "id": 160, "message_id": "18cffffffffffff0", "thread_id": None, "sent_at": "last tuesday"}
    )
    scenario.email_subjects[160] = rows[1]["subject"]
    insert(db, "emails", rows)
    attachments_dir = uploads / "attachments" / "2"
    attachments_dir.mkdir(parents=True, exist_ok=True)
    (attachments_dir / "manifest.txt").write_text("Crate manifest: forty barrels of pitch.\n")
    insert(
        db,
        "email_attachments",
        [
            {
                "id": 1,
                "email_id": 1,
                "user_id": 2,
                "filename": "manifest.txt",
                "file_path": "/srv/legacy/backend/data/uploads/attachments/2/manifest.txt",
                "file_size": 40,
                "mime_type": "text/plain",
                "attachment_id": "ANGjdJ8legacy",
                "is_downloaded": 1,
                "created_at": "2024-03-02 10:00:00",
            },
            {
                "id": 2,
                "email_id": 1,
                "user_id": 2,
                "filename": "photo.jpg",
                "file_path": None,
                "file_size": 120000,
                "mime_type": "image/jpeg",
                "attachment_id": "ANGjdJ9legacy",
                "is_downloaded": 0,
                "created_at": "2024-03-02 10:00:00",
            },
        ],
    )
    insert(
        db,
        "oauth_sessions",
        [
            {
                "id": 1,
                "user_id": 2,
                "state": "s1",
                "code_verifier": "v1",
                "expires_at": "2024-01-01 00:10:00",
            },
            {
                "id": 2,
                "user_id": 3,
                "state": "s2",
                "code_verifier": "v2",
                "expires_at": "2999-01-01 00:10:00",
            },
        ],
    )
    db.commit()
    db.close()
    scenario.counts = {
        "users": 8,
        "documents": 10,
        "queries": 219,
        "email_accounts": 1,
        "emails": 160,
        "email_attachments": 2,
        "oauth_sessions": 2,
    }
    return scenario
