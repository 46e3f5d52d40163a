"""What an import did, table by table and user by user, and the proof that nothing was lost.

Each service's importer fills one :class:`ServiceReport` and prints it as JSON; the command
that ran them all (``make import-legacy``) merges them into one report. Counts of what arrived
are read back from our database after the import, not counted while writing, and content that
must survive unchanged is compared as per-user checksums computed on both sides.
"""

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pydantic import BaseModel, Field


class Problem(BaseModel):
    """A legacy row that was not imported (``skipped``) or was imported with a change (``notes``)."""

    table: str
    legacy_id: int | str | None
    reason: str


class Checksum(BaseModel):
    """One user's checksum of one kind of content, over the source and over what we stored."""

    name: str
    user: str
    source: str
    target: str | None = None  # None: not written (dry run)

    @property
    def differs(self) -> bool:
        return self.target is not None and self.target != self.source


class UserCount(BaseModel):
    source: int = 0
    arrived: int = 0
    skipped: int = 0


class TableReport(BaseModel):
    table: str
    source: int = 0  # rows in the legacy table
    imported: int = 0  # written by this run (a dry run: would be written)
    present: int = 0  # there already from an earlier run, left as it was
    arrived: int | None = None  # found in our database afterwards (None: dry run)
    skipped: list[Problem] = Field(default_factory=list)
    notes: list[Problem] = Field(default_factory=list)
    seconds: float = 0.0  # spent on this table, reading, writing and verifying
    batch_ms: list[float] = Field(default_factory=list)  # each bulk batch, written and verified

    @contextmanager
    def timed(self) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds += time.perf_counter() - started

    @property
    def accounted(self) -> int:
        return self.arrived if self.arrived is not None else self.imported + self.present

    @property
    def lost(self) -> int:
        """Rows neither in our database nor skipped with a reason."""
        return self.source - self.accounted - len(self.skipped)

    def skip(self, legacy_id: Any, reason: str) -> None:
        self.skipped.append(Problem(table=self.table, legacy_id=legacy_id, reason=reason))

    def note(self, legacy_id: Any, reason: str) -> None:
        self.notes.append(Problem(table=self.table, legacy_id=legacy_id, reason=reason))


class ServiceReport(BaseModel):
    service: str
    dry_run: bool = False
    tables: list[TableReport] = Field(default_factory=list)
    # legacy user id -> table -> counts
    users: dict[str, dict[str, UserCount]] = Field(default_factory=dict)
    checksums: list[Checksum] = Field(default_factory=list)
    # Named lists for review (e.g. admins, default passwords), each of "legacy id: name" lines.
    review: dict[str, list[str]] = Field(default_factory=dict)
    usernames: dict[str, str] = Field(default_factory=dict)  # legacy user id -> username

    def table(self, name: str) -> TableReport:
        for table in self.tables:
            if table.table == name:
                return table
        self.tables.append(TableReport(table=name))
        return self.tables[-1]

    def user(self, legacy_user: Any, table: str) -> UserCount:
        counts = self.users.setdefault(str(legacy_user), {})
        return counts.setdefault(table, UserCount())

    def skip(self, table: str, legacy_id: Any, legacy_user: Any, reason: str) -> None:
        """Row ``legacy_id`` of ``table`` (``legacy_user``'s) is not imported, for ``reason``."""
        self.table(table).skip(legacy_id, reason)
        self.user(legacy_user, table).skipped += 1


class ChecksumBook:
    """Per-user sums of row digests (:func:`shared.legacy.values.row_digest`) for one content kind."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.source: dict[str, int] = defaultdict(int)

    def add(self, legacy_user: Any, digest: int) -> None:
        self.source[str(legacy_user)] += digest

    def results(self, targets: dict[str, int] | None) -> list[Checksum]:
        return [
            Checksum(
                name=self.name,
                user=user,
                source=f"{total & (2**64 - 1):016x}",
                target=None if targets is None else f"{targets.get(user, 0) & (2**64 - 1):016x}",
            )
            for user, total in sorted(self.source.items(), key=lambda item: _user_order(item[0]))
        ]


def _user_order(user: str) -> tuple[int, str]:
    return (int(user), "") if user.isdigit() else (2**63, user)


def merge(reports: list[ServiceReport]) -> dict[str, Any]:
    """The whole import's report (JSON-ready), with its verdict."""
    tables = [table for report in reports for table in report.tables]
    checksums = [checksum for report in reports for checksum in report.checksums]
    users: dict[str, dict[str, UserCount]] = {}
    usernames: dict[str, str] = {}
    review: dict[str, list[str]] = {}
    for report in reports:
        usernames.update(report.usernames)
        for user, counts in report.users.items():
            users.setdefault(user, {}).update(counts)
        for name, lines in report.review.items():
            review.setdefault(name, []).extend(lines)
    lost = sum(max(0, table.lost) for table in tables)
    differing = [checksum for checksum in checksums if checksum.differs]
    dry_run = any(report.dry_run for report in reports)
    return {
        "dry_run": dry_run,
        "tables": [table.model_dump() | {"lost": table.lost} for table in tables],
        "users": {
            user: {"username": usernames.get(user), "tables": {t: c.model_dump() for t, c in counts.items()}}
            for user, counts in sorted(users.items(), key=lambda item: _user_order(item[0]))
        },
        "checksums": [checksum.model_dump() | {"differs": checksum.differs} for checksum in checksums],
        "review": review,
        "verified_rows": sum(table.accounted for table in tables),
        "lost": lost,
        "differing_checksums": len(differing),
        "ok": lost == 0 and not differing,
    }


def render(merged: dict[str, Any]) -> str:
    """The report as an operator reads it on a terminal."""
    lines = ["Legacy import" + (" (dry run: nothing written)" if merged["dry_run"] else "")]
    lines.append(
        f"{'table':<20}{'source':>9}{'imported':>10}{'present':>9}{'arrived':>9}{'skipped':>9}{'lost':>6}"
        f"{'seconds':>9}{'rows/s':>9}"
    )
    for table in merged["tables"]:
        arrived = "-" if table["arrived"] is None else table["arrived"]
        rate = f"{table['source'] / table['seconds']:.0f}" if table["seconds"] > 0 else "-"
        lines.append(
            f"{table['table']:<20}{table['source']:>9}{table['imported']:>10}{table['present']:>9}"
            f"{arrived:>9}{len(table['skipped']):>9}{table['lost']:>6}{table['seconds']:>9.2f}{rate:>9}"
        )
    lines.append("")
    lines.append("per user (source / arrived / skipped):")
    for user, entry in merged["users"].items():
        counts = ", ".join(
            f"{table} {c['source']}/{c['arrived']}/{c['skipped']}" for table, c in entry["tables"].items()
        )
        lines.append(f"  {user} {entry['username'] or '(not imported)'}: {counts}")
    problems = [(t["table"], p) for t in merged["tables"] for p in t["skipped"]]
    if problems:
        lines.append("")
        lines.append("skipped (not imported):")
        lines.extend(f"  {table} #{p['legacy_id']}: {p['reason']}" for table, p in problems)
    notes = [(t["table"], p) for t in merged["tables"] for p in t["notes"]]
    if notes:
        lines.append("")
        lines.append("imported with notes:")
        lines.extend(f"  {table} #{p['legacy_id']}: {p['reason']}" for table, p in notes)
    for name, entries in merged["review"].items():
        lines.append("")
        lines.append(f"{name}:")
        lines.extend(f"  {entry}" for entry in entries or ["(none)"])
    differing = [c for c in merged["checksums"] if c["differs"]]
    lines.append("")
    compared = sum(1 for c in merged["checksums"] if c["target"] is not None)
    lines.append(f"checksums: {len(merged['checksums'])} ({compared} compared), {len(differing)} differ")
    lines.extend(f"  DIFFERS {c['name']} of user {c['user']}" for c in differing)
    if merged["ok"]:
        lines.append(f"verified: {merged['verified_rows']} rows, 0 lost")
    else:
        lines.append(
            f"NOT verified: {merged['lost']} rows lost, {merged['differing_checksums']} checksums differ"
        )
        for table in merged["tables"]:
            if table["lost"] > 0:
                lines.append(f"  {table['table']}: {table['lost']} rows neither imported nor skipped")
    return "\n".join(lines)
