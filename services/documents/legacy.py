"""Importing the legacy ``documents`` table and its files (``python -m services.documents
import-legacy``).

Each file is found under the uploads folder the operator names
(:func:`shared.legacy.files.find_legacy_file`: never by trusting the legacy server's absolute
path, never outside that folder), copied into our storage (hashed, type from the content) and queued for
ingestion, so it becomes searchable in its owner's tenant. ``document_type`` becomes the
category. A document whose file is gone is kept as ``failed`` and reported.
"""

import uuid
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.documents.models import Document, Status
from services.documents.service import MAX_DESCRIPTION, DocumentFiles
from services.documents.settings import DocumentsSettings
from services.documents.storage import display_filename, file_sha256, original_path
from shared.db import create_engine, session_factory, transaction
from shared.errors import Conflict
from shared.legacy import BadValue, LegacySource, ServiceReport, legacy_uuid
from shared.legacy.cli import Importer, ImportOptions, legacy_owners, progress
from shared.legacy.files import find_legacy_file
from shared.legacy.report import ChecksumBook, TableReport
from shared.legacy.values import clean_text, row_digest, timestamp
from shared.redis import create_arq_pool

COLUMNS = (
    "id",
    "title",
    "description",
    "file_path",
    "file_type",
    "document_type",
    "file_size",
    "created_at",
    "owner_id",
)
CATEGORIES = ("financial", "long_form", "generic")
MISSING = "file missing in the legacy uploads"
MAX_TITLE = 300


def _document(row: dict[str, Any], options: ImportOptions, table_note) -> Document:
    title = clean_text(row["title"]).strip() or "Untitled"
    if len(title) > MAX_TITLE:
        table_note(f"title cut to {MAX_TITLE} characters")
    description = clean_text(row["description"]) or None
    if description and len(description) > MAX_DESCRIPTION:
        table_note(f"description cut to {MAX_DESCRIPTION} characters")
        description = description[:MAX_DESCRIPTION]
    category = row["document_type"] if row["document_type"] in CATEGORIES else None
    if row["document_type"] and category is None:
        table_note(f"unknown document_type {str(row['document_type'])[:30]!r}: classified again")
    created = timestamp(row["created_at"], options.zone)
    name = PurePosixPath(clean_text(row["file_path"]).replace("\\", "/")).name
    return Document(
        id=legacy_uuid("documents", row["id"]),
        owner_id=uuid.UUID(int=0),  # set from the transaction
        title=title[:MAX_TITLE],
        description=description,
        filename=display_filename(name),
        mime_type="application/octet-stream",
        size=int(row["file_size"] or 0),
        category=category,
        status=Status.QUEUED,
        created_at=created,
        updated_at=created,
    )


Sessions = async_sessionmaker[AsyncSession]


@dataclass
class DocumentImport:
    """One run over the legacy ``documents`` table. ``files`` is None in a dry run (nothing is
    copied or queued)."""

    settings: DocumentsSettings
    files: DocumentFiles | None
    sessions: Sessions
    options: ImportOptions
    report: ServiceReport
    bytes_book: ChecksumBook = field(default_factory=lambda: ChecksumBook("document file bytes"))
    # our id -> (legacy owner, owner id), for the read-back
    expected: dict[uuid.UUID, tuple[int, uuid.UUID]] = field(default_factory=dict)

    async def run(self, source: LegacySource) -> None:
        table = self.report.table("documents")
        owners = await legacy_owners(source, self.options)
        table.source = await source.count("documents")
        bar = progress("documents", table.source)
        async for batch in source.rows("documents", COLUMNS):
            for row in batch:
                bar.update()
                await self._row(table, row, owners)
        bar.close()
        targets = None if self.options.dry_run else await self._verify()
        self.report.checksums.extend(self.bytes_book.results(targets))

    async def _row(self, table: TableReport, row: dict[str, Any], owners: dict[int, uuid.UUID]) -> None:
        owner = row["owner_id"]
        counts = self.report.user(owner, "documents")
        counts.source += 1
        if owner not in owners:
            reason = f"orphan: its owner, legacy user {owner}, was not imported"
            self.report.skip("documents", row["id"], owner, reason)
            return
        try:
            document = _document(row, self.options, lambda reason: table.note(row["id"], reason))
        except BadValue as exc:
            self.report.skip("documents", row["id"], owner, str(exc))
            return
        uploads = self.options.uploads
        found = find_legacy_file(uploads, clean_text(row["file_path"]), owner) if uploads else None
        outcome = await self._store(owners[owner], document, found)
        if outcome == "duplicate":
            reason = "the same file is already imported for this user (same bytes)"
            self.report.skip("documents", row["id"], owner, reason)
            return
        table.present += outcome == "present"
        table.imported += outcome == "imported"
        counts.arrived += self.options.dry_run  # a dry run: would arrive (verified otherwise)
        self.expected[document.id] = (owner, owners[owner])
        if found is None:
            table.note(row["id"], MISSING)
        # The copy hashed the source as it read it; only what was not copied now is read here.
        sha = document.sha256 if outcome == "imported" and self.files else None
        if sha is None and found is not None:
            sha = await file_sha256(found)
        self.bytes_book.add(owner, row_digest([document.id, sha or "missing"]))

    async def _store(self, owner_id: uuid.UUID, document: Document, found: Path | None) -> str:
        """``present`` (an earlier run's), ``imported``, or ``duplicate`` (same bytes, same user)."""
        async with transaction(self.sessions, owner_id) as tx:
            if await tx.session.scalar(select(Document.id).where(Document.id == document.id)) is not None:
                return "present"
            if self.files is None:
                return "imported"
            try:
                if found is None:
                    await self.files.add_without_file(tx, document, MISSING)
                else:
                    await self.files.add(tx, found, document)
            except Conflict:
                return "duplicate"
        return "imported"

    async def _verify(self) -> dict[str, int]:
        """Count what is in our database and hash the stored files again; per-user sums."""
        table = self.report.table("documents")
        table.arrived = 0
        sums: dict[str, int] = {}
        by_owner: dict[uuid.UUID, list[uuid.UUID]] = {}
        for document_id, (_, owner_id) in self.expected.items():
            by_owner.setdefault(owner_id, []).append(document_id)
        for owner_id, ids in by_owner.items():
            async with transaction(self.sessions, owner_id) as tx:
                query = select(Document.id, Document.sha256).where(Document.id.in_(ids))
                rows = (await tx.session.execute(query)).all()
            for document_id, sha in rows:
                legacy_owner = self.expected[document_id][0]
                table.arrived += 1
                self.report.user(legacy_owner, "documents").arrived += 1
                path = original_path(self.settings.uploads_dir, owner_id, document_id)
                stored = await file_sha256(path) if sha else None
                digest = row_digest([document_id, stored or "missing"])
                sums[str(legacy_owner)] = sums.get(str(legacy_owner), 0) + digest
        return sums


async def import_documents(
    settings: DocumentsSettings,
    files: DocumentFiles | None,
    sessions: Sessions,
    source: LegacySource,
    options: ImportOptions,
) -> ServiceReport:
    report = ServiceReport(service="documents", dry_run=options.dry_run)
    with report.table("documents").timed():
        await DocumentImport(settings, files, sessions, options, report).run(source)
    return report


def importer(settings: DocumentsSettings) -> Importer:
    async def run(source: LegacySource, options: ImportOptions) -> ServiceReport:
        engine = create_engine(settings.service_database_url, pool_size=2)
        arq = None if options.dry_run else await create_arq_pool(settings.redis_url)
        try:
            files = None if arq is None else DocumentFiles(settings, arq)
            return await import_documents(settings, files, session_factory(engine), source, options)
        finally:
            if arq is not None:
                await arq.aclose()
            await engine.dispose()

    return run
