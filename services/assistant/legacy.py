"""Importing the legacy ``queries`` table as query history (``python -m services.assistant
import-legacy``).

Each legacy question becomes a finished query (question and answer kept whole, however long,
``created_at`` kept) in a conversation of its own (why: :func:`record_imported_queries`). A
``document_id`` links the imported document when the legacy document exists and belongs to the
same user; otherwise the query is kept unlinked and reported. The legacy app stored no sources,
so imported answers cite none.
"""

import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.assistant.service import ImportedQuery, record_imported_queries
from services.assistant.settings import AssistantSettings
from shared.db import create_engine, session_factory, transaction
from shared.legacy import BadValue, LegacySource, ServiceReport, legacy_uuid
from shared.legacy.cli import Importer, ImportOptions, legacy_owners, progress
from shared.legacy.report import ChecksumBook, TableReport
from shared.legacy.values import clean_text, digest_sql, row_digest, timestamp

COLUMNS = ("id", "question", "answer", "created_at", "user_id", "document_id")
BATCH = 1000
_PRESENT = text("SELECT count(*) FROM assistant.queries WHERE id = ANY(:ids)")
_VERIFY = text(
    f"SELECT count(*), coalesce(sum({digest_sql('id', 'question', 'answer')}), 0) "
    "FROM assistant.queries WHERE id = ANY(:ids)"
)


async def _document_owners(source: LegacySource) -> dict[int, Any]:
    owners: dict[int, Any] = {}
    if "documents" in await source.tables():
        async for batch in source.rows("documents", ("id", "owner_id")):
            owners.update((row["id"], row["owner_id"]) for row in batch)
    return owners


Sessions = async_sessionmaker[AsyncSession]
Pending = list[ImportedQuery]


@dataclass
class QueryImport:
    """One run over the legacy ``queries`` table, written per owner in batches."""

    sessions: Sessions
    options: ImportOptions
    report: ServiceReport
    book: ChecksumBook = field(default_factory=lambda: ChecksumBook("questions and answers"))
    sums: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # per user, read back

    async def run(self, source: LegacySource) -> None:
        table = self.report.table("queries")
        owners = await legacy_owners(source, self.options)
        documents = await _document_owners(source)
        pending: dict[int, Pending] = defaultdict(list)
        table.source = await source.count("queries")
        table.arrived = None if self.options.dry_run else 0
        bar = progress("queries", table.source)
        async for batch in source.rows("queries", COLUMNS):
            for row in batch:
                owner = row["user_id"]
                self.report.user(owner, "queries").source += 1
                if owner not in owners:
                    reason = f"orphan: its user, legacy user {owner}, was not imported"
                    self.report.skip("queries", row["id"], owner, reason)
                    continue
                try:
                    item = _item(table, row, documents, self.options)
                except BadValue as exc:
                    self.report.skip("queries", row["id"], owner, str(exc))
                    continue
                self.book.add(owner, row_digest([item.id, item.question, item.answer]))
                pending[owner].append(item)
                if len(pending[owner]) >= BATCH:
                    await self._write(table, owner, owners[owner], pending.pop(owner))
            bar.update(len(batch))
        for owner in list(pending):
            await self._write(table, owner, owners[owner], pending.pop(owner))
        bar.close()
        self.report.checksums.extend(self.book.results(None if self.options.dry_run else dict(self.sums)))

    async def _write(self, table: TableReport, owner: int, owner_id: uuid.UUID, items: Pending) -> None:
        """One owner's batch in one transaction, then read back (count and checksum) in another."""
        started = time.perf_counter()
        ids = {"ids": [item.id for item in items]}
        counts = self.report.user(owner, "queries")
        async with transaction(self.sessions, owner_id) as tx:
            if self.options.dry_run:
                present = await tx.session.scalar(_PRESENT, ids)
                table.present += present
                table.imported += len(items) - present
                counts.arrived += len(items)
                return
            written = await record_imported_queries(tx, items)
        table.imported += len(written)
        async with transaction(self.sessions, owner_id) as tx:
            arrived, digest = (await tx.session.execute(_VERIFY, ids)).one()
        table.present += arrived - len(written)
        table.arrived += arrived
        counts.arrived += arrived
        self.sums[str(owner)] += int(digest)
        table.batch_ms.append((time.perf_counter() - started) * 1000)


async def import_queries(sessions: Sessions, source: LegacySource, options: ImportOptions) -> ServiceReport:
    report = ServiceReport(service="assistant", dry_run=options.dry_run)
    with report.table("queries").timed():
        await QueryImport(sessions, options, report).run(source)
    return report


def _item(
    table: TableReport, row: dict[str, Any], documents: dict[int, Any], options: ImportOptions
) -> ImportedQuery:
    question = clean_text(row["question"])
    if not question.strip():
        raise BadValue("empty question")
    try:
        created = timestamp(row["created_at"], options.zone)
    except BadValue as exc:
        table.note(row["id"], f"created_at: {exc}; set to the import time")
        created = datetime.now(UTC)
    document_id = None
    legacy_document = row["document_id"]
    if legacy_document is not None:
        if documents.get(legacy_document) == row["user_id"]:
            document_id = legacy_uuid("documents", legacy_document)
        else:
            table.note(row["id"], f"document {legacy_document} does not exist for this user: kept unlinked")
    return ImportedQuery(
        id=legacy_uuid("queries", row["id"]),
        conversation_id=legacy_uuid("queries.conversation", row["id"]),
        question=question,
        answer=clean_text(row["answer"]),
        created_at=created,
        document_id=document_id,
    )


def importer(settings: AssistantSettings) -> Importer:
    async def run(source: LegacySource, options: ImportOptions) -> ServiceReport:
        engine = create_engine(settings.service_database_url, pool_size=2)
        try:
            return await import_queries(session_factory(engine), source, options)
        finally:
            await engine.dispose()

    return run
