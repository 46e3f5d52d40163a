"""The ``import-legacy`` command every importing service has (``python -m services.<name>
import-legacy SOURCE``): the same options, the same JSON report on stdout (the command that
runs them all reads it), progress bars on a terminal's stderr."""

import argparse
import asyncio
import os
import sys
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tqdm import tqdm

from shared.legacy.report import ServiceReport
from shared.legacy.source import LegacySource, SourceError, open_source
from shared.legacy.values import legacy_uuid


@dataclass(frozen=True)
class ImportOptions:
    source: str
    uploads: Path | None = None  # the legacy upload folder (documents, attachments)
    skip_users: frozenset[int] = frozenset()  # legacy users the auth import did not take
    dry_run: bool = False
    zone: tzinfo = UTC  # the legacy server's time zone, for its naive timestamps


Importer = Callable[[LegacySource, ImportOptions], Awaitable[ServiceReport]]


def add_import_command(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    cmd = commands.add_parser("import-legacy", help="import this service's tables of a legacy database")
    cmd.add_argument("source", help="legacy SQLite file or postgresql:// URL")
    cmd.add_argument("--uploads", type=Path, help="the legacy uploads folder")
    cmd.add_argument("--skip-users", default="", help="comma-separated legacy user ids not imported")
    cmd.add_argument("--dry-run", action="store_true", help="read and validate; write nothing")
    cmd.add_argument("--timezone", default="UTC", help="the legacy server's time zone (IANA name)")
    return cmd


def parse_options(args: argparse.Namespace) -> ImportOptions:
    try:
        zone: tzinfo = UTC if args.timezone in ("UTC", "") else ZoneInfo(args.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise SystemExit(f"unknown time zone {args.timezone!r}") from None
    skip = frozenset(int(part) for part in args.skip_users.split(",") if part.strip())
    return ImportOptions(args.source, args.uploads, skip, args.dry_run, zone)


def run_import(importer: Importer, args: argparse.Namespace) -> int:
    """Run ``importer`` and print its report as one JSON document on stdout."""
    options = parse_options(args)

    async def main() -> ServiceReport:
        source = await open_source(options.source)
        try:
            return await importer(source, options)
        finally:
            await source.close()

    try:
        report = asyncio.run(main())
    except SourceError as exc:
        print(f"legacy import: {exc}", file=sys.stderr)
        return 2
    print(report.model_dump_json())
    return 0


def progress(table: str, total: int) -> tqdm:
    """A bar per table on a terminal (stderr); nothing when stderr is not one. Services that
    import at the same time each get their own line (``LEGACY_PROGRESS_LINE``)."""
    line = int(os.environ.get("LEGACY_PROGRESS_LINE", "0"))
    return tqdm(
        total=total,
        desc=f"{table:<18}",
        unit=" rows",
        disable=None,
        file=sys.stderr,
        position=line,
        leave=True,
    )


async def legacy_owners(source: LegacySource, options: ImportOptions) -> dict[int, uuid.UUID]:
    """Legacy user id -> our user id, for the users the auth import took (rows of anyone else
    are orphans here)."""
    owners: dict[int, uuid.UUID] = {}
    async for batch in source.rows("users", ("id",)):
        for row in batch:
            if row["id"] is not None and int(row["id"]) not in options.skip_users:
                owners[int(row["id"])] = legacy_uuid("users", int(row["id"]))
    return owners
