"""Writing a user's stored mail: upserting fetched messages, label changes and deletions,
with their attachment files and vectors. Used by the sync and by account removal."""

import base64
import shutil
import uuid
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.mail.models import Email, EmailAttachment
from shared.files import write_file
from shared.models import utcnow
from shared.text.extraction import DOCX, HTML, MARKDOWN, PDF, TEXT
from shared.text.mail import Address, ParsedMessage, attachment_bytes
from shared.vectors import EMAIL_CHUNKS, VectorStore

# Attachments worth reading for search; others are listed and downloadable on request.
INDEXABLE_TYPES = frozenset({PDF, DOCX, TEXT, MARKDOWN, HTML})


@dataclass(frozen=True)
class FetchedMessage:
    """One ``messages.get?format=raw`` answer, parsed."""

    gmail_id: str
    thread_id: str
    label_ids: list[str]
    raw: bytes
    snippet: str
    parsed: ParsedMessage
    email_type: str


def email_dir(root: Path, owner_id: uuid.UUID, email_id: uuid.UUID) -> Path:
    return root / str(owner_id) / str(email_id)


def attachment_path(root: Path, owner_id: uuid.UUID, email_id: uuid.UUID, part_index: int) -> Path:
    return email_dir(root, owner_id, email_id) / f"part-{part_index}"


def label_flags(label_ids: Iterable[str]) -> dict:
    labels = list(label_ids)
    return {"labels": labels, "is_read": "UNREAD" not in labels, "is_important": "IMPORTANT" in labels}


def _addresses(addresses: Sequence[Address]) -> list[dict]:
    return [{"name": a.name, "email": a.email} for a in addresses]


async def upsert_messages(
    session: AsyncSession,
    owner_id: uuid.UUID,
    account_id: uuid.UUID,
    messages: Sequence[FetchedMessage],
    files_root: Path,
    attachment_limit: int,
) -> int:
    """Insert or refresh messages by (account, Gmail id); a retried sync stores nothing twice.
    Indexable attachments are written under the user's directory for the indexer."""
    if not messages:
        return 0
    now = utcnow()
    rows = []
    for message in messages:
        parsed = message.parsed
        rows.append(
            {
                "id": uuid.uuid4(),
                "owner_id": owner_id,
                "account_id": account_id,
                "gmail_id": message.gmail_id,
                "thread_id": message.thread_id,
                "subject": parsed.subject,
                "sender_name": parsed.sender.name if parsed.sender else None,
                "sender_address": parsed.sender.email if parsed.sender else None,
                "to_addresses": _addresses(parsed.to),
                "cc_addresses": _addresses(parsed.cc),
                "bcc_addresses": _addresses(parsed.bcc),
                "sent_at": parsed.sent_at,
                "email_type": message.email_type,
                "snippet": message.snippet,
                "body_text": parsed.body_text,
                "size": parsed.size,
                "is_malformed": parsed.malformed,
                "defects": parsed.defects,
                "indexed_at": None,
                "created_at": now,
                "updated_at": now,
                **label_flags(message.label_ids),
            }
        )
    statement = insert(Email).values(rows)
    kept = {"id", "owner_id", "account_id", "gmail_id", "created_at"}
    statement = statement.on_conflict_do_update(
        constraint="uq_emails_account_gmail_id",
        set_={name: statement.excluded[name] for name in rows[0] if name not in kept},
    ).returning(Email.id, Email.gmail_id)
    ids = {row.gmail_id: row.id for row in (await session.execute(statement)).all()}

    attachments = []
    for message in messages:
        email_id = ids[message.gmail_id]
        for info in message.parsed.attachments:
            stored = info.mime_type in INDEXABLE_TYPES and 0 < info.size <= attachment_limit
            if stored:
                path = attachment_path(files_root, owner_id, email_id, info.part_index)
                write_file(path, attachment_bytes(message.raw, info.part_index))
            attachments.append(
                {
                    "id": uuid.uuid4(),
                    "owner_id": owner_id,
                    "email_id": email_id,
                    "part_index": info.part_index,
                    "filename": info.filename[:1000],
                    "mime_type": info.mime_type[:255],
                    "size": info.size,
                    "stored": stored,
                    "index_note": None
                    if stored
                    else _skip_reason(info.mime_type, info.size, attachment_limit),
                    "created_at": now,
                }
            )
    if attachments:
        await session.execute(
            insert(EmailAttachment)
            .values(attachments)
            .on_conflict_do_nothing(constraint="uq_email_attachments_part")
        )
    return len(ids)


def _skip_reason(mime_type: str, size: int, limit: int) -> str:
    if mime_type not in INDEXABLE_TYPES:
        return f"{mime_type} is not indexed"
    return "empty" if size == 0 else f"larger than {limit} bytes"


def decode_raw(body: dict) -> bytes:
    """The RFC 822 bytes of a ``messages.get?format=raw`` answer (base64url, padding optional)."""
    raw = body.get("raw", "")
    return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))


async def update_labels(
    session: AsyncSession, account_id: uuid.UUID, labels_by_gmail_id: dict[str, list[str]]
) -> int:
    changed = 0
    for gmail_id, label_ids in labels_by_gmail_id.items():
        result = await session.execute(
            update(Email)
            .where(Email.account_id == account_id, Email.gmail_id == gmail_id)
            .values(**label_flags(label_ids), updated_at=utcnow())
        )
        changed += result.rowcount or 0
    return changed


async def stored_gmail_ids(
    session: AsyncSession, account_id: uuid.UUID, among: Collection[str] | None = None
) -> set[str]:
    """Gmail ids the account has stored: all of them, or those of ``among`` only."""
    query = select(Email.gmail_id).where(Email.account_id == account_id)
    if among is not None:
        query = query.where(Email.gmail_id.in_(list(among)))
    return set((await session.scalars(query)).all())


async def delete_messages(
    session: AsyncSession,
    store: VectorStore,
    owner_id: uuid.UUID,
    account_id: uuid.UUID,
    gmail_ids: Iterable[str],
    files_root: Path,
) -> int:
    """Rows (attachments cascade), then vectors and files. Vectors of an id that is gone are
    also removed by the next account removal or purge, so a crash in between leaks nothing."""
    gmail_ids = list(gmail_ids)
    if not gmail_ids:
        return 0
    result = await session.execute(
        delete(Email).where(Email.account_id == account_id, Email.gmail_id.in_(gmail_ids)).returning(Email.id)
    )
    removed = list(result.scalars().all())
    for email_id in removed:
        await store.delete(owner_id, EMAIL_CHUNKS, {"email_id": str(email_id)})
        shutil.rmtree(email_dir(files_root, owner_id, email_id), ignore_errors=True)
    return len(removed)


async def delete_account_mail(
    session: AsyncSession, store: VectorStore, owner_id: uuid.UUID, account_id: uuid.UUID, files_root: Path
) -> None:
    """Everything an account brought in: vectors, files, rows (the caller deletes the account)."""
    await store.delete(owner_id, EMAIL_CHUNKS, {"account_id": str(account_id)})
    ids = (
        await session.execute(delete(Email).where(Email.account_id == account_id).returning(Email.id))
    ).scalars()
    for email_id in ids.all():
        shutil.rmtree(email_dir(files_root, owner_id, email_id), ignore_errors=True)
