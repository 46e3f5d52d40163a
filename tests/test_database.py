"""Schema-per-service PostgreSQL: each role sees only its own schema; migrate is idempotent."""

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from shared.migrate import MigrateSettings, migrate


def as_role(database_url: str, role: str) -> str:
    return make_url(database_url).set(username=role).render_as_string(hide_password=False)


@pytest.mark.parametrize(
    ("role", "table"),
    [
        ("pai_documents", "auth.users"),
        ("pai_mail", "auth.users"),
        ("pai_documents", "auth.refresh_tokens"),
        ("pai_auth", "documents.alembic_version"),
        ("pai_auth", "mail.alembic_version"),
    ],
)
async def test_a_service_role_cannot_read_another_schema(database_url, role, table):
    conn = await asyncpg.connect(as_role(database_url, role))
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetch(f"SELECT * FROM {table} LIMIT 1")
    finally:
        await conn.close()


async def test_a_service_role_reads_its_own_schema_but_cannot_change_it(database_url):
    conn = await asyncpg.connect(as_role(database_url, "pai_auth"))
    try:
        assert await conn.fetchval("SELECT count(*) FROM auth.users") >= 0
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("CREATE TABLE auth.sneaky (id int)")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("DELETE FROM auth.alembic_version")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("CREATE TABLE public.sneaky (id int)")
    finally:
        await conn.close()


SNAPSHOT_QUERIES = {
    "columns": """SELECT table_schema, table_name, column_name, data_type, is_nullable
                  FROM information_schema.columns
                  WHERE table_schema IN ('auth', 'documents', 'mail') ORDER BY 1, 2, 3""",
    "indexes": """SELECT schemaname, indexname, indexdef FROM pg_indexes
                  WHERE schemaname IN ('auth', 'documents', 'mail') ORDER BY 1, 2""",
    "grants": """SELECT table_schema, table_name, grantee, privilege_type
                 FROM information_schema.role_table_grants
                 WHERE table_schema IN ('auth', 'documents', 'mail') ORDER BY 1, 2, 3, 4""",
    "schemas": """SELECT nspname, nspacl::text FROM pg_namespace
                  WHERE nspname IN ('auth', 'documents', 'mail') ORDER BY 1""",
    "roles": """SELECT rolname, rolsuper, rolcreatedb, rolcreaterole, rolcanlogin, rolconfig::text
                FROM pg_roles WHERE rolname LIKE 'pai\\_%' ORDER BY 1""",
    "versions": """SELECT 'auth', version_num FROM auth.alembic_version
                   UNION ALL SELECT 'documents', version_num FROM documents.alembic_version
                   UNION ALL SELECT 'mail', version_num FROM mail.alembic_version ORDER BY 1""",
}


async def snapshot(database_url: str) -> dict[str, list[tuple]]:
    conn = await asyncpg.connect(database_url)
    try:
        return {name: [tuple(r) for r in await conn.fetch(q)] for name, q in SNAPSHOT_QUERIES.items()}
    finally:
        await conn.close()


async def test_migrate_twice_changes_nothing(database_url):
    before = await snapshot(database_url)
    assert before["versions"] == [("auth", "0002"), ("documents", "0003"), ("mail", "0003")]
    assert {r[0] for r in before["roles"]} >= {"pai_auth", "pai_documents", "pai_mail"}
    assert not any(r[1] or r[2] or r[3] for r in before["roles"])  # no superuser, createdb, createrole
    import asyncio

    await asyncio.to_thread(migrate, MigrateSettings(database_url=database_url))
    assert await snapshot(database_url) == before


async def test_timestamps_are_timezone_aware_and_ids_are_uuids(db):
    rows = await db.fetch(
        """SELECT table_name, column_name, data_type FROM information_schema.columns
           WHERE table_schema = 'auth' AND (column_name LIKE '%\\_at' OR column_name = 'id')"""
    )
    assert rows
    for row in rows:
        expected = "uuid" if row["column_name"] == "id" else "timestamp with time zone"
        assert row["data_type"] == expected, dict(row)
