"""Importing the legacy ``users`` table (``python -m services.auth import-legacy``).

Usernames, emails, bcrypt hashes, ``is_active``, ``is_admin`` and ``created_at`` are kept as
they were: old passwords keep working and are rehashed to argon2id at the next sign-in. Each
user gets the id every other service derives for them (:func:`shared.legacy.legacy_uuid`).
Users whose hash still verifies against a well-known default password are imported with sign-in
refused until an admin sets a new one. An email or username that clashes (case-insensitively)
with an earlier legacy user or an existing account is reported and not merged; the command that
runs every importer tells the other services to leave that user's rows out.
"""

import asyncio
import os
import uuid
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.auth.models import User
from services.auth.passwords import LEGACY_BCRYPT_PREFIXES, limit_concurrency, verify_password
from services.auth.service import normalize_email
from services.auth.settings import AuthSettings
from shared.db import create_engine, session_factory, transaction
from shared.legacy import BadValue, LegacySource, ServiceReport, legacy_uuid
from shared.legacy.cli import Importer, ImportOptions, progress
from shared.legacy.values import boolean, clean_text, timestamp

COLUMNS = ("id", "email", "username", "hashed_password", "is_active", "is_admin", "created_at")
# The legacy app shipped admin/admin123 and let anyone pick trivial passwords.
DEFAULT_PASSWORDS = ("admin123", "admin", "password")
CHECK_NICENESS = 10
MAX_USERNAME = 50
DEFAULT_LIST = "default passwords (sign-in refused until an admin sets a new password)"
ADMIN_LIST = "admins (rights kept as they were: review them)"


async def has_default_password(stored_hash: str) -> bool:
    """True when the hash verifies against a well-known default password."""
    for candidate in DEFAULT_PASSWORDS:
        if (await verify_password(stored_hash, candidate))[0]:
            return True
    return False


async def _defaults(hashes: list[str]) -> list[bool]:
    """The checks cost ~0.25 s each at the legacy bcrypt cost: on every core, in the sign-in's
    own hashing threads, at lower priority (the other services import at the same time, and
    their rows, not these checks, decide when the import ends)."""
    limit_concurrency(os.cpu_count() or 2, niceness=CHECK_NICENESS)
    return list(await asyncio.gather(*(has_default_password(stored) for stored in hashes)))


def _row(row: dict[str, Any], options: ImportOptions) -> dict[str, Any]:
    """Our users row for a legacy one; raises BadValue for what cannot be imported."""
    email, username = clean_text(row["email"]).strip(), clean_text(row["username"]).strip()
    if not email or "@" not in email:
        raise BadValue(f"no usable email ({email[:40]!r})")
    if not username or len(username) > MAX_USERNAME:
        raise BadValue(f"username empty or longer than {MAX_USERNAME} characters")
    created = timestamp(row["created_at"], options.zone)
    return {
        "id": legacy_uuid("users", row["id"]),
        "email": normalize_email(email),
        "username": username,
        "password_hash": clean_text(row["hashed_password"]),
        "is_active": boolean(row["is_active"], True),
        "is_admin": boolean(row["is_admin"], False),
        "created_at": created,
        "updated_at": created,
    }


async def _taken(session: AsyncSession, rows: list[dict[str, Any]]) -> dict[str, uuid.UUID]:
    """Emails and usernames (lower-cased) already held by accounts that are not these rows."""
    emails = [row["email"] for row in rows]
    names = [row["username"].lower() for row in rows]
    query = select(User.id, User.email, User.username).where(
        or_(func.lower(User.email).in_(emails), func.lower(User.username).in_(names))
    )
    taken: dict[str, uuid.UUID] = {}
    for user_id, email, username in (await session.execute(query)).all():
        taken[f"email:{email.lower()}"] = user_id
        taken[f"username:{username.lower()}"] = user_id
    return taken


async def import_users(
    sessions: async_sessionmaker[AsyncSession],
    source: LegacySource,
    options: ImportOptions,
    *,
    plan_only: bool = False,
) -> ServiceReport:
    """Import the users; ``plan_only``: only decide which are taken and which are not (no
    password checks, no writes), so the other services can start at once."""
    report = ServiceReport(service="auth", dry_run=options.dry_run or plan_only)
    with report.table("users").timed():
        await _import_users(sessions, source, options, report, plan_only)
    return report


async def _import_users(
    sessions: async_sessionmaker[AsyncSession],
    source: LegacySource,
    options: ImportOptions,
    report: ServiceReport,
    plan_only: bool,
) -> None:
    table = report.table("users")
    legacy = [row async for batch in source.rows("users", COLUMNS) for row in batch]
    table.source = len(legacy)
    rows: list[dict[str, Any]] = []
    legacy_ids: dict[uuid.UUID, int] = {}
    for raw in legacy:
        report.user(raw["id"], "users").source += 1
        try:
            row = _row(raw, options)
        except BadValue as exc:
            report.skip("users", raw["id"], raw["id"], str(exc))
            continue
        rows.append(row)
        legacy_ids[row["id"]] = raw["id"]
        report.usernames[str(raw["id"])] = row["username"]

    async with transaction(sessions) as tx:
        taken = await _taken(tx.session, rows)
        existing = set((await tx.session.scalars(select(User.id).where(User.id.in_(legacy_ids)))).all())
    accepted: list[dict[str, Any]] = []
    claimed: dict[str, int] = {}  # first legacy user holding each email/username
    for row in rows:
        legacy_id = legacy_ids[row["id"]]
        clash = _clash(row, legacy_id, claimed, taken)
        if clash:
            report.skip("users", legacy_id, legacy_id, clash)
            continue
        claimed.setdefault(f"email:{row['email']}", legacy_id)
        claimed.setdefault(f"username:{row['username'].lower()}", legacy_id)
        accepted.append(row)
    if plan_only:  # which users are taken: all the other services need to know, decided in seconds
        return
    defaults = await _defaults([row["password_hash"] for row in accepted])
    report.review[DEFAULT_LIST], report.review[ADMIN_LIST] = [], []
    for row, is_default in zip(accepted, defaults, strict=True):
        legacy_id = legacy_ids[row["id"]]
        if not row["password_hash"].startswith(LEGACY_BCRYPT_PREFIXES):
            row["password_reset_required"] = True
            table.note(legacy_id, "no bcrypt password hash: an admin must set a new password")
        elif is_default:
            row["password_reset_required"] = True
            report.review[DEFAULT_LIST].append(f"{legacy_id}: {row['username']}")
        if row["is_admin"]:
            report.review[ADMIN_LIST].append(f"{legacy_id}: {row['username']}")

    bar = progress("users", len(accepted))
    for row in accepted:
        if row["id"] in existing:
            table.present += 1
        elif options.dry_run:
            table.imported += 1
        else:
            async with transaction(sessions) as tx:
                inserted = await tx.session.scalar(
                    insert(User).values(**row).on_conflict_do_nothing().returning(User.id)
                )
            table.imported += inserted is not None
        bar.update()
    bar.close()
    if not options.dry_run:
        async with transaction(sessions) as tx:
            arrived = set(
                (
                    await tx.session.scalars(select(User.id).where(User.id.in_([r["id"] for r in accepted])))
                ).all()
            )
        table.arrived = len(arrived)
        for row in accepted:
            report.user(legacy_ids[row["id"]], "users").arrived += row["id"] in arrived
    else:
        for row in accepted:
            report.user(legacy_ids[row["id"]], "users").arrived += 1


def _clash(
    row: dict[str, Any], legacy_id: int, claimed: dict[str, int], taken: dict[str, uuid.UUID]
) -> str | None:
    for kind, value in (("email", row["email"]), ("username", row["username"].lower())):
        key = f"{kind}:{value}"
        if key in claimed:
            return f"{kind} clashes with legacy user {claimed[key]} (compared case-insensitively); not merged"
        holder = taken.get(key)
        if holder is not None and holder != row["id"]:
            return f"{kind} is already taken by an existing account; not merged"
    return None


def importer(settings: AuthSettings, *, plan_only: bool = False) -> Importer:
    """The ``import-legacy`` command's work, as this service's own database role."""

    async def run(source: LegacySource, options: ImportOptions) -> ServiceReport:
        engine = create_engine(settings.service_database_url, pool_size=2)
        try:
            return await import_users(session_factory(engine), source, options, plan_only=plan_only)
        finally:
            await engine.dispose()

    return run
