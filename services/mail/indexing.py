"""Embedding stored mail into the user's ``EmailChunk`` collection (the worker's second job).

Chunks are thread-aware: quoted earlier messages are cut (each is its own email, indexed on
its own), and every chunk carries the subject and sender, so "what did Anna say about the
invoice" finds the reply even when its body never says "invoice". Attachments kept by the
sync (PDF, DOCX, text) are extracted with the shared extractors and embedded
with ``attachment_id``. Chunk ids are uuid5 of the email, so a re-run overwrites.
"""

import asyncio
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import structlog
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.mail.mailbox import attachment_path
from services.mail.models import Email, EmailAccount, EmailAttachment
from services.mail.settings import MailSettings
from shared.db import transaction
from shared.embeddings import Embedder
from shared.models import utcnow
from shared.text.chunking import ChunkSizes, TextChunk, chunk
from shared.text.extraction import Extracted, ExtractionError, Page
from shared.text.isolation import IsolatedExtractor
from shared.vectors import EMAIL_CHUNKS, VectorChunk, VectorStore

log = structlog.get_logger(__name__)

EMAILS_PER_ROUND = 32
# "On Tue, 3 Mar 2026 at 10:00, Anna <a@x> wrote:" and Outlook's separator start quoted history.
_QUOTE_INTRO = re.compile(r"^(?:On .{0,200}wrote:|-{2,}\s*Original Message\s*-{2,}|From: .+\nSent: .+)", re.M)


@dataclass(frozen=True)
class PendingChunk:
    """``text`` is a context prefix (subject, sender, attachment name) then the passage, which
    stands at ``start:end`` of the body's own text or the attachment's extracted text."""

    id: uuid.UUID
    email: Email
    attachment_id: uuid.UUID | None
    piece: TextChunk
    prefix: str

    @property
    def text(self) -> str:
        return self.prefix + self.piece.text


def own_text(body: str) -> str:
    """The body without the quoted messages it replies to."""
    match = _QUOTE_INTRO.search(body)
    if match and match.start() > 0:
        body = body[: match.start()]
    return "\n".join(line for line in body.splitlines() if not line.lstrip().startswith(">")).strip()


def header(email: Email) -> str:
    sender = " ".join(
        part
        for part in (email.sender_name, f"<{email.sender_address}>" if email.sender_address else "")
        if part
    )
    return f"Subject: {email.subject}\nFrom: {sender}\n\n"


def email_chunks(email: Email, sizes: ChunkSizes) -> list[TextChunk]:
    """The body's own text (quotes cut) in chunks; one empty chunk for an empty body, so the
    subject and sender are still searchable."""
    body = own_text(email.body_text) or email.snippet
    pieces = chunk(Extracted([Page(None, body)], None), "generic", sizes) if body else []
    return pieces or [TextChunk(0, "", None, 0, 0)]


@dataclass
class Indexer:
    settings: MailSettings
    sessions: async_sessionmaker[AsyncSession]
    store: VectorStore
    embedder: Embedder
    extractor: IsolatedExtractor

    @property
    def sizes(self) -> ChunkSizes:
        return ChunkSizes(generic=self.settings.chunk_chars)

    async def index_account(self, account_id: uuid.UUID, owner_id: uuid.UUID) -> int:
        """Embed every email of the account not embedded yet; returns how many."""
        done = 0
        while True:
            async with transaction(self.sessions, owner_id) as tx:
                session = tx.session
                emails = list(
                    (
                        await session.scalars(
                            select(Email)
                            .where(Email.account_id == account_id, Email.indexed_at.is_(None))
                            .order_by(Email.sent_at.desc().nulls_last())
                            .limit(EMAILS_PER_ROUND)
                        )
                    ).all()
                )
                ids = [email.id for email in emails]
                attachments = (
                    list(
                        (
                            await session.scalars(
                                select(EmailAttachment).where(
                                    EmailAttachment.email_id.in_(ids), EmailAttachment.stored.is_(True)
                                )
                            )
                        ).all()
                    )
                    if ids
                    else []
                )
            if not emails:
                return done
            pending = await self._chunks(emails, attachments)
            for email_id in ids:  # a re-index may have fewer chunks than last time
                await self.store.delete(owner_id, EMAIL_CHUNKS, {"email_id": str(email_id)})
            await self._embed(owner_id, pending)
            async with transaction(self.sessions, owner_id) as tx:
                session = tx.session
                if await session.get(EmailAccount, account_id) is None:
                    # Disconnected while we embedded: leave no vectors behind.
                    await self.store.delete(owner_id, EMAIL_CHUNKS, {"account_id": str(account_id)})
                    return done
                await session.execute(update(Email).where(Email.id.in_(ids)).values(indexed_at=utcnow()))
            done += len(emails)
            log.info("emails_indexed", account_id=str(account_id), emails=len(emails), chunks=len(pending))

    async def _chunks(
        self, emails: Sequence[Email], attachments: Sequence[EmailAttachment]
    ) -> list[PendingChunk]:
        pending = [
            PendingChunk(uuid.uuid5(email.id, f"body-{piece.index}"), email, None, piece, header(email))
            for email in emails
            for piece in email_chunks(email, self.sizes)
        ]
        by_id = {email.id: email for email in emails}
        for attachment in attachments:
            email = by_id[attachment.email_id]
            path = attachment_path(
                self.settings.attachments_dir, email.owner_id, email.id, attachment.part_index
            )
            try:
                extracted = await self.extractor.extract(path, attachment.mime_type)
            except (ExtractionError, OSError) as exc:
                log.info("attachment_not_indexed", attachment_id=str(attachment.id), reason=str(exc))
                continue
            prefix = f"{header(email)}Attachment: {attachment.filename}\n\n"
            # An attachment can be a long PDF: split it off the event loop (the API may share it).
            for piece in await asyncio.to_thread(chunk, extracted, "generic", self.sizes):
                chunk_id = uuid.uuid5(email.id, f"attachment-{attachment.id}-{piece.index}")
                pending.append(PendingChunk(chunk_id, email, attachment.id, piece, prefix))
        return pending

    async def _embed(self, owner_id: uuid.UUID, pending: Sequence[PendingChunk]) -> None:
        batch = self.settings.embedding_batch_size
        for start in range(0, len(pending), batch):
            part = pending[start : start + batch]
            vectors = await self.embedder.embed([p.text for p in part])
            await self.store.upsert(
                owner_id,
                EMAIL_CHUNKS,
                [
                    VectorChunk(
                        id=p.id,
                        vector=vector,
                        properties={
                            "email_id": str(p.email.id),
                            "account_id": str(p.email.account_id),
                            "chunk_index": p.piece.index,
                            "subject": p.email.subject,
                            "sender": p.email.sender_address or "",
                            "sent_at": p.email.sent_at.isoformat() if p.email.sent_at else None,
                            "email_type": p.email.email_type,
                            "attachment_id": str(p.attachment_id) if p.attachment_id else None,
                            "page": p.piece.page,
                            "start": p.piece.start,
                            "end": p.piece.end,
                            "text": p.text,
                        },
                    )
                    for p, vector in zip(part, vectors, strict=True)
                ],
            )
