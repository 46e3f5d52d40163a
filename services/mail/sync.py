"""The worker's Gmail sync: full (messages.list) the first time, then incremental through the
History API, falling back to a full sync when Gmail no longer has the stored history id.

Every step is safe to repeat: messages are upserted by (account, Gmail id), the new history
id is saved only when a sync succeeds, and a failed run records its error on the run and the
account. Gmail calls go through :class:`GmailSession` (quota pacing, backoff, one refresh).
"""

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import anyio
import structlog
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.mail.classification import classify
from services.mail.crypto import TokenDecryptionError
from services.mail.google import GmailSession, Google, GoogleError, HistoryExpired, InvalidGrant
from services.mail.mailbox import (
    FetchedMessage,
    decode_raw,
    delete_messages,
    stored_gmail_ids,
    update_labels,
    upsert_messages,
)
from services.mail.models import AccountStatus, EmailAccount, SyncMode, SyncRun, SyncState
from services.mail.settings import MailSettings
from services.mail.tokens import AccountGone, AccountTokens
from shared.db import Transaction, transaction
from shared.models import utcnow
from shared.text.mail import parse_message
from shared.vectors import VectorStore

log = structlog.get_logger(__name__)

BATCH = 50  # messages stored per transaction (and progress update)
PAGE_SIZE = 500  # Gmail's largest page
HISTORY_TYPES = ["messageAdded", "messageDeleted", "labelAdded", "labelRemoved"]
HIDDEN_LABELS = frozenset({"SPAM", "TRASH"})  # what the default sync query leaves out


@dataclass
class Changes:
    """What a history walk found: fetch these, delete those, relabel the rest."""

    added: set[str]
    deleted: set[str]
    labels: dict[str, list[str]]
    history_id: str


@dataclass
class Syncer:
    settings: MailSettings
    sessions: async_sessionmaker[AsyncSession]
    google: Google
    tokens: AccountTokens
    store: VectorStore
    # Called after a successful sync: enqueue the embedding of what it stored.
    on_stored: Callable[[uuid.UUID, uuid.UUID], Awaitable[None]]

    @asynccontextmanager
    async def session(self, owner_id: uuid.UUID) -> AsyncIterator[AsyncSession]:
        """One transaction as the account's owner (``shared.db.transaction``): it commits when
        the block ends, so each step's progress is durable before the next Gmail call."""
        async with transaction(self.sessions, owner_id) as tx:
            yield tx.session

    async def run(self, run_id: uuid.UUID, owner_id: uuid.UUID) -> str:
        """Run one queued sync to its end; returns the run's final state."""
        async with self.session(owner_id) as session:
            run = await session.get(SyncRun, run_id)
            if run is None or run.state in (SyncState.SUCCEEDED, SyncState.FAILED):
                return "gone" if run is None else run.state
            account = await session.get(EmailAccount, run.account_id)
            if account is None:
                return "gone"
            if account.status == AccountStatus.NEEDS_REAUTH:
                error = "The account must be connected again"
                await self._finish(session, run, account, error=error, needs_reauth=True)
                return SyncState.FAILED
            account_id, history_id = account.id, account.history_id
            run.mode = SyncMode.INCREMENTAL if history_id else SyncMode.FULL
            run.state, run.started_at, run.updated_at = SyncState.RUNNING, utcnow(), utcnow()
            run.processed, run.total, run.error = 0, None, None
            account.status, account.updated_at = AccountStatus.SYNCING, utcnow()

        error: str | None = None
        needs_reauth = False
        new_history_id: str | None = None
        try:
            async with await self.tokens.gmail(owner_id, account_id) as gmail:
                if history_id:
                    try:
                        new_history_id = await self._incremental(
                            gmail, run_id, owner_id, account_id, history_id
                        )
                    except HistoryExpired:
                        log.info("history_expired", account_id=str(account_id))
                        await self._set_mode(owner_id, run_id, SyncMode.FULL)
                        new_history_id = await self._full(gmail, run_id, owner_id, account_id, prune=True)
                else:
                    new_history_id = await self._full(gmail, run_id, owner_id, account_id, prune=False)
        except AccountGone:
            return "gone"
        except InvalidGrant:
            error, needs_reauth = "Google access was revoked or expired: connect the account again", True
        except TokenDecryptionError:  # its key was dropped from PAI_MAIL_TOKEN_KEYS too early
            error, needs_reauth = "Stored tokens cannot be decrypted: connect the account again", True
        except GoogleError as exc:
            error = str(exc)
        except Exception as exc:  # recorded on the run, then the job fails visibly in the logs
            log.exception("sync_failed", account_id=str(account_id))
            error = f"Sync failed: {type(exc).__name__}"

        async with self.session(owner_id) as session:
            run = await session.get(SyncRun, run_id)
            account = await session.get(EmailAccount, account_id)
            if run is None or account is None:
                return "gone"
            if new_history_id is not None and error is None:
                account.history_id = new_history_id
            await self._finish(session, run, account, error=error, needs_reauth=needs_reauth)
        await self.on_stored(account_id, owner_id)  # a failed run may have stored some mail too
        return SyncState.FAILED if error else SyncState.SUCCEEDED

    async def _finish(
        self,
        session: AsyncSession,
        run: SyncRun,
        account: EmailAccount,
        *,
        error: str | None,
        needs_reauth: bool = False,
    ) -> None:
        now = utcnow()
        run.state = SyncState.FAILED if error else SyncState.SUCCEEDED
        run.error, run.finished_at, run.updated_at = error, now, now
        if error is None:
            account.status, account.last_error, account.last_sync_at = AccountStatus.ACTIVE, None, now
        else:
            reauth = needs_reauth or account.status == AccountStatus.NEEDS_REAUTH
            account.status = AccountStatus.NEEDS_REAUTH if reauth else AccountStatus.ERROR
            account.last_error = error
        account.updated_at = now

    # ------------------------------------------------------------ full sync

    async def _full(
        self,
        gmail: GmailSession,
        run_id: uuid.UUID,
        owner_id: uuid.UUID,
        account_id: uuid.UUID,
        *,
        prune: bool,
    ) -> str:
        # The history id comes first: whatever changes while we list is seen by the next sync.
        profile = await gmail.call("getProfile")
        ids, complete = await self._list_ids(gmail)
        async with self.session(owner_id) as session:
            stored = await stored_gmail_ids(session, account_id)
            removed = 0
            if prune and complete:  # a capped listing says nothing about older messages
                removed = await delete_messages(
                    session,
                    self.store,
                    owner_id,
                    account_id,
                    stored - set(ids),
                    self.settings.attachments_dir,
                )
        new = [gmail_id for gmail_id in ids if gmail_id not in stored]
        relabel = [gmail_id for gmail_id in ids if gmail_id in stored] if prune else []
        await self._progress(owner_id, run_id, processed=0, total=len(new) + len(relabel))
        await self._fetch_and_store(gmail, run_id, owner_id, account_id, new, offset=0)
        await self._relabel(gmail, run_id, owner_id, account_id, relabel, offset=len(new))
        log.info("full_sync_done", account_id=str(account_id), fetched=len(new), removed=removed)
        return str(profile["historyId"])

    async def _list_ids(self, gmail: GmailSession) -> tuple[list[str], bool]:
        """Message ids newest first, at most ``sync_max_messages``; and whether that is all."""
        limit = self.settings.sync_max_messages
        ids: list[str] = []
        token: str | None = None
        while len(ids) < limit:
            params: dict[str, Any] = {"maxResults": min(PAGE_SIZE, limit - len(ids))}
            if self.settings.sync_query:
                params["q"] = self.settings.sync_query
            if token:
                params["pageToken"] = token
            page = await gmail.call("messages.list", **params)
            ids.extend(m["id"] for m in page.get("messages", []))
            token = page.get("nextPageToken")
            if not token:
                return list(dict.fromkeys(ids)), True
        return list(dict.fromkeys(ids))[:limit], False

    # ------------------------------------------------------------ incremental sync

    async def _incremental(
        self, gmail: GmailSession, run_id: uuid.UUID, owner_id: uuid.UUID, account_id: uuid.UUID, start: str
    ) -> str:
        changes = await self._history(gmail, start)
        async with self.session(owner_id) as session:
            named = changes.added | changes.deleted | changes.labels.keys()
            stored = await stored_gmail_ids(session, account_id, among=named)
            await delete_messages(
                session,
                self.store,
                owner_id,
                account_id,
                changes.deleted & stored,
                self.settings.attachments_dir,
            )
            relabel = {
                i: labels for i, labels in changes.labels.items() if i in stored and i not in changes.added
            }
            await update_labels(session, account_id, relabel)
        new = sorted((changes.added | changes.labels.keys()) - stored)
        await self._progress(owner_id, run_id, processed=len(relabel), total=len(relabel) + len(new))
        await self._fetch_and_store(gmail, run_id, owner_id, account_id, new, offset=len(relabel))
        log.info(
            "incremental_sync_done",
            account_id=str(account_id),
            added=len(new),
            deleted=len(changes.deleted),
            relabelled=len(relabel),
        )
        return changes.history_id

    async def _history(self, gmail: GmailSession, start: str) -> Changes:
        changes = Changes(set(), set(), {}, start)
        token: str | None = None
        while True:
            params: dict[str, Any] = {
                "startHistoryId": start,
                "historyTypes": HISTORY_TYPES,
                "maxResults": PAGE_SIZE,
            }
            if token:
                params["pageToken"] = token
            page = await gmail.call("history.list", **params)
            for record in page.get("history", []):
                _apply(changes, record)
            changes.history_id = str(page.get("historyId") or changes.history_id)
            token = page.get("nextPageToken")
            if not token:
                return changes

    # ------------------------------------------------------------ fetching

    async def _fetch_and_store(
        self,
        gmail: GmailSession,
        run_id: uuid.UUID,
        owner_id: uuid.UUID,
        account_id: uuid.UUID,
        gmail_ids: list[str],
        offset: int,
    ) -> None:
        """``sync_concurrency`` fetchers keep Gmail busy (the limiter keeps the quota) while
        this task stores what they bring in batches; the bounded queue holds them back when
        storing falls behind, so memory stays flat on a large mailbox."""
        todo: asyncio.Queue[str] = asyncio.Queue()
        for gmail_id in gmail_ids:
            todo.put_nowait(gmail_id)
        fetched: asyncio.Queue[FetchedMessage | None] = asyncio.Queue(maxsize=2 * BATCH)

        async def fetcher() -> None:
            while not todo.empty():
                gmail_id = todo.get_nowait()
                try:
                    body = await gmail.call("messages.get", id=gmail_id, format="raw")
                except GoogleError as exc:
                    if exc.status != 404:
                        raise
                    await fetched.put(None)  # deleted since it was listed
                    continue
                await fetched.put(await anyio.to_thread.run_sync(_parse, body))

        async def store() -> None:
            processed, batch = offset, []
            for left in range(len(gmail_ids) - 1, -1, -1):
                message = await fetched.get()
                if message is not None and not HIDDEN_LABELS & set(message.label_ids):
                    batch.append(message)
                processed += 1
                if (processed - offset) % BATCH == 0 or left == 0:
                    if batch:
                        await self._store(owner_id, account_id, batch)
                    await self._progress(owner_id, run_id, processed=processed)
                    batch = []

        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(min(self.settings.sync_concurrency, len(gmail_ids))):
                    group.create_task(fetcher())
                group.create_task(store())
        except BaseExceptionGroup as failed:  # the first error is the run's error
            raise _first(failed) from None

    async def _store(self, owner_id: uuid.UUID, account_id: uuid.UUID, batch: list[FetchedMessage]) -> None:
        async with self.session(owner_id) as session:
            if await session.get(EmailAccount, account_id) is None:
                raise AccountGone(str(account_id))
            await upsert_messages(
                session,
                owner_id,
                account_id,
                list({m.gmail_id: m for m in batch}.values()),
                self.settings.attachments_dir,
                self.settings.attachment_index_max_bytes,
            )

    async def _relabel(
        self,
        gmail: GmailSession,
        run_id: uuid.UUID,
        owner_id: uuid.UUID,
        account_id: uuid.UUID,
        gmail_ids: list[str],
        offset: int,
    ) -> None:
        """After a lost history: current labels of messages we already have (format=minimal)."""
        semaphore = asyncio.Semaphore(self.settings.sync_concurrency)

        async def labels(gmail_id: str) -> tuple[str, list[str]]:
            async with semaphore:
                body = await gmail.call("messages.get", id=gmail_id, format="minimal")
            return gmail_id, list(body.get("labelIds", []))

        for start in range(0, len(gmail_ids), BATCH):
            part = gmail_ids[start : start + BATCH]
            found = dict(await asyncio.gather(*(labels(i) for i in part)))
            async with self.session(owner_id) as session:
                await update_labels(session, account_id, found)
            await self._progress(owner_id, run_id, processed=offset + start + len(part))

    async def _progress(
        self, owner_id: uuid.UUID, run_id: uuid.UUID, *, processed: int, total: int | None = None
    ) -> None:
        async with self.session(owner_id) as session:
            run = await session.get(SyncRun, run_id)
            if run is not None:
                run.processed, run.updated_at = processed, utcnow()
                if total is not None:
                    run.total = total

    async def _set_mode(self, owner_id: uuid.UUID, run_id: uuid.UUID, mode: SyncMode) -> None:
        async with self.session(owner_id) as session:
            run = await session.get(SyncRun, run_id)
            if run is not None:
                run.mode, run.updated_at = mode, utcnow()


def _apply(changes: Changes, record: dict[str, Any]) -> None:
    """Fold one history record into ``changes``; later records win over earlier ones."""
    for entry in record.get("messagesAdded", []):
        message = entry["message"]
        if HIDDEN_LABELS & set(message.get("labelIds", [])):
            continue
        changes.added.add(message["id"])
        changes.deleted.discard(message["id"])
    for entry in record.get("messagesDeleted", []):
        gmail_id = entry["message"]["id"]
        changes.deleted.add(gmail_id)
        changes.added.discard(gmail_id)
        changes.labels.pop(gmail_id, None)
    for kind in ("labelsAdded", "labelsRemoved"):
        for entry in record.get(kind, []):
            message = entry["message"]
            labels = list(message.get("labelIds", []))
            if HIDDEN_LABELS & set(labels):  # moved to spam or trash: out of the synced mail
                changes.deleted.add(message["id"])
                changes.added.discard(message["id"])
                changes.labels.pop(message["id"], None)
            else:  # a message back from spam or trash is fetched again (see _incremental)
                changes.deleted.discard(message["id"])
                changes.labels[message["id"]] = labels


def _first(group: BaseExceptionGroup) -> BaseException:
    error = group.exceptions[0]
    return _first(error) if isinstance(error, BaseExceptionGroup) else error


def _parse(body: dict[str, Any]) -> FetchedMessage:
    """Decode, parse and classify one ``format=raw`` answer (CPU work: run in a thread)."""
    raw = decode_raw(body)
    internal = body.get("internalDate")
    received = datetime.fromtimestamp(int(internal) / 1000, UTC) if internal else None
    labels = list(body.get("labelIds", []))
    parsed = parse_message(raw, internal_date=received)
    return FetchedMessage(
        gmail_id=body["id"],
        thread_id=body.get("threadId") or body["id"],
        label_ids=labels,
        raw=raw,
        snippet=body.get("snippet", ""),
        parsed=parsed,
        email_type=classify(parsed, labels),
    )


async def queue_run(
    session: AsyncSession, owner_id: uuid.UUID, account_id: uuid.UUID
) -> tuple[SyncRun, bool]:
    """The account's queued or running sync, or a new queued one; and whether it is new.
    A partial unique index allows one active run per account, so two racing requests agree."""
    active = select(SyncRun).where(
        SyncRun.account_id == account_id, SyncRun.state.in_([SyncState.QUEUED, SyncState.RUNNING])
    )
    run = await session.scalar(active)
    if run is not None:
        return run, False
    run = SyncRun(owner_id=owner_id, account_id=account_id)
    try:
        async with session.begin_nested():
            session.add(run)
    except IntegrityError:
        return (await session.scalar(active)), False
    return run, True


@dataclass(frozen=True)
class RecoverableWork:
    """What the worker's cron must (re-)enqueue, as (id, owner) pairs, read from Postgres."""

    due: list[tuple[uuid.UUID, uuid.UUID]]  # accounts whose periodic sync is due
    stale: list[tuple[uuid.UUID, uuid.UUID]]  # runs queued or running (their jobs may be lost)
    unindexed: list[tuple[uuid.UUID, uuid.UUID]]  # accounts with mail not embedded yet


async def recoverable_work(tx: Transaction, *, interval_seconds: int) -> RecoverableWork:
    """Across users, through SECURITY DEFINER functions that return only ids and owners. Every
    active run counts: enqueueing one whose job Redis still knows is a no-op for ARQ."""

    async def pairs(sql: str, **params: int) -> list[tuple[uuid.UUID, uuid.UUID]]:
        return [(row[0], row[1]) for row in (await tx.session.execute(text(sql), params)).all()]

    return RecoverableWork(
        due=await pairs(
            "SELECT account_id, owner_id FROM mail.accounts_due_for_sync(:interval)",
            interval=interval_seconds,
        ),
        stale=await pairs("SELECT run_id, owner_id FROM mail.syncs_needing_work(0)"),
        unindexed=await pairs("SELECT account_id, owner_id FROM mail.accounts_needing_index()"),
    )
