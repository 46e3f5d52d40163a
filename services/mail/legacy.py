"""Importing the legacy mail tables (``python -m services.mail import-legacy``): accounts,
emails and attachment metadata (with the files the legacy app had downloaded).

- Accounts: the legacy app's tokens are decrypted with its ``SECRET_KEY``
  (``LEGACY_SECRET_KEY``) and stored encrypted under our keys; with no history id the next sync
  is a full one, which skips every message already stored (same Gmail id), so nothing doubles.
  Tokens that do not decrypt leave the account ``needs_reauth``, reported.
- Emails: every column kept (recipient lists as lists, bare addresses included; labels; read
  and important flags; ``sent_at`` in UTC; the HTML body), written in bulk as the owner under
  row-level security, then embedded by the mail worker (``indexed_at`` is NULL).
- Each batch is read back right after it is written: the count and a checksum of subject and
  bodies computed inside PostgreSQL over what was stored.
"""

import asyncio
import os
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.mail.classification import EMAIL_TYPES
from services.mail.crypto import TokenCipher
from services.mail.legacy_sql import EXISTING_EMAILS, INSERT_EMAILS, VERIFY_EMAILS, driver
from services.mail.legacy_tokens import LegacyTokens
from services.mail.mailbox import attachment_path
from services.mail.models import AccountStatus, EmailAccount, EmailAttachment
from services.mail.queue import enqueue_index
from services.mail.settings import MailSettings
from shared.db import create_engine, session_factory, transaction
from shared.files import write_file
from shared.legacy import BadValue, LegacySource, ServiceReport, legacy_uuid
from shared.legacy.cli import Importer, ImportOptions, legacy_owners, progress
from shared.legacy.files import find_legacy_file
from shared.legacy.report import ChecksumBook, TableReport
from shared.legacy.values import (
    addresses_json,
    boolean,
    clean_text,
    optional_timestamp,
    row_digest,
    strings_json,
    timestamp,
)
from shared.redis import create_arq_pool

ACCOUNT_COLUMNS = (
    "id",
    "user_id",
    "email_address",
    "provider",
    "access_token",
    "refresh_token",
    "token_expires_at",
    "is_active",
    "sync_enabled",
    "last_sync_at",
    "created_at",
)
EMAIL_COLUMNS = (
    "id",
    "email_account_id",
    "user_id",
    "message_id",
    "thread_id",
    "subject",
    "sender_email",
    "sender_name",
    "recipient_emails",
    "cc_emails",
    "bcc_emails",
    "body_text",
    "body_html",
    "email_type",
    "is_read",
    "is_important",
    "gmail_labels",
    "sent_at",
    "created_at",
)
ATTACHMENT_COLUMNS = (
    "id",
    "email_id",
    "user_id",
    "filename",
    "file_path",
    "file_size",
    "mime_type",
    "is_downloaded",
    "created_at",
)
BATCH = 2000  # emails per owner written (and verified) in one transaction
MAX_ID = 64
SNIPPET = 200


@dataclass
class Account:
    id: uuid.UUID
    legacy_owner: int
    owner_id: uuid.UUID
    message_ids: set[str] = field(default_factory=set)


@dataclass
class MailImport:
    settings: MailSettings
    sessions: async_sessionmaker[AsyncSession]
    cipher: TokenCipher
    legacy_tokens: LegacyTokens
    options: ImportOptions
    report: ServiceReport
    owners: dict[int, uuid.UUID] = field(default_factory=dict)
    accounts: dict[int, Account] = field(default_factory=dict)
    email_owner: dict[int, int] = field(default_factory=dict)  # arrived legacy email -> legacy owner
    bodies: ChecksumBook = field(default_factory=lambda: ChecksumBook("email bodies"))
    body_sums: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    @property
    def dry_run(self) -> bool:
        return self.options.dry_run

    # ---- accounts -------------------------------------------------------------------
    async def import_accounts(self, source: LegacySource) -> None:
        table = self.report.table("email_accounts")
        taken: set[tuple[int, str]] = set()
        async for batch in source.rows("email_accounts", ACCOUNT_COLUMNS):
            for row in batch:
                table.source += 1
                owner = row["user_id"]
                counts = self.report.user(owner, "email_accounts")
                counts.source += 1
                address = clean_text(row["email_address"]).strip().lower()
                reason = None
                if owner not in self.owners:
                    reason = f"orphan: its owner, legacy user {owner}, was not imported"
                elif not address:
                    reason = "no email address"
                elif (owner, address) in taken:
                    reason = f"the user has another legacy account for {address}; not merged"
                if reason:
                    self.report.skip("email_accounts", row["id"], owner, reason)
                    continue
                taken.add((owner, address))
                account = Account(legacy_uuid("email_accounts", row["id"]), owner, self.owners[owner])
                await self._account(table, row, account, address)
                self.accounts[row["id"]] = account
                counts.arrived += 1
        if not self.dry_run:
            table.arrived = len(self.accounts)  # each one inserted or found by a query above

    async def _account(self, table: TableReport, row: dict[str, Any], account: Account, address: str) -> None:
        """Write the account, or find it there already (an earlier run's, or connected here
        before the import: then ``account.id`` becomes that account's)."""
        status = AccountStatus.ACTIVE
        try:
            access = self.legacy_tokens.decrypt(row["access_token"]) or ""
            refresh = self.legacy_tokens.decrypt(row["refresh_token"])
        except ValueError as exc:
            access, refresh, status = "", None, AccountStatus.NEEDS_REAUTH
            table.note(row["id"], f"needs_reauth: {exc}; the user must connect the account again")
        values = {
            "id": account.id,
            "owner_id": account.owner_id,
            "provider": clean_text(row["provider"] or "gmail")[:20],
            "address": address,
            "status": status,
            "sync_enabled": boolean(row["sync_enabled"], True) and boolean(row["is_active"], True),
            "last_sync_at": self._time(table, row, "last_sync_at"),
            "last_error": "Imported tokens could not be decrypted: connect again"
            if status != "active"
            else None,
            "history_id": None,  # the first sync is a full one
            "access_token": self.cipher.encrypt(access),
            "refresh_token": self.cipher.encrypt(refresh) if refresh else None,
            "token_expires_at": self._time(table, row, "token_expires_at") or datetime.now(UTC),
            "created_at": self._time(table, row, "created_at") or datetime.now(UTC),
        }
        values["updated_at"] = values["created_at"]
        async with transaction(self.sessions, account.owner_id) as tx:
            exists = await tx.session.scalar(select(EmailAccount.id).where(EmailAccount.id == account.id))
            if exists is not None:
                table.present += 1
                return
            if self.dry_run:
                table.imported += 1
                return
            inserted = await tx.session.scalar(
                insert(EmailAccount).values(**values).on_conflict_do_nothing().returning(EmailAccount.id)
            )
        if inserted is None:  # connected here before the import: its mail joins that account
            async with transaction(self.sessions, account.owner_id) as tx:
                account.id = await tx.session.scalar(
                    select(EmailAccount.id).where(EmailAccount.address == address)
                )
            table.present += 1
            table.note(row["id"], f"{address} was already connected here: its mail joins that account")
            return
        table.imported += 1

    def _time(self, table: TableReport, row: dict[str, Any], column: str) -> datetime | None:
        try:
            return optional_timestamp(row[column], self.options.zone)
        except BadValue as exc:
            table.note(row["id"], f"{column}: {exc}; left empty")
            return None

    # ---- emails ---------------------------------------------------------------------
    async def import_emails(self, source: LegacySource) -> None:
        """Rows are prepared while the previous batch is written: PostgreSQL works on one batch
        while Python parses the next (a writer task fed through a short queue)."""
        table = self.report.table("emails")
        table.source = await source.count("emails")
        table.arrived = None if self.dry_run else 0
        pending: dict[int, list[tuple[int, list[Any]]]] = defaultdict(list)
        batches: asyncio.Queue[tuple[int, list[tuple[int, list[Any]]]] | None] = asyncio.Queue(maxsize=2)

        async def write_batches() -> None:
            while (item := await batches.get()) is not None:
                await self._write(table, *item)

        writer = asyncio.create_task(write_batches())

        async def hand_over(item: tuple[int, list[tuple[int, list[Any]]]] | None) -> None:
            put = asyncio.ensure_future(batches.put(item))
            await asyncio.wait({put, writer}, return_when=asyncio.FIRST_COMPLETED)
            if writer.done() and not put.done():
                put.cancel()
                writer.result()  # the writer's error, here

        bar = progress("emails", table.source)
        try:
            async for batch in source.rows("emails", EMAIL_COLUMNS):
                for row in batch:
                    prepared = self._email(table, row)
                    if prepared is None:
                        continue
                    owner, values = prepared
                    pending[owner].append((row["id"], values))
                    if len(pending[owner]) >= BATCH:
                        await hand_over((owner, pending.pop(owner)))
                bar.update(len(batch))
            for owner in list(pending):
                await hand_over((owner, pending.pop(owner)))
            await hand_over(None)
            await writer
        finally:
            writer.cancel()
            bar.close()
        self.report.checksums.extend(self.bodies.results(None if self.dry_run else dict(self.body_sums)))

    def _email(self, table: TableReport, row: dict[str, Any]) -> tuple[int, list[Any]] | None:
        """Our row's values (``legacy_sql.EMAIL_TARGET`` order) and its legacy owner; None: skipped."""
        legacy_user = row["user_id"]
        account = self.accounts.get(row["email_account_id"])
        owner = account.legacy_owner if account else legacy_user
        self.report.user(owner, "emails").source += 1

        def skip(reason: str) -> None:
            self.report.skip("emails", row["id"], owner, reason)

        if account is None:
            skip(f"orphan: its account, legacy account {row['email_account_id']}, was not imported")
            return None
        if legacy_user != account.legacy_owner:
            table.note(
                row["id"], f"user_id {legacy_user} differs from its account's owner: kept with the account"
            )
        gmail_id = clean_text(row["message_id"]).strip()
        if not gmail_id or len(gmail_id) > MAX_ID:
            skip("no usable Gmail message id")
            return None
        if gmail_id in account.message_ids:
            skip(f"duplicate Gmail message id {gmail_id} in its account: an earlier row holds it")
            return None
        account.message_ids.add(gmail_id)
        try:
            created = (
                timestamp(row["created_at"], self.options.zone) if row["created_at"] else datetime.now(UTC)
            )
        except BadValue as exc:
            table.note(row["id"], f"created_at: {exc}; set to the import time")
            created = datetime.now(UTC)
        email_type = row["email_type"] if row["email_type"] in EMAIL_TYPES else "generic"
        subject, body_text = clean_text(row["subject"]), clean_text(row["body_text"])
        body_html = clean_text(row["body_html"]) if row["body_html"] is not None else None
        email_id = legacy_uuid("emails", row["id"])
        self.bodies.add(account.legacy_owner, row_digest([email_id, subject, body_text, body_html]))
        return account.legacy_owner, [
            email_id,
            account.owner_id,
            account.id,
            gmail_id,
            (clean_text(row["thread_id"]).strip() or gmail_id)[:MAX_ID],
            subject,
            clean_text(row["sender_name"]) or None,
            clean_text(row["sender_email"]) or None,
            addresses_json(row["recipient_emails"]),
            addresses_json(row["cc_emails"]),
            addresses_json(row["bcc_emails"]),
            self._time(table, row, "sent_at"),
            strings_json(row["gmail_labels"]),
            boolean(row["is_read"]),
            boolean(row["is_important"]),
            email_type,
            " ".join(body_text[: SNIPPET * 2].split())[:SNIPPET],
            body_text,
            body_html,
            len(body_text.encode("utf-8")) + len((body_html or "").encode("utf-8")),
            created,
            created,
        ]

    async def _write(self, table: TableReport, legacy_owner: int, rows: list[tuple[int, list[Any]]]) -> None:
        """One owner's batch in one transaction, then read back (count and checksum) in another."""
        started = time.perf_counter()
        owner_id = self.owners[legacy_owner]
        ids = [values[0] for _, values in rows]
        counts = self.report.user(legacy_owner, "emails")
        async with transaction(self.sessions, owner_id) as tx:
            conn = await driver(tx)
            if self.dry_run:
                inserted: set[uuid.UUID] = set()
            else:
                columns = list(zip(*(values for _, values in rows), strict=True))
                inserted = {r[0] for r in await conn.fetch(INSERT_EMAILS, *columns)}
            missing = [i for i in ids if i not in inserted]
            present = set()
            if missing:  # there from an earlier run, or the same Gmail id under another row
                present = {r[0] for r in await conn.fetch(EXISTING_EMAILS, missing)}
        table.present += len(present)
        if self.dry_run:
            table.imported += len(rows) - len(present)
            counts.arrived += len(rows)
            self.email_owner.update((legacy_id, legacy_owner) for legacy_id, _ in rows)
            return
        table.imported += len(inserted)
        for legacy_id, values in rows:
            if values[0] not in inserted and values[0] not in present:
                reason = f"an email with Gmail id {values[3]} is already stored for this account"
                self.report.skip("emails", legacy_id, legacy_owner, reason)
        async with transaction(self.sessions, owner_id) as tx:
            conn = await driver(tx)
            arrived, digest = await conn.fetchrow(VERIFY_EMAILS, ids)
        table.arrived += arrived
        counts.arrived += arrived
        self.body_sums[str(legacy_owner)] += int(digest)
        table.batch_ms.append((time.perf_counter() - started) * 1000)
        stored = present | inserted
        self.email_owner.update(
            (legacy_id, legacy_owner) for legacy_id, values in rows if values[0] in stored
        )

    # ---- attachments ----------------------------------------------------------------
    async def import_attachments(self, source: LegacySource) -> None:
        table = self.report.table("email_attachments")
        if "email_attachments" not in await source.tables():
            return
        table.arrived = None if self.dry_run else 0
        async for batch in source.rows("email_attachments", ATTACHMENT_COLUMNS):
            for row in batch:
                table.source += 1
                owner = self.email_owner.get(row["email_id"])
                counts = self.report.user(owner if owner is not None else row["user_id"], "email_attachments")
                counts.source += 1
                if owner is None:
                    reason = f"orphan: its email, legacy email {row['email_id']}, was not imported"
                    self.report.skip("email_attachments", row["id"], row["user_id"], reason)
                    continue
                counts.arrived += await self._attachment(table, row, owner)

    async def _attachment(self, table: TableReport, row: dict[str, Any], owner: int) -> bool:
        owner_id, email_id = self.owners[owner], legacy_uuid("emails", row["email_id"])
        attachment_id, part_index = legacy_uuid("email_attachments", row["id"]), -int(row["id"])
        found = None
        if row["file_path"] and self.options.uploads:
            found = find_legacy_file(self.options.uploads, clean_text(row["file_path"]), owner)
        if found is None and boolean(row["is_downloaded"]):
            table.note(
                row["id"], "downloaded by the legacy app, but its file is not in the uploads: metadata only"
            )
        async with transaction(self.sessions, owner_id) as tx:
            if await tx.session.get(EmailAttachment, attachment_id) is not None:
                table.present += 1
            elif self.dry_run:
                table.imported += 1
            else:
                if found is not None:
                    path = attachment_path(self.settings.attachments_dir, owner_id, email_id, part_index)
                    write_file(path, found.read_bytes())
                values = {
                    "id": attachment_id,
                    "owner_id": owner_id,
                    "email_id": email_id,
                    "part_index": part_index,
                    "filename": clean_text(row["filename"]) or "attachment",
                    "mime_type": (clean_text(row["mime_type"]) or "application/octet-stream")[:255],
                    "size": int(row["file_size"] or 0),
                    "stored": found is not None,
                    "index_note": None if found else "imported without its file",
                    "created_at": self._time(table, row, "created_at") or datetime.now(UTC),
                }
                await tx.session.execute(insert(EmailAttachment).values(**values).on_conflict_do_nothing())
                table.imported += 1
            arrived = self.dry_run or await tx.session.get(EmailAttachment, attachment_id) is not None
        if table.arrived is not None:
            table.arrived += arrived
        return arrived

    async def skip_oauth_sessions(self, source: LegacySource) -> None:
        """Consents in progress are short-lived and bound to the legacy server: none carries over."""
        if "oauth_sessions" not in await source.tables():
            return
        table = self.report.table("oauth_sessions")
        table.arrived = None if self.dry_run else 0
        now = datetime.now(UTC)
        async for batch in source.rows("oauth_sessions", ("id", "expires_at")):
            for row in batch:
                table.source += 1
                try:
                    expired = (optional_timestamp(row["expires_at"], self.options.zone) or now) <= now
                except BadValue:
                    expired = True
                table.skip(
                    row["id"],
                    "expired consent session: not carried over"
                    if expired
                    else "a consent in progress cannot carry over: the user connects the account again",
                )

    async def queue_embedding(self, redis_url: str) -> None:
        """The worker embeds what is not indexed yet (its recovery cron would find it too)."""
        arq = await create_arq_pool(redis_url)
        try:
            for account in self.accounts.values():
                await enqueue_index(arq, account.id, account.owner_id)
        finally:
            await arq.aclose()


def importer(settings: MailSettings) -> Importer:
    async def run(source: LegacySource, options: ImportOptions) -> ServiceReport:
        engine = create_engine(settings.service_database_url, pool_size=2)
        report = ServiceReport(service="mail", dry_run=options.dry_run)
        work = MailImport(
            settings,
            session_factory(engine),
            settings.token_cipher(),
            LegacyTokens(os.environ.get("LEGACY_SECRET_KEY")),
            options,
            report,
            owners=await legacy_owners(source, options),
        )
        try:
            for name, step in (
                ("email_accounts", work.import_accounts),
                ("emails", work.import_emails),
                ("email_attachments", work.import_attachments),
                ("oauth_sessions", work.skip_oauth_sessions),
            ):
                with report.table(name).timed():
                    await step(source)
            if not options.dry_run:
                await work.queue_embedding(settings.redis_url)
        finally:
            await engine.dispose()
        return report

    return run
