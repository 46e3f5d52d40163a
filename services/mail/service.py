"""Mail logic behind the API: connecting Gmail (OAuth with PKCE), accounts, syncs, reading
and searching mail, always as the calling user (row-level security in Postgres, the user's own
tenant in the vector store). Another user's ids look exactly like missing ones: 404.

Methods take the caller's :class:`~shared.db.Transaction`; the public OAuth callback, which has
no user until the consent is claimed, opens its own through the same ``transaction()`` helper."""

import hashlib
import secrets
import shutil
import uuid
from collections.abc import Sequence
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

from services.mail.classification import EmailType
from services.mail.crypto import TokenCipher, TokenDecryptionError
from services.mail.google import Google, GoogleError, InvalidGrant, Pkce
from services.mail.mailbox import attachment_path, decode_raw, delete_account_mail
from services.mail.models import (
    AccountStatus,
    Email,
    EmailAccount,
    EmailAttachment,
    OAuthSession,
    SyncRun,
)
from services.mail.queue import enqueue_sync
from services.mail.settings import GMAIL_READONLY, MailSettings
from services.mail.sync import queue_run
from services.mail.tokens import AccountTokens
from shared.db import Transaction, like_pattern, transaction, within
from shared.embeddings import Embedder
from shared.errors import BadRequest, Conflict, NotFound, Unavailable, UpstreamFailed
from shared.files import write_file
from shared.models import utcnow
from shared.passages import Passage, chunk_text, hybrid_search, narrowing
from shared.text.mail import attachment_bytes
from shared.vectors import EMAIL_CHUNKS, SearchHit, VectorStore

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
    ids: Sequence[uuid.UUID] | None = None


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

    # ------------------------------------------------------------ connecting

    async def connect(self, tx: Transaction) -> str:
        if not self.settings.google_configured:
            raise Unavailable("Gmail is not configured on this server", code="gmail_not_configured")
        state = secrets.token_urlsafe(32)  # 32 random bytes
        pkce = Pkce.new()
        await tx.session.execute(delete(OAuthSession).where(OAuthSession.expires_at < utcnow()))
        tx.session.add(
            OAuthSession(
                owner_id=tx.owner_id,
                state_hash=state_hash(state),
                code_verifier=self.cipher.encrypt(pkce.verifier),
                redirect_uri=self.settings.oauth_redirect_uri,
                expires_at=utcnow() + timedelta(seconds=self.settings.oauth_state_ttl_seconds),
            )
        )
        return self.google.authorization_url(state, pkce)

    async def callback(self, code: str | None, state: str | None, error: str | None) -> str:
        """Finish a consent; returns where to send the browser. Raises 400 for a state that
        is unknown, expired or used (then nothing is stored)."""
        claimed = await self._claim(state) if state else None
        if claimed is None or claimed.expired:
            raise BadRequest("This sign-in link is unknown, expired or already used", code="invalid_state")
        if error:
            return self._frontend(mail_error=error[:100])
        if not code:
            raise BadRequest("The callback carries neither a code nor an error", code="missing_code")
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
        async with transaction(self.sessions, owner_id) as tx:
            account = await tx.session.scalar(
                select(EmailAccount).where(EmailAccount.owner_id == owner_id, EmailAccount.address == address)
            )
            if account is None:
                account = EmailAccount(owner_id=owner_id, address=address, access_token="")
                tx.session.add(account)
            self.tokens.store_tokens(account, tokens)
            account.status, account.last_error, account.sync_enabled = AccountStatus.ACTIVE, None, True
            await tx.session.flush()
            account_id = account.id
            await self._queue_sync(tx, account_id)
        return self._frontend(mail_connected=address, account_id=str(account_id))

    async def _claim(self, state: str) -> Row | None:
        """Mark the consent attempt used and return it (once); None for an unknown state."""
        async with transaction(self.sessions) as tx:
            return (
                await tx.session.execute(
                    text("SELECT * FROM mail.claim_oauth_session(:state)"), {"state": state[:512]}
                )
            ).first()

    def _frontend(self, **params: str) -> str:
        parts = urlsplit(self.settings.frontend_url)
        query = "&".join(q for q in (parts.query, urlencode(params)) if q)
        return urlunsplit(parts._replace(query=query))

    # ------------------------------------------------------------ accounts

    async def list_accounts(self, tx: Transaction) -> list[dict]:
        counts = select(Email.account_id, func.count().label("n")).group_by(Email.account_id).subquery()
        rows = await tx.session.execute(
            select(EmailAccount, func.coalesce(counts.c.n, 0))
            .outerjoin(counts, counts.c.account_id == EmailAccount.id)
            .order_by(EmailAccount.created_at)
        )
        return [_account_out(account, count) for account, count in rows.all()]

    async def update_account(self, tx: Transaction, account_id: uuid.UUID, sync_enabled: bool) -> dict:
        account = await self._account(tx.session, account_id)
        account.sync_enabled, account.updated_at = sync_enabled, utcnow()
        count = await tx.session.scalar(select(func.count()).where(Email.account_id == account_id))
        return _account_out(account, int(count or 0))

    async def delete_account(self, tx: Transaction, account_id: uuid.UUID) -> None:
        """Revoke at Google (best effort), then remove vectors, files and rows. A token that no
        configured key decrypts (keys lost or rotated away) cannot be revoked, but the account
        is still removed: the user must be able to disconnect it."""
        account = await self._account(tx.session, account_id)
        try:
            token = self.cipher.decrypt(account.refresh_token or account.access_token)
        except TokenDecryptionError:
            log.warning("token_not_revoked_undecryptable", account_id=str(account_id))
        else:
            await self._revoke_quietly(token)
        await delete_account_mail(
            tx.session, self.store, tx.owner_id, account_id, self.settings.attachments_dir
        )
        await tx.session.execute(delete(EmailAccount).where(EmailAccount.id == account_id))

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
            raise NotFound("Mail account not found")
        return account

    # ------------------------------------------------------------ syncs

    async def request_sync(self, tx: Transaction, account_id: uuid.UUID) -> SyncRun:
        account = await self._account(tx.session, account_id)
        if account.status == AccountStatus.NEEDS_REAUTH:
            raise Conflict("Connect the account again before syncing it", code="needs_reauth")
        return await self._queue_sync(tx, account_id)

    async def _queue_sync(self, tx: Transaction, account_id: uuid.UUID) -> SyncRun:
        """The account's active run, or a new one enqueued once the transaction commits."""
        owner_id = tx.owner_id
        run, created = await queue_run(tx.session, owner_id, account_id)
        if created:
            run_id = run.id
            tx.after_commit(lambda: self._enqueue_sync(run_id, owner_id))
        return run

    async def last_sync(self, tx: Transaction, account_id: uuid.UUID) -> SyncRun:
        await self._account(tx.session, account_id)
        run = await tx.session.scalar(
            select(SyncRun)
            .where(SyncRun.account_id == account_id)
            .order_by(SyncRun.created_at.desc())
            .limit(1)
        )
        if run is None:
            raise NotFound("This account has not been synced yet")
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
        self, tx: Transaction, filters: EmailFilters, *, limit: int, offset: int
    ) -> tuple[list[dict], int]:
        query = select(Email)
        if filters.ids is not None:
            query = query.where(Email.id.in_(filters.ids))
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
        query = within(query, Email.sent_at, filters.after, filters.before)
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
        total = await tx.session.scalar(select(func.count()).select_from(query.subquery()))
        page = (
            query.add_columns(has_attachments)
            .order_by(Email.sent_at.desc().nulls_last(), Email.id)
            .limit(limit)
            .offset(offset)
        )
        rows = (await tx.session.execute(page)).all()
        return [_summary(email, bool(attached)) for email, attached in rows], int(total or 0)

    async def get_email(self, tx: Transaction, email_id: uuid.UUID) -> dict:
        email = await tx.session.get(Email, email_id)
        if email is None:
            raise NotFound("Email not found")
        attachments = list(
            (
                await tx.session.scalars(
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
        self, tx: Transaction, email_id: uuid.UUID, attachment_id: uuid.UUID
    ) -> tuple[EmailAttachment, Path]:
        """The attachment and its file, fetched from Gmail the first time and kept."""
        owner_id = tx.owner_id
        found = (
            await tx.session.execute(
                select(EmailAttachment, Email.gmail_id, Email.account_id)
                .join(Email, Email.id == EmailAttachment.email_id)
                .where(EmailAttachment.id == attachment_id, EmailAttachment.email_id == email_id)
            )
        ).first()
        if found is None:
            raise NotFound("Attachment not found")
        attachment, gmail_id, account_id = found
        path = attachment_path(self.settings.attachments_dir, owner_id, email_id, attachment.part_index)
        if not path.exists() and attachment.part_index < 0:
            raise NotFound(
                "This attachment was imported without its file: the legacy app never downloaded it"
            )
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
            raise Conflict("Connect the account again to download attachments", code="needs_reauth") from None
        except GoogleError as exc:
            if exc.status == 404:
                raise NotFound("The message is no longer in the mailbox") from None
            raise UpstreamFailed("Gmail did not answer; try again later", code="gmail_unavailable") from None
        try:
            return attachment_bytes(decode_raw(body), part_index)
        except IndexError:
            raise NotFound("Attachment not found") from None

    # ------------------------------------------------------------ search

    async def search(
        self,
        tx: Transaction,
        q: str,
        *,
        k: int,
        account_ids: Sequence[uuid.UUID] = (),
        email_type: EmailType | None = None,
        after: datetime | None = None,
        before: datetime | None = None,
    ) -> list[Passage]:
        """Hybrid search in the caller's mail: each email's best passage (body or attachment).
        ``account_ids``, ``after`` and ``before`` (sent time) narrow the emails searched: one
        account is a store filter; several, or a date range, are checked against Postgres."""
        where, narrowed = narrowing("account_id", account_ids, after is not None or before is not None)
        if email_type:
            where["email_type"] = email_type
        # Several chunks of one email may match: ask for more, keep each email's best.
        candidates = min(150, k * (9 if narrowed else 3))
        hits = await hybrid_search(self.store, self.embedder, tx.owner_id, EMAIL_CHUNKS, q, candidates, where)
        best: dict[uuid.UUID, SearchHit] = {}
        for hit in hits:
            best.setdefault(uuid.UUID(str(hit.properties["email_id"])), hit)
        query = select(Email).where(Email.id.in_(list(best)))
        if account_ids:
            query = query.where(Email.account_id.in_(account_ids))
        query = within(query, Email.sent_at, after, before)
        emails = {e.id: e for e in (await tx.session.scalars(query)).all()} if best else {}
        ids = [email_id for email_id in best if email_id in emails][:k]
        names = (
            dict(
                (
                    await tx.session.execute(
                        select(EmailAttachment.id, EmailAttachment.filename).where(
                            EmailAttachment.email_id.in_(ids)
                        )
                    )
                ).all()
            )
            if ids
            else {}
        )
        results = []
        for email_id in ids:
            email, hit = emails.get(email_id), best[email_id]
            if email is None:  # deleted since it was embedded
                continue
            raw_attachment = hit.properties.get("attachment_id")
            attachment_id = uuid.UUID(raw_attachment) if raw_attachment else None
            results.append(
                Passage(
                    kind="attachment" if attachment_id else "email",
                    chunk_id=hit.id,
                    email_id=email_id,
                    attachment_id=attachment_id,
                    account_id=email.account_id,
                    title=names.get(attachment_id) if attachment_id else None,
                    subject=email.subject,
                    sender=email.sender_address,
                    sent_at=email.sent_at,
                    page=hit.properties.get("page"),
                    start=hit.properties.get("start"),
                    end=hit.properties.get("end"),
                    text=chunk_text(hit),
                    score=hit.score,
                    similarity=hit.similarity,
                )
            )
        return results


async def purge_user(
    sessions: async_sessionmaker[AsyncSession], store: VectorStore, owner_id: uuid.UUID, files_root: Path
) -> int:
    """Everything of a deleted user: the vector tenant, every file, every row."""
    await store.drop_tenant(owner_id)
    shutil.rmtree(files_root / str(owner_id), ignore_errors=True)
    async with transaction(sessions, owner_id) as tx:
        removed = len((await tx.session.scalars(select(EmailAccount.id))).all())
        await tx.session.execute(delete(EmailAccount))  # emails, attachments and runs cascade
        await tx.session.execute(delete(OAuthSession))
    return removed


def _account_out(account: EmailAccount, count: int) -> dict:
    return {**account.model_dump(exclude={"access_token", "refresh_token"}), "message_count": int(count)}


def _summary(email: Email, has_attachments: bool) -> dict:
    return {
        **email.model_dump(exclude={"body_text"}),
        "has_attachments": has_attachments,
        "labels": email.labels or [],
    }
