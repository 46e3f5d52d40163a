"""Mail logic behind the API: connecting Gmail (OAuth with PKCE), accounts, syncs, reading
and searching mail, always as the calling user (row-level security in Postgres, the user's own
tenant in the vector store). Another user's ids look exactly like missing ones: 404."""

import hashlib
import secrets
import shutil
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode, urlsplit, urlunsplit

import structlog
from arq.connections import ArqRedis
from redis.exceptions import RedisError
from sqlalchemy import delete, exists, func, or_, select, text
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.mail.crypto import TokenCipher
from services.mail.google import Google, GoogleError, InvalidGrant, Pkce
from services.mail.mailbox import attachment_path, decode_raw, delete_account_mail, write_file
from services.mail.models import (
    AccountStatus,
    Email,
    EmailAccount,
    EmailAttachment,
    OAuthSession,
    SyncRun,
)
from services.mail.parsing import attachment_bytes
from services.mail.queue import enqueue_sync
from services.mail.settings import GMAIL_READONLY, MailSettings
from services.mail.sync import queue_run
from services.mail.tokens import AccountTokens
from shared.db import like_pattern, user_session
from shared.embeddings import Embedder
from shared.errors import ApiError
from shared.models import utcnow
from shared.text.chunking import snippet
from shared.vectors import EMAIL_CHUNKS, EmbeddingModelMismatch, SearchHit, VectorStore

ACCOUNT_NOT_FOUND = ApiError(404, "not_found", "Mail account not found")
EMAIL_NOT_FOUND = ApiError(404, "not_found", "Email not found")
ATTACHMENT_NOT_FOUND = ApiError(404, "not_found", "Attachment not found")
log = structlog.get_logger(__name__)


def state_hash(state: str) -> str:
    return hashlib.sha256(state.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class EmailFilters:
    account_id: uuid.UUID | None = None
    type: str | None = None
    sender: str | None = None
    label: str | None = None
    is_read: bool | None = None
    after: datetime | None = None
    before: datetime | None = None
    q: str | None = None


@dataclass
class MailService:
    settings: MailSettings
    sessions: async_sessionmaker[AsyncSession]
    arq: ArqRedis
    store: VectorStore
    embedder: Embedder
    google: Google
    cipher: TokenCipher
    tokens: AccountTokens

    def session(self, owner_id: uuid.UUID) -> AsyncSession:
        return user_session(self.sessions, owner_id)

    # ------------------------------------------------------------ connecting

    async def connect(self, owner_id: uuid.UUID) -> str:
        if not self.settings.google_configured:
            raise ApiError(503, "gmail_not_configured", "Gmail is not configured on this server")
        state = secrets.token_urlsafe(32)  # 32 random bytes
        pkce = Pkce.new()
        async with self.session(owner_id) as session:
            await session.execute(delete(OAuthSession).where(OAuthSession.expires_at < utcnow()))
            session.add(
                OAuthSession(
                    owner_id=owner_id,
                    state_hash=state_hash(state),
                    code_verifier=self.cipher.encrypt(pkce.verifier),
                    redirect_uri=self.settings.oauth_redirect_uri,
                    expires_at=utcnow() + timedelta(seconds=self.settings.oauth_state_ttl_seconds),
                )
            )
            await session.commit()
        return self.google.authorization_url(state, pkce)

    async def callback(self, code: str | None, state: str | None, error: str | None) -> str:
        """Finish a consent; returns where to send the browser. Raises 400 for a state that
        is unknown, expired or used (then nothing is stored)."""
        claimed = await self._claim(state) if state else None
        if claimed is None or claimed.expired:
            raise ApiError(400, "invalid_state", "This sign-in link is unknown, expired or already used")
        if error:
            return self._frontend(mail_error=error[:100])
        if not code:
            raise ApiError(400, "missing_code", "The callback carries neither a code nor an error")
        try:
            tokens = await self.google.exchange_code(code, self.cipher.decrypt(claimed.code_verifier))
            if GMAIL_READONLY not in tokens.scopes.split():
                # Google's granular consent lets the user untick Gmail: nothing to sync then.
                await self._revoke_quietly(tokens.refresh_token or tokens.access_token)
                return self._frontend(mail_error="gmail_scope_not_granted")
            address = await self.google.email_address(tokens.access_token)
        except GoogleError as exc:
            log.info("oauth_exchange_failed", status=exc.status)
            return self._frontend(mail_error="exchange_failed")
        owner_id = claimed.owner_id
        async with self.session(owner_id) as session:
            account = await session.scalar(
                select(EmailAccount).where(EmailAccount.owner_id == owner_id, EmailAccount.address == address)
            )
            if account is None:
                account = EmailAccount(owner_id=owner_id, address=address, access_token="")
                session.add(account)
            self.tokens.store_tokens(account, tokens)
            account.status, account.last_error, account.sync_enabled = AccountStatus.ACTIVE, None, True
            await session.flush()
            run, created = await queue_run(session, owner_id, account.id)
            await session.commit()
            account_id, run_id = account.id, run.id
        if created:
            await self._enqueue_sync(run_id, owner_id)
        return self._frontend(mail_connected=address, account_id=str(account_id))

    async def _claim(self, state: str) -> Row | None:
        """Mark the consent attempt used and return it (once); None for an unknown state."""
        async with self.sessions() as session:
            row = (
                await session.execute(
                    text("SELECT * FROM mail.claim_oauth_session(:state)"), {"state": state[:512]}
                )
            ).first()
            await session.commit()
        return row

    def _frontend(self, **params: str) -> str:
        parts = urlsplit(self.settings.frontend_url)
        query = "&".join(q for q in (parts.query, urlencode(params)) if q)
        return urlunsplit(parts._replace(query=query))

    # ------------------------------------------------------------ accounts

    async def list_accounts(self, owner_id: uuid.UUID) -> list[dict]:
        counts = select(Email.account_id, func.count().label("n")).group_by(Email.account_id).subquery()
        async with self.session(owner_id) as session:
            rows = await session.execute(
                select(EmailAccount, func.coalesce(counts.c.n, 0))
                .outerjoin(counts, counts.c.account_id == EmailAccount.id)
                .order_by(EmailAccount.created_at)
            )
            return [_account_out(account, count) for account, count in rows.all()]

    async def update_account(self, owner_id: uuid.UUID, account_id: uuid.UUID, sync_enabled: bool) -> dict:
        async with self.session(owner_id) as session:
            account = await self._account(session, account_id)
            account.sync_enabled, account.updated_at = sync_enabled, utcnow()
            await session.commit()
            count = await session.scalar(select(func.count()).where(Email.account_id == account_id))
            return _account_out(account, int(count or 0))

    async def delete_account(self, owner_id: uuid.UUID, account_id: uuid.UUID) -> None:
        """Revoke at Google (best effort), then remove vectors, files and rows."""
        async with self.session(owner_id) as session:
            account = await self._account(session, account_id)
            token = account.refresh_token or account.access_token
        await self._revoke_quietly(self.cipher.decrypt(token))
        async with self.session(owner_id) as session:
            await delete_account_mail(
                session, self.store, owner_id, account_id, self.settings.attachments_dir
            )
            await session.execute(delete(EmailAccount).where(EmailAccount.id == account_id))
            await session.commit()

    async def _revoke_quietly(self, token: str) -> None:
        """Revoke the grant at Google; best effort: our copy is deleted either way."""
        try:
            await self.google.revoke(token)
        except (GoogleError, OSError) as exc:
            log.info("token_revoke_failed", error=type(exc).__name__)

    @staticmethod
    async def _account(session: AsyncSession, account_id: uuid.UUID) -> EmailAccount:
        account = await session.get(EmailAccount, account_id)
        if account is None:
            raise ACCOUNT_NOT_FOUND
        return account

    # ------------------------------------------------------------ syncs

    async def request_sync(self, owner_id: uuid.UUID, account_id: uuid.UUID) -> SyncRun:
        async with self.session(owner_id) as session:
            account = await self._account(session, account_id)
            if account.status == AccountStatus.NEEDS_REAUTH:
                raise ApiError(409, "needs_reauth", "Connect the account again before syncing it")
            run, created = await queue_run(session, owner_id, account_id)
            await session.commit()
        if created:
            await self._enqueue_sync(run.id, owner_id)
        return run

    async def last_sync(self, owner_id: uuid.UUID, account_id: uuid.UUID) -> SyncRun:
        async with self.session(owner_id) as session:
            await self._account(session, account_id)
            run = await session.scalar(
                select(SyncRun)
                .where(SyncRun.account_id == account_id)
                .order_by(SyncRun.created_at.desc())
                .limit(1)
            )
            if run is None:
                raise ApiError(404, "not_found", "This account has not been synced yet")
            return run

    async def _enqueue_sync(self, run_id: uuid.UUID, owner_id: uuid.UUID) -> None:
        """The run is committed, so a Redis hiccup must not fail the request: the worker's
        cron finds queued runs in Postgres and enqueues them again."""
        try:
            await enqueue_sync(self.arq, run_id, owner_id)
        except (RedisError, OSError) as exc:
            log.warning("enqueue_failed", run_id=str(run_id), error=str(exc))

    # ------------------------------------------------------------ reading

    async def list_emails(
        self, owner_id: uuid.UUID, filters: EmailFilters, *, limit: int, offset: int
    ) -> tuple[list[dict], int]:
        query = select(Email)
        if filters.account_id:
            query = query.where(Email.account_id == filters.account_id)
        if filters.type:
            query = query.where(Email.email_type == filters.type)
        if filters.sender:
            pattern = like_pattern(filters.sender)
            query = query.where(or_(Email.sender_address.ilike(pattern), Email.sender_name.ilike(pattern)))
        if filters.label:
            query = query.where(Email.labels.contains([filters.label]))
        if filters.is_read is not None:
            query = query.where(Email.is_read.is_(filters.is_read))
        if filters.after:
            query = query.where(Email.sent_at >= filters.after)
        if filters.before:
            query = query.where(Email.sent_at < filters.before)
        if filters.q:
            pattern = like_pattern(filters.q)
            query = query.where(
                or_(
                    Email.subject.ilike(pattern),
                    Email.sender_address.ilike(pattern),
                    Email.sender_name.ilike(pattern),
                    Email.body_text.ilike(pattern),
                )
            )
        has_attachments = exists().where(EmailAttachment.email_id == Email.id)
        async with self.session(owner_id) as session:
            total = await session.scalar(select(func.count()).select_from(query.subquery()))
            page = (
                query.add_columns(has_attachments)
                .order_by(Email.sent_at.desc().nulls_last(), Email.id)
                .limit(limit)
                .offset(offset)
            )
            rows = (await session.execute(page)).all()
        return [_summary(email, bool(attached)) for email, attached in rows], int(total or 0)

    async def get_email(self, owner_id: uuid.UUID, email_id: uuid.UUID) -> dict:
        async with self.session(owner_id) as session:
            email = await session.get(Email, email_id)
            if email is None:
                raise EMAIL_NOT_FOUND
            attachments = list(
                (
                    await session.scalars(
                        select(EmailAttachment)
                        .where(EmailAttachment.email_id == email_id)
                        .order_by(EmailAttachment.part_index)
                    )
                ).all()
            )
        return {
            **_summary(email, bool(attachments)),
            "to": email.to_addresses or [],
            "cc": email.cc_addresses or [],
            "bcc": email.bcc_addresses or [],
            "body_text": email.body_text,
            "size": email.size,
            "is_malformed": email.is_malformed,
            "attachments": attachments,
        }

    async def attachment(
        self, owner_id: uuid.UUID, email_id: uuid.UUID, attachment_id: uuid.UUID
    ) -> tuple[EmailAttachment, Path]:
        """The attachment and its file, fetched from Gmail the first time and kept."""
        async with self.session(owner_id) as session:
            found = (
                await session.execute(
                    select(EmailAttachment, Email.gmail_id, Email.account_id)
                    .join(Email, Email.id == EmailAttachment.email_id)
                    .where(EmailAttachment.id == attachment_id, EmailAttachment.email_id == email_id)
                )
            ).first()
        if found is None:
            raise ATTACHMENT_NOT_FOUND
        attachment, gmail_id, account_id = found
        path = attachment_path(self.settings.attachments_dir, owner_id, email_id, attachment.part_index)
        if not path.exists():
            write_file(path, await self._download(owner_id, account_id, gmail_id, attachment.part_index))
        return attachment, path

    async def _download(
        self, owner_id: uuid.UUID, account_id: uuid.UUID, gmail_id: str, part_index: int
    ) -> bytes:
        try:
            async with await self.tokens.gmail(owner_id, account_id) as gmail:
                body = await gmail.call("messages.get", id=gmail_id, format="raw")
        except InvalidGrant:
            raise ApiError(409, "needs_reauth", "Connect the account again to download attachments") from None
        except GoogleError as exc:
            if exc.status == 404:
                raise ApiError(404, "not_found", "The message is no longer in the mailbox") from None
            raise ApiError(502, "gmail_unavailable", "Gmail did not answer; try again later") from None
        try:
            return attachment_bytes(decode_raw(body), part_index)
        except IndexError:
            raise ATTACHMENT_NOT_FOUND from None

    # ------------------------------------------------------------ search

    async def search(
        self, owner_id: uuid.UUID, q: str, *, k: int, account_id: uuid.UUID | None, email_type: str | None
    ) -> list[dict]:
        where: dict[str, str] = {}
        if account_id is not None:
            where["account_id"] = str(account_id)
        if email_type:
            where["email_type"] = email_type
        vector = await self.embedder.embed_query(q)
        try:
            # Several chunks of one email may match: ask for more, keep each email's best.
            hits = await self.store.search(
                owner_id, EMAIL_CHUNKS, vector, k * 3, where=where or None, query_text=q
            )
        except EmbeddingModelMismatch as exc:
            raise ApiError(409, "reindex_required", str(exc)) from None
        best: dict[uuid.UUID, SearchHit] = {}
        for hit in hits:
            best.setdefault(uuid.UUID(str(hit.properties["email_id"])), hit)
        ids = list(best)[:k]
        async with self.session(owner_id) as session:
            emails = (
                {e.id: e for e in (await session.scalars(select(Email).where(Email.id.in_(ids)))).all()}
                if ids
                else {}
            )
        results = []
        for email_id in ids:
            email, hit = emails.get(email_id), best[email_id]
            if email is None:  # deleted since it was embedded
                continue
            attachment = hit.properties.get("attachment_id")
            results.append(
                {
                    "email_id": email_id,
                    "subject": email.subject,
                    "sender": email.sender_address,
                    "sent_at": email.sent_at,
                    "snippet": snippet(str(hit.properties.get("text", ""))),
                    "score": hit.score,
                    "attachment_id": uuid.UUID(attachment) if attachment else None,
                }
            )
        return results


async def purge_user(
    sessions: async_sessionmaker[AsyncSession], store: VectorStore, owner_id: uuid.UUID, files_root: Path
) -> int:
    """Everything of a deleted user: the vector tenant, every file, every row."""
    await store.drop_tenant(owner_id)
    shutil.rmtree(files_root / str(owner_id), ignore_errors=True)
    async with user_session(sessions, owner_id) as session:
        removed = len((await session.scalars(select(EmailAccount.id))).all())
        await session.execute(delete(EmailAccount))  # emails, attachments and runs cascade
        await session.execute(delete(OAuthSession))
        await session.commit()
    return removed


def _account_out(account: EmailAccount, count: int) -> dict:
    return {**account.model_dump(exclude={"access_token", "refresh_token"}), "message_count": int(count)}


def _summary(email: Email, has_attachments: bool) -> dict:
    return {
        **email.model_dump(exclude={"body_text"}),
        "has_attachments": has_attachments,
        "labels": email.labels or [],
    }
